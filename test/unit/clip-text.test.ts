import { fixMojibake, fixText } from '../../lib/clip/ftfy';
import { htmlUnescape } from '../../lib/clip/html';
import { cleanText, collapseWhitespace, pythonStrip } from '../../lib/clip/text';

describe('Python whitespace', () => {
  it('strips what str.strip() strips and keeps what it keeps (a BOM is not whitespace in Python)', () => {
    expect(pythonStrip('\u3000\x1c a b \x85\u00a0')).toBe('a b');
    expect(pythonStrip('\ufeffa\ufeff')).toBe('\ufeffa\ufeff');
  });

  it('collapses runs like " ".join(text.split())', () => {
    expect(collapseWhitespace(' a\t\tb\n\u2003c  ')).toBe('a b c');
    expect(collapseWhitespace('a\u200bb')).toBe('a\u200bb');
  });
});

describe('htmlUnescape', () => {
  it.each([
    ['&amp; &lt;3 &gt; &quot;q&quot;', '& <3 > "q"'],
    ['caf&eacute; caf&eacute', 'café café'],
    ['&#233; &#xE9; &#XE9', 'é é é'],
    ['&#150; &#128;', '\u2013 \u20ac'],
    ['a&#1;b&#xFFFE;c', 'abc'],
    ['&#0; &#xD800; &#x110000;', '\ufffd \ufffd \ufffd'],
    ['&ampx &notit; &copyright', '&x ¬it; ©right'],
    ['&unknown; &alpha; & amp; &#;', '&unknown; α & amp; &#;'],
    ['&hellip; &rsquo; &hellip', '\u2026 \u2019 &hellip'],
  ])('%j → %j', (input, expected) => {
    expect(htmlUnescape(input)).toBe(expected);
  });
});

describe('cleanText', () => {
  it('unescapes twice, collapses whitespace and lower-cases', () => {
    expect(cleanText('  Caf&amp;eacute;\tAU  LAIT &amp;amp; ΣΟΦΙΑ ')).toBe('café au lait & σοφια');
  });
});

describe('fixText (ftfy.fix_text without mojibake repair)', () => {
  it.each([
    ['“smart” ‘quotes’ don’t', '"smart" \'quotes\' don\'t'],
    ['ﬁne ﬂowers, ĳs', 'fine flowers, ijs'],
    ['ＦＵＬＬ　ＷＩＤＴＨ（笑）', 'FULL WIDTH(笑)'],
    ['cafe\u0301', 'caf\u00e9'],
    ['\u001b[1mbold\u001b[0m a\u0000b \ufeffc', 'bold ab c'],
    ['x\u0093y\u0094', 'x"y"'],
    ['a\r\nb\u2028c', 'a\nb\nc'],
    ['&EACUTE; &amp;amp;amp; &#xZZ;', 'É & &#xZZ;'],
    ['&amp;amp;\n<i>&amp;amp;</i>\n&amp;amp;', '&\n<i>&amp;amp;</i>\n&amp;amp;'],
    ['lone \ud800 half', 'lone \ufffd half'],
  ])('%j → %j', (input, expected) => {
    expect(fixText(input)).toBe(expected);
  });

  it('leaves ordinary captions alone', () => {
    const caption = 'sks dog, (masterpiece:1.2), 日本語, café, 👩‍💻\n';
    expect(fixText(caption)).toBe(caption);
  });
});

describe('fixMojibake', () => {
  it.each([
    ['cafÃ©', 'café'],
    ['donâ€™t stop', 'don\u2019t stop'],
    ['РїСЂРёРІРµС‚', 'привет'],
    ['Ð¼Ð¾Ñ\u0081ÐºÐ²Ð°', 'москва'],
    ['Ĺ»Ăłlw', 'Żólw'],
    ['Î±Î²Î³', 'αβγ'],
    ['café cafÃ©', 'café café'],
  ])('repairs %j as %j', (text, repaired) => {
    expect(fixMojibake(text)).toBe(repaired);
  });

  it.each(['café', 'привет мир', 'Ελληνικά', 'Zażółć gęślą', 'Ã… maybe', 'plain'])('leaves %j alone', (text) => {
    expect(fixMojibake(text)).toBe(text);
  });
});
