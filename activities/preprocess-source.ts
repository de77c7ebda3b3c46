/**
 * Reading a dataset: a local folder (a path or file:// URI) or a store prefix (s3://). Listing
 * goes one folder deep, as sd-scripts reads `<repeats>_<name>/` folders and nothing deeper.
 * Unreadable datasets fail non-retryably; a single unreadable file is reported, not thrown.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import { ConfinedFolder } from '../adapters/dataset/confined-folder';
import { ObjectNotFoundError } from '../adapters/store/types';
import { keyProblem, type DatasetListing, type SkippedFile } from '../lib/image/dataset';
import type { ActivityDeps } from './deps';

export interface DatasetReader {
  /** Absolute path or URI, for messages and the manifest. */
  location: string;
  list(): Promise<DatasetListing>;
  /**
   * A file's bytes, or why it could not be read (a per-file problem, recorded as a skip). Local
   * files larger than `maxBytes` are not read; an object store's are (its sizes come from a listing).
   */
  read(file: string, maxBytes?: number): Promise<Buffer | { reason: string }>;
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
  // Resolved once per reader, on first use: every read is checked against the root's real path.
  let opening: Promise<ConfinedFolder> | undefined;
  const open = () =>
    (opening ??= ConfinedFolder.open(directory).catch((err: unknown) => {
      throw datasetFailure(err, directory);
    }));
  return {
    location: directory,
    async list() {
      const folder = await open();
      const stat = await folder.stat().catch((err: unknown) => {
        throw datasetFailure(err, directory);
      });
      if (!stat.isDirectory()) {
        throw ApplicationFailure.nonRetryable(
          `dataset is not a directory: ${directory} (expected a folder of images with .txt captions, or of <repeats>_<name>/ folders)`,
          'DatasetNotADirectory',
        );
      }
      // sd-scripts reads `<repeats>_<name>/` folders and nothing deeper.
      return folder.list(1).catch((err: unknown) => {
        throw datasetFailure(err, directory);
      });
    },
    async read(file, maxBytes) {
      return (await open()).readFile(file, maxBytes);
    },
  };
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
      const refused: SkippedFile[] = [];
      for (const key of keys) {
        const problem = keyProblem(key);
        if (problem !== undefined) {
          refused.push({ source: key, reason: problem });
          continue;
        }
        const parts = key.split('/');
        if (parts.length > 1) folders.add(parts[0]);
        if (parts.length > 2) folders.add(`${parts[0]}/${parts[1]}`);
        if (parts.length <= 2) files.push(key);
      }
      return { files, folders: [...folders], refused };
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
