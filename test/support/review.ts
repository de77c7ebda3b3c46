/** Helpers for the review tests: a worker over temp stores, waiting for review, reading history. */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRun } from '../../client/runs';
import type { TrainingRunInput } from '../../lib/pipeline/input';
import type { ReviewState } from '../../lib/pipeline/review';
import { TERMINAL_STAGES, type RunStatus } from '../../lib/pipeline/status';
import { writeExampleDataset } from '../../scripts/example-dataset';
import { WorkerEnv } from '../../worker/config';
import { createDeps, createLoraWorker, type LoraWorker } from '../../worker/create';
import { reviewStateQuery, statusQuery } from '../../workflows/messages';

export interface ReviewRig {
  tmp: string;
  workStoreUri: string;
  worker: LoraWorker;
  run: Promise<void>;
  /**
   * Starts a dry-run training run over three example images, the last one without a caption; with
   * `kohyaFolder` the dataset comes in kohya layout, its images in that one `<repeats>_<name>/` folder.
   */
  start(name: string, extra?: Partial<TrainingRunInput>, kohyaFolder?: string): Promise<WorkflowHandle>;
  stop(): Promise<void>;
}

export async function startReviewRig(env: TestWorkflowEnvironment, taskQueue: string): Promise<ReviewRig> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'lora-review-'));
  const workStoreUri = pathToFileURL(path.join(tmp, 'work')).href;
  const config = WorkerEnv.parse({
    LORA_WORK_STORE: workStoreUri,
    LORA_STORE: pathToFileURL(path.join(tmp, 'store')).href,
    LORA_JOBS_DIR: path.join(tmp, 'jobs'),
  });
  const aws = { s3: new S3Client({ region: 'us-east-1' }), sagemaker: new SageMakerClient({ region: 'us-east-1' }) };
  const worker = await createLoraWorker({ connection: env.nativeConnection, taskQueue, deps: createDeps(config, aws) });
  const run = worker.run();
  return {
    tmp,
    workStoreUri,
    worker,
    run,
    async start(name, extra = {}, kohyaFolder) {
      const dataset = path.join(tmp, `${name}-dataset`);
      await writeExampleDataset(kohyaFolder ? path.join(dataset, kohyaFolder) : dataset, { count: 3, missingCaption: true });
      const input: TrainingRunInput = {
        runName: name,
        dataset,
        trainer: { kind: 'local', dryRun: true },
        training: { epochs: 1, networkDim: 4, networkAlpha: 2 },
        pollInterval: '200ms',
        ...extra,
      };
      return startRun(env.client, input, { taskQueue, workflowId: `${name}-${Date.now()}` });
    },
    async stop() {
      worker.shutdown();
      await run;
      await fs.rm(tmp, { recursive: true, force: true });
    },
  };
}

/** Polls `reviewState` until `ready` holds (by default: the review opened and located its files). */
export async function waitForReview(
  handle: WorkflowHandle,
  ready: (state: ReviewState) => boolean = (state) => state.phase === 'awaiting' && state.workStore !== undefined,
  timeoutMs = 60_000,
): Promise<ReviewState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await handle.query(reviewStateQuery);
    if (ready(state)) return state;
    if (Date.now() > deadline) throw new Error(`review state never got ready: ${JSON.stringify(state)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Every string in a history, payload bytes decoded as UTF-8: what a secret or a hostile value would show up in. */
export function historyText(value: unknown): string {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  if (Array.isArray(value)) return value.map(historyText).join('\n');
  if (value !== null && typeof value === 'object') return Object.values(value).map(historyText).join('\n');
  return typeof value === 'string' ? value : '';
}

/**
 * Waits until an approved run has uploaded its dataset and launched (it moved on past review),
 * then cancels it, which stops the job: these tests are about review, not training.
 */
export async function cancelAfterUpload(handle: WorkflowHandle, timeoutMs = 60_000): Promise<RunStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await handle.query(statusQuery);
    const ended = TERMINAL_STAGES.includes(status.stage);
    if (status.dataset && (status.job || ended)) {
      if (!ended) await handle.cancel();
      await handle.result().catch(() => undefined);
      return status;
    }
    if (ended || Date.now() > deadline) throw new Error(`the run did not move on to upload: ${JSON.stringify(status)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
