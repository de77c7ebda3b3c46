/**
 * The workflow's training steps (launch, watch, stop) on a real Temporal dev server, with a
 * scripted trainer (a TEST DOUBLE for a backend whose job states the test decides) so that the
 * endings moto and the dry run cannot produce are covered: a job stopped outside the run, a run
 * cancelled while its launch is still in flight, and a job that fails.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { temporal } from '@temporalio/proto';
import type { ActivityDeps } from '../../activities/deps';
import type { Trainer, TrainingJobSpec } from '../../adapters/trainer/types';
import { startRun } from '../../client/runs';
import type { TrainingRunInput } from '../../lib/pipeline/input';
import type { Stage, TrainingJobRef, TrainingState } from '../../lib/pipeline/status';
import { writeExampleDataset } from '../../scripts/example-dataset';
import { WorkerEnv } from '../../worker/config';
import { createDeps, createLoraWorker } from '../../worker/create';
import { statusQuery } from '../../workflows/messages';
import { startTemporal } from '../support/temporal';

/** TEST DOUBLE: launches after an optional delay, describes from a script, records stops. */
class ScriptedTrainer implements Trainer {
  readonly backend = 'local' as const;
  readonly events: string[] = [];

  constructor(private readonly script: { launchDelayMs?: number; states: TrainingState[] }) {}

  async launch(spec: TrainingJobSpec): Promise<TrainingJobRef & { adopted: boolean }> {
    await new Promise((resolve) => setTimeout(resolve, this.script.launchDelayMs ?? 0));
    this.events.push(`launched ${spec.jobName}`);
    return { backend: 'local', jobName: spec.jobName, adopted: false };
  }

  async describe(): Promise<TrainingState> {
    return this.script.states.length > 1 ? this.script.states.shift()! : this.script.states[0]!;
  }

  /** Like a backend: nothing for a job never launched, a finished job as it ended, else Stopping. */
  async stop(ref: TrainingJobRef): Promise<TrainingState | undefined> {
    this.events.push(`stopped ${ref.jobName}`);
    if (!this.events.includes(`launched ${ref.jobName}`)) return undefined;
    const current = this.script.states[0]!;
    return current.status === 'InProgress' ? { status: 'Stopping', secondaryStatus: 'Stopping' } : current;
  }
}

let env: TestWorkflowEnvironment;
let tmp: string;
let dataset: string;

beforeAll(async () => {
  env = await startTemporal();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'training-workflow-'));
  dataset = path.join(tmp, 'ds');
  await writeExampleDataset(dataset, { count: 2 });
});

afterAll(async () => {
  await env?.teardown();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** Worker dependencies over this test's temp folders, with `trainer` as the local backend. */
function depsFor(name: string, trainer: ScriptedTrainer): ActivityDeps {
  const config = WorkerEnv.parse({
    LORA_WORK_STORE: pathToFileURL(path.join(tmp, name, 'work')).href,
    LORA_STORE: pathToFileURL(path.join(tmp, name, 'store')).href,
    LORA_JOBS_DIR: path.join(tmp, name, 'jobs'),
  });
  const aws = { s3: new S3Client({ region: 'us-east-1' }), sagemaker: new SageMakerClient({ region: 'us-east-1' }) };
  const deps = createDeps(config, aws);
  deps.trainers.local = trainer;
  return deps;
}

function startTrainingRun(name: string, taskQueue: string): Promise<WorkflowHandle> {
  const input: TrainingRunInput = { runName: name, dataset, trainer: { kind: 'local' }, pollInterval: '100ms' };
  return startRun(env.client, input, { taskQueue, workflowId: `${name}-${Date.now()}` });
}

/** Runs `body` against a worker whose local trainer is `trainer`. */
async function withWorker(name: string, trainer: ScriptedTrainer, body: (handle: WorkflowHandle) => Promise<void>): Promise<void> {
  const taskQueue = `training-workflow-${name}`;
  const worker = await createLoraWorker({ connection: env.nativeConnection, taskQueue, deps: depsFor(name, trainer) });
  await worker.runUntil(async () => body(await startTrainingRun(name, taskQueue)));
}

async function waitForStage(handle: WorkflowHandle, stage: Stage): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await handle.query(statusQuery)).stage !== stage) {
    if (Date.now() > deadline) throw new Error(`run never reached stage ${stage}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('a job stopped outside the run ends the run as cancelled, saying so', async () => {
  const trainer = new ScriptedTrainer({
    states: [
      { status: 'InProgress', secondaryStatus: 'Training', progress: { step: 10, totalSteps: 100 } },
      { status: 'Stopped', secondaryStatus: 'Stopped' },
    ],
  });
  await withWorker('stopped-outside', trainer, async (handle) => {
    const failure = await handle.result().catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    const status = await handle.query(statusQuery);
    expect(status.stage).toBe('cancelled');
    expect(status.error).toBe(`training job ${status.job!.jobName} was stopped outside this run`);
    expect(status.training).toMatchObject({ status: 'Stopped' });
  });
});

test('cancelling a run while its launch is in flight stops the job once the launch has returned', async () => {
  const trainer = new ScriptedTrainer({ launchDelayMs: 1500, states: [{ status: 'InProgress', secondaryStatus: 'Training' }] });
  await withWorker('cancel-launch', trainer, async (handle) => {
    await waitForStage(handle, 'launching');
    await handle.cancel();
    const failure = (await handle.result().catch((err: unknown) => err)) as WorkflowFailedError;
    expect(failure.cause).toBeInstanceOf(CancelledFailure);
    const status = await handle.query(statusQuery);
    expect(status.stage).toBe('cancelled');
    // The launch was waited for, then the job (named before the launch returned) was stopped.
    expect(trainer.events).toHaveLength(2);
    expect(trainer.events[0]).toMatch(/^launched lora-cancel-launch-[0-9a-f]{12}$/);
    expect(trainer.events[1]).toBe(trainer.events[0]!.replace('launched', 'stopped'));
    expect(status.training).toEqual({ status: 'Stopping', secondaryStatus: 'Stopping' });
  });
});

test('a failed job fails the run with its reason, and the cleanup stop is a harmless no-op', async () => {
  const trainer = new ScriptedTrainer({ states: [{ status: 'Failed', secondaryStatus: 'Failed', failureReason: 'torch.OutOfMemoryError: CUDA out of memory.' }] });
  await withWorker('failed-job', trainer, async (handle) => {
    const failure = await handle.result().catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    const status = await handle.query(statusQuery);
    expect(status.stage).toBe('failed');
    expect(status.error).toBe(`training job ${status.job!.jobName} failed: torch.OutOfMemoryError: CUDA out of memory.`);
    expect(trainer.events).toEqual([`launched ${status.job!.jobName}`, `stopped ${status.job!.jobName}`]);
  });
});

test('training polls can live in a process of their own (LORA_WORKER_QUEUES)', async () => {
  const trainer = new ScriptedTrainer({ states: [{ status: 'Failed', secondaryStatus: 'Failed', failureReason: 'polled by the polls-only worker' }] });
  const deps = depsFor('split-queues', trainer);
  const taskQueue = 'training-workflow-split-queues';
  const stages = await createLoraWorker({ connection: env.nativeConnection, taskQueue, deps, queues: 'stages' });
  const polls = await createLoraWorker({ connection: env.nativeConnection, taskQueue, deps, queues: 'training-polls' });
  expect(stages.taskQueues).toEqual([taskQueue]);
  expect(polls.taskQueues).toEqual([`${taskQueue}-training-polls`]);

  await stages.runUntil(async () => {
    const handle = await startTrainingRun('split-queues', taskQueue);
    await waitForStage(handle, 'training');
    // The stage worker launched the job but never takes the poll: it waits, scheduled, for its own queue.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const [pending] = (await handle.describe()).raw.pendingActivities ?? [];
    expect(pending?.activityType?.name).toBe('pollTraining');
    expect(pending?.state).toBe(temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED);
    expect(trainer.events).toEqual([expect.stringMatching(/^launched /)]);

    const failure = await polls.runUntil(() => handle.result().catch((err: unknown) => err));
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect((await handle.query(statusQuery)).error).toMatch(/polled by the polls-only worker$/);
  });
});
