/**
 * Python's `html.unescape` (HTML5 rules), as open_clip applies it to captions: numeric references,
 * every named reference with ";" (the `entities` package's table) and the legacy names HTML5 still
 * accepts without it. Pure.
 */
import { decodeHTMLStrict } from 'entities';

/**
 * The names HTML5 accepts without ";" (the HTML 4 Latin-1 set plus a few basics): `&eacutex` still
 * unescapes the "eacute" prefix, as in HTML5 and Python.
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

/** A name HTML5 defines with ";" (all ~2,000 of them, from the `entities` package), or undefined. */
export function namedEntity(name: string): string | undefined {
  const reference = `&${name};`;
  const decoded = decodeHTMLStrict(reference);
  return decoded === reference ? undefined : decoded;
}

/** HTML5 maps numeric references 0x80-0x9F as Windows-1252 (its five holes stay C1 controls). */
export const WINDOWS_1252_C1 = '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
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
  const exact = reference.endsWith(';') ? namedEntity(name) : LEGACY_ENTITIES.get(name);
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

/** Python's `html.unescape` (HTML5 rules). */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARACTER_REFERENCE, (_match, reference: string) => {
    if (reference[0] !== '#') return namedReference(reference);
    const hex = reference[1] === 'x' || reference[1] === 'X';
    return numericReference(reference.slice(hex ? 2 : 1).replace(/;$/, ''), hex ? 16 : 10);
  });
}
