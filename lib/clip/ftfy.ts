/**
 * `ftfy.fix_text` with its default settings (ftfy 6), which transformers' CLIPTokenizer runs on every
 * caption before the BPE: curly quotes, Latin ligatures, full-width forms, C1 controls, terminal
 * escapes, control characters, line breaks, lone surrogates, HTML entities, NFC, and mojibake:
 * UTF-8 that was read in a single-byte encoding ("cafÃ©" is "café", "РїСЂРёРІРµС‚" is "привет").
 * ftfy weighs mojibake by a heuristic of its own; this one repairs the same encodings in the same
 * order, the whole text or (Latin-1 / Windows-1252) each surely broken run on its own. Pure; checked against ftfy in
 * test/integration/clip-reference.test.ts.
 */
import { firstInvalidUtf8 } from '../utf8';
import { htmlUnescape, namedEntity, WINDOWS_1252_C1 } from './html';

const LIGATURES: Readonly<Record<string, string>> = {
  '\u0132': 'IJ',
  '\u0133': 'ij',
  '\u0149': '\u02bcn',
  '\u01c4': 'D\u017d',
  '\u01c5': 'D\u017e',
  '\u01c6': 'd\u017e',
  '\u01c7': 'LJ',
  '\u01c8': 'Lj',
  '\u01c9': 'lj',
  '\u01ca': 'NJ',
  '\u01cb': 'Nj',
  '\u01cc': 'nj',
  '\u01f1': 'DZ',
  '\u01f2': 'Dz',
  '\u01f3': 'dz',
  '\ufb00': 'ff',
  '\ufb01': 'fi',
  '\ufb02': 'fl',
  '\ufb03': 'ffi',
  '\ufb04': 'ffl',
  '\ufb05': '\u017ft',
  '\ufb06': 'st',
};
const LIGATURE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');

/** Half- and full-width forms (U+FF01-U+FFEF) become their usual forms; the ideographic space a space. */
const WIDE_FORM = /[\u3000\uff01-\uffef]/g;
const narrowOf = (char: string): string => (char === '\u3000' ? ' ' : char.normalize('NFKC'));

const ENTITY = /&#?[0-9A-Za-z]{1,24};/g;
const C1_CONTROL = /[\x80-\x9f]/g;
const SINGLE_QUOTE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE = /[\u201c-\u201f]/g;
const LINE_BREAK = /\r\n|[\r\u2028\u2029\x85]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
/** ANSI colour and cursor codes; Python's `\d` takes any decimal digit. */
const TERMINAL_ESCAPE = /\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu;
const CONTROL_CHARACTER = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;

export function fixText(text: string): string {
  // ftfy fixes line by line. From the first line holding a "<" on, it leaves HTML entities alone:
  // the text may be HTML whose markup should not be touched.
  let unescapeEntities = true;
  let fixed = '';
  for (const line of text.match(/[^\n]*\n|[^\n]+$/g) ?? []) {
    if (line.includes('<')) unescapeEntities = false;
    fixed += fixLine(line, unescapeEntities);
  }
  return fixed;
}

/** Every fix, over and over until none changes anything, as ftfy does. */
function fixLine(line: string, unescapeEntities: boolean): string {
  let text = line;
  for (;;) {
    const before = text;
    if (unescapeEntities) text = text.replace(ENTITY, unescapeEntity);
    text = fixMojibake(text)
      .replace(C1_CONTROL, (char) => WINDOWS_1252_C1[char.charCodeAt(0) - 0x80])
      .replace(LIGATURE, (char) => LIGATURES[char])
      .replace(WIDE_FORM, narrowOf)
      .replace(SINGLE_QUOTE, "'")
      .replace(DOUBLE_QUOTE, '"')
      .replace(LINE_BREAK, '\n')
      .replace(LONE_SURROGATE, '\ufffd')
      .replace(TERMINAL_ESCAPE, '')
      .replace(CONTROL_CHARACTER, '')
      .normalize('NFC');
    if (text === before) return text;
  }
}

/**
 * ftfy's entity rules, narrower than HTML's: only with ";"; a name in capitals stands for its
 * lower-case entity in capitals (&EACUTE; is É) unless HTML defines it itself; a numeric reference
 * that does not decode stays as written.
 */
function unescapeEntity(reference: string): string {
  if (reference.startsWith('&#')) {
    const decoded = htmlUnescape(reference);
    return decoded.includes(';') ? reference : decoded;
  }
  const name = reference.slice(1, -1);
  const exact = namedEntity(name);
  if (exact !== undefined) return exact;
  const lower = name.toLowerCase();
  const shouted = name === lower.toUpperCase() ? namedEntity(lower) : undefined;
  return shouted !== undefined && htmlUnescape(reference) === reference ? shouted.toUpperCase() : reference;
}

/** A continuation byte (0x80-0xBF) as Latin-1 or Windows-1252 shows it. */
const CONTINUATION = `[\\x80-\\xbf${WINDOWS_1252_C1.replace(/[\x80-\x9f]/g, '')}]`;
/**
 * The continuation characters that are a sure sign: all but the typographic punctuation Windows-1252
 * puts there (‘’‚“”„•…–—), which real text has after a capital letter ("Ã…" is left alone, as ftfy does).
 */
const SURE_CONTINUATION = /[\x80-\xbf\u20ac\u0192\u02c6\u2030\u0160\u2039\u0152\u017d\u02dc\u2122\u0161\u203a\u0153\u017e\u0178\u2020\u2021]/;
/** Whole UTF-8 sequences (a lead byte and its continuation bytes) shown as single-byte characters, adjacent ones together. */
const UTF8_AS_SINGLE_BYTES = new RegExp(`(?:[\\xc2-\\xdf]${CONTINUATION}|[\\xe0-\\xef]${CONTINUATION}{2}|[\\xf0-\\xf4]${CONTINUATION}{3})+`, 'g');

/** Mojibake for sure: a sequence holding a continuation character that plain text does not put there. */
function looksMisdecoded(sequence: string): boolean {
  return SURE_CONTINUATION.test(sequence.slice(1));
}

/** A single-byte encoding's byte per character; bytes it leaves undefined stand for themselves ("sloppy", as in ftfy). */
function singleByteEncoding(decode: (byte: number) => string): ReadonlyMap<string, number> {
  const map = new Map<string, number>();
  for (let byte = 0; byte < 256; byte++) {
    const char = byte < 0x80 ? String.fromCharCode(byte) : decode(byte);
    if (!map.has(char)) map.set(char === '' || char === '\ufffd' ? String.fromCharCode(byte) : char, byte);
  }
  return map;
}

function decoderFor(label: string): (byte: number) => string {
  const decoder = new TextDecoder(label);
  return (byte) => decoder.decode(Uint8Array.of(byte));
}

/**
 * The encodings UTF-8 text gets misread in, in ftfy's order: Latin-1 and Windows-1252, then
 * Cyrillic, Central European, Greek, Turkish, Baltic, ISO Latin-2 and Mac Roman.
 */
const ENCODINGS: ReadonlyMap<string, number>[] = [
  singleByteEncoding((byte) => String.fromCharCode(byte)),
  singleByteEncoding((byte) => (byte <= 0x9f ? WINDOWS_1252_C1[byte - 0x80] : String.fromCharCode(byte))),
  ...['windows-1251', 'windows-1250', 'windows-1253', 'windows-1254', 'windows-1257', 'iso-8859-2', 'macintosh'].map((label) => singleByteEncoding(decoderFor(label))),
];

function strictUtf8(bytes: Uint8Array): string | undefined {
  return firstInvalidUtf8(bytes) === undefined ? Buffer.from(bytes).toString('utf8') : undefined;
}

/** The text's bytes in that single-byte encoding, read as UTF-8; undefined when either step fails. */
function reread(text: string, encoding: ReadonlyMap<string, number>): string | undefined {
  const bytes: number[] = [];
  for (const char of text) {
    const byte = encoding.get(char);
    if (byte === undefined) return undefined;
    bytes.push(byte);
  }
  return strictUtf8(Uint8Array.from(bytes));
}

/**
 * Mojibake repaired: text holding UTF-8 sequences shown as Latin-1 or Windows-1252 characters is
 * re-read as UTF-8 whole when it can be, else each such sequence on its own. Text without such a
 * sequence is returned as it is. Exported for the caption check that names the intended text.
 */
export function fixMojibake(text: string): string {
  if (!/[^\x00-\x7f]/.test(text) || !worthRereading(text)) return text;
  for (const encoding of ENCODINGS) {
    const whole = reread(text, encoding);
    if (whole !== undefined && whole !== text) return whole;
  }
  // Mixed with good text: each run of UTF-8 sequences in some encoding's characters, on its own,
  // in the first encoding that re-reads it.
  return text.replace(ANY_ENCODING_RUN, (run) => {
    if (!worthRereading(run)) return run;
    for (const encoding of ENCODINGS) {
      const fixed = reread(run, encoding);
      if (fixed !== undefined && fixed !== run) return fixed;
    }
    return run;
  });
}

/**
 * Text all in Windows-1252's characters may well be Western text as written: only a sure sign makes
 * it mojibake. Other scripts' letters do not form valid UTF-8 by chance: a re-reading is the sign.
 */
function worthRereading(text: string): boolean {
  const western = [...text].every((char) => ENCODINGS[1].has(char));
  return !western || Array.from(text.matchAll(UTF8_AS_SINGLE_BYTES), (match) => match[0]).some(looksMisdecoded);
}

/** Characters of any of the encodings for a byte range: what a run of misread UTF-8 can be made of. */
function charactersFor(from: number, to: number): string {
  const chars = new Set<string>();
  for (const encoding of ENCODINGS) for (const [char, byte] of encoding) if (byte >= from && byte <= to) chars.add(char);
  return [...chars].map((char) => char.replace(/[\\\]^-]/g, '\\$&')).join('');
}
const ANY_CONTINUATION = `[${charactersFor(0x80, 0xbf)}]`;
const ANY_ENCODING_RUN = new RegExp(
  `(?:[${charactersFor(0xc2, 0xdf)}]${ANY_CONTINUATION}|[${charactersFor(0xe0, 0xef)}]${ANY_CONTINUATION}{2}|[${charactersFor(0xf0, 0xf4)}]${ANY_CONTINUATION}{3})+`,
  'gu',
);
