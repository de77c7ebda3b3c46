/**
 * The text cleaning open_clip applies before CLIP's BPE: HTML unescaping (twice), whitespace
 * collapsed, lower case. It runs in Python, so whitespace and unescaping follow Python's rules, not
 * JavaScript's (`String.prototype.trim` also strips U+FEFF; Python's `str.strip` does not).
 * ftfy's repairs (mojibake, curly quotes, full-width forms, NFC) are out of scope. Pure.
 */

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

/**
 * HTML named references understood here. Those usable without ";" (the HTML 4 Latin-1 set plus a few
 * basics) come first: `&eacutex` still unescapes the "eacute" prefix, as in HTML5 and Python.
 */
const LATIN1_NAMES = (
  'nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 sup3 ' +
  'acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave Aacute Acirc Atilde Auml ' +
  'Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde ' +
  'Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig agrave aacute acirc atilde auml aring aelig ' +
  'ccedil egrave eacute ecirc euml igrave iacute icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide ' +
  'oslash ugrave uacute ucirc uuml yacute thorn yuml'
).split(' ');

const LEGACY_ENTITIES: ReadonlyMap<string, string> = new Map([
  ...LATIN1_NAMES.map((name, i): [string, string] => [name, String.fromCodePoint(0xa0 + i)]),
  ...(
    [
      ['amp', '&'],
      ['lt', '<'],
      ['gt', '>'],
      ['quot', '"'],
    ] as const
  ).flatMap(([name, value]): [string, string][] => [
    [name, value],
    [name.toUpperCase(), value],
  ]),
  ['COPY', '\u00a9'],
  ['REG', '\u00ae'],
]);

/** Common named references that need the ";" (the rest of HTML5's ~2,000 names stay as written). */
const SEMICOLON_ENTITIES: ReadonlyMap<string, string> = new Map([
  ['apos', "'"],
  ['hellip', '\u2026'],
  ['ndash', '\u2013'],
  ['mdash', '\u2014'],
  ['lsquo', '\u2018'],
  ['rsquo', '\u2019'],
  ['sbquo', '\u201a'],
  ['ldquo', '\u201c'],
  ['rdquo', '\u201d'],
  ['bdquo', '\u201e'],
  ['bull', '\u2022'],
  ['trade', '\u2122'],
  ['euro', '\u20ac'],
  ['larr', '\u2190'],
  ['rarr', '\u2192'],
  ['hearts', '\u2665'],
  ['star', '\u2606'],
  ['starf', '\u2605'],
]);

/** HTML5 maps numeric references 0x80-0x9F as Windows-1252 (its five holes stay C1 controls). */
const WINDOWS_1252_C1 = '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';

/** Code points a numeric reference may not produce: they vanish. */
function isDroppedCodePoint(n: number): boolean {
  return (
    (n >= 0x1 && n <= 0x8) ||
    n === 0xb ||
    (n >= 0xe && n <= 0x1f) ||
    (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) ||
    (n & 0xfffe) === 0xfffe
  );
}

function numericReference(digits: string, radix: 10 | 16): string {
  const n = parseInt(digits, radix);
  if (n === 0) return '\ufffd';
  if (n === 0xd) return '\r';
  if (n >= 0x80 && n <= 0x9f) return WINDOWS_1252_C1[n - 0x80];
  if ((n >= 0xd800 && n <= 0xdfff) || n > 0x10ffff) return '\ufffd';
  if (isDroppedCodePoint(n)) return '';
  return String.fromCodePoint(n);
}

function namedReference(reference: string): string {
  const name = reference.endsWith(';') ? reference.slice(0, -1) : reference;
  const exact = reference.endsWith(';') ? (SEMICOLON_ENTITIES.get(name) ?? LEGACY_ENTITIES.get(name)) : LEGACY_ENTITIES.get(name);
  if (exact !== undefined) return exact;
  // The longest prefix (at least two characters) that is a name usable without ";".
  const chars = Array.from(reference);
  for (let length = chars.length - 1; length >= 2; length -= 1) {
    const value = LEGACY_ENTITIES.get(chars.slice(0, length).join(''));
    if (value !== undefined) return value + chars.slice(length).join('');
  }
  return `&${reference}`;
}

const CHARACTER_REFERENCE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

/** Python's `html.unescape` (HTML5 rules), for numeric references and the names listed above. */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARACTER_REFERENCE, (_match, reference: string) => {
    if (reference[0] !== '#') return namedReference(reference);
    const hex = reference[1] === 'x' || reference[1] === 'X';
    return numericReference(reference.slice(hex ? 2 : 1).replace(/;$/, ''), hex ? 16 : 10);
  });
}

/** What CLIP's BPE sees of a caption: open_clip's "lower" cleaning, without ftfy. */
export function cleanText(text: string): string {
  return collapseWhitespace(htmlUnescape(htmlUnescape(text))).toLowerCase();
}
