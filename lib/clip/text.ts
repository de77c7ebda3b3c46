/**
 * The text cleaning transformers' CLIPTokenizer applies before CLIP's BPE (what sd-scripts trains
 * with): ftfy's fixes, whitespace collapsed, lower case. No HTML unescaping beyond ftfy's own (open_clip
 * unescapes twice more; sd-scripts does not). It runs in Python, so whitespace follows Python's
 * rules, not JavaScript's (`String.prototype.trim` also strips U+FEFF; Python's `str.strip` does
 * not). Pure.
 */
import { fixText } from './ftfy';

/** The characters Python's `str.isspace()` accepts: what `str.split()` and `str.strip()` remove. */
export const PYTHON_WHITESPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const WHITESPACE_RUN = new RegExp(`[${PYTHON_WHITESPACE}]+`, 'g');
const EDGE_WHITESPACE = new RegExp(`^[${PYTHON_WHITESPACE}]+|[${PYTHON_WHITESPACE}]+$`, 'g');

/** Python's `str.strip()`. */
export function pythonStrip(text: string): string {
  return text.replace(EDGE_WHITESPACE, '');
}

/** Python's `" ".join(text.split())`: runs of whitespace become one space, none at the ends. */
export function collapseWhitespace(text: string): string {
  return pythonStrip(text).replace(WHITESPACE_RUN, ' ');
}

/** What CLIP's BPE sees of a caption (or of a piece between special tokens): transformers' cleaning. */
export function cleanText(text: string): string {
  return collapseWhitespace(fixText(text)).toLowerCase();
}
