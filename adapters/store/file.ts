/** `file://` object store: a directory tree. Writes go to a temp file and are renamed into place. */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertSafeKey, Body, KeyRejectedError, ObjectInfo, ObjectNotFoundError, ObjectStore, PutOptions } from './types';

export class FileStore implements ObjectStore {
  readonly uri: string;

  constructor(readonly root: string) {
    this.root = path.resolve(root);
    this.uri = pathToFileURL(this.root).href;
  }

  uriOf(key: string): string {
    return pathToFileURL(this.pathOf(key)).href;
  }

  /** The local path of a key; local-only consumers (the local trainer) read it directly. */
  pathOf(key: string): string {
    return path.join(this.root, ...assertSafeKey(key).split('/'));
  }

  async put(key: string, body: Body, _options?: PutOptions): Promise<ObjectInfo> {
    try {
      return await this.write(key, body);
    } catch (err) {
      throw rejectedKey(err, key);
    }
  }

  private async write(key: string, body: Body): Promise<ObjectInfo> {
    const target = this.pathOf(key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const temp = tempNameBeside(target);
    const hash = createHash('sha256');
    let size = 0;
    const source = typeof body === 'string' || Buffer.isBuffer(body) ? Readable.from([Buffer.from(body)]) : body;
    try {
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            hash.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        (await fs.open(temp, 'w')).createWriteStream(),
      );
      await fs.rename(temp, target);
    } catch (err) {
      await fs.rm(temp, { force: true });
      throw err;
    }
    return { key, size, sha256: hash.digest('hex') };
  }

  async putIfAbsent(key: string, body: Buffer | string, _options?: PutOptions): Promise<boolean> {
    const target = this.pathOf(key);
    try {
      await fs.mkdir(path.dirname(target), { recursive: true });
      return await createExclusive(target, body);
    } catch (err) {
      throw rejectedKey(err, key);
    }
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await fs.readFile(this.pathOf(key));
    } catch (err) {
      throw this.translate(err, key);
    }
  }

  async getStream(key: string): Promise<Readable> {
    const file = this.pathOf(key);
    try {
      await fs.access(file);
    } catch (err) {
      throw this.translate(err, key);
    }
    return createReadStream(file);
  }

  async head(key: string, options?: { withHash?: boolean }): Promise<ObjectInfo | undefined> {
    const file = this.pathOf(key);
    let stat;
    try {
      stat = await fs.stat(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    if (!stat.isFile()) return undefined;
    const info: ObjectInfo = { key, size: stat.size };
    if (options?.withHash) info.sha256 = await sha256OfFile(file);
    return info;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const base = prefix === '' ? this.root : this.pathOf(prefix.replace(/\/$/, ''));
    const out: ObjectInfo[] = [];
    let entries;
    try {
      entries = await fs.readdir(base, { recursive: true, withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
      throw err;
    }
    for (const entry of entries) {
      if (!entry.isFile() || TEMP_NAME.test(entry.name)) continue;
      const full = path.join(entry.parentPath, entry.name);
      const key = path.relative(this.root, full).split(path.sep).join('/');
      out.push({ key, size: (await fs.stat(full)).size });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async copy(fromKey: string, toKey: string): Promise<void> {
    const target = this.pathOf(toKey);
    await fs.mkdir(path.dirname(target), { recursive: true });
    try {
      await fs.copyFile(this.pathOf(fromKey), target);
    } catch (err) {
      throw this.translate(err, fromKey);
    }
  }

  private translate(err: unknown, key: string): unknown {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? new ObjectNotFoundError(this.uriOf(key)) : err;
  }
}

/** Temp files: short, whatever the target's length, so no name ever exceeds the file system's limit. */
const TEMP_NAME = /^\.[0-9a-f]{16}\.partial$/;

function tempNameBeside(file: string): string {
  return path.join(path.dirname(file), `.${randomBytes(8).toString('hex')}.partial`);
}

/** File-system errors that concern one name, not the store: the name is too long, refused, or blocked by a file. */
const KEY_ERRORS: Record<string, string> = {
  ENAMETOOLONG: 'a name is longer than the file system allows',
  EILSEQ: 'the file system refuses a character in the name',
  EINVAL: 'the file system refuses the name',
  EISDIR: 'a folder of that name is in the way',
  ENOTDIR: 'a file is in the way of one of its folders',
};

function rejectedKey(err: unknown, key: string): unknown {
  const reason = KEY_ERRORS[(err as NodeJS.ErrnoException).code ?? ''];
  return reason === undefined ? err : new KeyRejectedError(key, reason);
}

export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/**
 * Creates `file` with its full content, or returns false if it exists. Written aside, then linked
 * into place: link(2) fails with EEXIST atomically, so of two writers exactly one wins, and a
 * crash mid-write never leaves a torn file under the real name.
 */
export async function createExclusive(file: string, content: Buffer | string): Promise<boolean> {
  const temp = tempNameBeside(file);
  await fs.writeFile(temp, content);
  try {
    await fs.link(temp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await fs.rm(temp, { force: true });
  }
}
