/**
 * Registration: find the final LoRA among the job's outputs, verify it really is a LoRA for this
 * run's base model, and publish it where the WebUI looks (`models/Lora/`), never overwriting a
 * different file of the same name. A retry with the same bytes returns the same record.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import * as tar from 'tar';
import { verifyLora } from '../lib/lora/verify';
import type { TrainingRun } from '../lib/pipeline/input';
import type { RegisteredLora, TrainingJobRef } from '../lib/pipeline/status';
import type { ActivityDeps } from './deps';
import { withClassifiedErrors } from './errors';

export interface RegisterInput {
  run: TrainingRun;
  runId: string;
  job: TrainingJobRef;
  artifactUri: string;
  datasetManifestSha256: string;
}

export interface RegistryRecord extends RegisteredLora {
  runId: string;
  jobName: string;
  backend: TrainingJobRef['backend'];
  baseModel: TrainingRun['baseModel'];
  triggerWord?: string;
  datasetManifestSha256: string;
  epochFiles: string[];
  metadata: Record<string, string>;
  createdAt: string;
}

export function makeRegisterActivities(deps: ActivityDeps) {
  async function registerLora(input: RegisterInput): Promise<RegisteredLora> {
    return withClassifiedErrors('register', async () => {
      const { run } = input;
      const outputs = await fetchOutputs(deps, input.artifactUri);
      try {
        const finalName = `${run.runName}.safetensors`;
        if (!outputs.files.includes(finalName)) {
          throw ApplicationFailure.nonRetryable(
            `no ${finalName} in the training output ${input.artifactUri} (found: ${outputs.files.join(', ') || 'nothing'})`,
            'LoraMissing',
          );
        }
        const bytes = await fs.readFile(path.join(outputs.dir, finalName));
        let verified;
        try {
          verified = verifyLora(bytes, { family: run.baseModel.family, networkDim: run.training.networkDim });
        } catch (err) {
          throw ApplicationFailure.nonRetryable(`${finalName} from ${input.artifactUri} is not a usable LoRA: ${(err as Error).message}`, 'InvalidLora');
        }
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        const store = deps.openStore(run.store);
        const name = await publish(store, run.runName, bytes, sha256);
        const record: RegistryRecord = {
          name,
          uri: store.uriOf(`models/Lora/${name}.safetensors`),
          sha256,
          autoV2: sha256.slice(0, 10),
          sizeBytes: bytes.length,
          recordUri: store.uriOf(`registry/${name}.json`),
          runId: input.runId,
          jobName: input.job.jobName,
          backend: input.job.backend,
          baseModel: run.baseModel,
          triggerWord: run.triggerWord,
          datasetManifestSha256: input.datasetManifestSha256,
          epochFiles: outputs.files.filter((f) => f !== finalName && f.endsWith('.safetensors')),
          metadata: verified.metadata,
          createdAt: new Date().toISOString(),
        };
        // Exclusive create: the first record for a name wins; a retry returns what is there.
        const created = await store.putIfAbsent(`registry/${name}.json`, JSON.stringify(record, null, 2) + '\n');
        const stored = created ? record : (JSON.parse((await store.get(`registry/${name}.json`)).toString('utf8')) as RegistryRecord);
        const { uri, autoV2, sizeBytes, recordUri } = stored;
        return { name: stored.name, uri, sha256: stored.sha256, autoV2, sizeBytes, recordUri };
      } finally {
        await outputs.cleanup();
      }
    });
  }
  return { registerLora };
}

/** `<name>`, else `<name>-v2`, `-v3`, …: the first slot that is free or already holds these bytes. */
async function publish(store: ReturnType<ActivityDeps['openStore']>, baseName: string, bytes: Buffer, sha256: string): Promise<string> {
  for (let version = 1; ; version++) {
    const name = version === 1 ? baseName : `${baseName}-v${version}`;
    const key = `models/Lora/${name}.safetensors`;
    const existing = await store.head(key, { withHash: true });
    if (existing?.sha256 === sha256) return name;
    if (!existing && (await store.putIfAbsent(key, bytes, { sha256 }))) return name;
  }
}

interface Outputs {
  dir: string;
  files: string[];
  cleanup(): Promise<void>;
}

/** The job's output files on local disk: a local job's directory, or SageMaker's model.tar.gz unpacked. */
async function fetchOutputs(deps: ActivityDeps, artifactUri: string): Promise<Outputs> {
  if (artifactUri.startsWith('file://')) {
    const dir = fileURLToPath(artifactUri);
    return { dir, files: await listFiles(dir, artifactUri), cleanup: async () => undefined };
  }
  const match = /^(s3:\/\/.+)\/([^/]+\.tar\.gz)$/.exec(artifactUri);
  if (!match) throw ApplicationFailure.nonRetryable(`unsupported training artifact "${artifactUri}": expected a file:// directory or an s3:// .tar.gz`, 'BadArtifact');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'lora-artifact-'));
  const cleanup = () => fs.rm(dir, { recursive: true, force: true });
  try {
    const rejected: string[] = [];
    const archive = await deps.openStore(match[1]).getStream(match[2]);
    Context.current().heartbeat();
    await pipeline(
      archive,
      tar.x({
        cwd: dir,
        strict: true,
        // Only plain files with relative paths inside the archive: no links, no escapes.
        filter: (entryPath, entry) => {
          const type = 'type' in entry ? entry.type : 'File';
          const safe = !path.isAbsolute(entryPath) && !entryPath.split('/').includes('..');
          if ((type !== 'File' && type !== 'Directory') || !safe) rejected.push(entryPath);
          return type === 'File' && safe;
        },
      }),
    );
    if (rejected.length) Context.current().log.warn('ignored unsafe archive entries', { artifactUri, rejected });
    return { dir, files: await listFiles(dir, artifactUri), cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function listFiles(dir: string, artifactUri: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`cannot read training output ${artifactUri}: ${(err as Error).message}`, 'BadArtifact');
  }
}
