/**
 * `npm run test:faults`: the durability claims, proven by breaking things. Workers are real
 * processes killed with SIGKILL mid-stage, the dev server is restarted on its persistent db, and
 * S3 answers through a proxy that throttles or denies. Every injected fault is printed as FAULT.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { ListTrainingJobsCommand } from '@aws-sdk/client-sagemaker';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import * as tar from 'tar';
import { readRunSnapshot, startRun, type RunSnapshot } from '../../client/runs';
import { trainingJobName } from '../../lib/job-name';
import { buildLora } from '../../lib/lora/build';
import type { TrainingRunInput } from '../../lib/pipeline/input';
import type { RunOutcome, Stage } from '../../lib/pipeline/status';
import { writeExampleDataset } from '../../scripts/example-dataset';
import { motoAwsClients, startMoto, type MotoServer } from '../support/moto';
import { DevServerProcess, WorkerProcess } from '../../scripts/processes';
import { startS3FaultProxy, type S3FaultProxy } from './s3-fault-proxy';

const BUCKET = 'lora-faults';

let tmp: string;
let server: DevServerProcess;
let moto: MotoServer;
let proxy: S3FaultProxy;
let aws: ReturnType<typeof motoAwsClients>;
let connection: Connection;
let client: Client;
let bigDataset: string;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'lora-faults-'));
  [server, moto] = await Promise.all([DevServerProcess.start(tmp), startMoto()]);
  proxy = await startS3FaultProxy(moto.endpoint);
  aws = motoAwsClients(moto.endpoint);
  await aws.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  connection = await Connection.connect({ address: server.address });
  client = new Client({ connection });
  // Camera-sized pictures, so that preprocessing and upload take long enough to be interrupted.
  bigDataset = path.join(tmp, 'big');
  await writeExampleDataset(bigDataset, { count: 24, scale: 4 });
}, 180_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await connection?.close();
  // Their keep-alive sockets would otherwise hold jest open after the last test.
  aws?.s3.destroy();
  aws?.sagemaker.destroy();
  await Promise.all([server?.stop(), proxy?.close(), moto?.stop()]);
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  proxy.plan = { slowDownShare: 0, latencyMs: 0, denyAll: false };
  proxy.injected = { slowDown: 0, accessDenied: 0 };
});

function startWorker(name: string, env: Record<string, string> = {}): WorkerProcess {
  const worker = new WorkerProcess(
    {
      TEMPORAL_ADDRESS: server.address,
      LORA_TASK_QUEUE: 'faults',
      LORA_WORK_STORE: pathToFileURL(path.join(tmp, 'work')).href,
      LORA_STORE: pathToFileURL(path.join(tmp, 'store')).href,
      LORA_JOBS_DIR: path.join(tmp, 'jobs'),
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: proxy.endpoint,
      ...env,
    },
    path.join(tmp, `worker-${name}.log`),
  );
  workers.push(worker);
  return worker;
}

async function startFaultRun(workflowId: string, input: TrainingRunInput) {
  return startRun(client, input, { taskQueue: 'faults', workflowId });
}

/** Waits until the run is in `stage` and `ready` holds for its snapshot (e.g. some progress made). */
async function waitUntil(workflowId: string, stage: Stage, ready: (s: RunSnapshot) => boolean = () => true, timeoutMs = 120_000): Promise<RunSnapshot> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const snapshot = await readRunSnapshot(client, workflowId);
    if (snapshot.status.stage === stage && ready(snapshot)) return snapshot;
    if (Date.now() > deadline) throw new Error(`${workflowId} is in stage ${snapshot.status.stage}, waited for ${stage}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}


function fault(message: string): void {
  console.log(`FAULT: ${message}`);
}

async function keysUnder(prefix: string): Promise<string[]> {
  const listed = await aws.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (listed.Contents ?? []).map((o) => o.Key!);
}

const localRun = (runName: string, dataset: string): TrainingRunInput => ({
  runName,
  dataset,
  // Small batches: several preprocessing activities, so a crash lands in the middle of the fan-out.
  preprocess: { batchSize: 8 },
  trainer: { kind: 'local', dryRun: true },
  training: { epochs: 2, networkDim: 4, networkAlpha: 2 },
  pollInterval: '500ms',
});

/**
 * A run on S3 + SageMaker (moto). moto writes no artifact, so the job's model.tar.gz is put where
 * SageMaker would write it; the deterministic job name says where that is.
 */
async function sageMakerRun(runName: string, workflowId: string, dataset: string): Promise<TrainingRunInput> {
  const outDir = await fs.mkdtemp(path.join(tmp, 'artifact-'));
  const lora = buildLora({ family: 'sd15', networkDim: 4, networkAlpha: 2, outputName: runName, epochs: 1, steps: 10, seed: 1, dryRun: true });
  await fs.writeFile(path.join(outDir, `${runName}.safetensors`), lora);
  const tarball = path.join(outDir, 'model.tar.gz');
  await tar.c({ gzip: true, file: tarball, cwd: outDir }, [`${runName}.safetensors`]);
  const key = `${runName}/training/${trainingJobName(runName, workflowId)}/output/model.tar.gz`;
  await aws.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: await fs.readFile(tarball) }));
  return {
    runName,
    dataset,
    store: `s3://${BUCKET}/${runName}`,
    trainer: { kind: 'sagemaker', imageUri: '123456789012.dkr.ecr.us-east-1.amazonaws.com/kohya:test', roleArn: 'arn:aws:iam::123456789012:role/Lora' },
    training: { epochs: 1, networkDim: 4, networkAlpha: 2 },
    pollInterval: '500ms',
  };
}

test('kill -9 during preprocessing and during polling: a new worker finishes with one job and one LoRA', async () => {
  const workflowId = `faults-local-${Date.now()}`;
  // Slow dry-run steps keep the job running while its poller is killed.
  const trainerEnv = { DRY_RUN_STEP_MS: '300' };
  const first = startWorker('local-1', trainerEnv);
  const handle = await startFaultRun(workflowId, localRun('killed', bigDataset));

  const atPreprocess = await waitUntil(workflowId, 'preprocessing', (s) => s.activities.some((a) => a.type === 'preprocessBatch'));
  const batches = atPreprocess.activities.filter((a) => a.type === 'preprocessBatch').length;
  fault(`kill -9 worker ${first.pid} during preprocessing (${batches} batch activities in flight)`);
  await first.kill9();

  const second = startWorker('local-2', trainerEnv);
  const atTraining = await waitUntil(workflowId, 'training', (s) => s.activities.some((a) => (a.progress?.done ?? 0) > 0));
  fault(`kill -9 worker ${second.pid} while polling the training job (step ${atTraining.activities[0].progress!.done})`);
  await second.kill9();

  startWorker('local-3', trainerEnv);
  const outcome: RunOutcome = await handle.result();
  expect(outcome.stage).toBe('completed');
  expect(outcome.images).toEqual({ found: 24, kept: 24, skipped: 0 });
  // Exactly one training job, launched once (one dry-run banner in its log), and one LoRA version.
  const jobs = await fs.readdir(path.join(tmp, 'jobs'));
  expect(jobs).toEqual([outcome.job!.jobName]);
  const log = await fs.readFile(path.join(tmp, 'jobs', jobs[0], 'log.txt'), 'utf8');
  expect(log.match(/DRY RUN/g)).toHaveLength(1);
  expect(await fs.readdir(path.join(tmp, 'store', 'registry'))).toEqual(['killed.json']);
  const manifest = JSON.parse(await fs.readFile(path.join(tmp, 'work', 'runs', workflowId, 'manifest.json'), 'utf8'));
  expect(manifest.images).toHaveLength(24);
}, 300_000);

test('kill -9 during upload and during registration (S3 + SageMaker): one job, complete dataset, one record', async () => {
  const workflowId = `faults-s3-${Date.now()}`;
  const runName = 'killed-s3';
  const input = await sageMakerRun(runName, workflowId, bigDataset);
  const jobName = trainingJobName(runName, workflowId);

  // Slow S3 (only upload and registration talk to it) so the upload is surely in flight when killed.
  proxy.plan.latencyMs = 1000;
  const first = startWorker('s3-1');
  const handle = await startFaultRun(workflowId, input);
  await waitUntil(workflowId, 'uploading', (s) => s.activities.some((a) => a.type === 'uploadDataset'), 180_000);
  fault(`kill -9 worker ${first.pid} during upload (S3 answering after 1 s)`);
  await first.kill9();

  // Slow S3 right down so registration (several S3 calls) is surely in flight when the worker dies.
  const second = startWorker('s3-2');
  await waitUntil(workflowId, 'registering', () => true, 180_000);
  proxy.plan.latencyMs = 1500;
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect((await readRunSnapshot(client, workflowId)).status.stage).toBe('registering');
  fault(`kill -9 worker ${second.pid} during registration`);
  await second.kill9();
  proxy.plan.latencyMs = 0;

  startWorker('s3-3');
  const outcome: RunOutcome = await handle.result();
  expect(outcome.stage).toBe('completed');
  const jobs = await aws.sagemaker.send(new ListTrainingJobsCommand({}));
  expect(jobs.TrainingJobSummaries?.filter((j) => j.TrainingJobName === jobName)).toHaveLength(1);
  const datasetPrefix = outcome.dataset!.uri.replace(`s3://${BUCKET}/`, '');
  const datasetKeys = await keysUnder(`${datasetPrefix}/`);
  expect(datasetKeys.filter((k) => k.endsWith('.png'))).toHaveLength(24);
  expect(datasetKeys).toContain(`${datasetPrefix}/manifest.json`);
  expect(await keysUnder(`${runName}/registry/`)).toEqual([`${runName}/registry/${runName}.json`]);
  expect(await keysUnder(`${runName}/models/Lora/`)).toEqual([`${runName}/models/Lora/${runName}.safetensors`]);
}, 400_000);

test('restarting the dev server mid-run: the run resumes and completes', async () => {
  const workflowId = `faults-restart-${Date.now()}`;
  const dataset = path.join(tmp, 'small');
  await writeExampleDataset(dataset, { count: 3 });
  startWorker('restart', { DRY_RUN_STEP_MS: '300' });
  const handle = await startFaultRun(workflowId, localRun('restarted', dataset));
  await waitUntil(workflowId, 'training');
  fault('stop the Temporal dev server while the run trains, then start it again on the same db');
  await server.stop();
  await new Promise((resolve) => setTimeout(resolve, 2000));
  await server.start();
  const outcome: RunOutcome = await handle.result();
  expect(outcome.stage).toBe('completed');
  expect(outcome.lora?.name).toBe('restarted');
}, 300_000);

test('S3 answering 503 SlowDown to 30% of requests: the run completes', async () => {
  const workflowId = `faults-slowdown-${Date.now()}`;
  const dataset = path.join(tmp, 'slowdown');
  await writeExampleDataset(dataset, { count: 6 });
  const input = await sageMakerRun('throttled', workflowId, dataset);
  proxy.plan.slowDownShare = 0.3;
  startWorker('slowdown');
  const outcome: RunOutcome = await (await startFaultRun(workflowId, input)).result();
  fault(`S3 answered ${proxy.injected.slowDown} requests with 503 SlowDown`);
  expect(proxy.injected.slowDown).toBeGreaterThan(0);
  expect(outcome.stage).toBe('completed');
  expect(outcome.dataset?.files).toBe(12);
  expect(outcome.lora?.uri).toBe(`s3://${BUCKET}/throttled/models/Lora/throttled.safetensors`);
}, 300_000);

test('S3 AccessDenied: the run fails after one attempt with a clear message', async () => {
  const workflowId = `faults-denied-${Date.now()}`;
  const dataset = path.join(tmp, 'denied');
  await writeExampleDataset(dataset, { count: 2 });
  proxy.plan.denyAll = true;
  startWorker('denied');
  const handle = await startFaultRun(workflowId, { ...localRun('denied', dataset), store: `s3://${BUCKET}/denied` });
  const failure = await handle.result().catch((err: unknown) => err);
  fault(`S3 denied ${proxy.injected.accessDenied} requests with 403 AccessDenied`);
  expect(failure).toBeInstanceOf(WorkflowFailedError);
  const status = (await readRunSnapshot(client, workflowId)).status;
  expect(status.stage).toBe('failed');
  expect(status.error).toMatch(/upload: AccessDenied/);
  const history = await handle.fetchHistory();
  const uploadAttempts = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes && e.activityTaskStartedEventAttributes.attempt !== 1);
  expect(uploadAttempts).toHaveLength(0);
  expect(proxy.injected.accessDenied).toBeLessThanOrEqual(4);
}, 120_000);
