/**
 * One image through sharp: read the header, decide (lib/image/inspect.ts), then decode once into
 * the training image's pixels, from which the encoded output, the contact-sheet thumbnail and the
 * duplicate fingerprints (from the thumbnail) are all derived. Returns a fixed-wording reason instead of throwing for
 * anything wrong with the file itself.
 */
import sharp, { type OutputInfo, type PngOptions, type Sharp } from 'sharp';
import type { Box, BucketSettings } from '../lib/kohya/buckets';
import { BmpError, decodeBmp, isBmp, readBmpHeader } from '../lib/image/bmp';
import { paste, rgbCanvas, sampleThumbnail, SHEET_BACKGROUND, THUMBNAIL_SIDE } from '../lib/image/contact-sheet';
import { cropInSource, MAX_INPUT_PIXELS, planImage, SKIP_REASONS, type ImageHeader, type ImagePlan } from '../lib/image/inspect';
import type { CropStrategy, OutputFormat } from '../lib/image/options';
import { fingerprint, type Fingerprint } from '../lib/image/phash';

// Every image is decoded once and never again, so libvips' operation cache only holds memory that a
// long-lived worker (hundreds of runs parked in training) would rather keep.
sharp.cache(false);

export interface RenderOptions {
  strategy: CropStrategy;
  size: number;
  format: OutputFormat;
  quality: number;
  background: string;
  minSide: number;
  buckets: BucketSettings;
}

export interface RenderedImage {
  /** The encoded training image. */
  data: Buffer;
  sourceFormat: string;
  plan: ImagePlan;
  /** The kept part of the oriented source, in source pixels. */
  crop: Box;
  fingerprint: Fingerprint;
  /** Raw RGB, THUMBNAIL_SIDE² letterboxed onto the sheet background. */
  thumbnail: Buffer;
}

export const CONTENT_TYPES: Record<OutputFormat, string> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };

/**
 * PNG settings shared with the benchmark's bare-sharp baseline. Adaptive filtering makes photos'
 * PNGs about a third smaller for a few milliseconds each, which pays off at upload time.
 */
export const PNG_OPTIONS: PngOptions = { compressionLevel: 6, adaptiveFiltering: true };

export async function renderImage(bytes: Buffer, options: RenderOptions): Promise<RenderedImage | { reason: string }> {
  if (bytes.length === 0) return { reason: SKIP_REASONS.empty };
  const header = await readHeader(bytes);
  if ('reason' in header) return header;
  const plan = planImage(header, options);
  if ('skip' in plan) return { reason: plan.skip };

  let pixels: { data: Buffer; info: OutputInfo };
  try {
    pixels = await trainingPixels(bytes, header, plan, options).raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    if (err instanceof BmpError) return { reason: bmpReason(err) };
    return { reason: SKIP_REASONS.corrupt(header.format) };
  }
  const { data, info } = pixels;
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } } as const;
  const crop = plan.crop ?? { left: -(info.cropOffsetLeft ?? 0), top: -(info.cropOffsetTop ?? 0), ...plan.output };
  // Cropped here, from the decoded pixels: in the decoding pipeline, a crop after EXIF rotation
  // makes libvips rotate the full-size image first, which more than doubles the cost.
  const cropped = () => (plan.crop === undefined || isWhole(plan.crop, info) ? sharp(data, raw) : sharp(data, raw).extract(plan.crop));

  const encoding = encode(cropped(), options).toBuffer();
  // While the encoder runs: the thumbnail, sampled from the same pixels.
  const small = sampleThumbnail(data, info.width, info.channels, plan.crop ?? { left: 0, top: 0, ...info }, THUMBNAIL_SIDE);
  return {
    data: await encoding,
    sourceFormat: header.format,
    plan,
    crop: cropInSource(crop, plan.scale, plan.oriented),
    fingerprint: fingerprint(small.data, small.width, small.height, 3),
    thumbnail: letterbox(small.data, small.width, small.height),
  };
}

/** The header alone; a decompression bomb is measured here and never decoded. */
async function readHeader(bytes: Buffer): Promise<ImageHeader | { reason: string }> {
  if (isBmp(bytes)) {
    try {
      return { format: 'bmp', ...readBmpHeader(bytes) };
    } catch (err) {
      return { reason: err instanceof BmpError ? bmpReason(err) : SKIP_REASONS.notAnImage };
    }
  }
  try {
    const metadata = await sharp(bytes, { limitInputPixels: false }).metadata();
    return {
      format: metadata.format,
      width: metadata.width,
      height: metadata.height,
      orientation: metadata.orientation,
      pages: metadata.pages,
      compression: metadata.compression,
    };
  } catch {
    return { reason: SKIP_REASONS.notAnImage };
  }
}

function bmpReason(err: BmpError): string {
  return err.kind === 'unsupported' ? SKIP_REASONS.unsupportedContent(`a ${err.message}`) : SKIP_REASONS.corrupt('bmp');
}

/**
 * Decode once: EXIF orientation baked in (sd-scripts ignores it), alpha flattened (kohya drops it,
 * leaving whatever colour transparent pixels hold), scaled to cover with Lanczos (and cropped,
 * for attention and entropy), 8-bit sRGB (CMYK, greyscale, palette, 16-bit and ICC-tagged inputs
 * converted).
 */
function trainingPixels(bytes: Buffer, header: ImageHeader, plan: ImagePlan, options: RenderOptions): Sharp {
  let image: Sharp;
  if (header.format === 'bmp') {
    const bitmap = decodeBmp(bytes);
    image = sharp(Buffer.from(bitmap.data.buffer, bitmap.data.byteOffset, bitmap.data.byteLength), {
      raw: { width: bitmap.width, height: bitmap.height, channels: bitmap.channels },
    });
  } else {
    // failOn 'warning' rejects truncated files instead of training on half-grey images.
    image = sharp(bytes, { failOn: 'warning', limitInputPixels: MAX_INPUT_PIXELS }).rotate();
  }
  image = image.flatten({ background: options.background });
  if (plan.crop === undefined) {
    const position = options.strategy === 'entropy' ? 'entropy' : 'attention';
    image = image.resize(plan.output.width, plan.output.height, { fit: 'cover', position, kernel: 'lanczos3' });
  } else if (plan.scale !== 1) {
    image = image.resize(plan.resized.width, plan.resized.height, { fit: 'fill', kernel: 'lanczos3' });
  }
  // An image already at its bucket size is left as it is: no resampling at all.
  return image.toColourspace('srgb');
}

function isWhole(crop: Box, size: { width: number; height: number }): boolean {
  return crop.left === 0 && crop.top === 0 && crop.width === size.width && crop.height === size.height;
}

function encode(image: Sharp, options: Pick<RenderOptions, 'format' | 'quality'>): Sharp {
  switch (options.format) {
    case 'png':
      return image.png(PNG_OPTIONS);
    case 'jpeg':
      // No chroma subsampling: colour detail matters more in training data than a few kilobytes.
      return image.jpeg({ quality: options.quality, chromaSubsampling: '4:4:4' });
    case 'webp':
      return image.webp({ quality: options.quality });
  }
}

/** The contact-sheet thumbnail of a training image already written (a retried batch reuses it). */
export async function thumbnailOfOutput(encoded: Buffer): Promise<Buffer> {
  const { data, info } = await sharp(encoded).raw().toBuffer({ resolveWithObject: true });
  const small = sampleThumbnail(data, info.width, info.channels, { left: 0, top: 0, ...info }, THUMBNAIL_SIDE);
  return letterbox(small.data, small.width, small.height);
}

/** The thumbnail centred in a THUMBNAIL_SIDE² square of the sheet background. */
function letterbox(pixels: Uint8Array, width: number, height: number): Buffer {
  const square = rgbCanvas(THUMBNAIL_SIDE, THUMBNAIL_SIDE, SHEET_BACKGROUND);
  paste(square, THUMBNAIL_SIDE, pixels, width, height, Math.floor((THUMBNAIL_SIDE - width) / 2), Math.floor((THUMBNAIL_SIDE - height) / 2));
  return Buffer.from(square.buffer, square.byteOffset, square.byteLength);
}
