import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import sharp from 'sharp';
import type { ActivityDeps } from '../../activities/deps';
import { makePreprocessActivities, PreprocessInput, PreprocessResult } from '../../activities/preprocess';
import { DatasetManifest } from '../../lib/pipeline/manifest';
import { FileStore } from '../../adapters/store/file';
import type { ActivityProgress } from '../../lib/pipeline/status';

const FOLDER = 'runs/run-1/dataset/10_sks dog';

let tmp: string;
let datasetDir: string;
let workStore: FileStore;
let deps: ActivityDeps;

function input(overrides: Partial<PreprocessInput> = {}): PreprocessInput {
  return { runId: 'run-1', dataset: datasetDir, family: 'sd15', repeats: 10, concept: 'sks dog', ...overrides };
}

/** Runs the activity inside a mock activity context, collecting its heartbeats. */
async function preprocess(args: PreprocessInput, activityDeps = deps) {
  // Expected failures are logged as warnings by the activity runtime: keep test output readable.
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  const heartbeats: ActivityProgress[] = [];
  env.on('heartbeat', (details: ActivityProgress) => heartbeats.push(details));
  const { preprocessDataset } = makePreprocessActivities(activityDeps);
  const result = await env.run<[PreprocessInput], PreprocessResult, typeof preprocessDataset>(preprocessDataset, args);
  return { result, heartbeats };
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

async function pixel(key: string, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(await workStore.get(key)).raw().toBuffer({ resolveWithObject: true });
  const offset = (y * info.width + x) * info.channels;
  return [...data.subarray(offset, offset + info.channels)];
}

function expectColour(actual: number[], expected: [number, number, number]) {
  expect(actual).toHaveLength(3);
  actual.forEach((value, i) => expect(Math.abs(value - expected[i])).toBeLessThanOrEqual(8));
}

const solid = (width: number, height: number, background: string) =>
  sharp({ create: { width, height, channels: 3, background } });

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'preprocess-'));
  datasetDir = path.join(tmp, 'dataset');
  await fs.mkdir(path.join(datasetDir, 'nested'), { recursive: true });
  workStore = new FileStore(path.join(tmp, 'work'));
  deps = { workStore, openStore: () => workStore, trainers: {} as never };

  const photo = await solid(640, 480, '#808080').jpeg().toBuffer();
  const redLeftBlueRight = await solid(300, 200, '#0000ff')
    .composite([{ input: await solid(150, 200, '#ff0000').png().toBuffer(), left: 0, top: 0 }])
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const transparentWithBlackCentre = await sharp({
    create: { width: 100, height: 100, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
  })
    .composite([{ input: await solid(20, 20, '#000000').png().toBuffer(), left: 40, top: 40 }])
    .png()
    .toBuffer();

  const files: Record<string, Buffer | string> = {
    'photo.jpg': photo,
    'photo.txt': 'sks dog in a park, “quoted”\n',
    'photo.png': await solid(64, 64, '#00ff00').png().toBuffer(),
    'alpha.png': transparentWithBlackCentre,
    'alpha.txt': 'sks dog, cut out',
    'rotated.jpg': redLeftBlueRight,
    'UPPER.JPG': photo,
    'empty.jpg': Buffer.alloc(0),
    'empty.txt': 'caption of an empty image',
    'fake.png': 'this is text, not a PNG',
    'truncated.jpg': photo.subarray(0, Math.floor(photo.length / 2)),
    'lonely.txt': 'a caption without image',
    'notes.md': '# not part of the dataset',
    'nested/inner.png': await solid(32, 32, '#ffffff').png().toBuffer(),
  };
  for (const [name, content] of Object.entries(files)) await fs.writeFile(path.join(datasetDir, name), content);
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

  it('returns only the manifest key and counts', () => {
    expect(run.result).toEqual({ manifestKey: 'runs/run-1/manifest.json', counts: { found: 8, kept: 4, skipped: 4 } });
    expect(Object.keys(run.result).sort()).toEqual(['counts', 'manifestKey']);
  });

  it('writes 512×512 8-bit sRGB PNGs without metadata into the kohya folder', async () => {
    for (const stem of ['photo', 'alpha', 'rotated', 'UPPER']) {
      const metadata = await sharp(await workStore.get(`${FOLDER}/${stem}.png`)).metadata();
      expect(metadata).toMatchObject({ format: 'png', width: 512, height: 512, channels: 3, depth: 'uchar', space: 'srgb' });
      expect(metadata.exif).toBeUndefined();
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

  it('bakes EXIF orientation into the pixels', async () => {
    // Orientation 6 means "rotate 90° clockwise to display": the red left half ends up on top.
    expectColour(await pixel(`${FOLDER}/rotated.png`, 256, 20), [255, 0, 0]);
    expectColour(await pixel(`${FOLDER}/rotated.png`, 256, 490), [0, 0, 255]);
  });

  it('flattens transparency onto white', async () => {
    expectColour(await pixel(`${FOLDER}/alpha.png`, 5, 5), [255, 255, 255]);
    expectColour(await pixel(`${FOLDER}/alpha.png`, 256, 256), [0, 0, 0]);
  });

  it('records kept images, skip reasons and orphan captions in the manifest', async () => {
    expect(manifest).toMatchObject({
      version: 1,
      runId: 'run-1',
      dataset: datasetDir,
      family: 'sd15',
      target: 512,
      folder: '10_sks dog',
      orphanCaptions: ['lonely.txt'],
      counts: { found: 8, kept: 4, skipped: 4 },
    });
    expect(manifest.images.map((i) => [i.source, i.output, i.caption])).toEqual([
      ['UPPER.JPG', `${FOLDER}/UPPER.png`, null],
      ['alpha.png', `${FOLDER}/alpha.png`, `${FOLDER}/alpha.txt`],
      ['photo.jpg', `${FOLDER}/photo.png`, `${FOLDER}/photo.txt`],
      ['rotated.jpg', `${FOLDER}/rotated.png`, null],
    ]);
    const photo = manifest.images.find((i) => i.source === 'photo.jpg')!;
    const sourceSha = createHash('sha256').update(await fs.readFile(path.join(datasetDir, 'photo.jpg'))).digest('hex');
    expect(photo).toMatchObject({ sourceSha256: sourceSha, width: 512, height: 512 });

    const reasons = Object.fromEntries(manifest.skipped.map((s) => [s.source, s.reason]));
    expect(Object.keys(reasons).sort()).toEqual(['empty.jpg', 'fake.png', 'photo.png', 'truncated.jpg']);
    expect(reasons['empty.jpg']).toBe('empty file (0 bytes)');
    expect(reasons['fake.png']).toBe('not a readable image: unknown format or corrupt header');
    expect(reasons['truncated.jpg']).toBe('not a readable image: truncated or corrupt jpeg data');
    expect(reasons['photo.png']).toMatch(/same name as photo\.jpg.*photo\.png/);
  });

  it('heartbeats image progress up to the total', () => {
    expect(run.heartbeats.length).toBeGreaterThan(1);
    expect(run.heartbeats.every((h) => h.unit === 'images' && h.total === 8)).toBe(true);
    expect(run.heartbeats.at(-1)).toEqual({ done: 8, total: 8, unit: 'images' });
  });

  it('rewrites the same manifest when retried', async () => {
    const before = await workStore.get('runs/run-1/manifest.json');
    await preprocess(input());
    expect((await workStore.get('runs/run-1/manifest.json')).equals(before)).toBe(true);
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
    await fs.mkdir(upper);
    await fs.copyFile(path.join(datasetDir, 'photo.jpg'), path.join(upper, 'shout.jpg'));
    await fs.writeFile(path.join(upper, 'shout.TXT'), 'sks dog, barking');
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
    expect(opened).toEqual(['s3://bucket/datasets/dog']);
    expect(result.counts).toEqual({ found: 8, kept: 4, skipped: 4 });
    expect((await readManifest(result.manifestKey)).dataset).toBe('s3://bucket/datasets/dog');
  });
});

describe('preprocessDataset failures', () => {
  it('stops processing images once the activity is cancelled', async () => {
    const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
    env.cancel();
    const { preprocessDataset } = makePreprocessActivities(deps);
    const run = env.run<[PreprocessInput], PreprocessResult, typeof preprocessDataset>(
      preprocessDataset,
      input({ runId: 'run-cancelled' }),
    );
    await expect(run).rejects.toBeInstanceOf(CancelledFailure);
    expect(await workStore.list('runs/run-cancelled')).toEqual([]);
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
    await fs.mkdir(bad);
    await fs.writeFile(path.join(bad, 'fake.png'), 'text');
    await fs.writeFile(path.join(bad, 'zero.jpg'), '');
    const failure = await failureOf(preprocess(input({ runId: 'run-bad', dataset: bad })));
    expect(failure.type).toBe('NoUsableImages');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain(bad);
    expect(failure.message).toContain('all 2 image files were skipped');
    expect(failure.message).toContain('fake.png: not a readable image');
    expect(failure.message).toContain('zero.jpg: empty file (0 bytes)');
    // The manifest is still written so the reasons can be read in full.
    expect((await readManifest('runs/run-bad/manifest.json')).counts).toEqual({ found: 2, kept: 0, skipped: 2 });
  });

  it('explains that subfolders are not read when the top level has no images', async () => {
    const nestedOnly = path.join(tmp, 'nested-only');
    await fs.mkdir(path.join(nestedOnly, '10_dog'), { recursive: true });
    await fs.copyFile(path.join(datasetDir, 'photo.jpg'), path.join(nestedOnly, '10_dog', 'photo.jpg'));
    const failure = await failureOf(preprocess(input({ runId: 'run-nested', dataset: nestedOnly })));
    expect(failure.type).toBe('NoUsableImages');
    expect(failure.message).toMatch(/holds no \.png \.jpg .*1 subfolder\(s\) were ignored/);
  });

  it('rejects bad input non-retryably, naming the field', async () => {
    const failure = await failureOf(preprocess(input({ repeats: 0 })));
    expect(failure.type).toBe('InvalidInput');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toMatch(/preprocessDataset input\.repeats: /);
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
    await fs.mkdir(partly);
    await fs.copyFile(path.join(datasetDir, 'photo.jpg'), path.join(partly, 'ok.jpg'));
    await fs.copyFile(path.join(datasetDir, 'photo.jpg'), path.join(partly, 'secret.jpg'));
    await fs.chmod(path.join(partly, 'secret.jpg'), 0o000);
    const { result } = await preprocess(input({ runId: 'run-partly', dataset: partly }));
    expect(result.counts).toEqual({ found: 2, kept: 1, skipped: 1 });
    expect((await readManifest(result.manifestKey)).skipped).toEqual([
      { source: 'secret.jpg', reason: 'unreadable: permission denied' },
    ]);
  });
});
