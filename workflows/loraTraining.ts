/**
 * One LoRA training run, read top to bottom like the user guide: preprocess, check captions,
 * (maybe) wait for a reviewer, upload, launch, watch, register. History holds keys and counts only.
 */
import {
  ActivityCancellationType,
  type ActivityOptions,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { captionRulesFor } from '../lib/captions/options';
import { runDetails } from '../lib/pipeline/details';
import { durationMs } from '../lib/pipeline/duration';
import { conceptOf, formatZodError, TrainingRun, TrainingRunInput } from '../lib/pipeline/input';
import { trainingPollQueue } from '../lib/pipeline/names';
import { trainingJobName } from '../lib/job-name';
import { stageAfterReview } from '../lib/pipeline/review';
import type { RunOutcome, RunStatus, Stage, TrainingJobRef } from '../lib/pipeline/status';
import { statusQuery } from './messages';
import { setUpReview } from './review';
import { LORA_BASE_MODEL, LORA_RUN_NAME, LORA_STAGE } from './search-attributes';

// --- Policy: timeouts and retries per stage, visible in one place -------------------------------
const retry = { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1m' } as const;

// Heartbeat timeouts decide how soon a crashed worker's activity is retried elsewhere.
const PREPROCESS: ActivityOptions = {
  startToCloseTimeout: '2h',
  heartbeatTimeout: '30s',
  retry: { ...retry, maximumAttempts: 5 },
};
/** Preprocessing batches in flight at once: spread over the workers that poll the task queue. */
const PREPROCESS_PARALLEL_BATCHES = 4;
const UPLOAD: ActivityOptions = {
  startToCloseTimeout: '6h',
  heartbeatTimeout: '30s',
  retry: { ...retry, maximumAttempts: 20 },
};
// A cancelled launch is waited for, so that cleanup stops the job only after it can exist.
const LAUNCH: ActivityOptions = {
  startToCloseTimeout: '5m',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { ...retry, maximumAttempts: 20 },
};
// Stopping waits (heartbeating) until the backend confirms Stopping or Stopped.
const STOP: ActivityOptions = {
  startToCloseTimeout: '10m',
  heartbeatTimeout: '1m',
  retry: { ...retry, maximumAttempts: 20 },
};
const REGISTER: ActivityOptions = {
  startToCloseTimeout: '1h',
  heartbeatTimeout: '1m',
  retry: { ...retry, maximumAttempts: 10 },
};

/** Polling outlives any worker: a missed heartbeat restarts it elsewhere, resuming from its details. */
function pollOptions(run: TrainingRun): ActivityOptions {
  const interval = durationMs(run.pollInterval);
  return {
    taskQueue: trainingPollQueue(workflowInfo().taskQueue),
    startToCloseTimeout: '30d',
    heartbeatTimeout: Math.max(3 * interval, 10_000),
    retry: { ...retry, maximumInterval: '30s' },
  };
}

/** One activity call with a one-line summary of what it does, shown in the Web UI's history and timeline. */
function activity<Name extends keyof Activities>(name: Name, options: ActivityOptions, summary: string): Activities[Name] {
  return proxyActivities<Activities>({ ...options, summary })[name];
}

/** A job stopped by someone other than this run ends the run as cancelled. */
const TRAINING_STOPPED = 'TrainingStopped';

export async function loraTrainingWorkflow(rawInput: TrainingRunInput): Promise<RunOutcome> {
  const parsed = TrainingRunInput.safeParse(rawInput);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(formatZodError(parsed.error), 'InvalidInput');
  const run = parsed.data;
  const runId = workflowInfo().workflowId;

  const status: RunStatus = { runName: run.runName, stage: 'preprocessing', baseModel: run.baseModel.family };
  /** Every change to the status goes through here, so the Web UI's current details never lag. */
  const update = (change: Partial<RunStatus>): void => {
    Object.assign(status, change);
    setCurrentDetails(runDetails(status));
  };
  const setStage = (stage: Stage): void => {
    update({ stage });
    upsertSearchAttributes([{ key: LORA_STAGE, value: stage }]);
  };
  update({});
  upsertSearchAttributes([
    { key: LORA_STAGE, value: status.stage },
    { key: LORA_BASE_MODEL, value: run.baseModel.family },
    { key: LORA_RUN_NAME, value: run.runName },
  ]);
  setHandler(statusQuery, () => status);

  const review = setUpReview();

  const outcome = (): RunOutcome => {
    const { stage, runName, images, captions, review, dataset, job, lora, error } = status;
    return { stage, runName, images, captions, review, dataset, job, lora, error };
  };

  let job: TrainingJobRef | undefined;
  /** Stops the run's training job, if one may have started, and records what the backend confirmed. */
  const stopJob = async (): Promise<void> => {
    if (!job) return;
    const stopped = await activity('stopTraining', STOP, `Stop training job ${job.jobName}`)({ job, pollInterval: run.pollInterval });
    if (stopped) update({ training: { status: stopped.status, secondaryStatus: stopped.secondaryStatus } });
  };
  try {
    // 1. Preprocess: plan the dataset, process it in batches side by side (each its own activity,
    //    so several workers share a large dataset), then merge them into the manifest.
    const plan = await activity('planPreprocess', PREPROCESS, `Plan preprocessing of ${run.dataset}`)({
      runId,
      dataset: run.dataset,
      family: run.baseModel.family,
      repeats: run.repeats,
      concept: conceptOf(run),
      options: run.preprocess,
      // sd-scripts then keeps small images small: preprocessing must not enlarge them either.
      ...(run.training.kohya.bucket_no_upscale === true && { bucketNoUpscale: true }),
    });
    update({ images: { found: plan.total, kept: 0, skipped: plan.skipped } });
    let nextBatch = 0;
    let batchFailed = false;
    const batchLane = async (): Promise<void> => {
      while (!batchFailed && nextBatch < plan.batches) {
        const batch = nextBatch++;
        try {
          const preprocessBatch = activity('preprocessBatch', PREPROCESS, `Preprocess image batch ${batch + 1} of ${plan.batches}`);
          const done = await preprocessBatch({ planKey: plan.planKey, batch });
          const images = status.images ?? { found: plan.total, kept: 0, skipped: 0 };
          update({ images: { ...images, kept: images.kept + done.kept, skipped: images.skipped + done.skipped } });
        } catch (err) {
          batchFailed = true;
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PREPROCESS_PARALLEL_BATCHES, plan.batches) }, batchLane));
    const finishPreprocess = activity('finishPreprocess', PREPROCESS, `Merge ${plan.batches} image batches into the dataset manifest`);
    const prepared = await finishPreprocess({ planKey: plan.planKey });
    update({ images: prepared.counts });

    // 2. Caption checks.
    setStage('checking_captions');
    const checkInput = { runId, manifestKey: prepared.manifestKey, rules: captionRulesFor(run) };
    const report = await activity('checkCaptions', PREPROCESS, `Check the captions of ${prepared.counts.kept} images`)(checkInput);
    update({ captions: { ...report.counts, reportKey: report.reportKey } });

    // 3. Human review, when the checks found errors or the run asks for it.
    if (run.review.policy === 'always' || report.counts.error > 0) {
      setStage('awaiting_review');
      const decision = await review.decide({
        runId,
        manifestKey: prepared.manifestKey,
        report,
        timeout: run.review.timeout,
        recheck: async () => {
          const rechecked = await activity('checkCaptions', PREPROCESS, 'Check the captions again after review edits')(checkInput);
          update({ captions: { ...rechecked.counts, reportKey: rechecked.reportKey } });
          return rechecked;
        },
      });
      update({ review: decision });
      upsertMemo({ review: decision });
      const ended = stageAfterReview(decision.decision);
      if (ended) {
        setStage(ended);
        return outcome();
      }
    } else {
      update({ review: review.skip() });
    }

    // 4. Upload the processed dataset to the run's store (idempotent by content hash).
    setStage('uploading');
    const uploadDataset = activity('uploadDataset', UPLOAD, `Upload the dataset to ${run.store ?? "the worker's store"}`);
    const dataset = await uploadDataset({ runId, runName: run.runName, manifestKey: prepared.manifestKey, store: run.store });
    update({ dataset });

    // 5. Launch: the job name is derived from the run, so a retried launch adopts its own job. It is
    // known before the launch returns, so a run cancelled mid-launch still stops what started.
    setStage('launching');
    job = { backend: run.trainer.kind, jobName: trainingJobName(run.runName, runId) };
    const launchTraining = activity('launchTraining', LAUNCH, `Launch training job ${job.jobName} on ${job.backend}`);
    const launched = await launchTraining({ run, runId, jobName: job.jobName, datasetUri: dataset.uri });
    const trainingJob: TrainingJobRef = { backend: launched.backend, jobName: launched.jobName };
    update({ job: trainingJob });

    // 6. Watch the job until it ends.
    setStage('training');
    const pollTraining = activity('pollTraining', pollOptions(run), `Watch training job ${trainingJob.jobName} every ${run.pollInterval}`);
    const trained = await pollTraining({ job: trainingJob, pollInterval: run.pollInterval });
    update({ training: { status: trained.status, secondaryStatus: trained.secondaryStatus, warnings: trained.warnings } });
    if (trained.status === 'Stopped') {
      throw ApplicationFailure.nonRetryable(`training job ${trainingJob.jobName} was stopped outside this run`, TRAINING_STOPPED);
    }

    // 7. Verify and register the LoRA.
    setStage('registering');
    const registerLora = activity('registerLora', REGISTER, `Verify the trained LoRA and register it as ${run.runName}`);
    const lora = await registerLora({
      run,
      runId,
      job: trainingJob,
      artifactUri: trained.artifactUri ?? '',
      datasetManifestSha256: dataset.manifestSha256,
      progress: trained.progress,
    });
    update({ lora });
    setStage('completed');
    return outcome();
  } catch (err) {
    if (isCancellation(err)) {
      // Cleanup must run although the run itself is cancelled: a forgotten GPU job costs money.
      await CancellationScope.nonCancellable(async () => {
        await stopJob();
        setStage('cancelled');
      });
    } else {
      update({ error: failureMessage(err) });
      // A job stopped outside this run (the SageMaker console, another tool) cancels the run.
      const cause = innermostCause(err);
      setStage(cause instanceof ApplicationFailure && cause.type === TRAINING_STOPPED ? 'cancelled' : 'failed');
      // Whatever failed (the watch itself, registration), a job that may still run must not be left
      // running; for a job that already ended this is a cheap no-op. Its own failure must not hide ours.
      await CancellationScope.nonCancellable(stopJob).catch((stopError: unknown) =>
        log.error('could not stop the training job after the run failed', { job, error: failureMessage(stopError) }),
      );
    }
    throw err;
  }
}

/** The innermost cause: what actually went wrong, not "Activity task failed". */
function innermostCause(err: unknown): unknown {
  let current: unknown = err;
  while (current instanceof ActivityFailure && current.cause) current = current.cause;
  return current;
}

function failureMessage(err: unknown): string {
  const cause = innermostCause(err);
  return cause instanceof Error ? cause.message : String(err);
}
