/**
 * The dataset reader's confinement on a real file system: what each kind of entry becomes, that
 * nothing outside the root is opened, and that a file swapped between check and open is not read.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfinedFolder, REFUSALS } from '../../adapters/dataset/confined-folder';

let tmp: string;
let root: string;
let outside: string;
let socketServer: net.Server | undefined;

const SECRET = 'OUTSIDE-SECRET-never-read';

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'confined-'));
  root = path.join(tmp, 'dataset');
  outside = path.join(tmp, 'outside');
  await fs.mkdir(path.join(root, 'sub'), { recursive: true });
  await fs.mkdir(outside);
  await fs.writeFile(path.join(outside, 'secret.txt'), SECRET);
  await fs.writeFile(path.join(root, 'a.txt'), 'inside a');
  await fs.writeFile(path.join(root, 'sub', 'b.txt'), 'inside b');
});

afterEach(async () => {
  await new Promise<void>((resolve) => (socketServer ? socketServer.close(() => resolve()) : resolve()));
  socketServer = undefined;
  await fs.rm(tmp, { recursive: true, force: true });
});

/** What the listing says of each path: file, directory, or why it is refused. */
async function listingOf(folder: ConfinedFolder, depth = 1): Promise<Record<string, string>> {
  const { files, folders, refused } = await folder.list(depth);
  return Object.fromEntries([
    ...files.map((file) => [file, 'file']),
    ...folders.map((dir) => [dir, 'directory']),
    ...refused.map(({ source, reason }) => [source, reason]),
  ]);
}

test('lists regular files and folders, links only when they stay inside, and refuses everything else', async () => {
  await fs.symlink('a.txt', path.join(root, 'link-inside.txt'));
  await fs.symlink('sub', path.join(root, 'folder-inside'));
  await fs.symlink(path.join(outside, 'secret.txt'), path.join(root, 'link-outside.txt'));
  await fs.symlink('../outside/secret.txt', path.join(root, 'relative-outside.txt'));
  await fs.symlink(outside, path.join(root, '5_outside'));
  await fs.symlink('/etc/passwd', path.join(root, 'passwd.txt'));
  await fs.symlink('/proc/self/environ', path.join(root, 'environ.txt'));
  await fs.symlink('missing.png', path.join(root, 'broken.png'));
  await fs.symlink('loop-b.png', path.join(root, 'loop-a.png'));
  await fs.symlink('loop-a.png', path.join(root, 'loop-b.png'));
  execFileSync('mkfifo', [path.join(root, 'fifo.png')]);
  socketServer = net.createServer();
  await new Promise<void>((resolve) => socketServer?.listen(path.join(root, 'sock.png'), resolve));
  await fs.writeFile(Buffer.concat([Buffer.from(`${root}/bad`), Buffer.from([0xff]), Buffer.from('.png')]), 'x');

  const folder = await ConfinedFolder.open(root);
  expect(await listingOf(folder)).toEqual({
    'a.txt': 'file',
    sub: 'directory',
    'sub/b.txt': 'file',
    'link-inside.txt': 'file',
    'folder-inside': 'directory',
    'folder-inside/b.txt': 'file',
    'link-outside.txt': REFUSALS.linkOutside,
    'relative-outside.txt': REFUSALS.linkOutside,
    '5_outside': REFUSALS.linkOutside,
    'passwd.txt': REFUSALS.linkOutside,
    'environ.txt': REFUSALS.linkOutside,
    'broken.png': REFUSALS.brokenLink,
    'loop-a.png': REFUSALS.linkLoop,
    'loop-b.png': REFUSALS.linkLoop,
    'fifo.png': REFUSALS.notRegular('a named pipe'),
    'sock.png': REFUSALS.notRegular('a socket'),
    'bad\ufffd.png': REFUSALS.nameNotUtf8,
  });

  expect((await folder.readFile('link-inside.txt')).toString()).toBe('inside a');
  expect((await folder.readFile('folder-inside/b.txt')).toString()).toBe('inside b');
  for (const name of ['link-outside.txt', 'relative-outside.txt', 'passwd.txt', 'environ.txt']) {
    expect(await folder.readFile(name)).toEqual({ reason: REFUSALS.linkOutside });
  }
  expect(await folder.readFile('5_outside/secret.txt')).toEqual({ reason: REFUSALS.linkOutside });
  // A pipe is never opened for reading, so nothing blocks.
  expect(await folder.readFile('fifo.png')).toEqual({ reason: REFUSALS.notRegular('a named pipe') });
  expect(await folder.readFile('sock.png')).toEqual({ reason: REFUSALS.notRegular('a socket') });
  expect(await folder.readFile('sub')).toEqual({ reason: 'a folder, not a file' });
  expect(await folder.readFile('gone.png')).toEqual({ reason: 'disappeared while the dataset was being read' });
});

test('a hard link is used only when all its names are inside the listed tree', async () => {
  await fs.link(path.join(root, 'a.txt'), path.join(root, 'sub', 'a-again.txt'));
  await fs.link(path.join(outside, 'secret.txt'), path.join(root, 'hard-secret.txt'));
  await fs.mkdir(path.join(root, 'sub', 'deeper'));
  await fs.writeFile(path.join(root, 'sub', 'deeper', 'c.txt'), 'deeper');
  await fs.link(path.join(root, 'sub', 'deeper', 'c.txt'), path.join(root, 'c-linked.txt'));
  const folder = await ConfinedFolder.open(root);
  expect(await listingOf(folder)).toEqual({
    'a.txt': 'file',
    'sub/a-again.txt': 'file',
    'sub/b.txt': 'file',
    sub: 'directory',
    'sub/deeper': 'directory',
    'hard-secret.txt': REFUSALS.hardLinkOutside,
    // Its other name is inside, but deeper than sd-scripts (and the listing) looks.
    'c-linked.txt': REFUSALS.hardLinkOutside,
  });
  expect(await listingOf(folder, 2)).toMatchObject({ 'c-linked.txt': 'file', 'sub/deeper/c.txt': 'file' });
});

test('what a path is, is decided when it is listed; the root\'s own errors are thrown', async () => {
  await fs.symlink('.', path.join(root, 'self'));
  const folder = await ConfinedFolder.open(root);
  // A folder swapped for a file after it was listed cannot be read as one.
  const listing = await folder.list(1);
  expect(listing.folders).toEqual(expect.arrayContaining(['self', 'sub']));
  await fs.rm(path.join(root, 'sub'), { recursive: true });
  await fs.writeFile(path.join(root, 'sub'), 'now a file');
  await fs.rm(path.join(root, 'self'));
  await fs.symlink('a.txt', path.join(root, 'self'));
  expect(await listingOf(folder)).toEqual({ 'a.txt': 'file', sub: 'file', self: 'file' });
  await expect((await ConfinedFolder.open(path.join(root, 'a.txt'))).list(1)).rejects.toMatchObject({ code: 'ENOTDIR' });
});

// Root reads every folder, so an unreadable one can only be made as an ordinary user.
const asNonRoot = process.getuid?.() === 0 ? test.skip : test;
asNonRoot('a folder below the root that cannot be listed is refused, and the rest is listed', async () => {
  await fs.mkdir(path.join(root, 'locked'), { mode: 0o000 });
  try {
    const listing = await (await ConfinedFolder.open(root)).list(1);
    expect(listing.refused).toEqual([{ source: 'locked', reason: 'unreadable: permission denied' }]);
    expect(listing.files).toEqual(expect.arrayContaining(['a.txt', 'sub/b.txt']));
  } finally {
    await fs.chmod(path.join(root, 'locked'), 0o700);
  }
});

test('a file over the size limit is not read', async () => {
  const folder = await ConfinedFolder.open(root);
  expect(await folder.readFile('a.txt', 4)).toEqual({ reason: REFUSALS.tooLarge(8, 4) });
  expect((await folder.readFile('a.txt', 8)).toString()).toBe('inside a');
});

test('a dataset root reached through a link is its target\'s tree', async () => {
  const alias = path.join(tmp, 'alias');
  await fs.symlink(root, alias);
  const folder = await ConfinedFolder.open(alias);
  expect(folder.root).toBe(await fs.realpath(root));
  expect((await folder.readFile('sub/b.txt')).toString()).toBe('inside b');
});

describe('a file swapped after it was checked is not read', () => {
  test('for a link: O_NOFOLLOW refuses to open it', async () => {
    const file = path.join(root, 'a.txt');
    const checked = await fs.lstat(file);
    await fs.rm(file);
    await fs.symlink(path.join(outside, 'secret.txt'), file);
    const folder = await ConfinedFolder.open(root);
    expect(await folder.readChecked(file, checked)).toEqual({ reason: REFUSALS.swapped });
  });

  test('for another file moved into its place: the inode differs', async () => {
    const file = path.join(root, 'a.txt');
    const checked = await fs.lstat(file);
    await fs.copyFile(path.join(outside, 'secret.txt'), path.join(tmp, 'copy.txt'));
    await fs.rename(path.join(tmp, 'copy.txt'), file);
    const folder = await ConfinedFolder.open(root);
    expect(await folder.readChecked(file, checked)).toEqual({ reason: REFUSALS.swapped });
  });

  // Where /proc tells where a descriptor leads (Linux, as in CI); elsewhere only the inode check holds.
  const withProc = process.platform === 'linux' ? test : test.skip;
  withProc('for a folder swapped for a link: the kernel says where the opened file is', async () => {
    // The worst case: the folder `sub` becomes a link to the outside folder after the check, and
    // the check happened to describe the very file now reached (same device and inode).
    const file = path.join(root, 'sub', 'secret.txt');
    await fs.rename(path.join(root, 'sub'), path.join(tmp, 'sub-old'));
    await fs.symlink(outside, path.join(root, 'sub'));
    const checked = await fs.stat(path.join(outside, 'secret.txt'));
    const folder = await ConfinedFolder.open(root);
    expect(await folder.readChecked(file, checked)).toEqual({ reason: REFUSALS.swapped });
  });

  test('for a pipe swapped in: O_NONBLOCK opens without blocking, and it is refused', async () => {
    const file = path.join(root, 'a.txt');
    const checked = await fs.lstat(file);
    await fs.rm(file);
    execFileSync('mkfifo', [file]);
    const folder = await ConfinedFolder.open(root);
    expect(await folder.readChecked(file, checked)).toEqual({ reason: REFUSALS.swapped });
  });
});
