/**
 * A local dataset folder read as untrusted input: nothing outside its root is ever opened.
 *
 * Regular files and folders are used; a symbolic link only when its real path stays inside the root
 * (datasets that link their own files keep working); named pipes, sockets and devices never. Files
 * are opened without following a link swapped in after the check (O_NOFOLLOW), without blocking on
 * a pipe swapped in (O_NONBLOCK), and the opened descriptor is compared with what was checked
 * (device and inode) and, where /proc exists, located by the kernel, so a folder swapped for a link
 * between check and open is caught too. Every refusal is a reason, never an exception.
 */
import { constants, type Dirent, type Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/** The reasons a dataset entry is refused, fixed wordings that reports and tests can rely on. */
export const REFUSALS = {
  linkOutside: 'symbolic link leads outside the dataset: never opened',
  brokenLink: 'broken symbolic link: its target does not exist',
  linkLoop: 'symbolic link loop: it never reaches a file',
  swapped: 'changed into a symbolic link or another file while the dataset was being read: not read',
  nameNotUtf8: 'the name is not valid UTF-8: rename the file',
  hardLinkOutside: 'hard link to a file that also has a name outside the dataset: never opened (copy the file in instead)',
  notRegular: (what: string) => `not a regular file (${what}): never opened`,
  tooLarge: (size: number, limit: number) => `${size} bytes, over the ${limit}-byte limit for this kind of file: not read`,
} as const;

/** What a dataset folder holds, as paths relative to its root, `/`-separated. */
export interface FolderListing {
  files: string[];
  folders: string[];
  /** Entries never opened, with why. */
  refused: { source: string; reason: string }[];
}

/** One name in a folder: a folder, a file (with where it really is and its stat), or why it is refused. */
type FolderEntry =
  | { name: string; kind: 'directory' }
  | { name: string; kind: 'file'; real: string; stat: Stats }
  | { name: string; refused: string };

const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const FATAL_UTF8 = new TextDecoder('utf-8', { fatal: true });
const LENIENT_UTF8 = new TextDecoder('utf-8');

export class ConfinedFolder {
  private constructor(
    /** The root's real path: every file read must be at or below it. */
    readonly root: string,
  ) {}

  /** Resolves the root once (it may itself be a link, e.g. ~/datasets/cat → /mnt/photos/cat); fs errors pass through. */
  static async open(directory: string): Promise<ConfinedFolder> {
    return new ConfinedFolder(await fs.realpath(directory));
  }

  /** The root's own stat, for callers that check it is a folder. */
  stat(): Promise<Stats> {
    return fs.stat(this.root);
  }

  /**
   * The root's files and folders, descending `depth` folders below the root (sd-scripts reads
   * `<repeats>_<name>/` one level down: depth 1). Only an error on the root itself is thrown; a
   * folder below it that cannot be read is refused like a file.
   */
  async list(depth: number): Promise<FolderListing> {
    const listing: FolderListing = { files: [], folders: [], refused: [] };
    const files: { source: string; real: string; stat: Stats }[] = [];
    const visit = async (folder: string, entries: FolderEntry[], level: number): Promise<void> => {
      for (const entry of entries) {
        const source = folder === '' ? entry.name : `${folder}/${entry.name}`;
        if ('refused' in entry) listing.refused.push({ source, reason: entry.refused });
        else if (entry.kind === 'file') files.push({ source, real: entry.real, stat: entry.stat });
        else if (level >= depth) listing.folders.push(source);
        else {
          const inner = await this.entries(source).catch((err: unknown) => ({ failed: readFailure(err) }));
          if ('failed' in inner) {
            listing.refused.push({ source, reason: inner.failed });
            continue;
          }
          listing.folders.push(source);
          await visit(source, inner, level + 1);
        }
      }
    };
    await visit('', await this.entries(''), 0);
    // A file with more names than the listing found may be a hard link to something outside.
    const namesOf = new Map<string, Set<string>>();
    const identity = (stat: Stats) => `${stat.dev}:${stat.ino}`;
    for (const file of files) namesOf.set(identity(file.stat), (namesOf.get(identity(file.stat)) ?? new Set()).add(file.real));
    for (const file of files) {
      if (file.stat.nlink > (namesOf.get(identity(file.stat))?.size ?? 0)) listing.refused.push({ source: file.source, reason: REFUSALS.hardLinkOutside });
      else listing.files.push(file.source);
    }
    return listing;
  }

  /** The entries of a folder below the root (`''` for the root itself); fs errors on the folder pass through. */
  private async entries(folder: string): Promise<FolderEntry[]> {
    const directory = await fs.realpath(this.pathOf(folder));
    if (!this.contains(directory)) return []; // swapped for a link since it was listed
    const dirents = await fs.readdir(directory, { withFileTypes: true, encoding: 'buffer' });
    return Promise.all(dirents.map((dirent) => this.entryOf(directory, dirent)));
  }

  /** A file's bytes, or why it is not read (among others: larger than `maxBytes`). */
  async readFile(file: string, maxBytes = Number.POSITIVE_INFINITY): Promise<Buffer | { reason: string }> {
    const full = this.pathOf(file);
    let located: Awaited<ReturnType<ConfinedFolder['resolveInside']>>;
    try {
      await fs.lstat(full); // a missing file is gone, not a broken link
      // Resolved whether or not the file itself is a link: a folder on the way may be one.
      located = await this.resolveInside(full);
    } catch (err) {
      return { reason: readFailure(err) };
    }
    if ('reason' in located) return located;
    const { real, stat } = located;
    if (!stat.isFile()) return { reason: stat.isDirectory() ? 'a folder, not a file' : REFUSALS.notRegular(kindName(stat)) };
    return this.readChecked(real, stat, maxBytes);
  }

  /**
   * Reads `file` only if it is still the regular file `checked` describes and lies inside the root.
   * Exposed for the race test: a caller that checked a path and then finds it swapped gets a reason.
   */
  async readChecked(file: string, checked: Pick<Stats, 'dev' | 'ino'>, maxBytes = Number.POSITIVE_INFINITY): Promise<Buffer | { reason: string }> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, READ_FLAGS);
    } catch (err) {
      return { reason: (err as NodeJS.ErrnoException).code === 'ELOOP' ? REFUSALS.swapped : readFailure(err) };
    }
    try {
      const opened = await handle.stat();
      if (!opened.isFile() || opened.dev !== checked.dev || opened.ino !== checked.ino) return { reason: REFUSALS.swapped };
      const where = await openedPath(handle);
      if (where !== undefined && !this.contains(where)) return { reason: REFUSALS.swapped };
      if (opened.size > maxBytes) return { reason: REFUSALS.tooLarge(opened.size, maxBytes) };
      return await handle.readFile();
    } catch (err) {
      return { reason: readFailure(err) };
    } finally {
      await handle.close();
    }
  }

  private pathOf(relative: string): string {
    return relative === '' ? this.root : path.join(this.root, ...relative.split('/'));
  }

  private contains(real: string): boolean {
    return real === this.root || real.startsWith(`${this.root}${path.sep}`);
  }

  private async entryOf(directory: string, dirent: Dirent<Buffer>): Promise<FolderEntry> {
    let name: string;
    try {
      name = FATAL_UTF8.decode(dirent.name);
    } catch {
      return { name: LENIENT_UTF8.decode(dirent.name), refused: REFUSALS.nameNotUtf8 };
    }
    if (dirent.isDirectory()) return { name, kind: 'directory' };
    const full = path.join(directory, name);
    try {
      const own = await fs.lstat(full);
      if (!own.isSymbolicLink()) {
        if (own.isFile()) return { name, kind: 'file', real: full, stat: own };
        return own.isDirectory() ? { name, kind: 'directory' } : { name, refused: REFUSALS.notRegular(kindName(own)) };
      }
      const resolved = await this.resolveInside(full);
      if ('reason' in resolved) return { name, refused: resolved.reason };
      if (resolved.stat.isFile()) return { name, kind: 'file', real: resolved.real, stat: resolved.stat };
      if (resolved.stat.isDirectory()) return { name, kind: 'directory' };
      return { name, refused: REFUSALS.notRegular(`a link to ${kindName(resolved.stat)}`) };
    } catch (err) {
      return { name, refused: readFailure(err) };
    }
  }

  /** Where a path really leads, if that is inside the root; the target is stat'ed only then. */
  private async resolveInside(link: string): Promise<{ real: string; stat: Stats } | { reason: string }> {
    let real: string;
    try {
      real = await fs.realpath(link);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return { reason: REFUSALS.brokenLink };
      if (code === 'ELOOP') return { reason: REFUSALS.linkLoop };
      throw err;
    }
    if (!this.contains(real)) return { reason: REFUSALS.linkOutside };
    return { real, stat: await fs.stat(real) };
  }
}

/** The path the kernel has for an open descriptor (Linux); undefined where /proc cannot tell. */
async function openedPath(handle: fs.FileHandle): Promise<string | undefined> {
  try {
    return await fs.readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    return undefined;
  }
}

function kindName(stat: Stats): string {
  if (stat.isFIFO()) return 'a named pipe';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isDirectory()) return 'a folder';
  return 'an unknown kind of file';
}

/** One file's read error as its skip reason. */
export function readFailure(err: unknown): string {
  const { code, message } = err as NodeJS.ErrnoException;
  if (code === 'EACCES' || code === 'EPERM') return 'unreadable: permission denied';
  if (code === 'ENOENT') return 'disappeared while the dataset was being read';
  if (code === 'ELOOP') return REFUSALS.linkLoop;
  return `unreadable: ${message}`;
}
