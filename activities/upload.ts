/**
 * Dataset upload: copy the processed kohya folder from the worker's work store to the run's store.
 * Idempotent by content hash: objects already there with the same SHA-256 are skipped, so a retry
 * (or a second run over identical data) sends only what is missing. The manifest goes last, so a
 * dataset with a manifest is complete.
 */
import { Context } from '@temporalio/activity';
import pLimit from 'p-limit';
import type { ObjectInfo, ObjectStore } from '../adapters/store/types';
import { DatasetManifest, trainDataDirOf } from '../lib/pipeline/manifest';
import type { ActivityProgress, RunStatus } from '../lib/pipeline/status';
import type { ActivityDeps } from './deps';
import { withClassifiedErrors } from './errors';
import { md5Hex, sha256Hex } from '../lib/hash';

export interface UploadInput {
  runId: string;
  runName: string;
  manifestKey: string;
  store?: string;
}

export type UploadResult = NonNullable<RunStatus['dataset']> & { uploadedBytes: number };

/** Files in flight at once: most are a few hundred KB, so request latency, not bandwidth, sets the pace. */
const PARALLEL_UPLOADS = 16;
/**
 * Files up to this size are read once, hashed and sent from memory in one PUT (the multipart
 * uploader would buffer that much anyway). Larger ones are hashed from disk, then streamed as
 * multipart uploads that each hold several parts in memory, so fewer of them run at once.
 */
const IN_MEMORY_BYTES = 5 * 1024 * 1024;
const PARALLEL_STREAMED_UPLOADS = 4;

export function makeUploadActivities(deps: ActivityDeps) {
  async function uploadDataset(input: UploadInput): Promise<UploadResult> {
    return withClassifiedErrors('upload', async () => {
      const destination = deps.openStore(input.store);
      const manifest = await deps.workStore.get(input.manifestKey);
      const manifestSha256 = sha256Hex(manifest);
      const { images } = DatasetManifest.parse(JSON.parse(manifest.toString('utf8')));
      // Exactly what the manifest lists: leftovers from an earlier attempt in the work store stay behind.
      const keys = images.flatMap((image) => (image.caption ? [image.output, image.caption] : [image.output]));
      const sourcePrefix = `${trainDataDirOf(input.runId)}/`;
      const targetPrefix = `datasets/${input.runName}/${manifestSha256.slice(0, 16)}`;
      const limit = pLimit(PARALLEL_UPLOADS);
      // Bounded like the uploads: tens of thousands of lookups at once queue as many requests, and
      // their memory, in front of the few that can run.
      const files = await Promise.all(keys.map((key) => limit(() => headOrFail(deps.workStore, key))));
      const total = files.reduce((sum, f) => sum + f.size, 0);

      let done = 0;
      let uploadedBytes = 0;
      const heartbeat = (): void => Context.current().heartbeat({ done, total, unit: 'bytes' } satisfies ActivityProgress);
      heartbeat();
      // One listing (a request per 1,000 keys) says what is there: only objects of the same size
      // can hold the same content. An S3 entity tag equal to the content's MD5 proves it; any other
      // object of the same size costs a HEAD to compare SHA-256s.
      const there = new Map((await destination.list(targetPrefix)).map((object) => [object.key, object]));
      const streamed = pLimit(PARALLEL_STREAMED_UPLOADS);
      /** Sends the file unless the destination already holds the same content. */
      async function uploadUnlessThere(file: ObjectInfo, targetKey: string, content?: Buffer): Promise<void> {
        const listed = there.get(targetKey);
        // Checked first: a matching tag needs neither a SHA-256 nor a request.
        if (listed?.size === file.size && content && listed.etag === md5Hex(content)) return;
        const sha256 = content ? sha256Hex(content) : (await headOrFail(deps.workStore, file.key, true)).sha256;
        if (listed?.size === file.size) {
          const existing = await destination.head(targetKey, { withHash: true });
          if (existing?.sha256 !== undefined && existing.sha256 === sha256) return;
        }
        await destination.put(targetKey, content ?? (await deps.workStore.getStream(file.key)), { sha256 });
        uploadedBytes += file.size;
      }
      await Promise.all(
        files.map((file) =>
          limit(async () => {
            const targetKey = `${targetPrefix}/${file.key.slice(sourcePrefix.length)}`;
            if (file.size <= IN_MEMORY_BYTES) await uploadUnlessThere(file, targetKey, await deps.workStore.get(file.key));
            else await streamed(() => uploadUnlessThere(file, targetKey));
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
