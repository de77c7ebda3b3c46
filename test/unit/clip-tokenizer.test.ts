import { loadClipTokenizer } from '../../adapters/clip';
import { ClipTokenizer, END_OF_TEXT, START_OF_TEXT } from '../../lib/clip/tokenizer';

let tokenizer: ClipTokenizer;

beforeAll(async () => {
  tokenizer = await loadClipTokenizer();
});

/** The cleaned text each token came from. */
function spans(text: string): string[] {
  const { text: cleaned, tokens } = tokenizer.tokenize(text);
  return tokens.map((token) => cleaned.slice(token.start, token.end));
}

describe('ClipTokenizer', () => {
  it('matches the reference vector in DESIGN.md', () => {
    expect([START_OF_TEXT, ...tokenizer.encode('a photo of a cat'), END_OF_TEXT]).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
  });

  it('cleans before splitting: case, runs of whitespace and HTML references do not change the ids', () => {
    const ids = tokenizer.encode('a photo of a cat & dog');
    expect(tokenizer.encode('  A\tPHOTO  of\na Cat &amp; Dog ')).toEqual(ids);
  });

  it('splits contractions, letter runs, single digits and punctuation runs, then applies the merges', () => {
    // "!!," is one pre-token that BPE splits into "!!" and ",".
    expect(spans("it's 2024!!, (smile:1.2)")).toEqual(['it', "'s", '2', '0', '2', '4', '!!', ',', '(', 'smile', ':', '1', '.', '2', ')']);
  });

  it('makes the literal special tokens one token each, as transformers does, cleaning the text around them on its own', () => {
    expect(tokenizer.encode('<|startoftext|><|endoftext|>')).toEqual([START_OF_TEXT, END_OF_TEXT]);
    const { text, tokens } = tokenizer.tokenize('A cat<|endoftext|>  &amp; Dog');
    expect(tokens.map((t) => t.id)).toEqual([...tokenizer.encode('a cat'), END_OF_TEXT, ...tokenizer.encode('& dog')]);
    expect(text).toBe('a cat <|endoftext|> & dog');
    expect(text.slice(tokens[2].start, tokens[2].end)).toBe('<|endoftext|>');
    // open_clip's own names are ordinary text here.
    expect(tokenizer.encode('<start_of_text>')).not.toContain(START_OF_TEXT);
  });

  it('gives every token the span of cleaned text it covers, whole characters even when bytes are split', () => {
    const { text, tokens } = tokenizer.tokenize('Antidisestablishmentarianism 東京タワー 👩‍💻');
    expect(text).toBe('antidisestablishmentarianism 東京タワー 👩‍💻');
    expect(tokens.length).toBeGreaterThan(6);
    for (const [i, token] of tokens.entries()) {
      expect(token.end).toBeGreaterThan(token.start);
      if (i > 0) expect(token.start).toBeGreaterThanOrEqual(tokens[i - 1].start);
    }
    // The pieces of a long word tile it exactly.
    const word = tokens.filter((token) => token.end <= 'antidisestablishmentarianism'.length);
    expect(word.map((token) => text.slice(token.start, token.end)).join('')).toBe('antidisestablishmentarianism');
    expect(word.length).toBeGreaterThan(1);
    // No span starts or ends inside a surrogate pair.
    for (const token of tokens) {
      expect(text.slice(token.start, token.end)).not.toMatch(/^[\udc00-\udfff]|[\ud800-\udbff]$/);
    }
  });

  it('caches nothing wrong: the same word gives the same ids in different captions', () => {
    const alone = tokenizer.encode('photorealistic');
    expect(tokenizer.encode('photorealistic, photorealistic')).toEqual([...alone, 267, ...alone]);
  });

  it('refuses a merges file that is too short, saying what it expected', () => {
    expect(() => new ClipTokenizer('#version: 0.2\ni n\nt h')).toThrow(/expected at least 48894 merge lines after the header, got 2/);
  });
});
