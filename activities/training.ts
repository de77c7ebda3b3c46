/**
 * Training stage: launch a Kohya-SS job on the run's backend, watch it with a heartbeating poll
 * loop that a new worker resumes after the old one died, and stop it when the run is cancelled.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { KohyaConfigError, kohyaOptionsFor } from '../lib/kohya/config';
import { carryTrainingState } from '../lib/kohya/progress';
import { durationMs } from '../lib/pipeline/duration';
import type { TrainingRun } from '../lib/pipeline/input';
import type { ActivityProgress, TrainingJobRef, TrainingState } from '../lib/pipeline/status';
import { TrainingJobConflictError } from '../adapters/trainer/sagemaker';
import { InvalidTrainingSpecError, type TrainingJobSpec } from '../adapters/trainer/types';
import type { ActivityDeps } from './deps';
import { withClassifiedErrors } from './errors';

export interface LaunchInput {
  run: TrainingRun;
  runId: string;
  jobName: string;
  datasetUri: string;
}

export interface PollInput {
  job: TrainingJobRef;
  pollInterval: string;
}

/** A stop shows up as Stopping within seconds; checking faster than the run's poll interval keeps cleanup short. */
const MAX_STOP_CHECK_MS = 5_000;

/** Errors no retry can fix: another run's job, a config or spec the backend rejects. */
const NON_RETRYABLE_LAUNCH_ERRORS = [TrainingJobConflictError, KohyaConfigError, InvalidTrainingSpecError];

export function makeTrainingActivities(deps: ActivityDeps) {
  async function launchTraining(input: LaunchInput): Promise<TrainingJobRef & { adopted: boolean }> {
    const { run, jobName } = input;
    return withClassifiedErrors('launch', async () => {
      try {
        const spec: TrainingJobSpec = {
          jobName,
          runId: input.runId,
          datasetUri: input.datasetUri,
          family: run.baseModel.family,
          checkpoint: run.baseModel.checkpoint,
          outputName: run.runName,
          kohyaConfig: kohyaOptionsFor(run),
        };
        if (run.trainer.kind === 'sagemaker') {
          const { kind: _kind, outputS3Uri, checkpointS3Uri, spot, maxWaitSeconds, ...options } = run.trainer;
          const store = deps.openStore(run.store);
          spec.sagemaker = {
            ...options,
            outputS3Uri: outputS3Uri ?? store.uriOf('training'),
            // Per job, so a retry or another run never reads (or resumes from) someone else's state.
            checkpointS3Uri: `${(checkpointS3Uri ?? store.uriOf('checkpoints')).replace(/\/+$/, '')}/${jobName}/`,
            ...(spot ? { spot: { maxWaitSeconds: maxWaitSeconds ?? 2 * options.maxRuntimeSeconds } } : {}),
          };
        } else {
          spec.dryRun = run.trainer.dryRun;
        }
        const job = await deps.trainers[run.trainer.kind].launch(spec);
        Context.current().log.info(job.adopted ? 'adopted existing training job' : 'launched training job', { jobName: job.jobName });
        return job;
      } catch (err) {
        const fatal = NON_RETRYABLE_LAUNCH_ERRORS.find((type) => err instanceof type);
        if (fatal) throw ApplicationFailure.nonRetryable((err as Error).message, fatal.name);
        throw err;
      }
    });
  }

  /**
   * Describes the job every pollInterval until it ends, heartbeating `{ status, secondaryStatus,
   * progress }` (as ActivityProgress.training). A retry on another worker starts from the last
   * heartbeat, so the progress shown and a NaN warning survive the old worker's death. Returns a
   * Completed or Stopped state (the workflow decides what a stop means: after its own cancellation
   * this attempt is abandoned anyway); a failed job is a non-retryable failure.
   */
  async function pollTraining(input: PollInput): Promise<TrainingState> {
    const ctx = Context.current();
    const trainer = deps.trainers[input.job.backend];
    const name = input.job.jobName;
    let last = trainingStateOf(ctx.info.heartbeatDetails);
    if (last) {
      ctx.log.info('resuming the training poll from the last heartbeat', { jobName: name, lastStatus: last.status, step: last.progress?.step });
      ctx.heartbeat(heartbeatOf(last));
    }
    for (;;) {
      const state = carryTrainingState(last, await withClassifiedErrors('describe training job', () => trainer.describe(input.job)));
      ctx.heartbeat(heartbeatOf(state));
      last = state;
      const ended = endOf(name, state);
      if (ended === 'ended') return state;
      if (ended) throw ended;
      // Context.sleep wakes early when the activity is cancelled (delivered through heartbeats).
      await ctx.sleep(durationMs(input.pollInterval));
    }
  }

  /**
   * Stops the job and waits until the backend confirms (Stopping, Stopped or already ended);
   * undefined when the job was never created. Runs in the workflow's non-cancellable cleanup.
   */
  async function stopTraining(input: { job: TrainingJobRef; pollInterval?: string }): Promise<TrainingState | undefined> {
    const ctx = Context.current();
    const trainer = deps.trainers[input.job.backend];
    const checkEveryMs = Math.min(durationMs(input.pollInterval ?? '5s'), MAX_STOP_CHECK_MS);
    let state = await withClassifiedErrors('stop training job', () => trainer.stop(input.job));
    while (state?.status === 'InProgress') {
      ctx.heartbeat(heartbeatOf(state));
      await ctx.sleep(checkEveryMs);
      state = await withClassifiedErrors('describe training job', () => trainer.describe(input.job));
    }
    if (state) ctx.log.info('training job stop confirmed', { jobName: input.job.jobName, status: state.status });
    return state;
  }

  return { launchTraining, pollTraining, stopTraining };
}

/**
 * How a job's state ends the poll: 'ended' (Completed or Stopped), a non-retryable failure, or
 * undefined (still running). MaxRuntimeExceeded (and spot's MaxWaitTimeExceeded) is checked first:
 * SageMaker reports it as Stopped or Failed, and it is neither a user's stop nor a training error.
 */
function endOf(jobName: string, state: TrainingState): 'ended' | ApplicationFailure | undefined {
  if (state.status === 'InProgress' || state.status === 'Stopping') return undefined;
  if (state.secondaryStatus === 'MaxRuntimeExceeded') {
    return ApplicationFailure.nonRetryable(
      `training job ${jobName} hit its maximum runtime (trainer.maxRuntimeSeconds) and was stopped: raise it or train fewer epochs`,
      'TrainingMaxRuntimeExceeded',
    );
  }
  if (state.secondaryStatus === 'MaxWaitTimeExceeded') {
    return ApplicationFailure.nonRetryable(
      `training job ${jobName} ran out of its spot wait time (trainer.maxWaitSeconds) and was stopped: raise it or train without spot`,
      'TrainingMaxRuntimeExceeded',
    );
  }
  return state.status === 'Failed'
    ? ApplicationFailure.nonRetryable(`training job ${jobName} failed: ${state.failureReason ?? 'no reason given'}`, 'TrainingFailed')
    : 'ended';
}

function heartbeatOf(state: TrainingState): ActivityProgress {
  return { done: state.progress?.step ?? 0, total: state.progress?.totalSteps ?? 0, unit: 'steps', training: state };
}

/** The training state of a previous attempt's last heartbeat, if it has one. */
function trainingStateOf(details: unknown): TrainingState | undefined {
  const training = (details as Partial<ActivityProgress> | undefined)?.training;
  return typeof training?.status === 'string' ? training : undefined;
}
