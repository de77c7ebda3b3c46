/**
 * Reading a dataset: a local folder (a path or file:// URI) or a store prefix (s3://). Listing
 * goes one folder deep, as sd-scripts reads `<repeats>_<name>/` folders and nothing deeper.
 * Unreadable datasets fail non-retryably; a single unreadable file is reported, not thrown.
 */
import type { Dirent } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import { ObjectNotFoundError } from '../adapters/store/types';
import type { DatasetListing } from '../lib/image/dataset';
import type { ActivityDeps } from './deps';

export interface DatasetReader {
  /** Absolute path or URI, for messages and the manifest. */
  location: string;
  list(): Promise<DatasetListing>;
  /** A file's bytes, or why it could not be read (a per-file problem, recorded as a skip). */
  read(file: string): Promise<Buffer | { reason: string }>;
}

export function openDataset(dataset: string, deps: Pick<ActivityDeps, 'openStore'>): DatasetReader {
  if (dataset.startsWith('s3://')) return storeDataset(dataset, deps);
  if (!dataset.startsWith('file://')) return localDataset(path.resolve(dataset));
  let directory: string;
  try {
    directory = fileURLToPath(dataset);
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`dataset is not a usable file:// URI: ${dataset} (${(err as Error).message})`, 'InvalidInput');
  }
  return localDataset(directory);
}

function localDataset(directory: string): DatasetReader {
  return {
    location: directory,
    async list() {
      const stat = await fs.stat(directory).catch((err: unknown) => {
        throw datasetFailure(err, directory);
      });
      if (!stat.isDirectory()) {
        throw ApplicationFailure.nonRetryable(
          `dataset is not a directory: ${directory} (expected a folder of images with .txt captions, or of <repeats>_<name>/ folders)`,
          'DatasetNotADirectory',
        );
      }
      const listing = { files: [] as string[], folders: [] as string[] };
      for (const entry of await readFolder(directory)) {
        const kind = await kindOf(entry, directory);
        if (kind === 'file') listing.files.push(entry.name);
        if (kind !== 'directory') continue;
        listing.folders.push(entry.name);
        const folder = path.join(directory, entry.name);
        for (const inner of await readFolder(folder)) {
          const innerKind = await kindOf(inner, folder);
          if (innerKind === 'file') listing.files.push(`${entry.name}/${inner.name}`);
          else if (innerKind === 'directory') listing.folders.push(`${entry.name}/${inner.name}`);
        }
      }
      return listing;
    },
    async read(file) {
      try {
        return await fs.readFile(path.join(directory, ...file.split('/')));
      } catch (err) {
        const { code, message } = err as NodeJS.ErrnoException;
        if (code === 'EACCES' || code === 'EPERM') return { reason: 'unreadable: permission denied' };
        if (code === 'ENOENT') return { reason: 'disappeared while the dataset was being read' };
        return { reason: `unreadable: ${message}` };
      }
    },
  };
}

async function readFolder(directory: string): Promise<Dirent[]> {
  return fs.readdir(directory, { withFileTypes: true }).catch((err: unknown) => {
    throw datasetFailure(err, directory);
  });
}

/** Symlinked images are common (links into a photo library): follow links to decide. */
async function kindOf(entry: Dirent, directory: string): Promise<'file' | 'directory' | 'other'> {
  if (entry.isFile()) return 'file';
  if (entry.isDirectory()) return 'directory';
  if (!entry.isSymbolicLink()) return 'other';
  try {
    const target = await fs.stat(path.join(directory, entry.name));
    return target.isDirectory() ? 'directory' : target.isFile() ? 'file' : 'other';
  } catch {
    // A broken link to an image is still reported, as unreadable, rather than silently dropped.
    return 'file';
  }
}

function datasetFailure(err: unknown, directory: string): unknown {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return ApplicationFailure.nonRetryable(`dataset not found: ${directory}`, 'DatasetNotFound');
    case 'EACCES':
    case 'EPERM':
      return ApplicationFailure.nonRetryable(
        `dataset is not readable: ${directory} (permission denied for the worker's user)`,
        'DatasetUnreadable',
      );
    default:
      // Anything else (EIO, EMFILE, ...) may pass: let Temporal retry.
      return err;
  }
}

/** A dataset in an object store, read through the store adapter. */
function storeDataset(uri: string, deps: Pick<ActivityDeps, 'openStore'>): DatasetReader {
  const store = deps.openStore(uri);
  return {
    location: uri,
    async list() {
      const keys = (await store.list('')).map((object) => object.key);
      if (keys.length === 0) {
        throw ApplicationFailure.nonRetryable(`dataset not found: ${uri} (no objects under this prefix)`, 'DatasetNotFound');
      }
      const folders = new Set<string>();
      const files: string[] = [];
      for (const key of keys) {
        const parts = key.split('/');
        if (parts.length > 1) folders.add(parts[0]);
        if (parts.length > 2) folders.add(`${parts[0]}/${parts[1]}`);
        if (parts.length <= 2) files.push(key);
      }
      return { files, folders: [...folders] };
    },
    async read(file) {
      try {
        return await store.get(file);
      } catch (err) {
        // Other store errors (throttling, network) are not the file's fault: let Temporal retry.
        if (err instanceof ObjectNotFoundError) return { reason: 'disappeared while the dataset was being read' };
        throw err;
      }
    },
  };
}
