/**
 * One LoRA training run, read top to bottom like the user guide: preprocess, check captions,
 * (maybe) wait for a reviewer, upload, launch, watch, register. History holds keys and counts only.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { captionRulesFor } from '../lib/captions/options';
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
const { planPreprocess, preprocessBatch, finishPreprocess, checkCaptions } = proxyActivities<Activities>({
  startToCloseTimeout: '2h',
  heartbeatTimeout: '30s',
  retry: { ...retry, maximumAttempts: 5 },
});
/** Preprocessing batches in flight at once: spread over the workers that poll the task queue. */
const PREPROCESS_PARALLEL_BATCHES = 4;
const { uploadDataset } = proxyActivities<Activities>({
  startToCloseTimeout: '6h',
  heartbeatTimeout: '30s',
  retry: { ...retry, maximumAttempts: 20 },
});
// A cancelled launch is waited for, so that cleanup stops the job only after it can exist.
const { launchTraining } = proxyActivities<Activities>({
  startToCloseTimeout: '5m',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { ...retry, maximumAttempts: 20 },
});
// Stopping waits (heartbeating) until the backend confirms Stopping or Stopped.
const { stopTraining } = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '1m',
  retry: { ...retry, maximumAttempts: 20 },
});
const { registerLora } = proxyActivities<Activities>({
  startToCloseTimeout: '1h',
  heartbeatTimeout: '1m',
  retry: { ...retry, maximumAttempts: 10 },
});

/** A job stopped by someone other than this run ends the run as cancelled. */
const TRAINING_STOPPED = 'TrainingStopped';

/** Polling outlives any worker: a missed heartbeat restarts it elsewhere, resuming from its details. */
function pollActivity(run: TrainingRun) {
  const interval = durationMs(run.pollInterval);
  return proxyActivities<Activities>({
    taskQueue: trainingPollQueue(workflowInfo().taskQueue),
    startToCloseTimeout: '30d',
    heartbeatTimeout: Math.max(3 * interval, 10_000),
    retry: { ...retry, maximumInterval: '30s' },
  }).pollTraining;
}

export async function loraTrainingWorkflow(rawInput: TrainingRunInput): Promise<RunOutcome> {
  const parsed = TrainingRunInput.safeParse(rawInput);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(formatZodError(parsed.error), 'InvalidInput');
  const run = parsed.data;
  const runId = workflowInfo().workflowId;

  const status: RunStatus = { runName: run.runName, stage: 'preprocessing', baseModel: run.baseModel.family };
  const setStage = (stage: Stage): void => {
    status.stage = stage;
    upsertSearchAttributes([{ key: LORA_STAGE, value: stage }]);
  };
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
    const stopped = await stopTraining({ job, pollInterval: run.pollInterval });
    if (stopped) status.training = { status: stopped.status, secondaryStatus: stopped.secondaryStatus };
  };
  try {
    // 1. Preprocess: plan the dataset, process it in batches side by side (each its own activity,
    //    so several workers share a large dataset), then merge them into the manifest.
    const plan = await planPreprocess({
      runId,
      dataset: run.dataset,
      family: run.baseModel.family,
      repeats: run.repeats,
      concept: conceptOf(run),
      options: run.preprocess,
    });
    status.images = { found: plan.total, kept: 0, skipped: plan.skipped };
    let nextBatch = 0;
    let batchFailed = false;
    const batchLane = async (): Promise<void> => {
      while (!batchFailed && nextBatch < plan.batches) {
        try {
          const done = await preprocessBatch({ planKey: plan.planKey, batch: nextBatch++ });
          const images = status.images ?? { found: plan.total, kept: 0, skipped: 0 };
          status.images = { ...images, kept: images.kept + done.kept, skipped: images.skipped + done.skipped };
        } catch (err) {
          batchFailed = true;
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PREPROCESS_PARALLEL_BATCHES, plan.batches) }, batchLane));
    const prepared = await finishPreprocess({ planKey: plan.planKey });
    status.images = prepared.counts;

    // 2. Caption checks.
    setStage('checking_captions');
    const checkInput = { runId, manifestKey: prepared.manifestKey, rules: captionRulesFor(run) };
    const report = await checkCaptions(checkInput);
    status.captions = { ...report.counts, reportKey: report.reportKey };

    // 3. Human review, when the checks found errors or the run asks for it.
    if (run.review.policy === 'always' || report.counts.error > 0) {
      setStage('awaiting_review');
      status.review = await review.decide({
        runId,
        manifestKey: prepared.manifestKey,
        report,
        timeout: run.review.timeout,
        recheck: async () => {
          const rechecked = await checkCaptions(checkInput);
          status.captions = { ...rechecked.counts, reportKey: rechecked.reportKey };
          return rechecked;
        },
      });
      upsertMemo({ review: status.review });
      const ended = stageAfterReview(status.review.decision);
      if (ended) {
        setStage(ended);
        return outcome();
      }
    } else {
      status.review = review.skip();
    }

    // 4. Upload the processed dataset to the run's store (idempotent by content hash).
    setStage('uploading');
    status.dataset = await uploadDataset({ runId, runName: run.runName, manifestKey: prepared.manifestKey, store: run.store });

    // 5. Launch: the job name is derived from the run, so a retried launch adopts its own job. It is
    // known before the launch returns, so a run cancelled mid-launch still stops what started.
    setStage('launching');
    job = { backend: run.trainer.kind, jobName: trainingJobName(run.runName, runId) };
    const launched = await launchTraining({ run, runId, jobName: job.jobName, datasetUri: status.dataset.uri });
    status.job = { backend: launched.backend, jobName: launched.jobName };

    // 6. Watch the job until it ends.
    setStage('training');
    const trained = await pollActivity(run)({ job: status.job, pollInterval: run.pollInterval });
    status.training = { status: trained.status, secondaryStatus: trained.secondaryStatus, warnings: trained.warnings };
    if (trained.status === 'Stopped') {
      throw ApplicationFailure.nonRetryable(`training job ${status.job.jobName} was stopped outside this run`, TRAINING_STOPPED);
    }

    // 7. Verify and register the LoRA.
    setStage('registering');
    status.lora = await registerLora({
      run,
      runId,
      job: status.job,
      artifactUri: trained.artifactUri ?? '',
      datasetManifestSha256: status.dataset.manifestSha256,
      progress: trained.progress,
    });
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
      status.error = failureMessage(err);
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
