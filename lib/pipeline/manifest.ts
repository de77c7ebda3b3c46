/**
 * The dataset manifest preprocessing writes to the work store: everything later stages need to
 * know about each image, so that workflow history only ever carries the manifest's key and counts.
 */
import { z } from 'zod';
import { BASE_MODEL_FAMILIES } from './input';

/** What the work store holds for a run: read by the caption checks, the review and the upload. */
export const DatasetManifest = z.object({
  version: z.literal(1),
  runId: z.string(),
  /** Where the images came from: an absolute local path or a store URI. */
  dataset: z.string(),
  family: z.enum(BASE_MODEL_FAMILIES),
  /** Side of the square training images, in pixels. */
  target: z.number().int().positive(),
  /** The kohya training folder, `<repeats>_<concept>`. */
  folder: z.string(),
  images: z.array(
    z.object({
      /** The image's name in the dataset. */
      source: z.string(),
      sourceSha256: z.string(),
      /** Work store key of the processed PNG. */
      output: z.string(),
      width: z.number().int().positive(),
      height: z.number().int().positive(),
      /** Work store key of the caption copied beside the image, or null when it had none. */
      caption: z.string().nullable(),
    }),
  ),
  skipped: z.array(z.object({ source: z.string(), reason: z.string() })),
  /** Caption files in the dataset with no image of the same name. */
  orphanCaptions: z.array(z.string()),
  counts: z.object({ found: z.number().int(), kept: z.number().int(), skipped: z.number().int() }),
});
export type DatasetManifest = z.infer<typeof DatasetManifest>;

export function manifestKeyOf(runId: string): string {
  return `runs/${runId}/manifest.json`;
}

/** The kohya `train_data_dir` of a run; the training folder is its only child. */
export function trainDataDirOf(runId: string): string {
  return `runs/${runId}/dataset`;
}
