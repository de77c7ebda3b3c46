import {
  CaptionCheckInput,
  CaptionRule,
  checkCaptions,
  emptyCaption,
  invalidUtf8,
  missingCaption,
  orphanCaption,
} from '../../lib/captions/rules';

const clean: CaptionCheckInput = {
  images: [
    { file: 'a.jpg', caption: 'sks dog on a beach' },
    { file: 'b.png', caption: 'sks dog, sitting\n' },
  ],
  orphanCaptions: [],
};

describe('caption rules', () => {
  it('finds nothing in a clean dataset', () => {
    expect(checkCaptions(clean)).toEqual({ issues: [], counts: { error: 0, warning: 0, info: 0 } });
  });

  it('missing-caption: an image without caption is an error naming the image and its caption file', () => {
    const issues = missingCaption({ images: [...clean.images, { file: 'c.jpeg', caption: null }], orphanCaptions: [] });
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ rule: 'missing-caption', severity: 'error', file: 'c.jpeg' });
    expect(issues[0].message).toContain('c.jpeg');
    expect(issues[0].message).toContain('c.txt');
    expect(issues[0].message).toMatch(/class tokens/);
    expect(issues[0].fix).toContain('c.txt');
  });

  it.each([
    ['an empty file', '', /is empty: sd-scripts aborts training/],
    ['whitespace only', '  \t\r\n \n', /only whitespace/],
    ['a blank first line', '\nsks dog', /first line/],
  ])('empty-caption: %s is an error naming the caption file', (_label, caption, why) => {
    const issues = emptyCaption({ images: [...clean.images, { file: 'd.webp', caption }], orphanCaptions: [] });
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ rule: 'empty-caption', severity: 'error', file: 'd.txt' });
    expect(issues[0].message).toContain('d.txt');
    expect(issues[0].message).toContain('d.webp');
    expect(issues[0].message).toMatch(why);
    expect(issues[0].fix).toContain('d.txt');
  });

  it('invalid-utf8: a caption that is not UTF-8 is an error naming the caption file', () => {
    const input = { images: [{ file: 'e.bmp', caption: 'caf\uFFFD', validUtf8: false }], orphanCaptions: [] };
    const issues = invalidUtf8(input);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ rule: 'invalid-utf8', severity: 'error', file: 'e.txt' });
    expect(issues[0].message).toContain('e.txt');
    expect(issues[0].message).toMatch(/not valid UTF-8/);
    // The same caption is not also reported as empty.
    expect(emptyCaption({ images: [{ file: 'e.bmp', caption: '', validUtf8: false }], orphanCaptions: [] })).toEqual([]);
  });

  it('orphan-caption: a caption without image is a warning naming the caption file', () => {
    const issues = orphanCaption({ images: clean.images, orphanCaptions: ['lonely.txt'] });
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ rule: 'orphan-caption', severity: 'warning', file: 'lonely.txt' });
    expect(issues[0].message).toContain('lonely.txt');
    expect(issues[0].fix).toContain('lonely.png');
  });

  it('checkCaptions runs every rule, counts by severity and lists errors first', () => {
    const result = checkCaptions({
      images: [
        { file: 'a.jpg', caption: null },
        { file: 'b.jpg', caption: ' ' },
        { file: 'c.jpg', caption: 'fine' },
      ],
      orphanCaptions: ['0-orphan.txt'],
    });
    expect(result.counts).toEqual({ error: 2, warning: 1, info: 0 });
    expect(result.issues.map((i) => [i.rule, i.file])).toEqual([
      ['missing-caption', 'a.jpg'],
      ['empty-caption', 'b.txt'],
      ['orphan-caption', '0-orphan.txt'],
    ]);
  });

  it('takes extra rules without touching the built-in ones', () => {
    const shout: CaptionRule = ({ images }) =>
      images
        .filter((i) => i.caption !== null && i.caption === i.caption.toUpperCase())
        .map((i) => ({ rule: 'missing-caption', severity: 'info', file: i.file, message: `${i.file} shouts`, fix: 'calm down' }));
    const result = checkCaptions({ images: [{ file: 'x.png', caption: 'LOUD' }], orphanCaptions: [] }, [shout]);
    expect(result.counts).toEqual({ error: 0, warning: 0, info: 1 });
    expect(result.issues[0].message).toBe('x.png shouts');
  });
});
