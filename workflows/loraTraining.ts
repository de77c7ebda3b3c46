/**
 * One LoRA training run, read top to bottom like the user guide: preprocess, check captions,
 * (maybe) wait for a reviewer, upload, launch, watch, register. History holds keys and counts only.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { durationMs } from '../lib/pipeline/duration';
import { conceptOf, formatZodError, TrainingRun, TrainingRunInput } from '../lib/pipeline/input';
import { trainingJobName } from '../lib/job-name';
import { ApprovePayload, RejectPayload } from '../lib/pipeline/review';
import type { ReviewDecision, RunOutcome, RunStatus, Stage, TrainingJobRef } from '../lib/pipeline/status';
import { approveSignal, rejectSignal, statusQuery } from './messages';
import { LORA_BASE_MODEL, LORA_RUN_NAME, LORA_STAGE } from './search-attributes';

// --- Policy: timeouts and retries per stage, visible in one place -------------------------------
const retry = { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1m' } as const;

const { preprocessDataset, checkCaptions } = proxyActivities<Activities>({
  startToCloseTimeout: '2h',
  heartbeatTimeout: '2m',
  retry: { ...retry, maximumAttempts: 5 },
});
const { uploadDataset } = proxyActivities<Activities>({
  startToCloseTimeout: '6h',
  heartbeatTimeout: '2m',
  retry: { ...retry, maximumAttempts: 20 },
});
const { launchTraining, stopTraining } = proxyActivities<Activities>({
  startToCloseTimeout: '5m',
  retry: { ...retry, maximumAttempts: 20 },
});
const { registerLora } = proxyActivities<Activities>({
  startToCloseTimeout: '1h',
  heartbeatTimeout: '5m',
  retry: { ...retry, maximumAttempts: 10 },
});

/** Polling outlives any worker: a missed heartbeat restarts it elsewhere, resuming from its details. */
function pollActivity(run: TrainingRun) {
  const interval = durationMs(run.pollInterval);
  return proxyActivities<Activities>({
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

  let pendingDecision: ReviewDecision | undefined;
  setHandler(approveSignal, (payload) => {
    const parsedPayload = ApprovePayload.safeParse(payload);
    if (status.stage !== 'awaiting_review' || !parsedPayload.success) {
      log.warn('approve ignored', { stage: status.stage, error: parsedPayload.error && formatZodError(parsedPayload.error, 'approve') });
      return;
    }
    pendingDecision ??= { decision: 'approved', ...parsedPayload.data, at: new Date().toISOString() };
  });
  setHandler(rejectSignal, (payload) => {
    const parsedPayload = RejectPayload.safeParse(payload);
    if (status.stage !== 'awaiting_review' || !parsedPayload.success) {
      log.warn('reject ignored', { stage: status.stage, error: parsedPayload.error && formatZodError(parsedPayload.error, 'reject') });
      return;
    }
    const { reviewer, reason } = parsedPayload.data;
    pendingDecision ??= { decision: 'rejected', reviewer, comment: reason, at: new Date().toISOString() };
  });

  const outcome = (): RunOutcome => {
    const { stage, runName, images, captions, review, dataset, job, lora, error } = status;
    return { stage, runName, images, captions, review, dataset, job, lora, error };
  };

  let job: TrainingJobRef | undefined;
  try {
    // 1. Preprocess: orient, crop and resize into kohya's `<repeats>_<concept>/` layout.
    const prepared = await preprocessDataset({
      runId,
      dataset: run.dataset,
      family: run.baseModel.family,
      repeats: run.repeats,
      concept: conceptOf(run),
    });
    status.images = prepared.counts;

    // 2. Caption checks.
    setStage('checking_captions');
    const report = await checkCaptions({ runId, manifestKey: prepared.manifestKey });
    status.captions = { ...report.counts, reportKey: report.reportKey };

    // 3. Human review, when the checks found errors or the run asks for it.
    if (run.review.policy === 'always' || report.counts.error > 0) {
      setStage('awaiting_review');
      const decided = await condition(() => pendingDecision !== undefined, durationMs(run.review.timeout));
      status.review = pendingDecision ?? { decision: 'timed_out', at: new Date().toISOString() };
      upsertMemo({ review: status.review });
      if (status.review.decision !== 'approved') {
        setStage(decided ? 'rejected' : 'review_timed_out');
        return outcome();
      }
    } else {
      status.review = { decision: 'not_needed', at: new Date().toISOString() };
    }

    // 4. Upload the processed dataset to the run's store (idempotent by content hash).
    setStage('uploading');
    status.dataset = await uploadDataset({ runId, runName: run.runName, manifestKey: prepared.manifestKey, store: run.store });

    // 5. Launch: the job name is derived from the run, so a retried launch adopts its own job.
    setStage('launching');
    job = await launchTraining({ run, runId, jobName: trainingJobName(run.runName, runId), datasetUri: status.dataset.uri });
    status.job = { backend: job.backend, jobName: job.jobName };

    // 6. Watch the job until it ends.
    setStage('training');
    const trained = await pollActivity(run)({ job: status.job, pollInterval: run.pollInterval });
    status.training = { status: trained.status, secondaryStatus: trained.secondaryStatus };

    // 7. Verify and register the LoRA.
    setStage('registering');
    status.lora = await registerLora({
      run,
      runId,
      job: status.job,
      artifactUri: trained.artifactUri ?? '',
      datasetManifestSha256: status.dataset.manifestSha256,
    });
    setStage('completed');
    return outcome();
  } catch (err) {
    if (isCancellation(err)) {
      // Cleanup must run although the run itself is cancelled: a forgotten GPU job costs money.
      await CancellationScope.nonCancellable(async () => {
        if (job) await stopTraining({ job: { backend: job.backend, jobName: job.jobName } });
        setStage('cancelled');
      });
    } else {
      status.error = failureMessage(err);
      setStage('failed');
    }
    throw err;
  }
}

/** The innermost cause's message: what actually went wrong, not "Activity task failed". */
function failureMessage(err: unknown): string {
  let current: unknown = err;
  while (current instanceof ActivityFailure && current.cause) current = current.cause;
  return current instanceof Error ? current.message : String(err);
}
