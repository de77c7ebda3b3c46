/**
 * A caption file as sd-scripts reads it: strict UTF-8, universal newlines, first line only,
 * stripped with Python's `str.strip`. Pure.
 */
import { pythonStrip } from '../clip/text';

export interface InvalidUtf8 {
  /** Offset of the first byte that does not start a valid UTF-8 sequence, as Python reports it. */
  offset: number;
  byte: number;
}

export interface DecodedCaption {
  /** The text; a lossy decoding (U+FFFD for bad bytes) when `invalidUtf8` is set. */
  text: string;
  invalidUtf8?: InvalidUtf8;
}

/** The first ill-formed sequence, per the Unicode standard's table of well-formed UTF-8. */
function firstInvalidUtf8(bytes: Uint8Array): InvalidUtf8 | undefined {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i];
    if (lead < 0x80) {
      i += 1;
      continue;
    }
    // [continuation bytes, allowed range of the second byte]; the rest are always 0x80-0xBF.
    let shape: [number, number, number] | undefined;
    if (lead >= 0xc2 && lead <= 0xdf) shape = [1, 0x80, 0xbf];
    else if (lead === 0xe0) shape = [2, 0xa0, 0xbf];
    else if ((lead >= 0xe1 && lead <= 0xec) || lead === 0xee || lead === 0xef) shape = [2, 0x80, 0xbf];
    else if (lead === 0xed) shape = [2, 0x80, 0x9f];
    else if (lead === 0xf0) shape = [3, 0x90, 0xbf];
    else if (lead >= 0xf1 && lead <= 0xf3) shape = [3, 0x80, 0xbf];
    else if (lead === 0xf4) shape = [3, 0x80, 0x8f];
    if (shape === undefined) return { offset: i, byte: lead };
    const [continuations, low, high] = shape;
    for (let k = 1; k <= continuations; k += 1) {
      const b = bytes[i + k];
      const [min, max] = k === 1 ? [low, high] : [0x80, 0xbf];
      if (b === undefined || b < min || b > max) return { offset: i, byte: lead };
    }
    i += continuations + 1;
  }
  return undefined;
}

/** Decode a caption file's bytes; a byte-order mark is kept, as Python's "utf-8" codec keeps it. */
export function decodeCaption(bytes: Uint8Array): DecodedCaption {
  const invalidUtf8 = firstInvalidUtf8(bytes);
  const text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes);
  return invalidUtf8 ? { text, invalidUtf8 } : { text };
}

const BOM = '\ufeff';

export interface CaptionLayout {
  byteOrderMark: boolean;
  /** CR LF or a lone CR anywhere in the file. */
  carriageReturns: boolean;
}

export function layoutOf(caption: string): CaptionLayout {
  return { byteOrderMark: caption.startsWith(BOM), carriageReturns: caption.includes('\r') };
}

/**
 * The caption without a leading byte-order mark and with LF line endings. sd-scripts reads lines
 * the same either way, but a mark would stay glued to the first tag (keep_tokens, tag statistics).
 */
export function normaliseCaption(caption: string): string {
  return (caption.startsWith(BOM) ? caption.slice(1) : caption).replace(/\r\n?/g, '\n');
}

/** The lines Python's universal-newline reading yields, without their line breaks. */
export function captionLines(caption: string): string[] {
  return normaliseCaption(caption).split('\n');
}

/** The text sd-scripts trains on: the first line, stripped (after our normalisation). */
export function trainedText(caption: string): string {
  return pythonStrip(captionLines(caption)[0]);
}
