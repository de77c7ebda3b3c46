/**
 * The dataset manifest preprocessing writes to the work store: everything later stages need to
 * know about each image, so that workflow history only ever carries the manifest's key and counts.
 */
import { z } from 'zod';
import { BucketSettingsSchema } from '../image/stage-files';
import { BASE_MODEL_FAMILIES } from './input';

const Size = z.object({ width: z.number().int().positive(), height: z.number().int().positive() });

/** What the work store holds for a run: read by the caption checks, the review and the upload. */
export const DatasetManifest = z.object({
  version: z.literal(1),
  runId: z.string(),
  /** Where the images came from: an absolute local path or a store URI. */
  dataset: z.string(),
  family: z.enum(BASE_MODEL_FAMILIES),
  /** Side of the square training images (the bucket resolution for the `bucket` strategy), in pixels. */
  target: z.number().int().positive(),
  /** The (first) kohya training folder, `<repeats>_<concept>`; `folders` lists them all. */
  folder: z.string(),
  images: z.array(
    z.object({
      /** The image's path in the dataset (`<folder>/<name>` for a dataset in kohya layout). */
      source: z.string(),
      sourceSha256: z.string(),
      /** Work store key of the processed image. */
      output: z.string(),
      width: z.number().int().positive(),
      height: z.number().int().positive(),
      /** Work store key of the caption copied beside the image, or null when it had none. */
      caption: z.string().nullable(),
      // Added with the preprocessing options; optional so manifests written before still read.
      /** The kohya training folder the image is in. */
      folder: z.string().optional(),
      sourceFormat: z.string().optional(),
      /** The source's size as displayed (EXIF orientation applied). */
      sourceWidth: z.number().int().positive().optional(),
      sourceHeight: z.number().int().positive().optional(),
      outputSha256: z.string().optional(),
      /** The sd-scripts bucket the image trains in: its size, so kohya neither resizes nor crops it. */
      bucket: Size.optional(),
      /** The part of the source that was kept, in source pixels. */
      crop: Size.extend({ left: z.number().int().nonnegative(), top: z.number().int().nonnegative() }).optional(),
      /** Output pixels per source pixel: above 1 the image was upscaled. */
      scale: z.number().positive().optional(),
      /** Kept, but worth a look: upscaled, extreme aspect ratio, near-duplicate, first frame only. */
      warnings: z.array(z.string()).optional(),
    }),
  ),
  skipped: z.array(z.object({ source: z.string(), reason: z.string() })),
  /** Caption files in the dataset with no image of the same name. */
  orphanCaptions: z.array(z.string()),
  counts: z.object({
    found: z.number().int(),
    kept: z.number().int(),
    skipped: z.number().int(),
    /** Kept images with at least one warning. */
    warned: z.number().int().optional(),
    /** Skipped because an earlier image has identical pixels. */
    duplicates: z.number().int().optional(),
  }),
  /** How the images were prepared, and the bucket settings the kohya config must use. */
  preprocess: z
    .object({
      strategy: z.string(),
      size: z.number().int(),
      format: z.string(),
      quality: z.number().int(),
      background: z.string(),
      minSide: z.number().int(),
      strict: z.boolean(),
      batchSize: z.number().int(),
      buckets: BucketSettingsSchema,
    })
    .optional(),
  /** `kohya` when the dataset came as `<repeats>_<name>/` folders, `flat` when it was one folder. */
  layout: z.enum(['flat', 'kohya']).optional(),
  folders: z.array(z.object({ name: z.string(), repeats: z.number().int(), concept: z.string(), images: z.number().int() })).optional(),
  /** Subfolders of the dataset that were not read (sd-scripts would not read them either). */
  ignoredFolders: z.array(z.string()).optional(),
  /** Kept images per bucket, e.g. {"576x448": 12}. */
  buckets: z.record(z.string(), z.number().int()).optional(),
  /** Work store keys of the contact sheet pages (PNG grids of every kept image). */
  contactSheets: z.array(z.string()).optional(),
});
export type DatasetManifest = z.infer<typeof DatasetManifest>;

export function manifestKeyOf(runId: string): string {
  return `runs/${runId}/manifest.json`;
}

/** The kohya `train_data_dir` of a run; the training folder is its only child. */
export function trainDataDirOf(runId: string): string {
  return `runs/${runId}/dataset`;
}
