/**
 * Preprocess: turn a flat folder of images and `.txt` captions into a Kohya-SS training folder in
 * the work store. Each image is oriented, cropped to the family's square, flattened onto white and
 * written as 8-bit sRGB PNG; its caption is copied beside it unchanged. Per-file problems are
 * recorded in the manifest and never fail the run; only an unreadable dataset or one without a
 * single usable image does. History gets the manifest key and counts, never per-image lists.
 */
import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import * as fs from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import pLimit from 'p-limit';
import sharp from 'sharp';
import { z } from 'zod';
import { assertSafeKey, ObjectNotFoundError } from '../adapters/store/types';
import {
  CAPTION_EXTENSION,
  IMAGE_EXTENSIONS,
  isCaptionFile,
  isImageFile,
  kohyaFolderName,
  kohyaImageName,
  stemOf,
} from '../lib/kohya/layout';
import { BASE_MODEL_FAMILIES, TARGET_SIZE, formatZodError } from '../lib/pipeline/input';
import type { ActivityProgress, ImageCounts } from '../lib/pipeline/status';
import { DatasetManifest, manifestKeyOf, trainDataDirOf } from '../lib/pipeline/manifest';
import type { ActivityDeps } from './deps';

export const PreprocessInput = z
  .object({
    /** Names the run's folder in the work store, so it must be a single safe key segment. */
    runId: z.string().regex(/^(?!\.\.?$)[^/\\]+$/, 'must be non-empty, without "/" or "\\", and not "." or ".."'),
    /** A local folder, a file:// URI or an s3:// URI. */
    dataset: z.string().min(1, 'is required: a folder of images with .txt captions'),
    family: z.enum(BASE_MODEL_FAMILIES),
    repeats: z.number().int().min(1),
    concept: z.string().regex(/^[^\s/\\_][^/\\]*$/, 'must be a folder-safe name without "/" or "\\"'),
  })
  .strict();
export type PreprocessInput = z.input<typeof PreprocessInput>;

export interface PreprocessResult {
  manifestKey: string;
  counts: ImageCounts;
}

type ManifestImage = DatasetManifest['images'][number];
type SkippedImage = DatasetManifest['skipped'][number];

/** How many skip reasons a NoUsableImages failure quotes; the manifest has all of them. */
const REASONS_IN_FAILURE = 3;

export function makePreprocessActivities(deps: ActivityDeps) {
  async function preprocessDataset(rawInput: PreprocessInput): Promise<PreprocessResult> {
    const input = parseInput(rawInput);
    const target = TARGET_SIZE[input.family];
    const folder = kohyaFolderName(input.repeats, input.concept);
    const folderKey = `${trainDataDirOf(input.runId)}/${folder}`;
    const manifestKey = manifestKeyOf(input.runId);
    const context = Context.current();

    const source = await openDataset(input.dataset, deps);
    const plan = planDataset(source.files);
    const images: ManifestImage[] = [];
    const skipped: SkippedImage[] = [...plan.collisions];
    const total = plan.images.length + plan.collisions.length;
    let done = plan.collisions.length;
    const reportProgress = () => context.heartbeat({ done, total, unit: 'images' } satisfies ActivityProgress);
    reportProgress();

    async function preprocessImage(name: string, caption: string | undefined): Promise<ManifestImage | SkippedImage> {
      const stem = stemOf(name);
      const output = `${folderKey}/${kohyaImageName(stem)}`;
      const captionKey = `${folderKey}/${stem}${CAPTION_EXTENSION}`;
      try {
        assertSafeKey(output);
      } catch {
        return { source: name, reason: `the name cannot be used as a store key (it contains "\\"); rename the file` };
      }
      const bytes = await source.read(name);
      if ('reason' in bytes) return { source: name, reason: bytes.reason };
      if (bytes.length === 0) return { source: name, reason: 'empty file (0 bytes)' };
      let captionBytes: Buffer | undefined;
      if (caption !== undefined) {
        const read = await source.read(caption);
        if ('reason' in read) return { source: name, reason: `caption ${caption}: ${read.reason}` };
        captionBytes = read;
      }
      const rendered = await renderSquare(bytes, target);
      if ('reason' in rendered) return { source: name, reason: rendered.reason };
      const put = await deps.workStore.put(output, rendered.data, { contentType: 'image/png', sha256: sha256(rendered.data) });
      if (captionBytes !== undefined) {
        await deps.workStore.put(captionKey, captionBytes, {
          contentType: 'text/plain; charset=utf-8',
          sha256: sha256(captionBytes),
        });
      }
      return {
        source: name,
        sourceSha256: sha256(bytes),
        output: put.key,
        width: rendered.width,
        height: rendered.height,
        caption: captionBytes === undefined ? null : captionKey,
      };
    }

    const limit = pLimit(availableParallelism());
    await Promise.all(
      plan.images.map(({ name, caption }) =>
        limit(async () => {
          // Activities learn of cancellation through heartbeats; stop taking new images once cancelled.
          context.cancellationSignal.throwIfAborted();
          const outcome = await preprocessImage(name, caption);
          if ('reason' in outcome) skipped.push(outcome);
          else images.push(outcome);
          done += 1;
          reportProgress();
        }),
      ),
    );

    // Images finish in any order; sorting keeps the manifest identical across retries.
    images.sort(bySource);
    skipped.sort(bySource);
    const counts: ImageCounts = { found: total, kept: images.length, skipped: skipped.length };
    const manifest: DatasetManifest = {
      version: 1,
      runId: input.runId,
      dataset: source.location,
      family: input.family,
      target,
      folder,
      images,
      skipped,
      orphanCaptions: plan.orphanCaptions,
      counts,
    };
    await deps.workStore.put(manifestKey, `${JSON.stringify(manifest, null, 2)}\n`, { contentType: 'application/json' });

    if (counts.kept === 0) throw noUsableImages(source, manifest, manifestKey);
    return { manifestKey, counts };
  }

  return { preprocessDataset };
}

function parseInput(raw: unknown): z.output<typeof PreprocessInput> {
  const parsed = PreprocessInput.safeParse(raw);
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(formatZodError(parsed.error, 'preprocessDataset input'), 'InvalidInput');
  }
  return parsed.data;
}

interface RenderedImage {
  data: Buffer;
  width: number;
  height: number;
}

/** sharp's default `limitInputPixels`: larger images are refused before decoding. */
const MAX_INPUT_PIXELS = 0x3fff * 0x3fff;

/**
 * The square training image: EXIF orientation baked in (sd-scripts ignores it), alpha flattened
 * onto white (kohya drops alpha, which would leave whatever colour the transparent pixels hold),
 * cover-scaled with Lanczos and centre-cropped, 8-bit sRGB PNG without metadata.
 *
 * libvips collects errors in one process-wide buffer, so while images are processed concurrently
 * sharp's messages can carry other images' errors: skip reasons are classified here instead, which
 * also keeps the manifest identical across retries.
 */
async function renderSquare(bytes: Buffer, size: number): Promise<RenderedImage | { reason: string }> {
  const header = await sharp(bytes)
    .metadata()
    .catch(() => undefined);
  if (header === undefined) return { reason: 'not a readable image: unknown format or corrupt header' };
  if (header.width * header.height > MAX_INPUT_PIXELS) {
    return { reason: `too large: ${header.width}×${header.height} pixels is more than sharp decodes (${MAX_INPUT_PIXELS})` };
  }
  try {
    // failOn 'warning' rejects truncated files instead of training on half-grey images.
    const { data, info } = await sharp(bytes, { failOn: 'warning' })
      .rotate()
      .flatten({ background: '#ffffff' })
      .resize(size, size, { fit: 'cover', position: 'centre', kernel: 'lanczos3' })
      .toColourspace('srgb')
      .png()
      .toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height };
  } catch {
    return { reason: `not a readable image: truncated or corrupt ${header.format} data` };
  }
}

interface DatasetPlan {
  /** Images to process, each with the caption file found for it. */
  images: { name: string; caption: string | undefined }[];
  /** Images skipped up front because an earlier image has the same stem. */
  collisions: SkippedImage[];
  orphanCaptions: string[];
}

/** Decide, from names alone and deterministically, what to process and with which caption. */
function planDataset(files: readonly string[]): DatasetPlan {
  const sorted = [...files].sort();
  const captions = sorted.filter(isCaptionFile);
  const imageNames = sorted.filter(isImageFile);
  const imageStems = new Set(imageNames.map(stemOf));
  // sd-scripts wants exactly `<stem>.txt`; we write that name ourselves, so `<stem>.TXT` also counts.
  const captionByStem = new Map<string, string>();
  for (const caption of captions) {
    const stem = stemOf(caption);
    if (!captionByStem.has(stem) || caption === `${stem}${CAPTION_EXTENSION}`) captionByStem.set(stem, caption);
  }
  const keptByStem = new Map<string, string>();
  const plan: DatasetPlan = { images: [], collisions: [], orphanCaptions: [] };

  for (const name of imageNames) {
    const stem = stemOf(name);
    const first = keptByStem.get(stem);
    if (first !== undefined) {
      plan.collisions.push({
        source: name,
        reason: `same name as ${first}: both would be written as ${kohyaImageName(stem)}; rename one of them`,
      });
      continue;
    }
    keptByStem.set(stem, name);
    plan.images.push({ name, caption: captionByStem.get(stem) });
  }
  plan.orphanCaptions = captions.filter((c) => !imageStems.has(stemOf(c)));
  return plan;
}

interface DatasetSource {
  /** Absolute path or URI, for messages and the manifest. */
  location: string;
  /** Names of the files directly in the dataset folder. */
  files: string[];
  /** Subfolders, which this version does not read. */
  ignoredFolders: number;
  /** A file's bytes, or why it could not be read (a per-file problem, recorded as a skip). */
  read(name: string): Promise<Buffer | { reason: string }>;
}

async function openDataset(dataset: string, deps: ActivityDeps): Promise<DatasetSource> {
  if (dataset.startsWith('s3://')) return openStoreDataset(dataset, deps);
  if (!dataset.startsWith('file://')) return openLocalDataset(path.resolve(dataset));
  let directory: string;
  try {
    directory = fileURLToPath(dataset);
  } catch (err) {
    throw ApplicationFailure.nonRetryable(
      `dataset is not a usable file:// URI: ${dataset} (${(err as Error).message})`,
      'InvalidInput',
    );
  }
  return openLocalDataset(directory);
}

async function openLocalDataset(directory: string): Promise<DatasetSource> {
  const stat = await fs.stat(directory).catch((err: unknown) => {
    throw datasetFailure(err, directory);
  });
  if (!stat.isDirectory()) {
    throw ApplicationFailure.nonRetryable(
      `dataset is not a directory: ${directory} (expected a folder of images with ${CAPTION_EXTENSION} captions)`,
      'DatasetNotADirectory',
    );
  }
  const entries = await fs.readdir(directory, { withFileTypes: true }).catch((err: unknown) => {
    throw datasetFailure(err, directory);
  });
  const files: string[] = [];
  let ignoredFolders = 0;
  for (const entry of entries) {
    const kind = await kindOf(entry, directory);
    if (kind === 'file') files.push(entry.name);
    else if (kind === 'directory') ignoredFolders += 1;
  }
  return {
    location: directory,
    files,
    ignoredFolders,
    async read(name) {
      try {
        return await fs.readFile(path.join(directory, name));
      } catch (err) {
        const { code, message } = err as NodeJS.ErrnoException;
        if (code === 'EACCES' || code === 'EPERM') return { reason: 'unreadable: permission denied' };
        if (code === 'ENOENT') return { reason: 'disappeared while the dataset was being read' };
        return { reason: `unreadable: ${message}` };
      }
    },
  };
}

/** Symlinked images are common (links into a photo library): follow links to decide. */
async function kindOf(entry: Dirent, directory: string): Promise<'file' | 'directory' | 'other'> {
  if (entry.isFile()) return 'file';
  if (entry.isDirectory()) return 'directory';
  if (!entry.isSymbolicLink()) return 'other';
  try {
    const target = await fs.stat(path.join(directory, entry.name));
    return target.isDirectory() ? 'directory' : target.isFile() ? 'file' : 'other';
  } catch {
    // A broken link to an image is still reported, as unreadable, rather than silently dropped.
    return 'file';
  }
}

function datasetFailure(err: unknown, directory: string): unknown {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return ApplicationFailure.nonRetryable(`dataset not found: ${directory}`, 'DatasetNotFound');
    case 'EACCES':
    case 'EPERM':
      return ApplicationFailure.nonRetryable(
        `dataset is not readable: ${directory} (permission denied for the worker's user)`,
        'DatasetUnreadable',
      );
    default:
      // Anything else (EIO, EMFILE, ...) may pass: let Temporal retry.
      return err;
  }
}

/** A dataset in an object store, read through the store adapter (s3:// URIs). */
async function openStoreDataset(uri: string, deps: ActivityDeps): Promise<DatasetSource> {
  const store = deps.openStore(uri);
  const keys = (await store.list('')).map((object) => object.key);
  if (keys.length === 0) {
    throw ApplicationFailure.nonRetryable(`dataset not found: ${uri} (no objects under this prefix)`, 'DatasetNotFound');
  }
  const nested = keys.filter((key) => key.includes('/'));
  return {
    location: uri,
    files: keys.filter((key) => !key.includes('/')),
    ignoredFolders: new Set(nested.map((key) => key.slice(0, key.indexOf('/')))).size,
    async read(name) {
      try {
        return await store.get(name);
      } catch (err) {
        // Other store errors (throttling, network) are not the file's fault: let Temporal retry.
        if (err instanceof ObjectNotFoundError) return { reason: 'disappeared while the dataset was being read' };
        throw err;
      }
    },
  };
}

function noUsableImages(source: DatasetSource, manifest: DatasetManifest, manifestKey: string): ApplicationFailure {
  const { found, skipped } = manifest.counts;
  const folders =
    source.ignoredFolders > 0
      ? `; ${source.ignoredFolders} subfolder(s) were ignored: images are read only from the dataset folder itself`
      : '';
  if (found === 0) {
    return ApplicationFailure.nonRetryable(
      `no usable images in dataset ${source.location}: it holds no ${IMAGE_EXTENSIONS.join(' ')} files${folders}`,
      'NoUsableImages',
    );
  }
  const reasons = manifest.skipped
    .slice(0, REASONS_IN_FAILURE)
    .map((s) => `${s.source}: ${s.reason}`)
    .join('; ');
  const more = skipped > REASONS_IN_FAILURE ? `; ... (all reasons in ${manifestKey})` : '';
  return ApplicationFailure.nonRetryable(
    `no usable images in dataset ${source.location}: all ${found} image files were skipped (${reasons}${more})${folders}`,
    'NoUsableImages',
  );
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function bySource(a: { source: string }, b: { source: string }): number {
  return a.source < b.source ? -1 : a.source > b.source ? 1 : 0;
}
