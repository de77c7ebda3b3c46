import { keyProblem, MAX_FILE_NAME_BYTES, planDataset, type DatasetPlanOptions } from '../../lib/image/dataset';
import { batchCount, batchImages } from '../../lib/image/stage-files';

const options: DatasetPlanOptions = { repeats: 10, concept: 'sks dog', trainDataDir: 'runs/r/dataset', outputExtension: '.png' };

describe('planDataset: a flat folder', () => {
  const plan = planDataset(
    {
      files: ['b.JPG', 'a.jpg', 'a.txt', 'a.png', 'c.tiff', 'c.TXT', 'd.gif', 'e.avif', 'notes.md', 'lonely.txt', 'x\\y.jpg', 'f.heic'],
      folders: ['nested', 'nested/deeper'],
    },
    options,
  );

  it('writes every image into <repeats>_<concept>/ under the output extension', () => {
    expect(plan.layout).toBe('flat');
    expect(plan.folders).toEqual([{ name: '10_sks dog', repeats: 10, concept: 'sks dog' }]);
    expect(plan.images).toEqual([
      { source: 'a.jpg', folder: '10_sks dog', caption: 'a.txt', output: 'runs/r/dataset/10_sks dog/a.png', captionKey: 'runs/r/dataset/10_sks dog/a.txt' },
      { source: 'b.JPG', folder: '10_sks dog', output: 'runs/r/dataset/10_sks dog/b.png', captionKey: 'runs/r/dataset/10_sks dog/b.txt' },
      { source: 'c.tiff', folder: '10_sks dog', caption: 'c.TXT', output: 'runs/r/dataset/10_sks dog/c.png', captionKey: 'runs/r/dataset/10_sks dog/c.txt' },
      { source: 'd.gif', folder: '10_sks dog', output: 'runs/r/dataset/10_sks dog/d.png', captionKey: 'runs/r/dataset/10_sks dog/d.txt' },
      { source: 'e.avif', folder: '10_sks dog', output: 'runs/r/dataset/10_sks dog/e.png', captionKey: 'runs/r/dataset/10_sks dog/e.txt' },
    ]);
  });

  it('skips name collisions, unsafe names and unsupported formats with a reason, and ignores other files', () => {
    expect(plan.skipped).toEqual([
      { source: 'a.png', reason: 'same name as a.jpg: both would be written as a.png; rename one of them' },
      { source: 'f.heic', reason: expect.stringMatching(/^unsupported format: \.heic files are not read/) },
      { source: 'x\\y.jpg', reason: 'the name cannot be used as a store key (it contains "\\"); rename the file' },
    ]);
    expect(plan.orphanCaptions).toEqual(['lonely.txt']);
    expect(plan.ignoredFolders).toEqual(['nested', 'nested/deeper']);
  });

  it('names collisions by the output name of the chosen format', () => {
    const jpeg = planDataset({ files: ['a.jpg', 'a.webp'], folders: [] }, { ...options, outputExtension: '.jpg' });
    expect(jpeg.images.map((i) => i.output)).toEqual(['runs/r/dataset/10_sks dog/a.jpg']);
    expect(jpeg.skipped[0].reason).toContain('both would be written as a.jpg');
  });
});

describe('planDataset: kohya layout', () => {
  const plan = planDataset(
    {
      files: ['10_dog/a.jpg', '10_dog/a.txt', '5_cat/a.png', '5_cat/b.png', '5_cat/z.txt', 'root.jpg', 'readme.txt', 'photos/p.jpg', '0_bad/q.jpg'],
      folders: ['10_dog', '5_cat', '5_cat/raw', 'photos', '0_bad'],
    },
    options,
  );

  it('keeps each folder with its own repeats and name, ignoring the run repeats and concept', () => {
    expect(plan.layout).toBe('kohya');
    expect(plan.folders).toEqual([
      { name: '10_dog', repeats: 10, concept: 'dog' },
      { name: '5_cat', repeats: 5, concept: 'cat' },
    ]);
    expect(plan.images.map((i) => [i.source, i.output, i.caption])).toEqual([
      ['10_dog/a.jpg', 'runs/r/dataset/10_dog/a.png', '10_dog/a.txt'],
      ['5_cat/a.png', 'runs/r/dataset/5_cat/a.png', undefined],
      ['5_cat/b.png', 'runs/r/dataset/5_cat/b.png', undefined],
    ]);
  });

  it('reports images left in the root, and folders sd-scripts would skip', () => {
    expect(plan.skipped).toEqual([{ source: 'root.jpg', reason: expect.stringContaining('in the dataset root, outside the training folders (10_dog/, 5_cat/)') }]);
    expect(plan.ignoredFolders).toEqual(['0_bad', '5_cat/raw', 'photos']);
    expect(plan.orphanCaptions).toEqual(['5_cat/z.txt']);
  });
});

describe('planDataset: names that cannot be written, and entries refused while listing', () => {
  it('skips names with control characters and names whose processed name or key would be too long, naming the limit', () => {
    const long = `${'é'.repeat(125)}.png`; // 254 bytes: as a .webp, 255; its caption 254
    const tooLong = `${'x'.repeat(251)}.png`; // 255 bytes: as a .webp, 256
    const plan = planDataset(
      { files: ['ok.png', 'tab\there.png', 'new\nline.jpg', long, tooLong], folders: [] },
      { ...options, outputExtension: '.webp' },
    );
    expect(plan.images.map((image) => image.source)).toEqual(['ok.png', long]);
    expect(plan.skipped).toEqual([
      { source: 'new\nline.jpg', reason: 'the name contains the control character U+000A at position 3: rename the file' },
      { source: 'tab\there.png', reason: 'the name contains the control character U+0009 at position 3: rename the file' },
      {
        source: tooLong,
        reason: `the processed name ${'x'.repeat(251)}.webp would be 256 bytes, over the ${MAX_FILE_NAME_BYTES}-byte limit on a file name; shorten the name`,
      },
    ]);
    const deep = planDataset({ files: ['a.png'], folders: [] }, { ...options, trainDataDir: `runs/${'r'.repeat(1000)}/dataset` });
    expect(deep.skipped[0].reason).toMatch(/^its store key would be 1030 bytes, over the 1024-byte limit on an S3 key/);
  });

  it('leaves out a folder whose name holds a control character or a backslash, with its files', () => {
    const plan = planDataset(
      { files: ['10_dog/a.png', '5_bad\ncat/b.png', '5_bad\ncat/b.txt', '3_x\\y/c.png'], folders: ['10_dog', '5_bad\ncat', '3_x\\y', '5_bad\ncat/deeper'] },
      options,
    );
    expect(plan.folders.map((folder) => folder.name)).toEqual(['10_dog']);
    expect(plan.images.map((image) => image.source)).toEqual(['10_dog/a.png']);
    expect(plan.ignoredFolders).toEqual([]);
    expect(plan.skipped).toEqual([
      { source: '3_x\\y', reason: 'the folder name cannot be used as a store key (it contains "\\"); rename the folder' },
      { source: '5_bad\ncat', reason: 'the folder name contains the control character U+000A at position 5: rename the folder' },
    ]);
  });

  it('reports what the listing refused beside what planning skipped, in one sorted list', () => {
    const plan = planDataset(
      { files: ['b.png', 'z.heic'], folders: [], refused: [{ source: 'a.png', reason: 'symbolic link leads outside the dataset: never opened' }] },
      options,
    );
    expect(plan.images.map((image) => image.source)).toEqual(['b.png']);
    expect(plan.skipped.map((file) => file.source)).toEqual(['a.png', 'z.heic']);
  });

  it.each([
    ['a.png', undefined],
    ['10_dog/a.png', undefined],
    ['../a.png', 'the key has a ".." path segment: never read'],
    ['10_dog/../../x.png', 'the key has a ".." path segment: never read'],
    ['./a.png', 'the key has a "." path segment: never read'],
    ['10_dog//a.png', 'the key has an empty path segment: never read'],
    ['/a.png', 'the key has an empty path segment: never read'],
  ])('keyProblem(%j) is %j', (key, problem) => {
    expect(keyProblem(key)).toBe(problem);
  });
});

describe('batches', () => {
  it('slices the sorted images into consecutive batches', () => {
    const images = ['a', 'b', 'c', 'd', 'e'];
    expect(batchCount(images.length, 2)).toBe(3);
    expect([0, 1, 2].map((b) => batchImages(images, 2, b))).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    expect(batchCount(0, 2)).toBe(0);
  });
});
