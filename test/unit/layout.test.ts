import {
  captionNameFor,
  isCaptionFile,
  isImageFile,
  kohyaFolderName,
  kohyaImageName,
  parseKohyaFolder,
  stemOf,
} from '../../lib/kohya/layout';

describe('isImageFile', () => {
  it.each(['a.png', 'a.jpg', 'a.jpeg', 'a.webp', 'a.bmp', 'IMG_1.JPG', 'b.PNG', 'c.JpEg'])('reads %s', (name) => {
    expect(isImageFile(name)).toBe(true);
  });

  it.each(['a.gif', 'a.tiff', 'a.txt', 'png', 'a.png.bak', '.png', 'a.heic'])('does not read %s', (name) => {
    expect(isImageFile(name)).toBe(false);
  });
});

describe('isCaptionFile', () => {
  it('accepts .txt in any case and nothing else', () => {
    expect(isCaptionFile('a.txt')).toBe(true);
    expect(isCaptionFile('a.TXT')).toBe(true);
    expect(isCaptionFile('a.caption')).toBe(false);
    expect(isCaptionFile('a.txt.png')).toBe(false);
    expect(isCaptionFile('.txt')).toBe(false);
  });
});

describe('stemOf and captionNameFor', () => {
  it('drops only the last extension', () => {
    expect(stemOf('a.b.jpg')).toBe('a.b');
    expect(stemOf('noext')).toBe('noext');
    expect(stemOf('.hidden')).toBe('.hidden');
  });

  it('puts the caption beside the image with .txt', () => {
    expect(captionNameFor('a.jpg')).toBe('a.txt');
    expect(captionNameFor('IMG 1.JPEG')).toBe('IMG 1.txt');
    expect(captionNameFor('a.b.png')).toBe('a.b.txt');
  });

  it('names processed images as PNG', () => {
    expect(kohyaImageName('a')).toBe('a.png');
    expect(kohyaImageName('a.b')).toBe('a.b.png');
  });
});

describe('kohya folders', () => {
  it('parses <repeats>_<concept>, splitting at the first underscore', () => {
    expect(parseKohyaFolder('10_sks dog')).toEqual({ repeats: 10, concept: 'sks dog' });
    expect(parseKohyaFolder('3_my_concept')).toEqual({ repeats: 3, concept: 'my_concept' });
  });

  it.each(['0_dog', 'x_dog', '10dog', '_dog', '10_', '-1_dog', '1.5_dog'])('rejects %s as sd-scripts does', (name) => {
    expect(parseKohyaFolder(name)).toBeUndefined();
  });

  it('builds a folder name that parses back', () => {
    expect(parseKohyaFolder(kohyaFolderName(25, 'my_cat'))).toEqual({ repeats: 25, concept: 'my_cat' });
  });

  it('refuses repeats below 1 and concepts with path separators', () => {
    expect(() => kohyaFolderName(0, 'dog')).toThrow(/repeats must be an integer ≥ 1.*got 0/);
    expect(() => kohyaFolderName(1, 'a/b')).toThrow(/concept.*"a\/b"/);
  });
});
