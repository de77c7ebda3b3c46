/**
 * The files preprocessing keeps in the work store between its activities: the plan (written once,
 * read by every batch) and one result per batch (rewritten as the batch goes, so a retried batch
 * knows what is already done), plus where each of them and the contact sheets live. Pure (zod).
 */
import { z } from 'zod';
import { BASE_MODEL_FAMILIES } from '../pipeline/input';
import { CROP_STRATEGIES, OUTPUT_FORMATS } from './options';

const Size = z.object({ width: z.number().int().positive(), height: z.number().int().positive() });
const Box = Size.extend({ left: z.number().int().nonnegative(), top: z.number().int().nonnegative() });
const Skipped = z.object({ source: z.string(), reason: z.string() });

export const ResolvedOptions = z.object({
  strategy: z.enum(CROP_STRATEGIES),
  size: z.number().int().positive(),
  format: z.enum(OUTPUT_FORMATS),
  quality: z.number().int(),
  background: z.string(),
  minSide: z.number().int(),
  strict: z.boolean(),
  batchSize: z.number().int().positive(),
});
export type ResolvedOptions = z.infer<typeof ResolvedOptions>;

export const BucketSettingsSchema = z.object({
  resolution: z.number().int(),
  minBucketReso: z.number().int(),
  maxBucketReso: z.number().int(),
  step: z.number().int(),
  noUpscale: z.boolean().optional(),
});

export const PreprocessPlanFile = z.object({
  version: z.literal(1),
  runId: z.string(),
  /** Absolute local path or store URI of the dataset. */
  dataset: z.string(),
  family: z.enum(BASE_MODEL_FAMILIES),
  options: ResolvedOptions,
  buckets: BucketSettingsSchema,
  layout: z.enum(['flat', 'kohya']),
  folders: z.array(z.object({ name: z.string(), repeats: z.number().int(), concept: z.string() })),
  images: z.array(
    z.object({
      source: z.string(),
      folder: z.string(),
      caption: z.string().optional(),
      output: z.string(),
      captionKey: z.string(),
    }),
  ),
  /** Files skipped from their names alone (collisions, unsupported extensions, misplaced). */
  skipped: z.array(Skipped),
  orphanCaptions: z.array(z.string()),
  /** Folders sd-scripts would not read either. */
  ignoredFolders: z.array(z.string()),
  batches: z.number().int().nonnegative(),
});
export type PreprocessPlanFile = z.infer<typeof PreprocessPlanFile>;

export const BatchImage = z.object({
  source: z.string(),
  sourceSha256: z.string(),
  sourceFormat: z.string(),
  /** As displayed: EXIF orientation applied. */
  sourceWidth: z.number().int().positive(),
  sourceHeight: z.number().int().positive(),
  folder: z.string(),
  output: z.string(),
  outputSha256: z.string(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  caption: z.string().nullable(),
  bucket: Size,
  /** The part of the (oriented) source that was kept, in source pixels. */
  crop: Box,
  scale: z.number().positive(),
  warnings: z.array(z.string()),
  /** For near-duplicate detection across batches. */
  phash: z.string().regex(/^[0-9a-f]{16}$/),
  colour: z.tuple([z.number(), z.number(), z.number()]),
});
export type BatchImage = z.infer<typeof BatchImage>;

export const BatchResultFile = z.object({
  version: z.literal(1),
  /** The plan this result belongs to: a result of an older plan is ignored, not reused. */
  planSha256: z.string(),
  batch: z.number().int().nonnegative(),
  /** False while the batch is running (a checkpoint); true once every image is done. */
  complete: z.boolean(),
  /** Sorted by source; on completion the thumbnail strip holds image i in slot i. */
  images: z.array(BatchImage),
  skipped: z.array(Skipped),
});
export type BatchResultFile = z.infer<typeof BatchResultFile>;

function stageDir(runId: string): string {
  return `runs/${runId}/preprocess`;
}

const pad = (n: number) => String(n).padStart(4, '0');

export function planKeyOf(runId: string): string {
  return `${stageDir(runId)}/plan.json`;
}

export function batchResultKeyOf(runId: string, batch: number): string {
  return `${stageDir(runId)}/batch-${pad(batch)}.json`;
}

/** One JPEG per batch: its thumbnails stacked top to bottom, for the contact sheet. */
export function thumbnailStripKeyOf(runId: string, batch: number): string {
  return `${stageDir(runId)}/thumbnails-${pad(batch)}.jpg`;
}

/** Beside the manifest (`runs/<id>/manifest.json`), so a reviewer finds it. */
export function contactSheetKeyOf(runId: string, page: number): string {
  return `runs/${runId}/contact-sheet-${pad(page + 1)}.png`;
}

/** The images of batch `batch`: consecutive slices of the sorted plan. */
export function batchImages<T>(images: readonly T[], batchSize: number, batch: number): T[] {
  return images.slice(batch * batchSize, (batch + 1) * batchSize);
}

export function batchCount(images: number, batchSize: number): number {
  return Math.ceil(images / batchSize);
}
