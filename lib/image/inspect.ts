/**
 * What happens to one image, decided from its header alone before a pixel is decoded: whether it
 * is skipped (and the reason, in our own fixed words), the size it is written at, how it is scaled
 * and cropped, and what the user should be warned about. Pure.
 *
 * Reasons never quote the decoder: libvips collects errors in one process-wide buffer, so while
 * images are processed concurrently its messages can carry other images' errors. Fixed wording
 * also keeps the manifest identical across retries.
 */
import { bucketResolutions, coverCrop, selectBucket, selectBucketNoUpscale, type BucketFit, type BucketSettings, type Box, type Size } from '../kohya/buckets';
import type { CropStrategy } from './options';

/** sharp's own default pixel limit: bigger images are refused before decoding (decompression bombs). */
export const MAX_INPUT_PIXELS = 0x3fff * 0x3fff;

/** Beyond 1:4 a square crop keeps a sliver and a bucket crop loses much of the picture. */
export const MAX_ASPECT_RATIO = 4;
/** A crop keeping less than this share of the picture (more than a third cut away) is warned about. */
const MIN_KEPT_SHARE = 2 / 3;

/** Decoded formats we read; anything else sharp happens to recognise is refused. */
const READABLE_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'bmp']);

export const SKIP_REASONS = {
  empty: 'empty file (0 bytes)',
  notAnImage: 'not a readable image: unknown format or corrupt header',
  corrupt: (format: string) => `not a readable image: truncated or corrupt ${format} data`,
  unsupportedExtension: (extension: string, accepted: readonly string[]) =>
    `unsupported format: ${extension} files are not read (convert to one of ${accepted.join(' ')})`,
  unsupportedContent: (what: string) => `unsupported format: the file holds ${what}; convert it to PNG or JPEG`,
  tooManyPixels: (width: number, height: number) =>
    `too large: ${width}×${height} is ${width * height} pixels, more than the ${MAX_INPUT_PIXELS} decoded at most (decompression bomb guard)`,
  onePixel: 'a 1×1 image (a placeholder or tracking pixel), not a picture',
  tooSmall: (width: number, height: number, minSide: number) =>
    `too small: ${width}×${height}, the shorter side is below the minimum of ${minSide} px (preprocess.minSide)`,
} as const;

/** What the decoder's header read says; `orientation` is the EXIF tag (1-8). */
export interface ImageHeader {
  format: string;
  width: number;
  height: number;
  orientation?: number;
  /** Frames in an animation or pages in a TIFF; only the first is used. */
  pages?: number;
  /** For HEIF containers: 'av1' is AVIF (decodable), 'hevc' is HEIC (not). */
  compression?: string;
}

export interface TargetOptions {
  strategy: CropStrategy;
  /** The square side, or the bucket resolution. */
  size: number;
  minSide: number;
  buckets: BucketSettings;
}

export interface ImagePlan {
  /** The image as displayed: EXIF orientation applied. */
  oriented: Size;
  /** The size written; for `bucket`, the kohya bucket. */
  output: Size;
  /** Scaled to this size before cropping. */
  resized: Size;
  /** The kept part of the resized image; undefined when sharp picks it (attention, entropy). */
  crop: Box | undefined;
  /** Output pixels per source pixel: above 1 means upscaled. */
  scale: number;
  warnings: string[];
}

const bucketsCache = new Map<string, Size[]>();

function bucketsFor(settings: BucketSettings): Size[] {
  const key = `${settings.resolution}/${settings.minBucketReso}/${settings.maxBucketReso}/${settings.step}`;
  let buckets = bucketsCache.get(key);
  if (buckets === undefined) {
    buckets = bucketResolutions(settings);
    bucketsCache.set(key, buckets);
  }
  return buckets;
}

/** EXIF orientations 5-8 rotate by 90°: the displayed width is the stored height. */
export function orientedSize(width: number, height: number, orientation = 1): Size {
  return orientation >= 5 && orientation <= 8 ? { width: height, height: width } : { width, height };
}

export function planImage(header: ImageHeader, options: TargetOptions): { skip: string } | ImagePlan {
  if (!READABLE_FORMATS.has(header.format)) return { skip: SKIP_REASONS.unsupportedContent(`${header.format} data`) };
  if (header.format === 'heif' && header.compression !== 'av1') {
    return { skip: SKIP_REASONS.unsupportedContent(`HEIC (${header.compression ?? 'unknown'}-compressed HEIF)`) };
  }
  const { width, height } = header;
  if (width * height > MAX_INPUT_PIXELS) return { skip: SKIP_REASONS.tooManyPixels(width, height) };
  if (width <= 1 && height <= 1) return { skip: SKIP_REASONS.onePixel };
  const oriented = orientedSize(width, height, header.orientation);
  if (Math.min(width, height) < options.minSide) return { skip: SKIP_REASONS.tooSmall(oriented.width, oriented.height, options.minSide) };

  const fit = fitOf(oriented, options);
  const target = fit.bucket;
  // Cover: the larger of the two ratios (coverCrop rounds the sizes it gives from the same factor).
  const scale = Math.max(target.width / oriented.width, target.height / oriented.height);

  const warnings: string[] = [];
  if (scale > 1) {
    warnings.push(`upscaled ${scale.toFixed(2)}×: ${oriented.width}×${oriented.height} is smaller than the ${target.width}×${target.height} target`);
  }
  const aspect = Math.max(width, height) / Math.min(width, height);
  const kept = (target.width * target.height) / (fit.resized.width * fit.resized.height);
  if (aspect > MAX_ASPECT_RATIO) {
    warnings.push(`aspect ${aspect.toFixed(1)}:1: beyond 1:${MAX_ASPECT_RATIO}, the crop keeps ${Math.round(kept * 100)}% of the picture`);
  } else if (kept < MIN_KEPT_SHARE) {
    // A square crop of a wide picture can cut away what it was taken for (the subject at a side).
    warnings.push(`cropped: ${Math.round((1 - kept) * 100)}% of the picture is cut away (${fit.resized.width}×${fit.resized.height} cropped to ${target.width}×${target.height}); try the bucket strategy`);
  }
  if ((header.pages ?? 1) > 1) warnings.push(`first frame only: the file has ${header.pages} frames or pages`);

  const smart = options.strategy === 'attention' || options.strategy === 'entropy';
  return { oriented, output: target, resized: fit.resized, crop: smart ? undefined : fit.crop, scale, warnings };
}

/**
 * Where the image goes: its kohya bucket, or the square. With `bucket_no_upscale` nothing is made
 * larger: the bucket is sd-scripts' no-upscale bucket, and the square no larger than the shorter
 * side allows (down to the step), so that sd-scripts in that mode trains the image as written.
 */
function fitOf(oriented: Size, options: TargetOptions): BucketFit {
  const { buckets } = options;
  if (options.strategy === 'bucket') {
    return buckets.noUpscale
      ? selectBucketNoUpscale(buckets, oriented.width, oriented.height)
      : selectBucket(bucketsFor(buckets), oriented.width, oriented.height);
  }
  const shorter = Math.min(oriented.width, oriented.height);
  const side = buckets.noUpscale ? Math.min(options.size, shorter - (shorter % buckets.step)) : options.size;
  return coverCrop(oriented.width, oriented.height, { width: side, height: side });
}

/** The crop in the oriented source's pixels: what part of the original picture was kept. */
export function cropInSource(crop: Box, scale: number, oriented: Size): Box {
  const left = Math.min(oriented.width, Math.max(0, Math.round(crop.left / scale)));
  const top = Math.min(oriented.height, Math.max(0, Math.round(crop.top / scale)));
  return {
    left,
    top,
    width: Math.min(oriented.width - left, Math.round(crop.width / scale)),
    height: Math.min(oriented.height - top, Math.round(crop.height / scale)),
  };
}
