/**
 * Preprocess: turn a dataset (a flat folder of images with `.txt` captions, or kohya
 * `<repeats>_<name>/` folders) into kohya training folders in the work store, each image written
 * at exactly the size sd-scripts will train it at, with its caption beside it.
 *
 * Three activities, so the workflow can spread a large dataset over workers: `planPreprocess`
 * lists the dataset and stores a plan; `preprocessBatch` processes one slice of it; and
 * `finishPreprocess` merges the batches, finds duplicates, draws the contact sheets and writes the
 * manifest. `preprocessDataset` runs all three in one execution, for small datasets and tests.
 * Per-file problems are reported, never thrown, unless the run is strict. History gets keys and
 * counts only.
 */
import { availableParallelism } from 'node:os';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import pLimit from 'p-limit';
import { z } from 'zod';
import { KeyRejectedError, ObjectNotFoundError } from '../adapters/store/types';
import { planDataset, INPUT_EXTENSIONS, MAX_CAPTION_FILE_BYTES, MAX_IMAGE_FILE_BYTES } from '../lib/image/dataset';
import { findDuplicates } from '../lib/image/duplicates';
import { OUTPUT_EXTENSION, PreprocessOptions } from '../lib/image/options';
import {
  batchCount,
  batchImages,
  batchResultKeyOf,
  BatchResultFile,
  planKeyOf,
  PreprocessPlanFile,
  thumbnailStripKeyOf,
  type BatchImage,
} from '../lib/image/stage-files';
import { bucketName, bucketSettings } from '../lib/kohya/buckets';
import { BASE_MODEL_FAMILIES, TARGET_SIZE, formatZodError } from '../lib/pipeline/input';
import { DatasetManifest, manifestKeyOf, trainDataDirOf } from '../lib/pipeline/manifest';
import type { ActivityProgress, ImageCounts } from '../lib/pipeline/status';
import type { ActivityDeps } from './deps';
import { CONTENT_TYPES, renderImage, thumbnailOfOutput } from './preprocess-image';
import { encodeThumbnailStrip, writeContactSheets, type SheetEntry } from './preprocess-sheet';
import { openDataset } from './preprocess-source';
import { sha256Hex, sha256HexOffThread } from '../lib/hash';

export const PreprocessInput = z
  .object({
    /** Names the run's folder in the work store, so it must be a single safe key segment. */
    runId: z.string().regex(/^(?!\.\.?$)[^/\\]+$/, 'must be non-empty, without "/" or "\\", and not "." or ".."'),
    /** A local folder, a file:// URI or an s3:// URI. */
    dataset: z.string().min(1, 'is required: a folder of images with .txt captions'),
    family: z.enum(BASE_MODEL_FAMILIES),
    /** For a flat dataset: its kohya folder is `<repeats>_<concept>`. */
    repeats: z.number().int().min(1),
    concept: z.string().regex(/^[^\s/\\_][^/\\]*$/, 'must be a folder-safe name without "/" or "\\"'),
    options: PreprocessOptions.prefault({}),
    /** sd-scripts' bucket_no_upscale: images are written at sizes that mode trains them at, never enlarged. */
    bucketNoUpscale: z.boolean().default(false),
  })
  .strict();
export type PreprocessInput = z.input<typeof PreprocessInput>;

const BatchInput = z.object({ planKey: z.string().min(1), batch: z.number().int().nonnegative() }).strict();
const FinishInput = z.object({ planKey: z.string().min(1) }).strict();

export interface PreprocessPlanResult {
  planKey: string;
  /** Batches to run, numbered from 0. */
  batches: number;
  /** Image files found, including those already skipped by name. */
  total: number;
  skipped: number;
}

export interface PreprocessBatchResult {
  batch: number;
  kept: number;
  skipped: number;
}

export interface PreprocessResult {
  manifestKey: string;
  counts: ImageCounts;
  /** Kept images per bucket, e.g. {"576x448": 12}: a handful of entries at most. */
  buckets: Record<string, number>;
}

type ManifestImage = DatasetManifest['images'][number];
type Skipped = DatasetManifest['skipped'][number];

/** How many skip reasons a NoUsableImages failure quotes; the manifest has all of them. */
const REASONS_IN_FAILURE = 3;
/** A running batch saves what it has done this often, so a retry does not redo it. */
const CHECKPOINT_INTERVAL_MS = 10_000;

interface LoadedPlan {
  plan: PreprocessPlanFile;
  planKey: string;
  planSha256: string;
}

type Outcome = { image: BatchImage; thumbnail: Buffer } | { skipped: Skipped };

export function makePreprocessActivities(deps: ActivityDeps, tuning: { concurrency?: number } = {}) {
  // Limits for the worker, shared by every batch it runs: one image decoding per core, and a few
  // more being read or written meanwhile, so that I/O never leaves a core idle.
  const concurrency = tuning.concurrency ?? availableParallelism();
  const decoding = pLimit(concurrency);
  const inFlight = pLimit(2 * concurrency);

  async function planPreprocess(rawInput: PreprocessInput): Promise<PreprocessPlanResult> {
    const { plan, planKey } = await writePlan(parse(PreprocessInput, rawInput, 'planPreprocess input'));
    return { planKey, batches: plan.batches, total: plan.images.length + plan.skipped.length, skipped: plan.skipped.length };
  }

  async function preprocessBatch(rawInput: z.input<typeof BatchInput>): Promise<PreprocessBatchResult> {
    const { planKey, batch } = parse(BatchInput, rawInput, 'preprocessBatch input');
    const loaded = await readPlan(planKey);
    if (batch >= loaded.plan.batches) {
      throw ApplicationFailure.nonRetryable(`preprocessBatch input.batch: ${batch} is out of range, ${planKey} has ${loaded.plan.batches} batches`, 'InvalidInput');
    }
    const context = Context.current();
    const total = batchImages(loaded.plan.images, loaded.plan.options.batchSize, batch).length;
    let done = 0;
    const heartbeat = () => context.heartbeat({ done, total, unit: 'images' } satisfies ActivityProgress);
    heartbeat();
    const result = await runBatch(loaded, batch, () => {
      done += 1;
      heartbeat();
    });
    return { batch, kept: result.images.length, skipped: result.skipped.length };
  }

  async function finishPreprocess(rawInput: z.input<typeof FinishInput>): Promise<PreprocessResult> {
    const { planKey } = parse(FinishInput, rawInput, 'finishPreprocess input');
    const context = Context.current();
    const loaded = await readPlan(planKey);
    const total = loaded.plan.images.length;
    const heartbeat = (done: number) => context.heartbeat({ done, total, unit: 'images' } satisfies ActivityProgress);
    heartbeat(0);
    return finish(loaded, heartbeat);
  }

  /** The whole stage in one execution: plan, every batch (sharing the worker's limits), finish. */
  async function preprocessDataset(rawInput: PreprocessInput): Promise<PreprocessResult> {
    const loaded = await writePlan(parse(PreprocessInput, rawInput, 'preprocessDataset input'));
    const context = Context.current();
    const total = loaded.plan.images.length + loaded.plan.skipped.length;
    let done = loaded.plan.skipped.length;
    const heartbeat = () => context.heartbeat({ done, total, unit: 'images' } satisfies ActivityProgress);
    heartbeat();
    const batches = Array.from({ length: loaded.plan.batches }, (_, batch) =>
      runBatch(loaded, batch, () => {
        done += 1;
        heartbeat();
      }),
    );
    await Promise.all(batches);
    return finish(loaded, () => context.heartbeat({ done, total, unit: 'images' } satisfies ActivityProgress));
  }

  async function writePlan(input: z.output<typeof PreprocessInput>): Promise<LoadedPlan> {
    const reader = openDataset(input.dataset, deps);
    const listing = await reader.list();
    const options = { ...input.options, size: input.options.size ?? TARGET_SIZE[input.family] };
    const buckets = { ...bucketSettings(input.family, options.size), ...(input.bucketNoUpscale && { noUpscale: true }) };
    const datasetPlan = planDataset(listing, {
      repeats: input.repeats,
      concept: input.concept,
      trainDataDir: trainDataDirOf(input.runId),
      outputExtension: OUTPUT_EXTENSION[options.format],
    });
    if (options.strict && datasetPlan.skipped.length > 0) throw strictFailure(datasetPlan.skipped[0]);
    const plan: PreprocessPlanFile = {
      version: 1,
      runId: input.runId,
      dataset: reader.location,
      family: input.family,
      options,
      buckets,
      ...datasetPlan,
      batches: batchCount(datasetPlan.images.length, options.batchSize),
    };
    const planKey = planKeyOf(input.runId);
    const text = JSON.stringify(plan);
    await deps.workStore.put(planKey, text, { contentType: 'application/json', sha256: sha256Hex(text) });
    return { plan, planKey, planSha256: sha256Hex(text) };
  }

  async function readPlan(planKey: string): Promise<LoadedPlan> {
    let bytes: Buffer;
    try {
      bytes = await deps.workStore.get(planKey);
    } catch (err) {
      if (err instanceof ObjectNotFoundError) throw ApplicationFailure.nonRetryable(`preprocess plan not found: ${err.uri} (run planPreprocess first)`, 'PlanNotFound');
      throw err;
    }
    const plan = parse(PreprocessPlanFile, JSON.parse(bytes.toString('utf8')), `preprocess plan ${planKey}`);
    return { plan, planKey, planSha256: sha256Hex(bytes) };
  }

  /** A batch result of this plan, complete or a checkpoint; undefined when there is none yet. */
  async function readBatchResult({ plan, planSha256 }: LoadedPlan, batch: number): Promise<BatchResultFile | undefined> {
    let bytes: Buffer;
    try {
      bytes = await deps.workStore.get(batchResultKeyOf(plan.runId, batch));
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return undefined;
      throw err;
    }
    const parsed = BatchResultFile.safeParse(JSON.parse(bytes.toString('utf8')));
    return parsed.success && parsed.data.planSha256 === planSha256 && parsed.data.batch === batch ? parsed.data : undefined;
  }

  async function runBatch(loaded: LoadedPlan, batch: number, onImageDone: () => void): Promise<BatchResultFile> {
    const { plan, planSha256 } = loaded;
    const images = batchImages(plan.images, plan.options.batchSize, batch);
    const previous = await readBatchResult(loaded, batch);
    if (previous?.complete) {
      for (let i = 0; i < images.length; i++) onImageDone();
      return previous;
    }
    const reusable = new Map(previous?.images.map((image) => [image.source, image]));
    const reader = openDataset(plan.dataset, deps);
    const { cancellationSignal: cancelled, info } = Context.current();
    // Only a retry can find its own outputs already written; a first attempt need not look.
    const retrying = previous !== undefined || info.attempt > 1;
    const write = (key: string, bytes: Buffer, contentType: string) => putUnlessSame(key, bytes, contentType, retrying);
    const stopped = new AbortController();
    const outcomes: (Outcome | undefined)[] = new Array(images.length);
    const resultOf = (complete: boolean): BatchResultFile => {
      const done = outcomes.filter((o): o is Outcome => o !== undefined);
      return {
        version: 1,
        planSha256,
        batch,
        complete,
        images: done.flatMap((o) => ('image' in o ? [o.image] : [])),
        skipped: done.flatMap((o) => ('skipped' in o ? [o.skipped] : [])),
      };
    };
    const save = (result: BatchResultFile) =>
      deps.workStore.put(batchResultKeyOf(plan.runId, batch), JSON.stringify(result), { contentType: 'application/json' });
    let lastSave = Date.now();
    let saving: Promise<unknown> = Promise.resolve();

    async function processImage(planned: PreprocessPlanFile['images'][number]): Promise<Outcome> {
      const skip = (reason: string): Outcome => ({ skipped: { source: planned.source, reason } });
      const bytes = await reader.read(planned.source, MAX_IMAGE_FILE_BYTES);
      if ('reason' in bytes) return skip(bytes.reason);
      let caption: Buffer | undefined;
      if (planned.caption !== undefined) {
        const read = await reader.read(planned.caption, MAX_CAPTION_FILE_BYTES);
        if ('reason' in read) return skip(`caption ${planned.caption}: ${read.reason}`);
        caption = read;
      }
      // Hashed beside the decode: neither waits for the other.
      const hashing = sha256HexOffThread(bytes);
      const earlier = reusable.get(planned.source);
      if (earlier && earlier.sourceSha256 === (await hashing) && (await hashOf(earlier.output)) === earlier.outputSha256) {
        // A retry: this image was written by an earlier attempt from the same source.
        if (caption !== undefined) await write(planned.captionKey, caption, 'text/plain; charset=utf-8');
        const written = await deps.workStore.get(earlier.output);
        return { image: earlier, thumbnail: await decoding(() => thumbnailOfOutput(written)) };
      }
      const [rendered, sourceSha256] = await Promise.all([decoding(() => renderImage(bytes, { ...plan.options, buckets: plan.buckets })), hashing]);
      if ('reason' in rendered) return skip(rendered.reason);
      const outputSha256 = await write(planned.output, rendered.data, CONTENT_TYPES[plan.options.format]);
      if (caption !== undefined) await write(planned.captionKey, caption, 'text/plain; charset=utf-8');
      const { plan: imagePlan } = rendered;
      return {
        image: {
          source: planned.source,
          sourceSha256,
          sourceFormat: rendered.sourceFormat,
          sourceWidth: imagePlan.oriented.width,
          sourceHeight: imagePlan.oriented.height,
          folder: planned.folder,
          output: planned.output,
          outputSha256,
          width: imagePlan.output.width,
          height: imagePlan.output.height,
          caption: caption === undefined ? null : planned.captionKey,
          bucket: imagePlan.output,
          crop: rendered.crop,
          scale: Number(imagePlan.scale.toFixed(4)),
          warnings: imagePlan.warnings,
          ...rendered.fingerprint,
        },
        thumbnail: rendered.thumbnail,
      };
    }

    /** A key the store refuses is that file's problem; anything else (disk full, throttling) fails the batch, retryably. */
    async function processImageOrSkip(planned: PreprocessPlanFile['images'][number]): Promise<Outcome> {
      try {
        return await processImage(planned);
      } catch (err) {
        if (!(err instanceof KeyRejectedError)) throw err;
        return { skipped: { source: planned.source, reason: `cannot be written to the work store as ${err.key}: ${err.reason}` } };
      }
    }

    await Promise.all(
      images.map((planned, i) =>
        inFlight(async () => {
          // Activities learn of cancellation through heartbeats; stop taking new images once cancelled.
          cancelled.throwIfAborted();
          if (stopped.signal.aborted) return;
          const outcome = await processImageOrSkip(planned);
          if ('skipped' in outcome && plan.options.strict) {
            stopped.abort();
            throw strictFailure(outcome.skipped);
          }
          outcomes[i] = outcome;
          onImageDone();
          if (Date.now() - lastSave >= CHECKPOINT_INTERVAL_MS) {
            lastSave = Date.now();
            saving = saving.then(() => save(resultOf(false)));
          }
        }),
      ),
    );
    await saving;
    const result = resultOf(true);
    const thumbnails = outcomes.flatMap((o) => (o !== undefined && 'image' in o ? [o.thumbnail] : []));
    // The strip first: a complete result promises its thumbnails exist.
    if (thumbnails.length > 0) {
      await deps.workStore.put(thumbnailStripKeyOf(plan.runId, batch), await encodeThumbnailStrip(thumbnails), { contentType: 'image/jpeg' });
    }
    await save(result);
    return result;
  }

  /** SHA-256 of an object in the work store, or undefined when it is not there. */
  async function hashOf(key: string): Promise<string | undefined> {
    return (await deps.workStore.head(key, { withHash: true }))?.sha256;
  }

  /** Writes, unless asked to check first and the store holds these exact bytes; returns their SHA-256. */
  async function putUnlessSame(key: string, bytes: Buffer, contentType: string, checkFirst: boolean): Promise<string> {
    if (!checkFirst) {
      // Stores hash what they write anyway: no need to hash it twice.
      return (await deps.workStore.put(key, bytes, { contentType })).sha256 ?? sha256Hex(bytes);
    }
    const hash = sha256Hex(bytes);
    if ((await hashOf(key)) !== hash) await deps.workStore.put(key, bytes, { contentType, sha256: hash });
    return hash;
  }

  async function finish(loaded: LoadedPlan, onProgress: (done: number) => void): Promise<PreprocessResult> {
    const { plan, planKey } = loaded;
    const kept: { image: BatchImage; batch: number; slot: number }[] = [];
    const skipped: Skipped[] = [...plan.skipped];
    for (let batch = 0; batch < plan.batches; batch++) {
      const result = await readBatchResult(loaded, batch);
      if (!result?.complete) {
        throw ApplicationFailure.nonRetryable(`batch ${batch} of ${planKey} has not completed: run preprocessBatch for every batch first`, 'BatchIncomplete');
      }
      result.images.forEach((image, slot) => kept.push({ image, batch, slot }));
      skipped.push(...result.skipped);
    }

    const duplicates = findDuplicates(kept.map((k) => k.image));
    const images: ManifestImage[] = [];
    const sheet: SheetEntry[] = [];
    const buckets: Record<string, number> = {};
    kept.forEach(({ image, batch, slot }, i) => {
      const first = duplicates.exact.get(i);
      if (first !== undefined) {
        skipped.push({ source: image.source, reason: `duplicate of ${kept[first].image.source}: identical pixels after preprocessing` });
        return;
      }
      const near = duplicates.near.get(i);
      const warnings = near ? [...image.warnings, `near-duplicate: looks like ${kept[near.of].image.source} (${near.distance} of 64 hash bits differ)`] : image.warnings;
      const { phash: _phash, colour: _colour, ...entry } = image;
      images.push({ ...entry, warnings });
      sheet.push({ name: image.source, detail: bucketName(image.bucket).replace('x', '×'), warnings, batch, slot });
      buckets[bucketName(image.bucket)] = (buckets[bucketName(image.bucket)] ?? 0) + 1;
    });
    skipped.sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0));

    const contactSheets = await writeContactSheets(deps.workStore, plan.runId, sheet, onProgress);
    const counts = { found: images.length + skipped.length, kept: images.length, skipped: skipped.length };
    const manifest: DatasetManifest = {
      version: 1,
      runId: plan.runId,
      dataset: plan.dataset,
      family: plan.family,
      target: plan.options.size,
      folder: plan.folders[0]?.name ?? '',
      images,
      skipped,
      orphanCaptions: plan.orphanCaptions,
      counts: { ...counts, warned: images.filter((i) => (i.warnings ?? []).length > 0).length, duplicates: duplicates.exact.size },
      preprocess: { ...plan.options, buckets: plan.buckets },
      layout: plan.layout,
      folders: plan.folders.map((f) => ({ ...f, images: images.filter((i) => i.folder === f.name).length })),
      ignoredFolders: plan.ignoredFolders,
      buckets,
      contactSheets,
    };
    const manifestKey = manifestKeyOf(plan.runId);
    // Parsed before writing: checks what readers will get, in the key order they write it back in.
    const text = `${JSON.stringify(DatasetManifest.parse(manifest), null, 2)}\n`;
    await deps.workStore.put(manifestKey, text, { contentType: 'application/json', sha256: sha256Hex(text) });

    if (plan.options.strict && duplicates.exact.size > 0) {
      const [index] = duplicates.exact.keys();
      throw strictFailure(skipped.find((s) => s.source === kept[index].image.source) as Skipped);
    }
    if (counts.kept === 0) throw noUsableImages(manifest, manifestKey);
    return { manifestKey, counts, buckets };
  }

  return { planPreprocess, preprocessBatch, finishPreprocess, preprocessDataset };
}

function parse<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(formatZodError(parsed.error, what), 'InvalidInput');
  return parsed.data;
}

function strictFailure(skipped: Skipped): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `strict preprocessing stopped at ${skipped.source}: ${skipped.reason} (turn preprocess.strict off to skip such files and go on)`,
    'PreprocessStrict',
  );
}

function noUsableImages(manifest: DatasetManifest, manifestKey: string): ApplicationFailure {
  const { found, skipped } = manifest.counts;
  const ignored = manifest.ignoredFolders ?? [];
  const folders =
    ignored.length > 0
      ? `; ${ignored.length} subfolder(s) were ignored (${ignored.slice(0, REASONS_IN_FAILURE).join(', ')}): images are read from the dataset folder itself, or from <repeats>_<name>/ folders in it`
      : '';
  if (found === 0) {
    return ApplicationFailure.nonRetryable(
      `no usable images in dataset ${manifest.dataset}: it holds no ${INPUT_EXTENSIONS.join(' ')} files${folders}`,
      'NoUsableImages',
    );
  }
  const reasons = manifest.skipped
    .slice(0, REASONS_IN_FAILURE)
    .map((s) => `${s.source}: ${s.reason}`)
    .join('; ');
  const more = skipped > REASONS_IN_FAILURE ? `; ... (all reasons in ${manifestKey})` : '';
  return ApplicationFailure.nonRetryable(
    `no usable images in dataset ${manifest.dataset}: all ${found} image files were skipped (${reasons}${more})${folders}`,
    'NoUsableImages',
  );
}

