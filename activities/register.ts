/**
 * Registration: find the final LoRA among the job's outputs, verify it really is a LoRA for this
 * run, and publish it where the WebUI looks (`models/Lora/`), never overwriting a different file of
 * the same name. The same bytes always come back as the same record, retries included.
 *
 * Memory: the header is checked first from the file's first bytes (a multi-GB checkpoint is turned
 * away without reading it); a file that passes is then read into memory once, because the NaN/Inf
 * scan needs every byte and the conditional put needs the body (a 150 MB LoRA is fine). A SageMaker
 * `model.tar.gz` is streamed from the store through gunzip and tar, and only the final file is
 * written to a temp directory. The training output itself is never modified or deleted.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import * as tar from 'tar';
import type { ObjectStore } from '../adapters/store/types';
import { kohyaOptionsFor } from '../lib/kohya/config';
import { isFileEntry, rootFileName, unsafeEntryReason } from '../lib/lora/artifact';
import { epochOf, loraKey, parseRegistryRecord, recordKey, type RegistryRecord, trainingMetrics, versionedName } from '../lib/lora/registry';
import {
  expectationFor,
  InvalidLoraError,
  type LoraExpectation,
  loraHeaderLength,
  verifyLora,
  verifyLoraHeader,
  type VerifiedLora,
} from '../lib/lora/verify';
import type { TrainingRun } from '../lib/pipeline/input';
import type { RegisteredLora, TrainingJobRef, TrainingProgress } from '../lib/pipeline/status';
import type { ActivityDeps } from './deps';
import { withClassifiedErrors } from './errors';
import { sha256Hex } from '../lib/hash';

export interface RegisterInput {
  run: TrainingRun;
  runId: string;
  job: TrainingJobRef;
  artifactUri: string;
  datasetManifestSha256: string;
  /** The poller's last progress report: the final loss, when the trainer printed one. */
  progress?: TrainingProgress;
}

/** More versions than anyone registers by hand: a loop past this means the store misbehaves. */
const MAX_VERSIONS = 1000;

export function makeRegisterActivities(deps: ActivityDeps) {
  async function registerLora(input: RegisterInput): Promise<RegisteredLora> {
    return withClassifiedErrors('register', async () => {
      const { run } = input;
      const finalName = `${run.runName}.safetensors`;
      const outputs = await locateOutputs(deps, input.artifactUri, finalName);
      try {
        if (!outputs.finalFile) {
          throw ApplicationFailure.nonRetryable(
            `no ${finalName} in the training output ${input.artifactUri} (found: ${outputs.files.join(', ') || 'nothing'})`,
            'LoraMissing',
          );
        }
        const kohyaConfig = kohyaOptionsFor(run);
        const expectation = expectationFor(run.baseModel.family, kohyaConfig);
        const { bytes, verified } = await readVerified(outputs.finalFile, expectation).catch((err: unknown) => {
          if (!(err instanceof InvalidLoraError)) throw err;
          throw ApplicationFailure.nonRetryable(
            `${finalName} from ${input.artifactUri} is not a usable LoRA: ${err.message} (the artifact is left in place for inspection)`,
            'InvalidLora',
          );
        });
        const sha256 = sha256Hex(bytes);
        const store = deps.openStore(run.store);
        const name = await publish(store, run.runName, bytes, sha256);

        // Retry or same bytes registered before: the record that exists is the answer.
        const existing = await readRecord(store, name);
        if (existing) return summaryOf(checkSameFile(existing, sha256, store, name));

        const draft: Omit<RegistryRecord, 'modelPackageArn'> = {
          name,
          uri: store.uriOf(loraKey(name)),
          recordUri: store.uriOf(recordKey(name)),
          sha256,
          autoV2: sha256.slice(0, 10),
          sha256AfterHeader: verified.sha256AfterHeader,
          sizeBytes: bytes.length,
          runId: input.runId,
          jobName: input.job.jobName,
          backend: input.job.backend,
          baseModel: run.baseModel,
          triggerWord: run.triggerWord,
          datasetManifestSha256: input.datasetManifestSha256,
          kohyaConfig,
          metrics: trainingMetrics(verified.metadata, input.progress),
          rank: verified.rank,
          epochFiles: outputs.files.filter((file) => epochOf(run.runName, file) !== undefined),
          metadata: verified.metadata,
          createdAt: new Date().toISOString(),
        };
        const record: RegistryRecord = { ...draft, modelPackageArn: await registerModelPackage(deps, store, run.runName, draft) };
        // Exclusive create: of two concurrent attempts the first record wins and both return it.
        if (await store.putIfAbsent(recordKey(name), `${JSON.stringify(record, null, 2)}\n`, { contentType: 'application/json' })) {
          return summaryOf(record);
        }
        const raced = await readRecord(store, name);
        if (!raced) throw new Error(`${store.uriOf(recordKey(name))} exists but could not be read back`);
        return summaryOf(checkSameFile(raced, sha256, store, name));
      } finally {
        await outputs.cleanup();
      }
    });
  }
  return { registerLora };
}

/**
 * Header first (cheap, and a checkpoint or junk fails here without being read), then every byte.
 * Throws InvalidLoraError for anything that is not this run's LoRA.
 */
async function readVerified(file: string, expectation: LoraExpectation): Promise<{ bytes: Buffer; verified: VerifiedLora }> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const headerEnd = 8 + loraHeaderLength(await readStart(handle, Math.min(8, size)), size);
    verifyLoraHeader(await readStart(handle, headerEnd), size, expectation);
  } finally {
    await handle.close();
  }
  const bytes = await fs.readFile(file);
  return { bytes, verified: verifyLora(bytes, expectation) };
}

/** The file's first `length` bytes (a read may return fewer than asked, so read until full). */
async function readStart(handle: fs.FileHandle, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  for (let filled = 0; filled < length; ) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, filled);
    if (bytesRead === 0) throw new Error(`file ended after ${filled} of ${length} header bytes while being read`);
    filled += bytesRead;
  }
  return buffer;
}

/** `<name>`, else `<name>-v2`, `-v3`, …: the first slot that already holds these bytes or is free. */
async function publish(store: ObjectStore, baseName: string, bytes: Buffer, sha256: string): Promise<string> {
  let contested = false;
  for (let version = 1; version <= MAX_VERSIONS; ) {
    const name = versionedName(baseName, version);
    const existing = await store.head(loraKey(name), { withHash: true });
    if (existing?.sha256 === sha256) return name;
    if (existing) {
      version++;
      contested = false;
      continue;
    }
    if (await store.putIfAbsent(loraKey(name), bytes, { sha256 })) return name;
    // Someone wrote this name between our look and our put: look again, once.
    if (contested) throw new Error(`${store.uriOf(loraKey(name))} refuses a conditional create but reads as absent`);
    contested = true;
  }
  throw ApplicationFailure.nonRetryable(`${baseName} already has ${MAX_VERSIONS} different versions in ${store.uri}`, 'TooManyVersions');
}

async function registerModelPackage(
  deps: ActivityDeps,
  store: ObjectStore,
  baseName: string,
  draft: Omit<RegistryRecord, 'modelPackageArn'>,
): Promise<string | undefined> {
  if (!deps.modelRegistry) return undefined;
  if (!store.uri.startsWith('s3://')) {
    Context.current().log.warn('SageMaker Model Registry skipped: the LoRA is not in S3', { uri: draft.uri });
    return undefined;
  }
  return deps.modelRegistry.registerVersion(baseName, draft);
}

async function readRecord(store: ObjectStore, name: string): Promise<RegistryRecord | undefined> {
  if (!(await store.head(recordKey(name)))) return undefined;
  const text = (await store.get(recordKey(name))).toString('utf8');
  try {
    return parseRegistryRecord(text, store.uriOf(recordKey(name)));
  } catch (err) {
    throw ApplicationFailure.nonRetryable((err as Error).message, 'RegistryConflict');
  }
}

/** A record under this name that describes other bytes means the registry was edited by hand. */
function checkSameFile(record: RegistryRecord, sha256: string, store: ObjectStore, name: string): RegistryRecord {
  if (record.sha256 === sha256) return record;
  throw ApplicationFailure.nonRetryable(
    `registry record ${store.uriOf(recordKey(name))} describes sha256 ${record.sha256}, but ${store.uriOf(loraKey(name))} holds ${sha256}: ` +
      'the registry and the LoRA folder disagree; fix or remove one of them',
    'RegistryConflict',
  );
}

function summaryOf(record: RegistryRecord): RegisteredLora {
  const { name, uri, sha256, autoV2, sizeBytes, recordUri } = record;
  return { name, uri, sha256, autoV2, sizeBytes, recordUri };
}

interface Outputs {
  /** Names of the files at the top of the output. */
  files: string[];
  /** The final LoRA on local disk, when the output has one. */
  finalFile?: string;
  cleanup(): Promise<void>;
}

/** The job's outputs: a local job's directory as it is, or SageMaker's model.tar.gz streamed. */
async function locateOutputs(deps: ActivityDeps, artifactUri: string, finalName: string): Promise<Outputs> {
  if (artifactUri === '') throw ApplicationFailure.nonRetryable('the training job reported no output location', 'BadArtifact');
  if (artifactUri.startsWith('file://')) {
    const dir = fileURLToPath(artifactUri);
    let files: string[];
    try {
      files = (await fs.readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
    } catch (err) {
      throw ApplicationFailure.nonRetryable(`cannot read training output ${artifactUri}: ${(err as Error).message}`, 'BadArtifact');
    }
    return { files, finalFile: files.includes(finalName) ? path.join(dir, finalName) : undefined, cleanup: async () => undefined };
  }
  const match = /^(s3:\/\/.+)\/([^/]+\.tar\.gz)$/.exec(artifactUri);
  if (!match) {
    throw ApplicationFailure.nonRetryable(`unsupported training artifact "${artifactUri}": expected a file:// directory or an s3:// .tar.gz`, 'BadArtifact');
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'lora-artifact-'));
  const cleanup = () => fs.rm(dir, { recursive: true, force: true });
  try {
    const files = await extractFinalFile(await deps.openStore(match[1]).getStream(match[2]), dir, finalName, artifactUri);
    return { files, finalFile: files.includes(finalName) ? path.join(dir, finalName) : undefined, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/**
 * Streams the archive through gunzip and tar, writing only `finalName` (from the archive root) into
 * `dir`. Any unsafe entry aborts the stream and fails the whole artifact, naming the entry.
 * Returns the names of all files at the archive root.
 */
async function extractFinalFile(archive: Readable, dir: string, finalName: string, artifactUri: string): Promise<string[]> {
  const files: string[] = [];
  let unsafe: ApplicationFailure | undefined;
  const ctx = Context.current();
  // Liveness only: a progress payload would show up in `lora status` as an upload bar.
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      ctx.heartbeat();
      done(null, chunk);
    },
  });
  const extract = tar.x({
    cwd: dir,
    strict: true,
    filter: (entryPath, entry) => {
      const type = 'type' in entry ? entry.type : 'File';
      const reason = unsafeEntryReason(entryPath, type);
      if (reason !== undefined) {
        unsafe ??= ApplicationFailure.nonRetryable(
          `training artifact ${artifactUri} holds an unsafe entry "${entryPath}" (${reason}); refusing the whole archive (it is left in place for inspection)`,
          'UnsafeArchive',
        );
        // Abort the download now: nothing after an unsafe entry is trusted.
        counted.destroy(unsafe);
        return false;
      }
      const name = isFileEntry(type) ? rootFileName(entryPath) : undefined;
      if (name !== undefined) files.push(name);
      return name === finalName;
    },
  });
  try {
    await pipeline(archive, counted, extract);
  } catch (err) {
    if (unsafe) throw unsafe;
    const code = (err as NodeJS.ErrnoException).code;
    // zlib (Z_*) and tar (TAR_*) errors mean a damaged archive; retrying reads the same bytes.
    if (typeof code === 'string' && /^(Z_|TAR_)/.test(code)) {
      throw ApplicationFailure.nonRetryable(`training artifact ${artifactUri} is not a readable .tar.gz: ${(err as Error).message}`, 'BadArtifact');
    }
    throw err;
  }
  if (unsafe) throw unsafe;
  return files.sort();
}
