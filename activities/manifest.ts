/** Reading and writing the dataset manifest in the work store, with failures that name the key. */
import { ApplicationFailure } from '@temporalio/common';
import type { ObjectStore } from '../adapters/store/types';
import { ObjectNotFoundError } from '../adapters/store/types';
import { formatZodError } from '../lib/pipeline/input';
import { DatasetManifest } from '../lib/pipeline/manifest';
import { sha256Hex } from '../lib/hash';

/** A missing or malformed manifest is non-retryable: retrying reads the same bytes again. */
export async function readManifest(store: ObjectStore, manifestKey: string): Promise<DatasetManifest> {
  let bytes: Buffer;
  try {
    bytes = await store.get(manifestKey);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) {
      throw ApplicationFailure.nonRetryable(`manifest not found: ${err.uri} (run preprocessDataset first)`, 'ManifestNotFound');
    }
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`manifest ${manifestKey} is not valid JSON: ${(err as Error).message}`, 'InvalidManifest');
  }
  const parsed = DatasetManifest.safeParse(json);
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(formatZodError(parsed.error, `manifest ${manifestKey}`), 'InvalidManifest');
  }
  return parsed.data;
}

/** Same serialisation as preprocessing, so an unchanged manifest keeps its bytes and its hash. */
export async function writeManifest(store: ObjectStore, manifestKey: string, manifest: DatasetManifest): Promise<void> {
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  await store.put(manifestKey, text, { contentType: 'application/json', sha256: sha256Hex(text) });
}

