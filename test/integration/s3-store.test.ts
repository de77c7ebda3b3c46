import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { openStore } from '../../adapters/store';
import { FileStore } from '../../adapters/store/file';
import { S3Store } from '../../adapters/store/s3';
import { ObjectNotFoundError } from '../../adapters/store/types';
import { motoWithFreshBucket } from '../support/moto';

const BUCKET = 'lora-store-test';
const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');
const md5 = (text: string) => createHash('md5').update(text).digest('hex');

const aws = motoWithFreshBucket(BUCKET);
let s3: S3Client;
let store: S3Store;

beforeEach(() => {
  s3 = aws.s3;
  store = new S3Store(`s3://${BUCKET}/runs/`, s3);
});

describe('S3Store on moto', () => {
  it('names itself and its keys under the prefix', () => {
    expect(store.uri).toBe(`s3://${BUCKET}/runs`);
    expect(store.uriOf('models/Lora/x.safetensors')).toBe(`s3://${BUCKET}/runs/models/Lora/x.safetensors`);
    expect(new S3Store(`s3://${BUCKET}`, s3).uriOf('a.txt')).toBe(`s3://${BUCKET}/a.txt`);
    expect(() => store.uriOf('../escape')).toThrow('invalid object key "../escape"');
  });

  it('puts and gets a Buffer and a string under the prefix, recording their sha256', async () => {
    const bytes = Buffer.from([0, 1, 2, 255]);
    expect(await store.put('a/bytes.bin', bytes)).toEqual({ key: 'a/bytes.bin', size: 4, sha256: sha256(bytes) });
    expect(await store.put('a/text.txt', 'héllo', { contentType: 'text/plain' })).toEqual({
      key: 'a/text.txt',
      size: 6,
      sha256: sha256('héllo'),
    });
    expect(await store.get('a/bytes.bin')).toEqual(bytes);
    expect((await store.get('a/text.txt')).toString('utf8')).toBe('héllo');

    // The object really lives under the prefix, with the hash in its user metadata.
    const raw = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'runs/a/text.txt' }));
    expect(raw.Metadata).toEqual({ sha256: sha256('héllo') });
    expect(raw.ContentType).toBe('text/plain');
  });

  it('records the sha256 the caller gives and returns it from head', async () => {
    const given = 'f'.repeat(64);
    await store.put('given.bin', Buffer.from('x'), { sha256: given });
    expect(await store.head('given.bin')).toEqual({ key: 'given.bin', size: 1, sha256: given });
  });

  it('head: undefined when missing; computes the hash on request when metadata lacks it', async () => {
    expect(await store.head('missing.txt')).toBeUndefined();
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'runs/foreign.txt', Body: 'made elsewhere' }));
    expect(await store.head('foreign.txt')).toEqual({ key: 'foreign.txt', size: 14 });
    expect(await store.head('foreign.txt', { withHash: true })).toEqual({ key: 'foreign.txt', size: 14, sha256: sha256('made elsewhere') });
  });

  it('maps missing keys to ObjectNotFoundError naming the URI', async () => {
    await expect(store.get('nope.txt')).rejects.toEqual(new ObjectNotFoundError(`s3://${BUCKET}/runs/nope.txt`));
    await expect(store.getStream('nope.txt')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.copy('nope.txt', 'other.txt')).rejects.toMatchObject({ name: 'ObjectNotFoundError', uri: `s3://${BUCKET}/runs/nope.txt` });
  });

  it('keeps a missing bucket an S3 error, not a missing key', async () => {
    const elsewhere = new S3Store('s3://no-such-bucket-here/x', s3);
    await expect(elsewhere.get('a.txt')).rejects.toMatchObject({ name: 'NoSuchBucket' });
  });

  it('lists recursively below a prefix, keys relative to the store root, sorted, like a directory', async () => {
    for (const key of ['models/b.safetensors', 'models/a.safetensors', 'models/sub/c.json', 'models2/d.txt', 'top.txt']) {
      await store.put(key, key);
    }
    // Outside the store's prefix: never listed.
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'runs2/outside.txt', Body: 'x' }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'runs/models/folder-marker/', Body: new Uint8Array(0) }));

    // Single-part uploads: the entity tag is the content's MD5 (the upload relies on that).
    expect(await store.list('models')).toEqual([
      { key: 'models/a.safetensors', size: 20, etag: md5('models/a.safetensors') },
      { key: 'models/b.safetensors', size: 20, etag: md5('models/b.safetensors') },
      { key: 'models/sub/c.json', size: 17, etag: md5('models/sub/c.json') },
    ]);
    expect((await store.list('models/')).map((o) => o.key)).toEqual(['models/a.safetensors', 'models/b.safetensors', 'models/sub/c.json']);
    expect((await store.list('')).map((o) => o.key)).toEqual([
      'models/a.safetensors',
      'models/b.safetensors',
      'models/sub/c.json',
      'models2/d.txt',
      'top.txt',
    ]);
    expect(await store.list('absent')).toEqual([]);
  });

  it('lists past one page of ListObjectsV2', async () => {
    const keys = Array.from({ length: 1005 }, (_, i) => `many/${String(i).padStart(4, '0')}.txt`);
    await Promise.all(keys.map((key) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `runs/${key}`, Body: 'x' }))));
    const listed = await store.list('many');
    expect(listed).toHaveLength(1005);
    expect(listed.map((o) => o.key)).toEqual(keys);
  });

  it('copies with the sha256 metadata', async () => {
    await store.put('src/file.bin', 'payload');
    await store.copy('src/file.bin', 'dst/nested/file.bin');
    expect(await store.get('dst/nested/file.bin')).toEqual(Buffer.from('payload'));
    expect(await store.head('dst/nested/file.bin')).toEqual({ key: 'dst/nested/file.bin', size: 7, sha256: sha256('payload') });
  });

  it('copies keys that need URL encoding', async () => {
    await store.put('odd names/a+b %.txt', 'odd');
    await store.copy('odd names/a+b %.txt', 'odd names/copy ü.txt');
    expect((await store.get('odd names/copy ü.txt')).toString()).toBe('odd');
  });

  it('putIfAbsent writes once and then reports false without overwriting', async () => {
    expect(await store.putIfAbsent('registry/demo.json', '{"v":1}')).toBe(true);
    expect(await store.putIfAbsent('registry/demo.json', '{"v":2}')).toBe(false);
    expect((await store.get('registry/demo.json')).toString()).toBe('{"v":1}');
    expect((await store.head('registry/demo.json'))?.sha256).toBe(sha256('{"v":1}'));
  });

  it('uploads a 6 MB stream as a multipart upload and streams it back', async () => {
    const size = 6 * 1024 * 1024;
    const content = Buffer.alloc(size);
    for (let i = 0; i < size; i++) content[i] = (i * 31 + (i >> 10)) & 0xff;
    const chunks = Array.from({ length: size / 65536 }, (_, i) => content.subarray(i * 65536, (i + 1) * 65536));

    const info = await store.put('big/stream.bin', Readable.from(chunks), { sha256: sha256(content) });
    expect(info).toEqual({ key: 'big/stream.bin', size, sha256: sha256(content) });

    const raw = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'runs/big/stream.bin' }));
    // A multipart ETag ends in "-<parts>": 5 MiB + 1 MiB.
    expect(raw.ETag).toMatch(/-2"$/);
    expect(raw.Metadata?.sha256).toBe(sha256(content));

    const back: Buffer[] = [];
    for await (const chunk of await store.getStream('big/stream.bin')) back.push(chunk as Buffer);
    expect(sha256(Buffer.concat(back))).toBe(sha256(content));
  });

  it('returns the hash of a stream it was not told, without recording it', async () => {
    const info = await store.put('small/stream.txt', Readable.from([Buffer.from('ab'), Buffer.from('c')]));
    expect(info).toEqual({ key: 'small/stream.txt', size: 3, sha256: sha256('abc') });
    expect(await store.head('small/stream.txt')).toEqual({ key: 'small/stream.txt', size: 3 });
  });

  it('fails a stream upload with the source stream error', async () => {
    const failing = new Readable({
      read() {
        this.destroy(new Error('disk vanished'));
      },
    });
    await expect(store.put('broken.bin', failing)).rejects.toThrow('disk vanished');
    expect(await store.head('broken.bin')).toBeUndefined();
  });
});

describe('openStore', () => {
  it('opens s3://, file:// and plain paths, and rejects other schemes naming the URI', () => {
    expect(openStore(`s3://${BUCKET}/x`, { s3 })).toBeInstanceOf(S3Store);
    const fromUrl = openStore('file:///tmp/lora-store', { s3 });
    expect(fromUrl).toBeInstanceOf(FileStore);
    expect((fromUrl as FileStore).root).toBe('/tmp/lora-store');
    expect((openStore('relative/dir', { s3 }) as FileStore).root).toBe(`${process.cwd()}/relative/dir`);
    expect(() => openStore('gs://bucket/x', { s3 })).toThrow('unsupported store URI "gs://bucket/x": scheme "gs" is not one of file://, s3://');
  });
});
