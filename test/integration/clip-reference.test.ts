/**
 * The TypeScript CLIP tokenizer against what sd-scripts truncates captions with: transformers'
 * CLIPTokenizer (with ftfy), built offline from the same merges and run by the venv's Python on a
 * few hundred generated captions: tags, prose past 225 tokens, HTML entities, literal special
 * tokens, emoji, CJK, combining marks, mojibake.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { loadClipTokenizer } from '../../adapters/clip';
import { fixText } from '../../lib/clip/ftfy';
import type { ClipTokenizer } from '../../lib/clip/tokenizer';
import { installedTools } from '../../scripts/tools';
import { mulberry32 } from '../../lib/random';

interface Reference {
  ids: number[];
  /** ftfy.fix_text(caption) */
  fixed: string;
}

function transformersReference(captions: string[]): Reference[] {
  const output = execFileSync(installedTools().python, [path.join(__dirname, '..', 'support', 'hf-clip-reference.py')], {
    input: JSON.stringify(captions),
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(output.toString('utf8')) as Reference[];
}


const POOLS: Record<string, readonly string[]> = {
  tags: [
    '1girl', 'solo', 'long hair', 'blue eyes', 'smile', 'looking at viewer', 'masterpiece', 'best quality',
    'outdoors', 'cloudy sky', 'photorealistic', 'portrait', 'sks dog', 'ohwx man', 'highres', '8k uhd', 'dslr',
    'film grain', 'bokeh', 'upper body', 'Watercolor Painting', 'CYBERPUNK', 'wide-angle lens', 'close_up',
    'photograph of a woman walking through a market at dusk', 'unbelievably', 'antidisestablishmentarianism',
  ],
  weights: ['(masterpiece:1.2)', '((best quality))', '[blurry]', '{detailed}', '(red hair:0.8)', '<lora:style_v2:0.7>', '(smile)'],
  accents: ['café', 'naïve', 'Ångström', 'crème brûlée', 'São Paulo', 'Zürich', 'Ærø', 'Łódź', 'İstanbul', 'straße', 'ΣΟΦΙΑ ΟΔΟΣ', 'Москва', 'Ελληνικά', 'façade', 'piñata'],
  cjk: ['日本語', '東京タワー', '한국어', '中文标签', 'ひらがな', 'カタカナ', '漢字かな交じり文', '猫耳'],
  emoji: ['🐱', '👍🏽', '👩‍💻', '❤️', '🇯🇵', '✨', '🔥🔥', '😀😃😄'],
  punctuation: ['!!!', '...', '—', '-', '/', '\\', '@user', '#hashtag', '$100', '50%', 'a&b', '"quoted"', "'single'", '?!', '::', '~', '*', '|'],
  contractions: ["don't", "it's", "we're", "they've", "I'm", "you'll", "he'd", "SHE'S", "rock'n'roll", "'tis", "o'clock"],
  numbers: ['2024', '3.14', '1/2', '½', '²', 'Ⅻ', '٣', '1,000,000', '4k', 'v1.5', '0'],
  // What ftfy repairs: pasted typography, full-width forms, decomposed accents, stray controls.
  ftfy: [
    '“smart quotes”', '‘single’', 'don’t', '„low“', 'ʼokina', 'ﬁne ﬂowers', 'ﬀ ﬃ ﬄ ﬅ ﬆ', 'ĳsselmeer', 'ǅemal', 'Ǉ ǈ ǉ Ǌ ǋ ǌ ŉ',
    'ＦＵＬＬ　ＷＩＤＴＨ', '（笑）', 'ｶﾀｶﾅ', '＠ｕｓｅｒ', 'cafe\u0301', 'A\u030a', '\u001b[1mbold\u001b[0m', '\u001b[31;1mred', 'a\u0000b',
    'x\u0093quoted\u0094', '\u0080 \u0081', 'zero\u200bwidth', '\ufeffbom', 'soft\u00adhyphen', 'in\u206avisible', '\ufffcobj',
    'line\r\nbreak', 'para\u2029graph', 'next\u0085line', '&EACUTE;', '&NTILDE;', '&SZLIG;', '&alpha;', '&Alpha;', '&amp;amp;amp;amp;',
    '&#x27;', '&#xZZ;', '&hearts;', '&HEARTS;', '&notin;', '&NOTIN;',
  ],
  entities: ['&amp;', '&quot;hi&quot;', '&#39;', '&lt;3', '&gt;', '&nbsp;', '&#x1F600;', '&eacute', 'caf&eacute;', '&copy; 2024', '&amp;amp;', '&#233;'],
  // transformers makes these one token each (and cleans the text on either side on its own).
  special: ['<|endoftext|>', '<|startoftext|>', 'a<|endoftext|>b', '<|ENDOFTEXT|>', '<|endoftext|', '<start_of_text>', '<|endoftext|><|endoftext|>'],
  combining: ['cafe\u0301', 'n\u0303o', 'Z\u0351\u0362a\u0335l\u0337g\u0334o', 'a\u0308\u0304', '\u0915\u094d\u0937', 'e\u20dd'],
  // UTF-8 read as Latin-1 or Windows-1252, as pasted from a mis-decoded web page or file.
  mojibake: [
    'cafÃ©', 'naÃ¯ve', 'donâ€™t', 'â€œquotedâ€\u009d', 'æ—¥æœ¬èªž', 'ðŸ˜€', 'SÃ£o Paulo', 'Ã…ngstrÃ¶m', 'crÃ¨me brÃ»lÃ©e', 'ZÃ¼rich', 'â€“ dash', 'Ã±',
    // read as Windows-1251, 1250, 1253; twice misread
    'РїСЂРёРІРµС‚', 'Ð¼Ð¾Ñ\u0081ÐºÐ²Ð°', 'Ð¼Ð¾ÑÐºÐ²Ð°', 'Ĺ»Ăłlw', 'Î±Î²Î³', 'ÃƒÂ©',
  ],
};
const hasMojibake = (caption: string) => POOLS.mojibake.some((piece) => caption.includes(piece));

const SEPARATORS = [', ', ',', ' ', ' , ', '  ', '\t', ',\n', ' ,  ', ', ,'];

function generatedCaptions(count: number): string[] {
  const random = mulberry32(0x5eed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const pools = Object.values(POOLS);
  const captions: string[] = [];
  for (let i = 0; i < count; i += 1) {
    // Every tenth caption is long: well past 75 and often past 225 tokens.
    const pieces = 1 + Math.floor(random() * (i % 10 === 0 ? 120 : 12));
    let caption = random() < 0.2 ? '  ' : '';
    for (let p = 0; p < pieces; p += 1) caption += (p > 0 ? pick(SEPARATORS) : '') + pick(pick(pools));
    captions.push(caption + (random() < 0.2 ? ' \n' : ''));
  }
  return captions;
}

const FIXED = [
  // ftfy works line by line and stops unescaping entities from the first line holding a "<".
  '&amp;amp;amp;\n<b>&amp;amp;amp;</b>\n&amp;amp;amp;',
  'x<y &amp;amp;amp;',
  '&amp;amp;amp;amp; no markup',
  'lone \ud800 surrogate \udc00 halves',
  'a photo of a cat',
  '',
  '   ',
  'x',
  'A Photo Of A Cat',
  '<start_of_text> literally',
  'abc<end_of_text>def',
  'a &amp; b<|endoftext|>c &amp; d',
  '<b>x</b> &amp;<|endoftext|>&amp; y',
  'café cafÃ© mixed',
  "it'sn't 'S 'll've",
  "ſ x'ſ ẞ \u212a",
];

let tokenizer: ClipTokenizer;
let captions: string[];
let reference: Reference[];

beforeAll(async () => {
  tokenizer = await loadClipTokenizer();
  captions = [...FIXED, ...generatedCaptions(1000)];
  reference = transformersReference(captions);
});

describe('CLIP tokenizer vs transformers\' CLIPTokenizer (what sd-scripts truncates with)', () => {
  it('covers a thousand distinct captions, unicode and long ones included', () => {
    expect(new Set(captions).size).toBeGreaterThan(950);
    expect(captions.some((c) => /\p{Script=Han}/u.test(c) && /\p{Extended_Pictographic}/u.test(c))).toBe(true);
    expect(reference.filter((r) => r.ids.length > 225).length).toBeGreaterThan(5);
  });

  it("applies ftfy's fixes exactly like ftfy.fix_text, mojibake repair all but exactly", () => {
    const mismatches = captions.flatMap((caption, i) => (fixText(caption) === reference[i].fixed ? [] : [{ caption, ours: fixText(caption), ftfy: reference[i].fixed }]));
    // ftfy weighs mojibake by a heuristic of its own; everything else must be exact.
    expect(mismatches.filter(({ caption }) => !hasMojibake(caption))).toEqual([]);
    expect(mismatches.length).toBeLessThanOrEqual(captions.length / 100);
    // Not vacuous: ftfy changed many of the captions, mojibake in many of them.
    expect(captions.filter((caption, i) => reference[i].fixed !== caption).length).toBeGreaterThan(300);
    expect(captions.filter((caption, i) => hasMojibake(caption) && reference[i].fixed !== caption).length).toBeGreaterThan(100);
  });

  it('produces the same ids for at least 99 % of the captions, and for every one without mojibake', () => {
    const mismatches = captions.flatMap((caption, i) => {
      const ids = tokenizer.encode(caption);
      const expected = reference[i].ids;
      return ids.length === expected.length && ids.every((id, k) => id === expected[k]) ? [] : [{ caption, ids, expected }];
    });
    console.log(`CLIP ids identical to transformers' CLIPTokenizer for ${captions.length - mismatches.length} of ${captions.length} captions`);
    expect(mismatches.filter(({ caption }) => !hasMojibake(caption))).toEqual([]);
    expect(mismatches.length).toBeLessThanOrEqual(captions.length / 100);
    // Not a vacuous comparison: the ids are real token sequences of many different lengths.
    expect(new Set(reference.map((r) => r.ids.length)).size).toBeGreaterThan(50);
  });

  it('decides every truncation as sd-scripts does, at 75, 150 and 225 tokens', () => {
    const limits = [75, 150, 225];
    const decisions = captions.flatMap((caption, i) => limits.map((limit) => [tokenizer.encode(caption).length > limit, reference[i].ids.length > limit]));
    expect(decisions.filter(([ours, theirs]) => ours !== theirs)).toEqual([]);
    expect(decisions.filter(([, theirs]) => theirs).length).toBeGreaterThan(20);
  });

  it('agrees on numeric and named HTML character references, which only ftfy unescapes', () => {
    const references = [
      '&#0; &#13; &#11; &#127; &#128; &#129; &#150; &#159; &#xD800; &#x110000; &#99999999999; &#65534; &#x1FFFF; &#xfdd0;',
      '&amp &AMP; &lt &GT &QUOT; &nbsp &iexcl; &yuml &szlig; &times; &divide &copy &COPY; &reg &REG;',
      '&apos; &hellip; &ndash; &mdash; &bull; &trade; &euro; &larr; &rarr; &hearts; &star; &starf;',
      '&ampx &notit; &copyright &eacutex &frac12; &frac12x &unknown; &; &# &#x; & amp; &AElig &aelig;',
      '&amp;lt; &amp;#233; &amp;amp;amp;',
    ];
    const expected = transformersReference(references);
    expect(references.map((text) => tokenizer.encode(text))).toEqual(expected.map((r) => r.ids));
    expect(references.map(fixText)).toEqual(expected.map((r) => r.fixed));
  });
});
