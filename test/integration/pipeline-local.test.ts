/**
 * End to end on a real Temporal dev server: file:// storage and the local trainer in dry-run mode,
 * through review (approve, reject, timeout), failure on a missing dataset, and cancellation.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure, defaultPayloadConverter } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { verifyLora } from '../../lib/lora/verify';
import { startRun } from '../../client/runs';
import type { TrainingRunInput } from '../../lib/pipeline/input';
import type { RunOutcome, Stage } from '../../lib/pipeline/status';
import { writeExampleDataset } from '../../scripts/example-dataset';
import { createDeps, createLoraWorker, type LoraWorker } from '../../worker/create';
import { WorkerEnv } from '../../worker/config';
import { approveSignal, rejectSignal, statusQuery } from '../../workflows/messages';
import { LORA_STAGE } from '../../workflows/search-attributes';
import { recordHistory } from '../support/replay-fixtures';
import { startTemporal } from '../support/temporal';

const TASK_QUEUE = 'pipeline-local-test';

let env: TestWorkflowEnvironment;
let worker: LoraWorker;
let workerRun: Promise<void>;
let tmp: string;
let storeDir: string;
let jobsDir: string;

/** A worker over this file's temp stores; `trainerEnv` reaches the dry-run trainer processes. */
async function newWorker(taskQueue: string, trainerEnv?: Record<string, string>): Promise<LoraWorker> {
  const config = WorkerEnv.parse({
    LORA_WORK_STORE: pathToFileURL(path.join(tmp, 'work')).href,
    LORA_STORE: pathToFileURL(storeDir).href,
    LORA_JOBS_DIR: jobsDir,
  });
  const aws = { s3: new S3Client({ region: 'us-east-1' }), sagemaker: new SageMakerClient({ region: 'us-east-1' }) };
  return createLoraWorker({ connection: env.nativeConnection, taskQueue, deps: createDeps(config, aws, trainerEnv) });
}

beforeAll(async () => {
  env = await startTemporal();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'lora-e2e-'));
  storeDir = path.join(tmp, 'store');
  jobsDir = path.join(tmp, 'jobs');
  worker = await newWorker(TASK_QUEUE);
  workerRun = worker.run();
});

afterAll(async () => {
  if (worker) {
    worker.shutdown();
    await workerRun;
  }
  await env?.teardown();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

function input(runName: string, dataset: string, extra: Partial<TrainingRunInput> = {}): TrainingRunInput {
  return { runName, dataset, trainer: { kind: 'local', dryRun: true }, training: { epochs: 2, networkDim: 4, networkAlpha: 2 }, pollInterval: '200ms', ...extra };
}

async function start(runName: string, runInput: TrainingRunInput, taskQueue = TASK_QUEUE): Promise<WorkflowHandle> {
  return startRun(env.client, runInput, { taskQueue, workflowId: `${runName}-${Date.now()}` });
}

async function waitForStage(handle: WorkflowHandle, stage: Stage, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await handle.query(statusQuery);
    if (status.stage === stage) return;
    if (Date.now() > deadline) throw new Error(`run stayed in stage ${status.stage}, expected ${stage}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The workflow's current details, as the Web UI reads them (the SDK's built-in metadata query). */
async function currentDetails(handle: WorkflowHandle): Promise<string | undefined> {
  const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
  return metadata.currentDetails;
}

/** The one-line summary of each scheduled activity, in history order. */
async function activitySummaries(handle: WorkflowHandle): Promise<string[]> {
  const { events } = await handle.fetchHistory();
  return (events ?? [])
    .filter((event) => event.activityTaskScheduledEventAttributes)
    .map((event) => defaultPayloadConverter.fromPayload<string>(event.userMetadata?.summary ?? {}));
}

test('a run with a caption error waits for review, is approved, trains (dry run) and registers a valid LoRA', async () => {
  const dataset = path.join(tmp, 'approve-ds');
  await writeExampleDataset(dataset, { count: 4, missingCaption: true });
  const handle = await start('approve', input('approve', dataset));

  await waitForStage(handle, 'awaiting_review');
  const waiting = await handle.query(statusQuery);
  expect(waiting.images).toEqual({ found: 4, kept: 4, skipped: 0 });
  expect(waiting.captions?.error).toBe(1);
  const described = await handle.describe();
  expect(described.typedSearchAttributes.get(LORA_STAGE)).toBe('awaiting_review');
  // The Web UI's view: the summary given at start and the details the workflow keeps current.
  expect(await described.staticSummary()).toBe(`LoRA "approve" · sd15 · local trainer (dry run) · from ${dataset}`);
  expect(await currentDetails(handle)).toBe('**Stage:** awaiting review  \n**Images:** 4 kept, 0 skipped of 4 found  \n**Captions:** 1 error, 0 warnings, 0 info');

  // The caption error remains, so the approval must be forced (an approve signal without force is ignored).
  await handle.signal(approveSignal, { reviewer: 'ada', comment: 'the uncaptioned one is fine', force: true });
  const outcome: RunOutcome = await handle.result();
  await recordHistory(handle, 'approved-after-review', env.address);

  expect(outcome.stage).toBe('completed');
  expect(outcome.review).toMatchObject({ decision: 'approved', reviewer: 'ada', force: true });
  expect(outcome.job).toMatchObject({ backend: 'local' });
  const loraFile = path.join(storeDir, 'models', 'Lora', 'approve.safetensors');
  expect(outcome.lora?.uri).toBe(pathToFileURL(loraFile).href);
  const verified = verifyLora(await fs.readFile(loraFile), { family: 'sd15', networkDim: 4 });
  expect(verified.metadata.ss_output_name).toBe('approve');
  const record = JSON.parse(await fs.readFile(path.join(storeDir, 'registry', 'approve.json'), 'utf8'));
  expect(record).toMatchObject({ name: 'approve', runId: handle.workflowId, sha256: outcome.lora?.sha256 });
  expect(record.epochFiles).toEqual(['approve-000001.safetensors']);
  // The uploaded dataset is in kohya layout with captions beside the images.
  const datasetDir = new URL(outcome.dataset!.uri);
  const folder = await fs.readdir(path.join(datasetDir.pathname, '10_approve'));
  expect(folder.filter((f) => f.endsWith('.png'))).toHaveLength(4);
  expect(folder.filter((f) => f.endsWith('.txt'))).toHaveLength(3);
  expect((await handle.describe()).typedSearchAttributes.get(LORA_STAGE)).toBe('completed');
  const details = await currentDetails(handle);
  expect(details).toMatch(/^\*\*Stage:\*\* completed {2}\n/);
  expect(details).toContain('**Review:** approved by ada despite caption errors: "the uncaptioned one is fine"');
  expect(details).toContain(`**Training job:** ${outcome.job?.jobName} on local · Completed`);
  expect(details).toContain(`**LoRA:** approve at ${outcome.lora?.uri}`);
  // Each activity in the history says in one line what it did.
  expect(await activitySummaries(handle)).toEqual([
    `Plan preprocessing of ${dataset}`,
    'Preprocess image batch 1 of 1',
    'Merge 1 image batches into the dataset manifest',
    'Check the captions of 4 images',
    'Locate the contact sheets and caption report for review',
    "Upload the dataset to the worker's store",
    `Launch training job ${outcome.job?.jobName} on local`,
    `Watch training job ${outcome.job?.jobName} every 200ms`,
    'Verify the trained LoRA and register it as approve',
  ]);
});

test('a rejected run uploads nothing and launches nothing', async () => {
  const dataset = path.join(tmp, 'reject-ds');
  await writeExampleDataset(dataset, { count: 2 });
  const handle = await start('reject', input('reject', dataset, { review: { policy: 'always' } }));
  await waitForStage(handle, 'awaiting_review');
  await handle.signal(rejectSignal, { reviewer: 'ada', reason: 'captions are too vague' });
  const outcome: RunOutcome = await handle.result();
  await recordHistory(handle, 'rejected', env.address);
  expect(outcome.stage).toBe('rejected');
  expect(outcome.review).toMatchObject({ decision: 'rejected', reviewer: 'ada', comment: 'captions are too vague' });
  await expect(fs.access(path.join(storeDir, 'datasets', 'reject'))).rejects.toThrow();
  expect(outcome.job).toBeUndefined();
});

test('a review nobody answers times out with a clear outcome', async () => {
  const dataset = path.join(tmp, 'timeout-ds');
  await writeExampleDataset(dataset, { count: 1 });
  const handle = await start('timeout', input('timeout', dataset, { review: { policy: 'always', timeout: '2s' } }));
  const outcome: RunOutcome = await handle.result();
  await recordHistory(handle, 'review-timed-out', env.address);
  expect(outcome.stage).toBe('review_timed_out');
  expect(outcome.review?.decision).toBe('timed_out');
});

test('a missing dataset fails the run with an error naming the path', async () => {
  const missing = path.join(tmp, 'does-not-exist');
  const handle = await start('missing', input('missing', missing));
  const failure = await handle.result().catch((err: unknown) => err);
  await recordHistory(handle, 'dataset-missing', env.address);
  expect(failure).toBeInstanceOf(WorkflowFailedError);
  const status = await handle.query(statusQuery);
  expect(status.stage).toBe('failed');
  expect(status.error).toContain(missing);
});

test('an invalid input fails at once with every bad field named', async () => {
  const handle = await start('invalid', { runName: 'Bad Name!', dataset: '' });
  const failure = (await handle.result().catch((err: unknown) => err)) as WorkflowFailedError;
  await recordHistory(handle, 'invalid-input', env.address);
  expect(failure).toBeInstanceOf(WorkflowFailedError);
  expect(failure.cause?.message).toMatch(/input\.runName: must be 1-40 characters/);
  expect(failure.cause?.message).toMatch(/input\.dataset: is required/);
});

test('cancelling a run while it trains stops the training job', async () => {
  const dataset = path.join(tmp, 'cancel-ds');
  await writeExampleDataset(dataset, { count: 2 });
  // A slow dry run (2 s a step) so the job is surely still running when the run is cancelled.
  const slowWorker = await newWorker('pipeline-local-slow', { DRY_RUN_STEP_MS: '2000' });
  await slowWorker.runUntil(async () => {
    const handle = await start('cancel', input('cancel', dataset), 'pipeline-local-slow');
    await waitForStage(handle, 'training');
    const jobName = (await handle.query(statusQuery)).job!.jobName;
    await handle.cancel();
    const failure = (await handle.result().catch((err: unknown) => err)) as WorkflowFailedError;
    await recordHistory(handle, 'cancelled-while-training', env.address);
    expect(failure.cause).toBeInstanceOf(CancelledFailure);
    expect((await handle.query(statusQuery)).stage).toBe('cancelled');
    const jobStatus = JSON.parse(await fs.readFile(path.join(jobsDir, jobName, 'status.json'), 'utf8'));
    expect(jobStatus.status).toBe('Stopped');
  });
});
