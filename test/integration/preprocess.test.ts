import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import sharp, { type Sharp } from 'sharp';
import type { ActivityDeps } from '../../activities/deps';
import { makePreprocessActivities, PreprocessInput } from '../../activities/preprocess';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { FileStore } from '../../adapters/store/file';
import { S3Store } from '../../adapters/store/s3';
import { KeyRejectedError } from '../../adapters/store/types';
import { layoutPage } from '../../lib/image/contact-sheet';
import { DatasetManifest } from '../../lib/pipeline/manifest';
import type { ActivityProgress } from '../../lib/pipeline/status';
import { motoWithFreshBucket } from '../support/moto';

const FOLDER = 'runs/run-1/dataset/10_sks dog';

let tmp: string;
let datasetDir: string;
let workStore: FileStore;
let deps: ActivityDeps;

function input(overrides: Partial<PreprocessInput> = {}): PreprocessInput {
  return { runId: 'run-1', dataset: datasetDir, family: 'sd15', repeats: 10, concept: 'sks dog', ...overrides };
}

/** Runs an activity inside a mock activity context, collecting its heartbeats. */
async function runActivity<A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A) {
  // Expected failures are logged as warnings by the activity runtime: keep test output readable.
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  const heartbeats: ActivityProgress[] = [];
  env.on('heartbeat', (details: ActivityProgress) => heartbeats.push(details));
  const result = (await env.run(fn, ...args)) as R;
  return { result, heartbeats };
}

function preprocess(args: PreprocessInput, activityDeps = deps) {
  return runActivity(makePreprocessActivities(activityDeps).preprocessDataset, args);
}

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(ApplicationFailure);
  return error as ApplicationFailure;
}

async function readManifest(key = 'runs/run-1/manifest.json'): Promise<DatasetManifest> {
  return DatasetManifest.parse(JSON.parse((await workStore.get(key)).toString('utf8')));
}

async function pixel(image: Buffer, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(image).raw().toBuffer({ resolveWithObject: true });
  const offset = (y * info.width + x) * info.channels;
  return [...data.subarray(offset, offset + info.channels)];
}

function expectColour(actual: number[], expected: [number, number, number], tolerance = 8) {
  expect(actual).toHaveLength(3);
  actual.forEach((value, i) => expect(Math.abs(value - expected[i])).toBeLessThanOrEqual(tolerance));
}

const solid = (width: number, height: number, background: string) => sharp({ create: { width, height, channels: 3, background } });

/** A photo-like picture (gradient and soft shapes), different for every seed. */
function pattern(width: number, height: number, seed: number): Sharp {
  const blobs = Array.from({ length: 5 }, (_, i) => {
    const cx = (((seed * 37 + i * 211) % 100) / 100) * width;
    const cy = (((seed * 53 + i * 137) % 100) / 100) * height;
    const r = (0.1 + ((seed + i) % 3) * 0.08) * Math.min(width, height);
    return `<circle cx="${cx}" cy="${cy}" r="${r}" fill="hsl(${(seed * 71 + i * 50) % 360},60%,${35 + i * 8}%)"/>`;
  }).join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
      <stop offset="0" stop-color="hsl(${(seed * 40) % 360},50%,25%)"/><stop offset="1" stop-color="hsl(${(seed * 40 + 120) % 360},50%,75%)"/>
    </linearGradient></defs>
    <rect width="100%" height="100%" fill="url(#g)"/>${blobs}</svg>`;
  return sharp(Buffer.from(svg));
}

async function writeFiles(dir: string, files: Record<string, Buffer | string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
  }
}

/** Store writes by key, to see what a retry rewrites. */
function recordingStore(store: FileStore): { store: FileStore; puts: string[] } {
  const puts: string[] = [];
  const recording = Object.create(store) as FileStore;
  recording.put = (key, body, options) => {
    puts.push(key);
    return store.put(key, body, options);
  };
  return { store: recording, puts };
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'preprocess-'));
  datasetDir = path.join(tmp, 'dataset');
  workStore = new FileStore(path.join(tmp, 'work'));
  deps = { workStore, openStore: () => workStore, trainers: {} as never };

  const photo = await pattern(640, 480, 1).jpeg().toBuffer();
  // Orientation 6 means "rotate 90° clockwise to display": the red left half ends up on top.
  const redLeftBlueRight = await solid(400, 300, '#0000ff')
    .composite([{ input: await solid(200, 300, '#ff0000').png().toBuffer(), left: 0, top: 0 }])
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const transparentWithBlackCentre = await sharp({ create: { width: 300, height: 300, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
    .composite([{ input: await solid(60, 60, '#000000').png().toBuffer(), left: 120, top: 120 }])
    .png()
    .toBuffer();

  await writeFiles(datasetDir, {
    'photo.jpg': photo,
    'photo.txt': 'sks dog in a park, “quoted”\n',
    'photo.png': await solid(300, 300, '#00ff00').png().toBuffer(),
    'alpha.png': transparentWithBlackCentre,
    'alpha.txt': 'sks dog, cut out',
    'rotated.jpg': redLeftBlueRight,
    'UPPER.JPG': await pattern(1024, 768, 2).jpeg().toBuffer(),
    'empty.jpg': Buffer.alloc(0),
    'empty.txt': 'caption of an empty image',
    'fake.png': 'this is text, not a PNG',
    'truncated.jpg': photo.subarray(0, Math.floor(photo.length / 2)),
    'lonely.txt': 'a caption without image',
    'notes.md': '# not part of the dataset',
    'nested/inner.png': await solid(300, 300, '#ffffff').png().toBuffer(),
  });
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('preprocessDataset', () => {
  let run: Awaited<ReturnType<typeof preprocess>>;
  let manifest: DatasetManifest;

  beforeAll(async () => {
    run = await preprocess(input());
    manifest = await readManifest();
  });

  it('returns only the manifest key, counts and the bucket histogram', () => {
    expect(run.result).toEqual({
      manifestKey: 'runs/run-1/manifest.json',
      counts: { found: 8, kept: 4, skipped: 4 },
      buckets: { '512x512': 4 },
    });
  });

  it('writes 512×512 8-bit sRGB PNGs without metadata into the kohya folder', async () => {
    for (const stem of ['photo', 'alpha', 'rotated', 'UPPER']) {
      const metadata = await sharp(await workStore.get(`${FOLDER}/${stem}.png`)).metadata();
      expect(metadata).toMatchObject({ format: 'png', width: 512, height: 512, channels: 3, depth: 'uchar', space: 'srgb' });
      expect(metadata.exif).toBeUndefined();
      expect(metadata.icc).toBeUndefined();
      expect(metadata.orientation).toBeUndefined();
    }
  });

  it('copies each caption unchanged beside its image', async () => {
    expect((await workStore.get(`${FOLDER}/photo.txt`)).toString('utf8')).toBe('sks dog in a park, “quoted”\n');
    expect((await workStore.get(`${FOLDER}/alpha.txt`)).toString('utf8')).toBe('sks dog, cut out');
    expect(await workStore.head(`${FOLDER}/rotated.txt`)).toBeUndefined();
    // A skipped image's caption is not copied either.
    expect(await workStore.head(`${FOLDER}/empty.txt`)).toBeUndefined();
  });

  it('bakes EXIF orientation 6 into the pixels: the photo comes out upright', async () => {
    const rotated = await workStore.get(`${FOLDER}/rotated.png`);
    expectColour(await pixel(rotated, 256, 20), [255, 0, 0]);
    expectColour(await pixel(rotated, 256, 490), [0, 0, 255]);
    const entry = manifest.images.find((i) => i.source === 'rotated.jpg');
    expect(entry).toMatchObject({ sourceWidth: 300, sourceHeight: 400 });
  });

  it('flattens transparency onto white', async () => {
    const alpha = await workStore.get(`${FOLDER}/alpha.png`);
    expectColour(await pixel(alpha, 5, 5), [255, 255, 255]);
    expectColour(await pixel(alpha, 256, 256), [0, 0, 0]);
  });

  it('records kept images with their bucket, crop, warnings and hashes, and every skip with its reason', async () => {
    expect(manifest).toMatchObject({
      version: 1,
      runId: 'run-1',
      dataset: datasetDir,
      family: 'sd15',
      target: 512,
      folder: '10_sks dog',
      layout: 'flat',
      folders: [{ name: '10_sks dog', repeats: 10, concept: 'sks dog', images: 4 }],
      ignoredFolders: ['nested'],
      orphanCaptions: ['lonely.txt'],
      counts: { found: 8, kept: 4, skipped: 4, warned: 3, duplicates: 0 },
      buckets: { '512x512': 4 },
      preprocess: { strategy: 'center', size: 512, format: 'png', minSide: 256, buckets: { resolution: 512, minBucketReso: 256, maxBucketReso: 1024, step: 64 } },
    });
    expect(manifest.images.map((i) => [i.source, i.output, i.caption])).toEqual([
      ['UPPER.JPG', `${FOLDER}/UPPER.png`, null],
      ['alpha.png', `${FOLDER}/alpha.png`, `${FOLDER}/alpha.txt`],
      ['photo.jpg', `${FOLDER}/photo.png`, `${FOLDER}/photo.txt`],
      ['rotated.jpg', `${FOLDER}/rotated.png`, null],
    ]);
    const photo = manifest.images.find((i) => i.source === 'photo.jpg')!;
    const sourceSha = createHash('sha256').update(await fs.readFile(path.join(datasetDir, 'photo.jpg'))).digest('hex');
    const outputSha = createHash('sha256').update(await workStore.get(`${FOLDER}/photo.png`)).digest('hex');
    expect(photo).toMatchObject({
      sourceSha256: sourceSha,
      outputSha256: outputSha,
      sourceFormat: 'jpeg',
      sourceWidth: 640,
      sourceHeight: 480,
      width: 512,
      height: 512,
      bucket: { width: 512, height: 512 },
      crop: { left: 80, top: 0, width: 480, height: 480 },
      warnings: ['upscaled 1.07×: 640×480 is smaller than the 512×512 target'],
    });
    expect(manifest.images.find((i) => i.source === 'UPPER.JPG')).toMatchObject({ crop: { left: 128, top: 0, width: 768, height: 768 }, warnings: [] });

    const reasons = Object.fromEntries(manifest.skipped.map((s) => [s.source, s.reason]));
    expect(reasons).toEqual({
      'empty.jpg': 'empty file (0 bytes)',
      'fake.png': 'not a readable image: unknown format or corrupt header',
      'truncated.jpg': 'not a readable image: truncated or corrupt jpeg data',
      'photo.png': 'same name as photo.jpg: both would be written as photo.png; rename one of them',
    });
  });

  it('draws a contact sheet beside the manifest: labelled thumbnails, warnings framed', async () => {
    expect(manifest.contactSheets).toEqual(['runs/run-1/contact-sheet-0001.png']);
    const sheet = await workStore.get('runs/run-1/contact-sheet-0001.png');
    const layout = layoutPage(
      manifest.images.map((i) => ({ name: i.source, detail: '', warnings: i.warnings ?? [] })),
      '',
    );
    expect(await sharp(sheet).metadata()).toMatchObject({ format: 'png', width: layout.width, height: layout.height });
    // rotated.jpg (4th) is upright in its thumbnail too, and framed in orange for its upscale warning.
    const { left, top } = layout.thumbnails[3];
    expectColour(await pixel(sheet, left + 64, top + 10), [255, 0, 0], 24);
    expectColour(await pixel(sheet, left + 64, top + 118), [0, 0, 255], 24);
    expectColour(await pixel(sheet, left - 3, top + 64), [255, 159, 28], 24);
    // UPPER.JPG (1st) has no warning: no frame.
    const upper = layout.thumbnails[0];
    expect(await pixel(sheet, upper.left - 3, upper.top + 64)).toEqual([30, 30, 30]);
  });

  it('heartbeats image progress up to the total', () => {
    expect(run.heartbeats.length).toBeGreaterThan(1);
    expect(run.heartbeats.every((h) => h.unit === 'images' && h.total === 8)).toBe(true);
    expect(run.heartbeats.at(-1)).toEqual({ done: 8, total: 8, unit: 'images' });
  });

  it('rewrites the same manifest when retried, without rewriting any image', async () => {
    const before = await workStore.get('runs/run-1/manifest.json');
    const recorded = recordingStore(workStore);
    await preprocess(input(), { ...deps, workStore: recorded.store });
    expect((await workStore.get('runs/run-1/manifest.json')).equals(before)).toBe(true);
    expect(recorded.puts.filter((key) => key.startsWith(FOLDER))).toEqual([]);
  });

  it('accepts a file:// URI and targets 1024 for SDXL', async () => {
    const { result } = await preprocess(input({ runId: 'run-xl', dataset: pathToFileURL(datasetDir).href, family: 'sdxl' }));
    expect(result.counts).toEqual({ found: 8, kept: 4, skipped: 4 });
    const xl = await readManifest(result.manifestKey);
    expect(xl.target).toBe(1024);
    const metadata = await sharp(await workStore.get('runs/run-xl/dataset/10_sks dog/photo.png')).metadata();
    expect([metadata.width, metadata.height]).toEqual([1024, 1024]);
  });

  it('takes an upper-case .TXT caption and writes it as <stem>.txt, as sd-scripts expects', async () => {
    const upper = path.join(tmp, 'upper-case-caption');
    await writeFiles(upper, { 'shout.jpg': await fs.readFile(path.join(datasetDir, 'photo.jpg')), 'shout.TXT': 'sks dog, barking' });
    const { result } = await preprocess(input({ runId: 'run-upper', dataset: upper }));
    const written = await readManifest(result.manifestKey);
    expect(written.images.map((i) => i.caption)).toEqual(['runs/run-upper/dataset/10_sks dog/shout.txt']);
    expect(written.orphanCaptions).toEqual([]);
    expect((await workStore.get('runs/run-upper/dataset/10_sks dog/shout.txt')).toString('utf8')).toBe('sks dog, barking');
  });

  it('reads an s3:// dataset through the store adapter', async () => {
    const datasetStore = new FileStore(datasetDir);
    const opened: (string | undefined)[] = [];
    const viaStore: ActivityDeps = {
      ...deps,
      openStore: (uri) => {
        opened.push(uri);
        return datasetStore;
      },
    };
    const { result } = await preprocess(input({ runId: 'run-s3', dataset: 's3://bucket/datasets/dog' }), viaStore);
    expect(new Set(opened)).toEqual(new Set(['s3://bucket/datasets/dog']));
    expect(result.counts).toEqual({ found: 8, kept: 4, skipped: 4 });
    const fromStore = await readManifest(result.manifestKey);
    expect(fromStore.dataset).toBe('s3://bucket/datasets/dog');
    expect(fromStore.ignoredFolders).toEqual(['nested']);
  });
});

describe('preprocessing options', () => {
  let bucketDir: string;

  beforeAll(async () => {
    bucketDir = path.join(tmp, 'buckets');
    await writeFiles(bucketDir, {
      'camera.jpg': await pattern(4000, 3000, 3).jpeg().toBuffer(),
      'portrait.png': await pattern(512, 768, 4).png().toBuffer(),
      'exact.png': await pattern(576, 448, 5).png().toBuffer(),
      'banner.png': await pattern(1600, 300, 6).png().toBuffer(),
    });
  });

  it('bucket: writes each image at exactly its sd-scripts bucket size', async () => {
    const { result } = await preprocess(input({ runId: 'run-bucket', dataset: bucketDir, options: { strategy: 'bucket' } }));
    expect(result.buckets).toEqual({ '576x448': 2, '384x640': 1, '1024x256': 1 });
    const manifest = await readManifest(result.manifestKey);
    const bySource = Object.fromEntries(manifest.images.map((i) => [i.source, i]));
    expect(bySource['camera.jpg']).toMatchObject({ width: 576, height: 448, bucket: { width: 576, height: 448 }, crop: { left: 67, top: 0, width: 3857, height: 3000 } });
    expect(bySource['portrait.png']).toMatchObject({ width: 384, height: 640, crop: { left: 25, top: 0, width: 461, height: 768 } });
    expect(bySource['banner.png'].warnings).toEqual([expect.stringMatching(/^aspect 5\.3:1: beyond 1:4/)]);
    for (const image of manifest.images) {
      const metadata = await sharp(await workStore.get(image.output)).metadata();
      expect([metadata.width, metadata.height]).toEqual([image.bucket!.width, image.bucket!.height]);
    }
  });

  it('bucket: leaves an image already at a bucket size pixel for pixel as it was', async () => {
    const source = await sharp(await fs.readFile(path.join(bucketDir, 'exact.png'))).removeAlpha().raw().toBuffer();
    const output = await sharp(await workStore.get('runs/run-bucket/dataset/10_sks dog/exact.png')).raw().toBuffer();
    expect(output.equals(source)).toBe(true);
  });

  it('attention and entropy: crop around what stands out instead of the centre', async () => {
    const dir = path.join(tmp, 'smart');
    // A busy, colourful patch at the far right of a flat grey picture.
    const patch = await pattern(200, 600, 7).png().toBuffer();
    await writeFiles(dir, { 'right.png': await solid(1200, 600, '#808080').composite([{ input: patch, left: 1000, top: 0 }]).png().toBuffer() });
    for (const strategy of ['attention', 'entropy'] as const) {
      const { result } = await preprocess(input({ runId: `run-${strategy}`, dataset: dir, options: { strategy } }));
      const [image] = (await readManifest(result.manifestKey)).images;
      // A centre crop would start at x=300; this one keeps the patch.
      expect(image.crop!.left).toBeGreaterThan(500);
      expect(image.crop!.left + image.crop!.width).toBeGreaterThanOrEqual(1190);
    }
  });

  it('writes JPEG or WebP at the chosen quality, with the matching extension', async () => {
    for (const [format, extension] of [['jpeg', 'jpg'], ['webp', 'webp']] as const) {
      const { result } = await preprocess(input({ runId: `run-${format}`, dataset: bucketDir, options: { format, quality: 80 } }));
      const manifest = await readManifest(result.manifestKey);
      expect(manifest.images.map((i) => i.output)).toContain(`runs/run-${format}/dataset/10_sks dog/camera.${extension}`);
      expect((await sharp(await workStore.get(manifest.images[0].output)).metadata()).format).toBe(format);
    }
  });

  it('flattens onto a chosen background and skips below a chosen minimum side', async () => {
    const dir = path.join(tmp, 'background');
    await writeFiles(dir, {
      'cutout.png': await sharp({ create: { width: 300, height: 300, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } }).png().toBuffer(),
    });
    const { result } = await preprocess(input({ runId: 'run-bg', dataset: dir, options: { background: '#102030' } }));
    expectColour(await pixel(await workStore.get('runs/run-bg/dataset/10_sks dog/cutout.png'), 10, 10), [0x10, 0x20, 0x30], 2);
    expect(result.counts.kept).toBe(1);
    const failure = await failureOf(preprocess(input({ runId: 'run-min', dataset: dir, options: { minSide: 400 } })));
    expect(failure.message).toContain('cutout.png: too small: 300×300, the shorter side is below the minimum of 400 px');
  });
});

describe('duplicates', () => {
  it('skips identical pixels (keeping the first) and warns about near-duplicates', async () => {
    const dir = path.join(tmp, 'duplicates');
    const original = pattern(800, 600, 8);
    await writeFiles(dir, {
      'a.png': await original.clone().png({ compressionLevel: 9 }).toBuffer(),
      'b.png': await original.clone().png({ compressionLevel: 1 }).toBuffer(), // other bytes, same pixels
      'c.jpg': await original.clone().resize(700, 525).jpeg({ quality: 70 }).toBuffer(), // resized and recompressed
      'd.png': await pattern(800, 600, 9).png().toBuffer(), // a different picture
    });
    const { result } = await preprocess(input({ runId: 'run-dup', dataset: dir }));
    expect(result.counts).toEqual({ found: 4, kept: 3, skipped: 1 });
    const manifest = await readManifest(result.manifestKey);
    expect(manifest.skipped).toEqual([{ source: 'b.png', reason: 'duplicate of a.png: identical pixels after preprocessing' }]);
    expect(manifest.counts.duplicates).toBe(1);
    const warnings = Object.fromEntries(manifest.images.map((i) => [i.source, i.warnings]));
    expect(warnings['c.jpg']).toEqual([expect.stringMatching(/^near-duplicate: looks like a\.png \(\d of 64 hash bits differ\)$/)]);
    expect(warnings['a.png']).toEqual([]);
    expect(warnings['d.png']).toEqual([]);
  });
});

describe('kohya layout', () => {
  it('keeps <repeats>_<name>/ folders as they are and reports what sd-scripts would not read', async () => {
    const dir = path.join(tmp, 'kohya');
    await writeFiles(dir, {
      '10_dog/a.jpg': await pattern(600, 600, 10).jpeg().toBuffer(),
      '10_dog/a.txt': 'a dog',
      '3_cat/b.webp': await pattern(600, 600, 11).webp().toBuffer(),
      '3_cat/c.tiff': await pattern(600, 600, 12).tiff().toBuffer(),
      'stray.png': await pattern(600, 600, 13).png().toBuffer(),
      'photos/p.jpg': await pattern(600, 600, 14).jpeg().toBuffer(),
    });
    const { result } = await preprocess(input({ runId: 'run-kohya', dataset: dir }));
    const manifest = await readManifest(result.manifestKey);
    expect(manifest).toMatchObject({
      layout: 'kohya',
      folder: '10_dog',
      folders: [
        { name: '10_dog', repeats: 10, concept: 'dog', images: 1 },
        { name: '3_cat', repeats: 3, concept: 'cat', images: 2 },
      ],
      ignoredFolders: ['photos'],
      counts: { found: 4, kept: 3, skipped: 1 },
    });
    expect(manifest.images.map((i) => [i.source, i.output, i.caption])).toEqual([
      ['10_dog/a.jpg', 'runs/run-kohya/dataset/10_dog/a.png', 'runs/run-kohya/dataset/10_dog/a.txt'],
      ['3_cat/b.webp', 'runs/run-kohya/dataset/3_cat/b.png', null],
      ['3_cat/c.tiff', 'runs/run-kohya/dataset/3_cat/c.png', null],
    ]);
    expect(manifest.skipped[0]).toEqual({ source: 'stray.png', reason: expect.stringContaining('in the dataset root, outside the training folders') });
  });
});

describe('batches', () => {
  it('plans, processes batches as separate executions and merges them into the same manifest', async () => {
    const activities = makePreprocessActivities(deps);
    const planned = await runActivity(activities.planPreprocess, input({ runId: 'run-batched', options: { batchSize: 2 } }));
    expect(planned.result).toEqual({ planKey: 'runs/run-batched/preprocess/plan.json', batches: 4, total: 8, skipped: 1 });

    const batchCounts = [];
    for (let batch = 0; batch < planned.result.batches; batch++) {
      const { result, heartbeats } = await runActivity(activities.preprocessBatch, { planKey: planned.result.planKey, batch });
      batchCounts.push(result);
      const expected = batch < 3 ? 2 : 1;
      expect(heartbeats.at(-1)).toEqual({ done: expected, total: expected, unit: 'images' });
    }
    expect(batchCounts.reduce((sum, b) => sum + b.kept, 0)).toBe(4);

    const finished = await runActivity(activities.finishPreprocess, { planKey: planned.result.planKey });
    expect(finished.result).toEqual({ manifestKey: 'runs/run-batched/manifest.json', counts: { found: 8, kept: 4, skipped: 4 }, buckets: { '512x512': 4 } });
    const batched = await readManifest(finished.result.manifestKey);
    const single = await readManifest();
    expect(batched.images.map((i) => [i.source, i.outputSha256, i.crop])).toEqual(single.images.map((i) => [i.source, i.outputSha256, i.crop]));
    expect(batched.skipped).toEqual(single.skipped);
  });

  it('a retried batch skips outputs already written with the same hash', async () => {
    const planKey = 'runs/run-batched/preprocess/plan.json';
    const resultKey = 'runs/run-batched/preprocess/batch-0000.json';
    const recorded = recordingStore(workStore);
    const activities = makePreprocessActivities({ ...deps, workStore: recorded.store });

    // Completed before: nothing is redone.
    await runActivity(activities.preprocessBatch, { planKey, batch: 0 });
    expect(recorded.puts).toEqual([]);

    // Died after a checkpoint: the images in it are reused, only the bookkeeping is written.
    const checkpoint = JSON.parse((await workStore.get(resultKey)).toString('utf8'));
    await workStore.put(resultKey, JSON.stringify({ ...checkpoint, complete: false }));
    await runActivity(activities.preprocessBatch, { planKey, batch: 0 });
    expect(recorded.puts.sort()).toEqual([resultKey, 'runs/run-batched/preprocess/thumbnails-0000.jpg']);

    // No record at all: a second attempt renders the images again, but does not write identical bytes again.
    recorded.puts.length = 0;
    await fs.rm(workStore.pathOf(resultKey));
    const secondAttempt = new MockActivityEnvironment({ attempt: 2 }, { logger: new DefaultLogger('ERROR') });
    const result = await secondAttempt.run(activities.preprocessBatch, { planKey, batch: 0 });
    expect(result).toMatchObject({ batch: 0, kept: 2, skipped: 0 });
    expect(recorded.puts.filter((key) => key.includes('/dataset/'))).toEqual([]);
  });

  it('refuses a batch number outside the plan', async () => {
    const failure = await failureOf(runActivity(makePreprocessActivities(deps).preprocessBatch, { planKey: 'runs/run-batched/preprocess/plan.json', batch: 9 }));
    expect(failure.type).toBe('InvalidInput');
    expect(failure.message).toContain('9 is out of range');
  });
});

describe('preprocessing failures', () => {
  it('stops processing images once the activity is cancelled', async () => {
    const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
    env.cancel();
    const run = env.run(makePreprocessActivities(deps).preprocessDataset, input({ runId: 'run-cancelled' }));
    await expect(run).rejects.toBeInstanceOf(CancelledFailure);
    expect((await workStore.list('runs/run-cancelled')).map((o) => o.key)).toEqual(['runs/run-cancelled/preprocess/plan.json']);
  });

  it('strict: fails on the first error, naming the file and the reason', async () => {
    const byContent = path.join(tmp, 'strict');
    await writeFiles(byContent, { 'ok.jpg': await pattern(600, 600, 15).jpeg().toBuffer(), 'zero.jpg': '' });
    const failure = await failureOf(preprocess(input({ runId: 'run-strict', dataset: byContent, options: { strict: true } })));
    expect(failure.type).toBe('PreprocessStrict');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toBe('strict preprocessing stopped at zero.jpg: empty file (0 bytes) (turn preprocess.strict off to skip such files and go on)');

    const byName = await failureOf(preprocess(input({ runId: 'run-strict-2', options: { strict: true } })));
    expect(byName.message).toMatch(/^strict preprocessing stopped at photo\.png: same name as photo\.jpg/);
  });

  it('fails non-retryably, naming the path, when the dataset does not exist', async () => {
    const missing = path.join(tmp, 'no-such-folder');
    const failure = await failureOf(preprocess(input({ dataset: missing })));
    expect(failure.type).toBe('DatasetNotFound');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toBe(`dataset not found: ${missing}`);
  });

  it('fails non-retryably when the dataset is a file', async () => {
    const file = path.join(datasetDir, 'photo.jpg');
    const failure = await failureOf(preprocess(input({ dataset: file })));
    expect(failure.type).toBe('DatasetNotADirectory');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain(`not a directory: ${file}`);
  });

  it('fails with NoUsableImages naming the dataset, the count and the first reasons', async () => {
    const bad = path.join(tmp, 'bad');
    await writeFiles(bad, { 'fake.png': 'text', 'zero.jpg': '' });
    const failure = await failureOf(preprocess(input({ runId: 'run-bad', dataset: bad })));
    expect(failure.type).toBe('NoUsableImages');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain(bad);
    expect(failure.message).toContain('all 2 image files were skipped');
    expect(failure.message).toContain('fake.png: not a readable image');
    expect(failure.message).toContain('zero.jpg: empty file (0 bytes)');
    // The manifest is still written so the reasons can be read in full.
    expect((await readManifest('runs/run-bad/manifest.json')).counts).toMatchObject({ found: 2, kept: 0, skipped: 2 });
  });

  it('explains which subfolders were ignored when no image is found', async () => {
    const nestedOnly = path.join(tmp, 'nested-only');
    await writeFiles(nestedOnly, { 'photos/photo.jpg': await fs.readFile(path.join(datasetDir, 'photo.jpg')) });
    const failure = await failureOf(preprocess(input({ runId: 'run-nested', dataset: nestedOnly })));
    expect(failure.type).toBe('NoUsableImages');
    expect(failure.message).toMatch(/holds no \.png \.jpg .* files; 1 subfolder\(s\) were ignored \(photos\): .*<repeats>_<name>\/ folders/);
  });

  it('rejects bad input non-retryably, naming the field', async () => {
    const failure = await failureOf(preprocess(input({ repeats: 0 })));
    expect(failure.type).toBe('InvalidInput');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toMatch(/preprocessDataset input\.repeats: /);
    const size = await failureOf(preprocess(input({ options: { size: 500 } })));
    expect(size.message).toContain('preprocessDataset input.options.size: must be a multiple of 64');
  });

  // Root reads everything, so permissions can only be tested as an ordinary user.
  const asNonRoot = process.getuid?.() === 0 ? it.skip : it;
  asNonRoot('fails non-retryably when the dataset folder is not readable', async () => {
    const locked = path.join(tmp, 'locked');
    await fs.mkdir(locked, { mode: 0o000 });
    try {
      const failure = await failureOf(preprocess(input({ dataset: locked })));
      expect(failure.type).toBe('DatasetUnreadable');
      expect(failure.message).toContain(`not readable: ${locked}`);
    } finally {
      await fs.chmod(locked, 0o700);
    }
  });

  asNonRoot('records an unreadable image as skipped and keeps the rest', async () => {
    const partly = path.join(tmp, 'partly-readable');
    await writeFiles(partly, { 'ok.jpg': await fs.readFile(path.join(datasetDir, 'photo.jpg')), 'secret.jpg': await pattern(600, 600, 16).jpeg().toBuffer() });
    await fs.chmod(path.join(partly, 'secret.jpg'), 0o000);
    const { result } = await preprocess(input({ runId: 'run-partly', dataset: partly }));
    expect(result.counts).toEqual({ found: 2, kept: 1, skipped: 1 });
    expect((await readManifest(result.manifestKey)).skipped).toEqual([{ source: 'secret.jpg', reason: 'unreadable: permission denied' }]);
  });
});

describe('preprocess: a write the store refuses', () => {
  /** A work store that fails writes of keys matching `refuse` with `error`. */
  function failingStore(refuse: RegExp, error: () => Error): FileStore {
    const failing = Object.create(workStore) as FileStore;
    failing.put = (key, body, options) => (refuse.test(key) ? Promise.reject(error()) : workStore.put(key, body, options));
    return failing;
  }

  it('skips the one file whose key the store refuses, naming the key and why, and keeps the rest', async () => {
    const dataset = path.join(tmp, 'refused-key');
    await writeFiles(dataset, { 'ok.jpg': await pattern(600, 600, 21).jpeg().toBuffer(), 'refused.jpg': await pattern(600, 600, 22).jpeg().toBuffer() });
    const store = failingStore(/refused\.png$/, () => new KeyRejectedError('runs/run-refused/dataset/10_sks dog/refused.png', 'a name is longer than the file system allows'));
    const { result } = await preprocess(input({ runId: 'run-refused', dataset }), { ...deps, workStore: store });
    expect(result.counts).toEqual({ found: 2, kept: 1, skipped: 1 });
    expect((await readManifest(result.manifestKey)).skipped).toEqual([
      {
        source: 'refused.jpg',
        reason: 'cannot be written to the work store as runs/run-refused/dataset/10_sks dog/refused.png: a name is longer than the file system allows',
      },
    ]);
  });

  it('fails the batch, retryably, when the store itself cannot write (disk full)', async () => {
    const dataset = path.join(tmp, 'disk-full');
    await writeFiles(dataset, { 'ok.jpg': await pattern(600, 600, 23).jpeg().toBuffer() });
    const diskFull = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const store = failingStore(/\/dataset\//, diskFull);
    const error = await preprocess(input({ runId: 'run-disk-full', dataset }), { ...deps, workStore: store }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toMatchObject({ code: 'ENOSPC' });
    expect(error).not.toBeInstanceOf(ApplicationFailure);
  });
});

describe('preprocess: an s3:// dataset with keys that would leave it', () => {
  const aws = motoWithFreshBucket('hostile-dataset');

  it('skips keys with "..", "." or empty segments, naming each, and reads the rest', async () => {
    const photo = await pattern(600, 600, 24).jpeg().toBuffer();
    const put = (Key: string, Body: Buffer | string) => aws.s3.send(new PutObjectCommand({ Bucket: 'hostile-dataset', Key, Body }));
    await put('secret.txt', 'OUTSIDE-SECRET');
    await put('dogs/ok.jpg', photo);
    await put('dogs/ok.txt', 'sks dog');
    await put('dogs/../secret.txt', 'written under a key with ..');
    await put('dogs//double.jpg', photo);
    await put('dogs/./dot.jpg', photo);
    const viaS3: ActivityDeps = { ...deps, openStore: (uri) => new S3Store(uri ?? '', aws.s3) };
    const { result } = await preprocess(input({ runId: 'run-s3-keys', dataset: 's3://hostile-dataset/dogs' }), viaS3);
    expect(result.counts).toEqual({ found: 4, kept: 1, skipped: 3 });
    expect((await readManifest(result.manifestKey)).skipped).toEqual([
      { source: '../secret.txt', reason: 'the key has a ".." path segment: never read' },
      { source: './dot.jpg', reason: 'the key has a "." path segment: never read' },
      { source: '/double.jpg', reason: 'the key has an empty path segment: never read' },
    ]);
  });
});

describe('preprocess: bucket_no_upscale', () => {
  it('writes small images at their no-upscale bucket and records the mode in the manifest', async () => {
    const dataset = path.join(tmp, 'no-upscale');
    await writeFiles(dataset, { 'small.jpg': await pattern(300, 400, 25).jpeg().toBuffer(), 'large.jpg': await pattern(1600, 1200, 26).jpeg().toBuffer() });
    const { result } = await preprocess(input({ runId: 'run-no-upscale', dataset, bucketNoUpscale: true, options: { strategy: 'bucket' } }));
    const manifest = await readManifest(result.manifestKey);
    expect(Object.fromEntries(manifest.images.map((image) => [image.source, `${image.width}x${image.height}`]))).toEqual({ 'large.jpg': '512x384', 'small.jpg': '256x384' });
    expect(manifest.images.every((image) => (image.warnings ?? []).length === 0)).toBe(true);
    expect(manifest.preprocess?.buckets).toMatchObject({ resolution: 512, noUpscale: true });
    const written = await sharp(await workStore.get(manifest.images.find((image) => image.source === 'small.jpg')!.output)).metadata();
    expect([written.width, written.height]).toEqual([256, 384]);
  });
});
