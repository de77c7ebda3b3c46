import { cleanText, collapseWhitespace, htmlUnescape, pythonStrip } from '../../lib/clip/text';

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
    ['&unknown; &alpha; & amp; &#;', '&unknown; &alpha; & amp; &#;'],
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
