/**
 * Training stage: launch a Kohya-SS job on the run's backend, watch it with a heartbeating poll
 * loop that a new worker resumes after the old one died, and stop it when the run is cancelled.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { kohyaOptionsFor } from '../lib/kohya/config';
import { durationMs } from '../lib/pipeline/duration';
import type { TrainingRun } from '../lib/pipeline/input';
import type { ActivityProgress, TrainingJobRef, TrainingState } from '../lib/pipeline/status';
import { TrainingJobConflictError } from '../adapters/trainer/sagemaker';
import type { TrainingJobSpec } from '../adapters/trainer/types';
import type { ActivityDeps } from './deps';
import { withClassifiedErrors } from './errors';

export interface LaunchInput {
  run: TrainingRun;
  runId: string;
  jobName: string;
  datasetUri: string;
}

export function makeTrainingActivities(deps: ActivityDeps) {
  async function launchTraining(input: LaunchInput): Promise<TrainingJobRef & { adopted: boolean }> {
    const { run } = input;
    return withClassifiedErrors('launch', async () => {
      const spec: TrainingJobSpec = {
        jobName: input.jobName,
        runId: input.runId,
        datasetUri: input.datasetUri,
        family: run.baseModel.family,
        checkpoint: run.baseModel.checkpoint,
        outputName: run.runName,
        kohyaConfig: kohyaOptionsFor(run),
      };
      if (run.trainer.kind === 'sagemaker') {
        const { kind: _kind, outputS3Uri, ...options } = run.trainer;
        spec.sagemaker = { ...options, outputS3Uri: outputS3Uri ?? deps.openStore(run.store).uriOf('training') };
      } else {
        spec.dryRun = run.trainer.dryRun;
      }
      const job = await deps.trainers[run.trainer.kind].launch(spec).catch((err: unknown) => {
        // Another run owns a job of this name: retrying cannot fix that, and adopting it would be wrong.
        if (err instanceof TrainingJobConflictError) throw ApplicationFailure.nonRetryable(err.message, err.name);
        throw err;
      });
      Context.current().log.info(job.adopted ? 'adopted existing training job' : 'launched training job', { jobName: job.jobName });
      return job;
    });
  }

  async function pollTraining(input: { job: TrainingJobRef; pollInterval: string }): Promise<TrainingState> {
    const ctx = Context.current();
    const trainer = deps.trainers[input.job.backend];
    const last = ctx.info.heartbeatDetails as ActivityProgress | undefined;
    if (last?.training) ctx.log.info('resuming training poll after a retry', { lastStatus: last.training.status });
    for (;;) {
      const state = await withClassifiedErrors('describe training job', () => trainer.describe(input.job));
      const progress = state.progress;
      ctx.heartbeat({ done: progress?.step ?? 0, total: progress?.totalSteps ?? 0, unit: 'steps', training: state } satisfies ActivityProgress);
      const name = input.job.jobName;
      switch (state.status) {
        case 'Completed':
          return state;
        case 'Failed':
          if (state.secondaryStatus === 'MaxRuntimeExceeded') {
            throw ApplicationFailure.nonRetryable(`training job ${name} hit its maximum runtime and was stopped`, 'TrainingMaxRuntimeExceeded');
          }
          throw ApplicationFailure.nonRetryable(`training job ${name} failed: ${state.failureReason ?? 'no reason given'}`, 'TrainingFailed');
        case 'Stopped':
          throw ApplicationFailure.nonRetryable(`training job ${name} was stopped`, 'TrainingStopped');
        default:
          // Context.sleep wakes early when the activity is cancelled (delivered through heartbeats).
          await ctx.sleep(durationMs(input.pollInterval));
      }
    }
  }

  async function stopTraining(input: { job: TrainingJobRef }): Promise<void> {
    await withClassifiedErrors('stop training job', () => deps.trainers[input.job.backend].stop(input.job));
  }

  return { launchTraining, pollTraining, stopTraining };
}
