/** The file:// store: the embedded default every run uses, so its promises are tested directly. */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { FileStore } from '../../adapters/store/file';
import { KeyRejectedError, ObjectNotFoundError } from '../../adapters/store/types';

let root: string;
let store: FileStore;

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'file-store-'));
  store = new FileStore(root);
});
afterEach(() => fs.rm(root, { recursive: true, force: true }));

test('put, head with hash, get, list and copy', async () => {
  const written = await store.put('a/b/one.txt', Readable.from([Buffer.from('hello '), Buffer.from('world')]));
  expect(written).toEqual({ key: 'a/b/one.txt', size: 11, sha256: 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9' });
  expect(await store.head('a/b/one.txt', { withHash: true })).toEqual(written);
  expect((await store.get('a/b/one.txt')).toString()).toBe('hello world');
  await store.copy('a/b/one.txt', 'c/two.txt');
  await store.put('a/zero.bin', Buffer.alloc(0));
  expect((await store.list('')).map((o) => o.key)).toEqual(['a/b/one.txt', 'a/zero.bin', 'c/two.txt']);
  expect((await store.list('a')).map((o) => o.key)).toEqual(['a/b/one.txt', 'a/zero.bin']);
  expect(store.uriOf('c/two.txt')).toBe(`file://${path.join(root, 'c', 'two.txt')}`);
});

test('a missing key: head is undefined, get and copy raise ObjectNotFoundError naming the URI', async () => {
  expect(await store.head('nope.txt')).toBeUndefined();
  await expect(store.get('nope.txt')).rejects.toThrow(new ObjectNotFoundError(store.uriOf('nope.txt')));
  await expect(store.copy('nope.txt', 'x.txt')).rejects.toBeInstanceOf(ObjectNotFoundError);
  expect(await store.list('missing/prefix')).toEqual([]);
});

test('putIfAbsent: of many concurrent writers exactly one wins, and no partial file is left', async () => {
  const results = await Promise.all(Array.from({ length: 12 }, (_, i) => store.putIfAbsent('registry/x.json', `writer ${i}`)));
  expect(results.filter(Boolean)).toHaveLength(1);
  const winner = results.indexOf(true);
  expect((await store.get('registry/x.json')).toString()).toBe(`writer ${winner}`);
  expect(await fs.readdir(path.join(root, 'registry'))).toEqual(['x.json']);
});

test.each(['../escape.txt', '/abs.txt', 'a/./b.txt', 'a\\b.txt', ''])('rejects the unsafe key %j', async (key) => {
  await expect(store.put(key, 'x')).rejects.toThrow(/invalid object key/);
});

test('a 255-byte name is written whole (temp names are short), and a name past the limit is the key\'s problem, not the store\'s', async () => {
  const longest = `dir/${'a'.repeat(251)}.png`;
  await store.put(longest, Buffer.from('x'));
  expect(await store.putIfAbsent(`dir/${'b'.repeat(251)}.txt`, 'y')).toBe(true);
  expect((await store.list('dir')).map((o) => o.key)).toEqual([longest, `dir/${'b'.repeat(251)}.txt`]);
  expect(await fs.readdir(path.join(root, 'dir'))).toHaveLength(2); // no temp file left behind

  const tooLong = `dir/${'c'.repeat(256)}.png`;
  await expect(store.put(tooLong, Buffer.from('x'))).rejects.toThrow(new KeyRejectedError(tooLong, 'a name is longer than the file system allows'));
  await expect(store.putIfAbsent(tooLong, 'x')).rejects.toBeInstanceOf(KeyRejectedError);
  await expect(store.put('../escape.txt', 'x')).rejects.toBeInstanceOf(KeyRejectedError);
  expect(await fs.readdir(path.join(root, 'dir'))).toHaveLength(2);
});
