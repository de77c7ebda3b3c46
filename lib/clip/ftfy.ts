/**
 * `ftfy.fix_text` with its default settings (ftfy 6), which open_clip runs on every caption before
 * the BPE: curly quotes, Latin ligatures, full-width forms, C1 controls, terminal escapes, control
 * characters, line breaks, lone surrogates, HTML entities, NFC. Its mojibake repair (`fix_encoding`,
 * guessing that "cafÃ©" was "café" read in the wrong encoding) is heuristic and not replicated:
 * such a caption may count differently here. Pure; checked against ftfy in
 * test/integration/clip-reference.test.ts.
 */
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
    text = text
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
