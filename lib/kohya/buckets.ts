/**
 * Aspect-ratio buckets exactly as sd-scripts computes them (DESIGN.md §3). Preprocessing and the
 * kohya config read the settings from here, so every image is written at a size sd-scripts uses
 * as it is: neither resized nor cropped a second time.
 */
import type { BaseModelFamily } from '../pipeline/input';
import { TARGET_SIZE } from '../pipeline/input';

export interface BucketSettings {
  /** The training resolution: buckets hold about resolution² pixels. */
  resolution: number;
  minBucketReso: number;
  maxBucketReso: number;
  step: number;
  /**
   * sd-scripts' `bucket_no_upscale`: no predefined buckets; an image larger than resolution² is
   * scaled down to about that area, a smaller one kept, then cropped to multiples of the step.
   */
  noUpscale?: boolean;
}

export interface Size {
  width: number;
  height: number;
}

/** A rectangle in pixels; `left`/`top` are the offsets of its top-left corner. */
export interface Box extends Size {
  left: number;
  top: number;
}

const DEFAULT_RANGE: Record<BaseModelFamily, Pick<BucketSettings, 'minBucketReso' | 'maxBucketReso'>> = {
  sd15: { minBucketReso: 256, maxBucketReso: 1024 },
  sdxl: { minBucketReso: 512, maxBucketReso: 2048 },
};

/**
 * The bucket settings preprocessing and training must agree on. `resolution` is the run's
 * preprocess size when it sets one; the range widens to include it, as sd-scripts requires
 * min_bucket_reso ≤ resolution ≤ max_bucket_reso.
 */
export function bucketSettings(family: BaseModelFamily, resolution: number = TARGET_SIZE[family]): BucketSettings {
  const range = DEFAULT_RANGE[family];
  return {
    resolution,
    minBucketReso: Math.min(range.minBucketReso, resolution),
    maxBucketReso: Math.max(range.maxBucketReso, resolution),
    step: 64,
  };
}

/**
 * Every bucket, sorted by width then height: the square of the resolution's area, and for each
 * width from min to max (in steps) the tallest height that keeps the area, both ways round.
 * Min is rounded down and max up to the step first, as sd-scripts does.
 */
export function bucketResolutions(settings: BucketSettings): Size[] {
  const { resolution, step } = settings;
  const min = settings.minBucketReso - (settings.minBucketReso % step);
  const max = settings.maxBucketReso % step === 0 ? settings.maxBucketReso : settings.maxBucketReso + step - (settings.maxBucketReso % step);
  const area = resolution * resolution;
  const found = new Map<string, Size>();
  const add = (width: number, height: number) => found.set(`${width}x${height}`, { width, height });

  const square = Math.floor(Math.sqrt(area) / step) * step;
  add(square, square);
  for (let width = min; width <= max; width += step) {
    const height = Math.min(max, Math.floor(Math.floor(area / width) / step) * step);
    if (height >= min) {
      add(width, height);
      add(height, width);
    }
  }
  return [...found.values()].sort((a, b) => a.width - b.width || a.height - b.height);
}

export interface BucketFit {
  /** The bucket the image trains in, and the size it is written at. */
  bucket: Size;
  /** The size the image is scaled to before cropping (covers the bucket). */
  resized: Size;
  /** The part of the resized image that is kept: the bucket, centred. */
  crop: Box;
}

/**
 * The bucket sd-scripts assigns an image of this size, and how it gets there: an exact bucket size
 * is kept; otherwise the nearest aspect ratio wins (the first in sorted order on a tie).
 */
export function selectBucket(buckets: readonly Size[], width: number, height: number): BucketFit {
  if (buckets.length === 0) throw new Error('selectBucket needs at least one bucket');
  const exact = buckets.find((b) => b.width === width && b.height === height);
  let bucket = exact;
  if (bucket === undefined) {
    const aspect = width / height;
    let bestError = Infinity;
    for (const candidate of buckets) {
      const error = Math.abs(candidate.width / candidate.height - aspect);
      if (error < bestError) {
        bestError = error;
        bucket = candidate;
      }
    }
  }
  return coverCrop(width, height, bucket as Size);
}

/**
 * Scale to cover the target, then crop its centre, with sd-scripts' arithmetic: the scale matches
 * the height when the image is wider than the target (else the width), sizes round half up, and
 * the crop offset is half the excess, rounded down.
 */
export function coverCrop(width: number, height: number, target: Size): BucketFit {
  const scale = width / height > target.width / target.height ? target.height / height : target.width / width;
  const resized = { width: Math.floor(width * scale + 0.5), height: Math.floor(height * scale + 0.5) };
  const crop = {
    left: Math.floor((resized.width - target.width) / 2),
    top: Math.floor((resized.height - target.height) / 2),
    width: target.width,
    height: target.height,
  };
  return { bucket: { width: target.width, height: target.height }, resized, crop };
}

/**
 * The bucket of an image in `bucket_no_upscale` mode, with sd-scripts' arithmetic
 * (BucketManager.select_bucket): above the resolution's area the image is scaled to that area,
 * keeping whichever of width or height, rounded to the step, better keeps the aspect ratio; below
 * it, it is kept; the bucket is that size cut down to multiples of the step, centred.
 */
export function selectBucketNoUpscale(settings: Pick<BucketSettings, 'resolution' | 'step'>, width: number, height: number): BucketFit {
  const { step } = settings;
  const maxArea = settings.resolution * settings.resolution;
  const aspect = width / height;
  // Python's int(x + 0.5) on a positive number, then down to the step.
  const roundToSteps = (x: number) => {
    const rounded = Math.floor(x + 0.5);
    return rounded - (rounded % step);
  };
  let resized: Size = { width, height };
  if (width * height > maxArea) {
    const scaledWidth = Math.sqrt(maxArea * aspect);
    const scaledHeight = maxArea / scaledWidth;
    const byWidth = roundToSteps(scaledWidth);
    const byWidthAspect = byWidth / roundToSteps(byWidth / aspect);
    const byHeight = roundToSteps(scaledHeight);
    const byHeightAspect = roundToSteps(byHeight * aspect) / byHeight;
    resized =
      Math.abs(byWidthAspect - aspect) < Math.abs(byHeightAspect - aspect)
        ? { width: byWidth, height: Math.floor(byWidth / aspect + 0.5) }
        : { width: Math.floor(byHeight * aspect + 0.5), height: byHeight };
  }
  const bucket = { width: resized.width - (resized.width % step), height: resized.height - (resized.height % step) };
  const crop = { left: Math.floor((resized.width - bucket.width) / 2), top: Math.floor((resized.height - bucket.height) / 2), ...bucket };
  return { bucket, resized, crop };
}

/** "576x448": how a bucket is named in the manifest's histogram. */
export function bucketName(size: Size): string {
  return `${size.width}x${size.height}`;
}

/** A run's bucket settings: its family's, at its preprocess size when it sets one. */
export function runBucketSettings(run: { baseModel: { family: BaseModelFamily }; preprocess?: { size?: number } }): BucketSettings {
  return bucketSettings(run.baseModel.family, run.preprocess?.size);
}
