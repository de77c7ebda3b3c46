/**
 * Dataset upload: copy the processed kohya folder from the worker's work store to the run's store.
 * Idempotent by content hash: objects already there with the same SHA-256 are skipped, so a retry
 * (or a second run over identical data) sends only what is missing. The manifest goes last, so a
 * dataset with a manifest is complete.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import pLimit from 'p-limit';
import type { ObjectInfo, ObjectStore } from '../adapters/store/types';
import { DatasetManifest, trainDataDirOf } from '../lib/pipeline/manifest';
import type { ActivityProgress, RunStatus } from '../lib/pipeline/status';
import type { ActivityDeps } from './deps';
import { withClassifiedErrors } from './errors';

export interface UploadInput {
  runId: string;
  runName: string;
  manifestKey: string;
  store?: string;
}

export type UploadResult = NonNullable<RunStatus['dataset']> & { uploadedBytes: number };

const PARALLEL_UPLOADS = 4;

export function makeUploadActivities(deps: ActivityDeps) {
  async function uploadDataset(input: UploadInput): Promise<UploadResult> {
    return withClassifiedErrors('upload', async () => {
      const destination = deps.openStore(input.store);
      const manifest = await deps.workStore.get(input.manifestKey);
      const manifestSha256 = createHash('sha256').update(manifest).digest('hex');
      const { images } = DatasetManifest.parse(JSON.parse(manifest.toString('utf8')));
      // Exactly what the manifest lists: leftovers from an earlier attempt in the work store stay behind.
      const keys = images.flatMap((image) => (image.caption ? [image.output, image.caption] : [image.output]));
      const sourcePrefix = `${trainDataDirOf(input.runId)}/`;
      const targetPrefix = `datasets/${input.runName}/${manifestSha256.slice(0, 16)}`;
      const files = await Promise.all(keys.map((key) => headOrFail(deps.workStore, key)));
      const total = files.reduce((sum, f) => sum + f.size, 0);

      let done = 0;
      let uploadedBytes = 0;
      const heartbeat = (): void => Context.current().heartbeat({ done, total, unit: 'bytes' } satisfies ActivityProgress);
      heartbeat();
      const limit = pLimit(PARALLEL_UPLOADS);
      await Promise.all(
        files.map((file) =>
          limit(async () => {
            const targetKey = `${targetPrefix}/${file.key.slice(sourcePrefix.length)}`;
            const source = await headOrFail(deps.workStore, file.key, true);
            const existing = await destination.head(targetKey, { withHash: true });
            if (existing?.sha256 !== source.sha256) {
              await destination.put(targetKey, await deps.workStore.getStream(file.key), { sha256: source.sha256 });
              uploadedBytes += file.size;
            }
            done += file.size;
            heartbeat();
          }),
        ),
      );
      await destination.put(`${targetPrefix}/manifest.json`, manifest, { sha256: manifestSha256, contentType: 'application/json' });
      return { uri: destination.uriOf(targetPrefix), files: files.length, bytes: total, manifestSha256, uploadedBytes };
    });
  }
  return { uploadDataset };
}

async function headOrFail(store: ObjectStore, key: string, withHash = false): Promise<ObjectInfo> {
  const info = await store.head(key, { withHash });
  if (!info) throw new Error(`the manifest lists ${store.uriOf(key)}, but the work store does not have it`);
  return info;
}
