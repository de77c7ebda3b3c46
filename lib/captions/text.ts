/**
 * A caption file as sd-scripts reads it: strict UTF-8, universal newlines, first line only,
 * stripped with Python's `str.strip`. Pure.
 */
import { pythonStrip } from '../clip/text';
import { firstInvalidUtf8, type InvalidUtf8 } from '../utf8';

export type { InvalidUtf8 };

export interface DecodedCaption {
  /** The text; a lossy decoding (U+FFFD for bad bytes) when `invalidUtf8` is set. */
  text: string;
  invalidUtf8?: InvalidUtf8;
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
