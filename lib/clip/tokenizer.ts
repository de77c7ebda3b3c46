/**
 * CLIP's byte-level BPE tokenizer as sd-scripts applies it: Hugging Face transformers' (slow)
 * `CLIPTokenizer` for "openai/clip-vit-large-patch14", whose ids decide where training cuts a caption.
 * It splits the caption on the literal special tokens first (`<|endoftext|>` is one token), then
 * cleans each piece with ftfy, whitespace and lower case (no HTML unescaping, unlike open_clip),
 * then runs the BPE. The merges text (open_clip's bpe_simple_vocab_16e6.txt, the same BPE) is passed
 * in; reading it is the caller's job. Pure; checked against transformers in
 * test/integration/clip-reference.test.ts.
 */
import { cleanText, PYTHON_WHITESPACE } from './text';

export const START_OF_TEXT = 49406;
export const END_OF_TEXT = 49407;

/** CLIP's vocabulary is 49408 ids: 256 bytes, 256 word-final bytes, these merges, 2 special tokens. */
const MERGE_COUNT = 49152 - 256 - 2;
const SPECIAL_TOKENS = ['<|startoftext|>', '<|endoftext|>'] as const;
/** transformers cuts the raw caption at its added tokens' literal text before anything else. */
const SPECIAL_TOKEN_SPLIT = /(<\|startoftext\|>|<\|endoftext\|>)/;
const END_OF_WORD = '</w>';

/**
 * Every byte as a printable character: printable Latin-1 bytes stand for themselves, the others
 * (controls, space, 0x7F-0xA0, 0xAD) are moved to U+0100 and up, in byte order.
 */
function byteCharacters(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const chars: string[] = [];
  let shifted = 0;
  for (let b = 0; b < 256; b += 1) chars[b] = String.fromCharCode(printable(b) ? b : 256 + shifted++);
  return chars;
}

/** The CLIP split pattern: special tokens, English contractions, letter runs, single digits, other runs. */
const PRE_TOKEN = new RegExp(
  `${SPECIAL_TOKENS.map((token) => token.replace(/\|/g, '\\|')).join('|')}|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${PYTHON_WHITESPACE}\\p{L}\\p{N}]+`,
  'giu',
);

/** One token and the part of the cleaned text it came from (UTF-16 offsets, whole characters). */
export interface ClipToken {
  id: number;
  start: number;
  end: number;
}

export interface ClipTokenization {
  /** The cleaned text the offsets refer to (ftfy, whitespace collapsed, lower case; pieces joined by a space). */
  text: string;
  /** Without the start/end tokens. */
  tokens: ClipToken[];
}

/** A pre-token's BPE pieces: vocabulary id and how many UTF-8 bytes of the word each covers. */
interface Piece {
  id: number;
  bytes: number;
}

/** Pre-tokens repeat a lot (tags, punctuation); bounded so a long-lived worker does not grow forever. */
const CACHE_LIMIT = 100_000;

export class ClipTokenizer {
  private readonly byteChars = byteCharacters();
  private readonly encoder = new Map<string, number>();
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, Piece[]>();
  private readonly utf8 = new TextEncoder();

  /** `mergesText` is the decompressed bpe_simple_vocab_16e6.txt: a header line, then one merge per line. */
  constructor(mergesText: string) {
    const merges = mergesText.split('\n').slice(1, MERGE_COUNT + 1);
    if (merges.length !== MERGE_COUNT) {
      throw new Error(`CLIP merges: expected at least ${MERGE_COUNT} merge lines after the header, got ${merges.length}`);
    }
    // Printable bytes keep their code point (< 256) and the shifted ones follow, so code point order
    // is the order Python's dict gives them.
    const vocabulary = [...this.byteChars].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0));
    vocabulary.push(...vocabulary.map((c) => c + END_OF_WORD));
    merges.forEach((line, rank) => {
      const pair = line.split(/\s+/).filter(Boolean);
      if (pair.length !== 2) throw new Error(`CLIP merges: line ${rank + 2} is not a pair of symbols: "${line}"`);
      this.ranks.set(`${pair[0]} ${pair[1]}`, rank);
      vocabulary.push(pair[0] + pair[1]);
    });
    vocabulary.push(...SPECIAL_TOKENS);
    // Later duplicates win, as in Python's dict(zip(vocab, range(...))).
    vocabulary.forEach((token, id) => this.encoder.set(token, id));
  }

  /** Token ids without the start/end tokens, like open_clip's `SimpleTokenizer.encode`. */
  encode(text: string): number[] {
    return this.tokenize(text).tokens.map((token) => token.id);
  }

  /** Tokens with the span of cleaned text each came from, to show where a caption would be cut. */
  tokenize(text: string): ClipTokenization {
    let cleaned = '';
    const tokens: ClipToken[] = [];
    for (const part of text.split(SPECIAL_TOKEN_SPLIT)) {
      const isSpecial = (SPECIAL_TOKENS as readonly string[]).includes(part);
      const piece = isSpecial ? part : cleanText(part);
      if (piece === '') continue;
      const base = cleaned === '' ? 0 : cleaned.length + 1;
      cleaned = cleaned === '' ? piece : `${cleaned} ${piece}`;
      if (isSpecial) tokens.push({ id: this.encoder.get(part) as number, start: base, end: base + part.length });
      else this.tokenizeCleaned(piece, base, tokens);
    }
    return { text: cleaned, tokens };
  }

  /** BPE tokens of one cleaned piece, their offsets shifted by `base`. */
  private tokenizeCleaned(cleaned: string, base: number, tokens: ClipToken[]): void {
    for (const match of cleaned.matchAll(PRE_TOKEN)) {
      const word = match[0];
      const wordStart = base + (match.index ?? 0);
      // Characters of the word with their UTF-8 lengths, to turn byte spans back into text offsets.
      const charBytes = Array.from(word, (char) => ({ length: char.length, bytes: this.utf8.encode(char).length }));
      let char = 0;
      let offset = wordStart;
      let byteInChar = 0;
      for (const piece of this.piecesOf(word)) {
        const start = offset;
        let remaining = piece.bytes;
        while (remaining > 0) {
          const take = Math.min(remaining, charBytes[char].bytes - byteInChar);
          remaining -= take;
          byteInChar += take;
          if (byteInChar === charBytes[char].bytes) {
            offset += charBytes[char].length;
            char += 1;
            byteInChar = 0;
          }
        }
        // A piece ending inside a multi-byte character still covers that character.
        const end = byteInChar > 0 ? offset + charBytes[char].length : offset;
        tokens.push({ id: piece.id, start, end });
      }
    }
  }

  private piecesOf(word: string): Piece[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    const special = (SPECIAL_TOKENS as readonly string[]).includes(word);
    const symbols = special ? [word] : this.bpe(Array.from(this.utf8.encode(word), (b) => this.byteChars[b]));
    const pieces = symbols.map((symbol) => {
      const id = this.encoder.get(symbol);
      if (id === undefined) throw new Error(`CLIP BPE produced "${symbol}", which is not in the vocabulary`);
      const bytes = special ? this.utf8.encode(word).length : symbol.length - (symbol.endsWith(END_OF_WORD) ? END_OF_WORD.length : 0);
      return { id, bytes };
    });
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, pieces);
    return pieces;
  }

  /** Merge the lowest-ranked adjacent pair, everywhere left to right, until no pair is a merge. */
  private bpe(byteSymbols: string[]): string[] {
    let symbols = byteSymbols;
    symbols[symbols.length - 1] += END_OF_WORD;
    while (symbols.length > 1) {
      let best: string | undefined;
      let bestRank = Infinity;
      for (let i = 0; i < symbols.length - 1; i += 1) {
        const rank = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = `${symbols[i]} ${symbols[i + 1]}`;
        }
      }
      if (best === undefined) break;
      const [first, second] = best.split(' ');
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i += 1) {
        if (symbols[i] === first && symbols[i + 1] === second && i < symbols.length - 1) {
          merged.push(first + second);
          i += 1;
        } else {
          merged.push(symbols[i]);
        }
      }
      symbols = merged;
    }
    return symbols;
  }
}
