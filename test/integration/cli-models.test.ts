/**
 * `lora models list` / `lora models show` over a file:// registry that the register activity
 * filled with LoRAs from the project's own writer; no Temporal server is involved.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { makeRegisterActivities, type RegisterInput } from '../../activities/register';
import { buildProgram } from '../../client/cli';
import { registryStoreUri } from '../../client/models';
import { buildLora } from '../../lib/lora/build';
import { TrainingRunInput } from '../../lib/pipeline/input';
import type { RegisteredLora } from '../../lib/pipeline/status';
import { WorkerEnv } from '../../worker/config';
import { createDeps } from '../../worker/create';

let tmp: string;
let storeUri: string;
const registered: Record<string, RegisteredLora> = {};

async function registerBuilt(runName: string, family: 'sd15' | 'sdxl', triggerWord?: string): Promise<void> {
  const outputDir = path.join(tmp, 'jobs', runName);
  await fs.mkdir(outputDir, { recursive: true });
  const lora = buildLora({ family, networkDim: 4, networkAlpha: 2, outputName: runName, epochs: 2, steps: 40, seed: 7, dryRun: true });
  await fs.writeFile(path.join(outputDir, `${runName}.safetensors`), lora);
  const run = TrainingRunInput.parse({ runName, dataset: '/datasets/x', baseModel: { family }, triggerWord, training: { epochs: 2, networkDim: 4, networkAlpha: 2 } });
  const input: RegisterInput = {
    run,
    runId: `lora-${runName}-1`,
    job: { backend: 'local', jobName: `${runName}-job` },
    artifactUri: pathToFileURL(outputDir).href,
    datasetManifestSha256: 'a'.repeat(64),
    progress: { loss: 0.1234 },
  };
  const env = WorkerEnv.parse({ LORA_STORE: storeUri, LORA_WORK_STORE: pathToFileURL(path.join(tmp, 'work')).href, LORA_JOBS_DIR: path.join(tmp, 'jobs') });
  const aws = { s3: new S3Client({ region: 'us-east-1' }), sagemaker: new SageMakerClient({ region: 'us-east-1' }) };
  const { registerLora } = makeRegisterActivities(createDeps(env, aws));
  const activityEnv = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  registered[runName] = await activityEnv.run<[RegisterInput], RegisteredLora, typeof registerLora>(registerLora, input);
}

/** Runs the CLI in-process and returns what it printed. */
async function lora(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
  try {
    await buildProgram().parseAsync(['node', 'lora', ...args]);
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  return { stdout, stderr };
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'lora-cli-models-'));
  storeUri = pathToFileURL(path.join(tmp, 'store')).href;
  await registerBuilt('cat-style', 'sd15', 'ohwx cat');
  await registerBuilt('xl-style', 'sdxl');
});

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('lora models', () => {
  it('lists registered LoRAs with base model, trigger word, AutoV2 and size', async () => {
    const { stdout, stderr } = await lora('models', 'list', '--store', storeUri);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+BASE\s+TRIGGER\s+AUTOV2\s+SIZE\s+CREATED \(UTC\)$/);
    expect(lines[1]).toMatch(new RegExp(`^cat-style\\s+sd15\\s+ohwx cat\\s+${registered['cat-style'].autoV2}\\s+\\d+\\.\\d MiB\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d$`));
    expect(lines[2]).toMatch(new RegExp(`^xl-style\\s+sdxl\\s+-\\s+${registered['xl-style'].autoV2}\\s`));
    expect(lines).toHaveLength(3);
    expect(stderr).toBe('');
  });

  it('prints the records as JSON with --json', async () => {
    const { stdout } = await lora('--json', 'models', 'list', '--store', storeUri);
    const records = JSON.parse(stdout) as { name: string; sha256: string }[];
    expect(records.map((r) => [r.name, r.sha256])).toEqual([
      ['cat-style', registered['cat-style'].sha256],
      ['xl-style', registered['xl-style'].sha256],
    ]);
  });

  it('shows one LoRA: file, hashes, trigger word, base model, training and metadata', async () => {
    const { stdout } = await lora('models', 'show', 'cat-style', '--store', storeUri);
    const cat = registered['cat-style'];
    expect(stdout).toContain(`LoRA cat-style\n  file:          ${cat.uri}\n`);
    expect(stdout).toContain(`  sha256:        ${cat.sha256}\n  AutoV2:        ${cat.autoV2}\n`);
    expect(stdout).toContain('  trigger word:  ohwx cat\n');
    expect(stdout).toContain('  base model:    sd15 (runwayml/stable-diffusion-v1-5)\n');
    expect(stdout).toContain('  training:      40 steps, 2 epochs, final loss 0.1234\n');
    expect(stdout).toMatch(/ {2}data sha256: {3}[0-9a-f]{64} \(bytes after the header; sshs_model_hash\)\n/);
    expect(stdout).toContain('    ss_base_model_version: sd_v1\n');
    const json = JSON.parse((await lora('--json', 'models', 'show', 'cat-style', '--store', storeUri)).stdout);
    expect(json).toMatchObject({ name: 'cat-style', sha256: cat.sha256, triggerWord: 'ohwx cat', baseModel: { family: 'sd15' } });
  });

  it('names a LoRA that is not registered and a bad --store', async () => {
    await expect(lora('models', 'show', 'dog', '--store', storeUri)).rejects.toThrow(
      `no LoRA named "dog" in the registry at ${storeUri} ("lora models list" shows what is there)`,
    );
    await expect(lora('models', 'show', '../x', '--store', storeUri)).rejects.toThrow(/^name: must be a registered LoRA name such as my-style or my-style-v2$/);
    await expect(lora('models', 'list', '--store', '/srv/store')).rejects.toThrow('--store: must be a file:// or s3:// URI');
  });

  it('warns about an unreadable record and still lists the others', async () => {
    const bad = path.join(tmp, 'store', 'registry', 'broken.json');
    await fs.writeFile(bad, '{"name": "broken"}');
    try {
      const { stdout, stderr } = await lora('models', 'list', '--store', storeUri);
      expect(stdout.trimEnd().split('\n')).toHaveLength(3);
      expect(stderr).toMatch(/^lora: warning: registry record file:.*\/registry\/broken\.json is invalid: record\.uri: /);
    } finally {
      await fs.rm(bad);
    }
  });

  it('reads the worker\'s default store when --store is not given', () => {
    expect(registryStoreUri(undefined, { LORA_STORE: 's3://bucket/lora' })).toBe('s3://bucket/lora');
    expect(registryStoreUri(undefined, {})).toBe(WorkerEnv.parse({}).LORA_STORE);
    expect(() => registryStoreUri(undefined, { LORA_STORE: 'ftp://x' })).toThrow('env.LORA_STORE: must be a file:// or s3:// URI');
  });
});
