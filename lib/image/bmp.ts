/**
 * A Windows BMP decoder. sd-scripts reads .bmp files, but the libvips inside sharp cannot, so BMPs
 * are decoded here into raw pixels that sharp then processes like any other image. Handles what
 * cameras, scanners and image editors write: 1/4/8-bit palettes, 16/24/32-bit colour, bit-field
 * masks (with alpha from V4/V5 headers), bottom-up and top-down rows. RLE compression is refused.
 */

export interface BmpHeader {
  width: number;
  height: number;
  bitsPerPixel: number;
}

export interface DecodedBitmap {
  width: number;
  height: number;
  channels: 3 | 4;
  /** Rows top to bottom, RGB or RGBA, 8 bits per sample. */
  data: Uint8Array;
}

/** Why a BMP cannot be decoded; `unsupported` marks valid files using features we do not read. */
export class BmpError extends Error {
  override readonly name = 'BmpError';
  constructor(
    message: string,
    readonly kind: 'corrupt' | 'unsupported',
  ) {
    super(message);
  }
}

const FILE_HEADER = 14;
const BI_RGB = 0;
const BI_BITFIELDS = 3;
const BI_ALPHABITFIELDS = 6;

export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d;
}

interface Layout extends BmpHeader {
  topDown: boolean;
  compression: number;
  dibSize: number;
  dataOffset: number;
}

function layoutOf(bytes: Uint8Array): Layout {
  if (!isBmp(bytes) || bytes.length < FILE_HEADER + 16) throw new BmpError('not a BMP file or header cut short', 'corrupt');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dataOffset = view.getUint32(10, true);
  const dibSize = view.getUint32(14, true);
  if (dibSize === 12) throw new BmpError('OS/2 1.x BMP headers are not supported', 'unsupported');
  if (dibSize < 40 || bytes.length < FILE_HEADER + dibSize) throw new BmpError('BMP header cut short', 'corrupt');
  const width = view.getInt32(18, true);
  const rawHeight = view.getInt32(22, true);
  const bitsPerPixel = view.getUint16(28, true);
  const compression = view.getUint32(30, true);
  if (width <= 0 || rawHeight === 0) throw new BmpError(`BMP has an invalid size ${width}×${rawHeight}`, 'corrupt');
  if (![1, 4, 8, 16, 24, 32].includes(bitsPerPixel)) throw new BmpError(`BMP with ${bitsPerPixel} bits per pixel`, 'corrupt');
  return { width, height: Math.abs(rawHeight), bitsPerPixel, topDown: rawHeight < 0, compression, dibSize, dataOffset };
}

/** Size and depth from the header alone, for the checks that run before any pixel is decoded. */
export function readBmpHeader(bytes: Uint8Array): BmpHeader {
  const { width, height, bitsPerPixel } = layoutOf(bytes);
  return { width, height, bitsPerPixel };
}

interface Masks {
  red: number;
  green: number;
  blue: number;
  alpha: number;
}

/** A channel mask as a shift and a scale to 8 bits; an absent mask reads as undefined. */
function channelReader(mask: number): ((pixel: number) => number) | undefined {
  if (mask === 0) return undefined;
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift += 1;
  const max = mask >>> shift;
  return (pixel) => Math.round((((pixel & mask) >>> shift) * 255) / max);
}

export function decodeBmp(bytes: Uint8Array): DecodedBitmap {
  const layout = layoutOf(bytes);
  const { width, height, bitsPerPixel, compression, dibSize, dataOffset } = layout;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bitfields = compression === BI_BITFIELDS || compression === BI_ALPHABITFIELDS;
  if (compression !== BI_RGB && !bitfields) {
    throw new BmpError(compression === 1 || compression === 2 ? 'RLE-compressed BMP' : `BMP compression type ${compression}`, 'unsupported');
  }
  if (bitfields && bitsPerPixel !== 16 && bitsPerPixel !== 32) throw new BmpError('BMP bit fields need 16 or 32 bits per pixel', 'corrupt');

  // Masks live in the V2+ header, or right after a 40-byte header when bit fields are used.
  let masks: Masks | undefined;
  if (bitfields) {
    const at = FILE_HEADER + 40;
    const hasAlphaMask = dibSize >= 56 || compression === BI_ALPHABITFIELDS;
    masks = {
      red: view.getUint32(at, true),
      green: view.getUint32(at + 4, true),
      blue: view.getUint32(at + 8, true),
      alpha: hasAlphaMask ? view.getUint32(at + 12, true) : 0,
    };
  } else if (bitsPerPixel === 16) {
    masks = { red: 0x7c00, green: 0x03e0, blue: 0x001f, alpha: 0 };
  }

  let palette: Uint8Array | undefined;
  if (bitsPerPixel <= 8) {
    const declared = view.getUint32(46, true);
    const entries = declared === 0 ? 1 << bitsPerPixel : Math.min(declared, 1 << bitsPerPixel);
    const start = FILE_HEADER + dibSize;
    if (start + entries * 4 > bytes.length) throw new BmpError('BMP palette cut short', 'corrupt');
    palette = bytes.subarray(start, start + entries * 4);
  }

  const stride = Math.floor((bitsPerPixel * width + 31) / 32) * 4;
  if (dataOffset + stride * height > bytes.length) throw new BmpError('BMP pixel data cut short (truncated file)', 'corrupt');

  const channels = masks !== undefined && masks.alpha !== 0 ? 4 : 3;
  const out = new Uint8Array(width * height * channels);
  const red = masks && channelReader(masks.red);
  const green = masks && channelReader(masks.green);
  const blue = masks && channelReader(masks.blue);
  const alpha = masks && channelReader(masks.alpha);

  for (let y = 0; y < height; y++) {
    const row = dataOffset + (layout.topDown ? y : height - 1 - y) * stride;
    let o = y * width * channels;
    for (let x = 0; x < width; x++, o += channels) {
      if (palette !== undefined) {
        const bitOffset = x * bitsPerPixel;
        const byte = bytes[row + (bitOffset >> 3)];
        const index = (byte >> (8 - bitsPerPixel - (bitOffset & 7))) & ((1 << bitsPerPixel) - 1);
        if (index * 4 + 2 >= palette.length) throw new BmpError('BMP palette index out of range', 'corrupt');
        out[o] = palette[index * 4 + 2];
        out[o + 1] = palette[index * 4 + 1];
        out[o + 2] = palette[index * 4];
      } else if (bitsPerPixel === 24 || (bitsPerPixel === 32 && !bitfields)) {
        const p = row + x * (bitsPerPixel / 8);
        out[o] = bytes[p + 2];
        out[o + 1] = bytes[p + 1];
        out[o + 2] = bytes[p];
      } else {
        const pixel = bitsPerPixel === 16 ? view.getUint16(row + x * 2, true) : view.getUint32(row + x * 4, true);
        out[o] = red?.(pixel) ?? 0;
        out[o + 1] = green?.(pixel) ?? 0;
        out[o + 2] = blue?.(pixel) ?? 0;
        if (channels === 4) out[o + 3] = alpha?.(pixel) ?? 255;
      }
    }
  }
  return { width, height, channels, data: out };
}
