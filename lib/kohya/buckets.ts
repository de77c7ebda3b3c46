/**
 * Aspect-ratio bucket settings. Preprocessing and the kohya config read them from here, so the
 * images are written at exactly the sizes sd-scripts will bucket them to.
 */
import type { BaseModelFamily } from '../pipeline/input';
import { TARGET_SIZE } from '../pipeline/input';

/** Bucket settings preprocessing and training must agree on; one place for both. */
export function bucketSettings(family: BaseModelFamily): { resolution: number; minBucketReso: number; maxBucketReso: number; step: number } {
  return family === 'sdxl'
    ? { resolution: TARGET_SIZE.sdxl, minBucketReso: 512, maxBucketReso: 2048, step: 64 }
    : { resolution: TARGET_SIZE.sd15, minBucketReso: 256, maxBucketReso: 1024, step: 64 };
}
