/**
 * The register activity against real stores: a local job's output directory into a file:// store,
 * and SageMaker's model.tar.gz in S3 (moto) into an s3:// store, plus the SageMaker Model Registry
 * on moto. The LoRAs and archives come from Python's `safetensors`, numpy and `tarfile`
 * (test/support/kohya_lora.py), independently of the project's own writer.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { DescribeModelPackageCommand, ListModelPackageGroupsCommand, ListModelPackagesCommand } from '@aws-sdk/client-sagemaker';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { ActivityDeps } from '../../activities/deps';
import { makeRegisterActivities, type RegisterInput } from '../../activities/register';
import { kohyaOptionsFor } from '../../lib/kohya/config';
import { parseRegistryRecord, type RegistryRecord } from '../../lib/lora/registry';
import { TrainingRunInput } from '../../lib/pipeline/input';
import type { RegisteredLora } from '../../lib/pipeline/status';
import { WorkerEnv } from '../../worker/config';
import { createDeps } from '../../worker/create';
import { motoAwsClients, startMoto, type MotoServer } from '../support/moto';
import { writeWithPython, type PythonHashes, type PythonLoraSpec } from '../support/python-lora';

const BUCKET = 'lora-register';
const MANIFEST_SHA256 = 'f'.repeat(64);

let tmp: string;
let fixtures: string;
let hashes: Record<string, PythonHashes>;
let moto: MotoServer;
let aws: ReturnType<typeof motoAwsClients>;

const sd15 = (file: string, extra: Partial<PythonLoraSpec> = {}): PythonLoraSpec => ({
  file,
  family: 'sd15',
  dim: 8,
  alpha: 4,
  dtype: 'float16',
  output_name: 'cat',
  ...extra,
});

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'lora-register-'));
  fixtures = path.join(tmp, 'fixtures');
  await fs.mkdir(fixtures);
  const file = (name: string, source: string) => ({ path: name, type: 'file' as const, source });
  hashes = writeWithPython(fixtures, {
    loras: [
      sd15('cat.safetensors'),
      sd15('cat-000001.safetensors'),
      sd15('cat-other.safetensors', { dim: 8, alpha: 4, output_name: 'cat-other' }),
      { file: 'xl.safetensors', family: 'sdxl', dim: 16, alpha: 8, dtype: 'float32', output_name: 'xl' },
      sd15('nan.safetensors', { defect: 'nan' }),
      sd15('missing-alpha.safetensors', { defect: 'missing-alpha' }),
      sd15('wrong-rank.safetensors', { defect: 'wrong-rank' }),
      sd15('checkpoint.safetensors', { defect: 'checkpoint' }),
      sd15('sshs-mismatch.safetensors', { defect: 'sshs-mismatch' }),
      { file: 'xl-inf.safetensors', family: 'sdxl', dim: 16, alpha: 8, dtype: 'float32', output_name: 'xl', defect: 'inf' },
    ],
    archives: [
      {
        file: 'good.tar.gz',
        entries: [
          { path: './', type: 'dir' },
          file('./cat.safetensors', 'cat.safetensors'),
          file('cat-000001.safetensors', 'cat-000001.safetensors'),
          { path: 'logs', type: 'dir' },
          file('logs/cat.safetensors', 'nan.safetensors'),
        ],
      },
      { file: 'absolute.tar.gz', entries: [file('cat.safetensors', 'cat.safetensors'), file('/tmp/cat.safetensors', 'cat.safetensors')] },
      { file: 'dotdot.tar.gz', entries: [file('../cat.safetensors', 'cat.safetensors'), file('cat.safetensors', 'cat.safetensors')] },
      { file: 'symlink.tar.gz', entries: [{ path: 'cat.safetensors', type: 'symlink', target: '/etc/passwd' }] },
      {
        file: 'hardlink.tar.gz',
        entries: [file('cat-000001.safetensors', 'cat-000001.safetensors'), { path: 'cat.safetensors', type: 'hardlink', target: 'cat-000001.safetensors' }],
      },
    ],
  });
  moto = await startMoto();
  aws = motoAwsClients(moto.endpoint);
  await aws.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 60_000);

afterAll(async () => {
  aws?.s3.destroy();
  aws?.sagemaker.destroy();
  await moto?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** Worker deps over a fresh file:// default store; `modelPackagePrefix` turns the Model Registry on. */
async function newDeps(modelPackagePrefix?: string): Promise<{ deps: ActivityDeps; storeDir: string }> {
  const base = await fs.mkdtemp(path.join(tmp, 'worker-'));
  const storeDir = path.join(base, 'store');
  const env = WorkerEnv.parse({
    LORA_WORK_STORE: pathToFileURL(path.join(base, 'work')).href,
    LORA_STORE: pathToFileURL(storeDir).href,
    LORA_JOBS_DIR: path.join(base, 'jobs'),
    LORA_MODEL_PACKAGE_GROUP_PREFIX: modelPackagePrefix,
  });
  return { deps: createDeps(env, aws), storeDir };
}

/** A local job's output directory holding these fixture files (under their names in the output). */
async function outputDir(files: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(tmp, 'output-'));
  for (const [name, fixture] of Object.entries(files)) await fs.copyFile(path.join(fixtures, fixture), path.join(dir, name));
  return dir;
}

function registerInput(runName: string, artifactUri: string, run: Partial<TrainingRunInput> = {}): RegisterInput {
  return {
    run: TrainingRunInput.parse({ runName, dataset: '/datasets/cats', training: { epochs: 3, networkDim: 8, networkAlpha: 4 }, triggerWord: 'ohwx cat', ...run }),
    runId: `lora-${runName}-20250101-120000`,
    job: { backend: 'local', jobName: `${runName}-job` },
    artifactUri,
    datasetManifestSha256: MANIFEST_SHA256,
    progress: { step: 119, totalSteps: 120, loss: 0.0871 },
  };
}

async function register(deps: ActivityDeps, input: RegisterInput): Promise<RegisteredLora> {
  // Expected failures are logged by the activity runtime: keep test output readable.
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  const { registerLora } = makeRegisterActivities(deps);
  return env.run<[RegisterInput], RegisteredLora, typeof registerLora>(registerLora, input);
}

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(ApplicationFailure);
  expect((error as ApplicationFailure).nonRetryable).toBe(true);
  return error as ApplicationFailure;
}

async function recordIn(storeDir: string, name: string): Promise<RegistryRecord> {
  const file = path.join(storeDir, 'registry', `${name}.json`);
  return parseRegistryRecord(await fs.readFile(file, 'utf8'), file);
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await fs.readdir(dir).catch(() => [] as string[])).sort();
}

describe('register from a local output directory', () => {
  it('registers the final file of an SD 1.5 run with every record field', async () => {
    const { deps, storeDir } = await newDeps();
    const dir = await outputDir({ 'cat.safetensors': 'cat.safetensors', 'cat-000001.safetensors': 'cat-000001.safetensors', 'notes.txt': 'nan.safetensors' });
    const input = registerInput('cat', pathToFileURL(dir).href + '/');
    const before = Date.now();
    const registered = await register(deps, input);

    const loraFile = path.join(storeDir, 'models', 'Lora', 'cat.safetensors');
    expect((await fs.readFile(loraFile)).equals(await fs.readFile(path.join(fixtures, 'cat.safetensors')))).toBe(true);
    // The hashes Python computed on its own agree with ours.
    const { sha256, sha256_after_header: afterHeader } = hashes['cat.safetensors'];
    expect(registered).toEqual({
      name: 'cat',
      uri: pathToFileURL(loraFile).href,
      sha256,
      autoV2: sha256.slice(0, 10),
      sizeBytes: (await fs.stat(loraFile)).size,
      recordUri: pathToFileURL(path.join(storeDir, 'registry', 'cat.json')).href,
    });
    const record = await recordIn(storeDir, 'cat');
    expect(record).toMatchObject({
      ...registered,
      sha256AfterHeader: afterHeader,
      runId: input.runId,
      jobName: 'cat-job',
      backend: 'local',
      baseModel: { family: 'sd15', checkpoint: 'runwayml/stable-diffusion-v1-5' },
      triggerWord: 'ohwx cat',
      datasetManifestSha256: MANIFEST_SHA256,
      kohyaConfig: kohyaOptionsFor(input.run),
      metrics: { steps: 120, epochs: 3, finalLoss: 0.0871 },
      rank: 8,
      epochFiles: ['cat-000001.safetensors'],
    });
    expect(record.metadata).toMatchObject({ ss_output_name: 'cat', ss_network_dim: '8', sshs_model_hash: afterHeader });
    expect(Date.parse(record.createdAt)).toBeGreaterThanOrEqual(before - 1000);
    // The job's output is left exactly as it was.
    expect(await filesUnder(dir)).toEqual(['cat-000001.safetensors', 'cat.safetensors', 'notes.txt']);
  });

  it('registers an SDXL LoRA with F32 tensors from the independent writer', async () => {
    const { deps, storeDir } = await newDeps();
    const dir = await outputDir({ 'xl.safetensors': 'xl.safetensors' });
    const registered = await register(
      deps,
      registerInput('xl', pathToFileURL(dir).href, { baseModel: { family: 'sdxl' }, training: { epochs: 3, networkDim: 16, networkAlpha: 8 } }),
    );
    expect(registered.sha256).toBe(hashes['xl.safetensors'].sha256);
    expect(await recordIn(storeDir, 'xl')).toMatchObject({ rank: 16, baseModel: { family: 'sdxl' }, epochFiles: [] });
  });

  it('returns the same record for the same file: two registrations, one LoRA, one record', async () => {
    const { deps, storeDir } = await newDeps();
    const input = registerInput('cat', pathToFileURL(await outputDir({ 'cat.safetensors': 'cat.safetensors' })).href);
    const first = await register(deps, input);
    const recordFile = path.join(storeDir, 'registry', 'cat.json');
    const recordBytes = await fs.readFile(recordFile);

    // A retry (or a second run that produced identical bytes) gets the record that exists.
    const again = await register(deps, { ...input, runId: 'another-run' });
    expect(again).toEqual(first);
    expect((await fs.readFile(recordFile)).equals(recordBytes)).toBe(true);
    expect(await filesUnder(path.join(storeDir, 'registry'))).toEqual(['cat.json']);
    expect(await filesUnder(path.join(storeDir, 'models', 'Lora'))).toEqual(['cat.safetensors']);
  });

  it('finishes a registration that published the LoRA but died before writing the record', async () => {
    const { deps, storeDir } = await newDeps();
    await fs.mkdir(path.join(storeDir, 'models', 'Lora'), { recursive: true });
    await fs.copyFile(path.join(fixtures, 'cat.safetensors'), path.join(storeDir, 'models', 'Lora', 'cat.safetensors'));
    const registered = await register(deps, registerInput('cat', pathToFileURL(await outputDir({ 'cat.safetensors': 'cat.safetensors' })).href));
    expect(registered.name).toBe('cat');
    expect((await recordIn(storeDir, 'cat')).sha256).toBe(hashes['cat.safetensors'].sha256);
  });

  it('registers different bytes under the same name as -v2 and never overwrites', async () => {
    const { deps, storeDir } = await newDeps();
    const first = await register(deps, registerInput('cat', pathToFileURL(await outputDir({ 'cat.safetensors': 'cat.safetensors' })).href));
    const second = await register(deps, registerInput('cat', pathToFileURL(await outputDir({ 'cat.safetensors': 'cat-other.safetensors' })).href));

    expect(first.name).toBe('cat');
    expect(second).toMatchObject({ name: 'cat-v2', sha256: hashes['cat-other.safetensors'].sha256 });
    const lora = (name: string) => fs.readFile(path.join(storeDir, 'models', 'Lora', `${name}.safetensors`));
    expect((await lora('cat')).equals(await fs.readFile(path.join(fixtures, 'cat.safetensors')))).toBe(true);
    expect((await lora('cat-v2')).equals(await fs.readFile(path.join(fixtures, 'cat-other.safetensors')))).toBe(true);
    expect((await recordIn(storeDir, 'cat-v2')).sha256).toBe(second.sha256);
    // The first bytes again: the existing record, not a -v3.
    expect(await register(deps, registerInput('cat', pathToFileURL(await outputDir({ 'cat.safetensors': 'cat.safetensors' })).href))).toEqual(first);
    expect(await filesUnder(path.join(storeDir, 'registry'))).toEqual(['cat-v2.json', 'cat.json']);
  });

  const fixture = (name: string) => fs.readFile(path.join(fixtures, name));
  const damaged: [string, () => Promise<Buffer>, Partial<TrainingRunInput>, RegExp][] = [
    [
      'a truncated file',
      async () => (await fixture('cat.safetensors')).subarray(0, 100_000),
      {},
      /: not a valid safetensors file: tensor ".*": data_offsets \[\d+, \d+\] lie outside the \d+-byte data section/,
    ],
    [
      'a bad header',
      async () => {
        const bytes = Buffer.from(await fixture('cat.safetensors'));
        bytes.write('{"lora_unet_x": [', 8, 'utf8');
        return bytes;
      },
      {},
      /: not a valid safetensors file: header is not valid JSON: /,
    ],
    [
      'an absurd header length',
      async () => Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 1]), Buffer.alloc(64)]),
      {},
      /: not a valid safetensors file: header length 72057594037927936 exceeds the 100000000-byte limit/,
    ],
    ['a missing alpha', () => fixture('missing-alpha.safetensors'), {}, /: module "lora_te_text_model_encoder_layers_11_mlp_fc1" is incomplete: missing \.alpha/],
    [
      'a module of another rank',
      () => fixture('wrong-rank.safetensors'),
      {},
      /: rank mismatch: module "lora_unet_down_blocks_1_attentions_1_transformer_blocks_0_attn2_to_k" has rank 4 but "lora_te_text_model_encoder_layers_0_self_attn_k_proj" has rank 8/,
    ],
    ['a rank other than network_dim', () => fixture('cat.safetensors'), { training: { epochs: 3, networkDim: 16, networkAlpha: 4 } }, /: rank mismatch: the LoRA has rank 8 but network_dim is 16/],
    ['NaN tensors', () => fixture('nan.safetensors'), {}, /: tensor "lora_unet_down_blocks_0_attentions_0_proj_in\.lora_down\.weight" contains NaN \(element 5\)/],
    ['a non-LoRA checkpoint', () => fixture('checkpoint.safetensors'), {}, /: no LoRA tensors \(lora_unet_\*, lora_te\*_\*\) found; .*not a kohya LoRA/],
    [
      'an sshs_model_hash mismatch',
      () => fixture('sshs-mismatch.safetensors'),
      {},
      new RegExp(`: metadata sshs_model_hash is [0-9a-f]{64} but the bytes after the header hash to ${'[0-9a-f]{64}'}: the tensors changed`),
    ],
    ['an SDXL LoRA for an SD 1.5 run', () => fixture('xl.safetensors'), {}, /: metadata ss_base_model_version is "sdxl_base_v1-0", which is not SD 1.x \(family sd15\)/],
    [
      'Inf in an SDXL F32 tensor',
      () => fixture('xl-inf.safetensors'),
      { baseModel: { family: 'sdxl' }, training: { epochs: 3, networkDim: 16, networkAlpha: 8 } },
      /: tensor "lora_unet_input_blocks_4_1_proj_in\.lora_up\.weight" contains Inf \(element 3\)/,
    ],
  ];

  it.each(damaged)('refuses %s with a non-retryable failure naming the problem, leaving the artifact in place', async (_what, bytes, run, message) => {
    const { deps, storeDir } = await newDeps();
    const dir = await fs.mkdtemp(path.join(tmp, 'output-'));
    const content = await bytes();
    await fs.writeFile(path.join(dir, 'cat.safetensors'), content);
    const failure = await failureOf(register(deps, registerInput('cat', pathToFileURL(dir).href, run)));
    expect(failure.type).toBe('InvalidLora');
    expect(failure.message).toMatch(/^cat\.safetensors from file:\/\/.* is not a usable LoRA: /);
    expect(failure.message).toMatch(message);
    expect(failure.message).toMatch(/\(the artifact is left in place for inspection\)$/);
    expect((await fs.readFile(path.join(dir, 'cat.safetensors'))).equals(content)).toBe(true);
    expect(await filesUnder(path.join(storeDir, 'models', 'Lora'))).toEqual([]);
    expect(await filesUnder(path.join(storeDir, 'registry'))).toEqual([]);
  });

  it('names what the output holds when the final file is missing', async () => {
    const { deps } = await newDeps();
    const dir = await outputDir({ 'cat-000001.safetensors': 'cat-000001.safetensors' });
    const failure = await failureOf(register(deps, registerInput('cat', pathToFileURL(dir).href)));
    expect(failure.type).toBe('LoraMissing');
    expect(failure.message).toBe(`no cat.safetensors in the training output ${pathToFileURL(dir).href} (found: cat-000001.safetensors)`);
  });

  it('refuses to answer with a record that describes other bytes', async () => {
    const { deps, storeDir } = await newDeps();
    await register(deps, registerInput('cat', pathToFileURL(await outputDir({ 'cat.safetensors': 'cat.safetensors' })).href));
    // Someone replaced the LoRA by hand, keeping the old record.
    await fs.copyFile(path.join(fixtures, 'cat-other.safetensors'), path.join(storeDir, 'models', 'Lora', 'cat.safetensors'));
    const failure = await failureOf(register(deps, registerInput('cat', pathToFileURL(await outputDir({ 'cat.safetensors': 'cat-other.safetensors' })).href)));
    expect(failure.type).toBe('RegistryConflict');
    expect(failure.message).toMatch(/^registry record file:.*\/registry\/cat\.json describes sha256 [0-9a-f]{64}, but .*cat\.safetensors holds [0-9a-f]{64}/);
  });
});

describe('register from a SageMaker model.tar.gz in S3', () => {
  const store = `s3://${BUCKET}/lora`;

  async function putArchive(jobName: string, fixtureName: string | Buffer): Promise<string> {
    const key = `lora/training/${jobName}/output/model.tar.gz`;
    const body = typeof fixtureName === 'string' ? await fs.readFile(path.join(fixtures, fixtureName)) : fixtureName;
    await aws.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    return `s3://${BUCKET}/${key}`;
  }

  async function keysUnder(prefix: string): Promise<string[]> {
    const listed = await aws.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
    return (listed.Contents ?? []).map((o) => o.Key!).sort();
  }

  async function s3Text(key: string): Promise<string> {
    return (await aws.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString();
  }

  beforeEach(async () => {
    await moto.reset();
    await aws.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  });

  it('extracts only the final file, registers it in S3 and lists the epoch file', async () => {
    const { deps } = await newDeps();
    const artifactUri = await putArchive('cat-job', 'good.tar.gz');
    const input = { ...registerInput('cat', artifactUri, { store }), job: { backend: 'sagemaker' as const, jobName: 'cat-job' } };
    const registered = await register(deps, input);

    expect(registered).toMatchObject({ name: 'cat', uri: `${store}/models/Lora/cat.safetensors`, sha256: hashes['cat.safetensors'].sha256 });
    const lora = await aws.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'lora/models/Lora/cat.safetensors' }));
    expect(Buffer.from(await lora.Body!.transformToByteArray()).equals(await fs.readFile(path.join(fixtures, 'cat.safetensors')))).toBe(true);
    const record = parseRegistryRecord(await s3Text('lora/registry/cat.json'), 'cat.json');
    // logs/cat.safetensors is deeper in the archive: neither the final file nor an epoch file.
    expect(record).toMatchObject({ backend: 'sagemaker', jobName: 'cat-job', epochFiles: ['cat-000001.safetensors'] });
    expect(record.modelPackageArn).toBeUndefined();

    const again = await register(deps, input);
    expect(again).toEqual(registered);
    expect(await keysUnder('lora/registry/')).toEqual(['lora/registry/cat.json']);
    expect(await keysUnder('lora/training/')).toEqual(['lora/training/cat-job/output/model.tar.gz']);
  });

  it.each([
    ['absolute.tar.gz', '/tmp/cat.safetensors', 'an absolute path'],
    ['dotdot.tar.gz', '../cat.safetensors', 'a ".." path component'],
    ['symlink.tar.gz', 'cat.safetensors', 'a symbolic link'],
    ['hardlink.tar.gz', 'cat.safetensors', 'a hard link'],
  ])('refuses the whole of %s, naming the entry "%s" (%s)', async (archive, entry, reason) => {
    const { deps } = await newDeps();
    const artifactUri = await putArchive('unsafe-job', archive);
    const failure = await failureOf(register(deps, registerInput('cat', artifactUri, { store })));
    expect(failure.type).toBe('UnsafeArchive');
    expect(failure.message).toBe(
      `training artifact ${artifactUri} holds an unsafe entry "${entry}" (${reason}); refusing the whole archive (it is left in place for inspection)`,
    );
    expect(await keysUnder('lora/models/')).toEqual([]);
    expect(await keysUnder('lora/registry/')).toEqual([]);
    await expect(aws.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'lora/training/unsafe-job/output/model.tar.gz' }))).resolves.toBeDefined();
  });

  it('names an archive that is not a .tar.gz at all', async () => {
    const { deps } = await newDeps();
    const artifactUri = await putArchive('junk-job', Buffer.from('<Error>AccessDenied</Error>'));
    const failure = await failureOf(register(deps, registerInput('cat', artifactUri, { store })));
    expect(failure.type).toBe('BadArtifact');
    expect(failure.message).toMatch(new RegExp(`^training artifact ${artifactUri} is not a readable \\.tar\\.gz: `));
  });

  it('also registers a Model Registry version per distinct file, pending manual approval', async () => {
    const { deps } = await newDeps('lora-test');
    const input = registerInput('cat', await putArchive('cat-job', 'good.tar.gz'), { store });
    await register(deps, input);
    const record = parseRegistryRecord(await s3Text('lora/registry/cat.json'), 'cat.json');
    expect(record.modelPackageArn).toMatch(/:model-package\/lora-test-cat\/1$/);

    const groups = await aws.sagemaker.send(new ListModelPackageGroupsCommand({}));
    expect(groups.ModelPackageGroupSummaryList?.map((g) => g.ModelPackageGroupName)).toEqual(['lora-test-cat']);
    const version = await aws.sagemaker.send(new DescribeModelPackageCommand({ ModelPackageName: record.modelPackageArn }));
    expect(version).toMatchObject({
      ModelPackageGroupName: 'lora-test-cat',
      ModelApprovalStatus: 'PendingManualApproval',
      CustomerMetadataProperties: { LoraUri: `${store}/models/Lora/cat.safetensors`, Sha256: record.sha256, BaseModel: 'sd15', TriggerWord: 'ohwx cat' },
    });

    // A registration that died after creating the version adopts it instead of adding another.
    await aws.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'lora/registry/cat.json' }));
    await register(deps, input);
    expect(parseRegistryRecord(await s3Text('lora/registry/cat.json'), 'cat.json').modelPackageArn).toBe(record.modelPackageArn);

    // Different bytes under the same name: cat-v2, version 2 of the same group.
    const other = await outputDir({ 'cat.safetensors': 'cat-other.safetensors' });
    const second = await register(deps, registerInput('cat', pathToFileURL(other).href, { store }));
    expect(second.name).toBe('cat-v2');
    const secondRecord = parseRegistryRecord(await s3Text('lora/registry/cat-v2.json'), 'cat-v2.json');
    expect(secondRecord.modelPackageArn).toMatch(/:model-package\/lora-test-cat\/2$/);
    const versions = await aws.sagemaker.send(new ListModelPackagesCommand({ ModelPackageGroupName: 'lora-test-cat' }));
    expect(versions.ModelPackageSummaryList).toHaveLength(2);
  });
});
