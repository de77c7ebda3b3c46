/**
 * How a run's images are prepared: the `preprocess` field of the workflow input. Pure (zod only);
 * every field has a default, so inputs written before these options existed stay valid.
 */
import { z } from 'zod';

export const CROP_STRATEGIES = ['center', 'attention', 'entropy', 'bucket'] as const;
export type CropStrategy = (typeof CROP_STRATEGIES)[number];

export const OUTPUT_FORMATS = ['png', 'jpeg', 'webp'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** What sd-scripts reads (it globs these extensions) for each output format. */
export const OUTPUT_EXTENSION: Record<OutputFormat, string> = { png: '.png', jpeg: '.jpg', webp: '.webp' };

export const PreprocessOptions = z
  .object({
    /**
     * `center`, `attention` (the most salient region) or `entropy` (the busiest region) crop to a
     * square; `bucket` writes each image at exactly the kohya bucket sd-scripts will put it in.
     */
    strategy: z.enum(CROP_STRATEGIES).default('center'),
    /** Square side, or the bucket resolution; defaults to the family's (512 sd15, 1024 sdxl). */
    size: z
      .number()
      .int()
      .min(256, 'must be at least 256')
      .max(2048, 'must be at most 2048')
      .multipleOf(64, 'must be a multiple of 64 (the kohya bucket step)')
      .optional(),
    format: z.enum(OUTPUT_FORMATS).default('png'),
    /** JPEG and WebP quality; PNG is lossless and ignores it. */
    quality: z.number().int().min(1).max(100).default(95),
    /** What transparent pixels are flattened onto: kohya drops alpha, leaving whatever colour they hold. */
    background: z
      .string()
      .regex(/^#[0-9a-fA-F]{6}$/, 'must be a colour like #ffffff')
      .default('#ffffff'),
    /** Images whose shorter side is below this are skipped: upscaling them teaches blur. */
    minSide: z.number().int().min(1).max(4096).default(256),
    /** Fail the stage on the first skipped image instead of reporting it and going on. */
    strict: z.boolean().default(false),
    /** Images per batch activity; large datasets are processed in batches side by side. */
    batchSize: z.number().int().min(1).max(500).default(200),
  })
  .strict();

export type PreprocessOptionsInput = z.input<typeof PreprocessOptions>;
export type PreprocessOptions = z.output<typeof PreprocessOptions>;
