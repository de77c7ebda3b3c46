/**
 * The training activities against a mocked SageMaker (aws-sdk-client-mock) in Temporal's
 * MockActivityEnvironment: poll sequences, how each ending maps to a failure, a poll interrupted
 * and resumed from its last heartbeat on a new attempt, cancellation, stop-and-wait, and launch
 * errors sorted into retryable and not.
 */
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CreateTrainingJobCommand,
  DescribeTrainingJobCommand,
  type DescribeTrainingJobResponse,
  SageMakerClient,
  StopTrainingJobCommand,
} from '@aws-sdk/client-sagemaker';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { DefaultLogger } from '@temporalio/worker';
import { MockActivityEnvironment } from '@temporalio/testing';
import { mockClient } from 'aws-sdk-client-mock';
import { makeTrainingActivities } from '../../activities/training';
import type { ActivityDeps } from '../../activities/deps';
import { openStore } from '../../adapters/store';
import { SageMakerTrainer } from '../../adapters/trainer/sagemaker';
import type { Trainer } from '../../adapters/trainer/types';
import { NAN_LOSS_WARNING } from '../../lib/kohya/progress';
import { TrainingRunInput, type TrainingRun } from '../../lib/pipeline/input';
import type { ActivityProgress, TrainingState } from '../../lib/pipeline/status';

const JOB = 'lora-demo-0123456789ab';
const REF = { backend: 'sagemaker' as const, jobName: JOB };
const CHECKPOINTS = `s3://bucket/lora/checkpoints/${JOB}/`;

const sagemaker = mockClient(SageMakerClient);
const s3 = mockClient(S3Client);
const s3Client = new S3Client({ region: 'us-east-1' });
const deps: ActivityDeps = {
  workStore: openStore('s3://bucket/work', { s3: s3Client }),
  openStore: (uri) => openStore(uri ?? 's3://bucket/lora', { s3: s3Client }),
  trainers: {
    sagemaker: new SageMakerTrainer({ client: new SageMakerClient({ region: 'us-east-1' }), s3: s3Client }),
    local: {} as Trainer,
  },
} as ActivityDeps;
const { launchTraining, pollTraining, stopTraining } = makeTrainingActivities(deps);

beforeEach(() => {
  sagemaker.reset();
  s3.reset();
});
afterAll(() => {
  sagemaker.restore();
  s3.restore();
});

function serviceError(name: string, httpStatusCode: number): Error {
  return Object.assign(new Error(`${name} from the mock`), { name, $fault: httpStatusCode >= 500 ? 'server' : 'client', $metadata: { httpStatusCode } });
}

function job(fields: Partial<DescribeTrainingJobResponse>): DescribeTrainingJobResponse {
  return {
    TrainingJobName: JOB,
    TrainingJobArn: `arn:aws:sagemaker:us-east-1:123456789012:training-job/${JOB}`,
    TrainingJobStatus: 'InProgress',
    SecondaryStatus: 'Starting',
    OutputDataConfig: { S3OutputPath: 's3://bucket/lora/training' },
    CheckpointConfig: { S3Uri: CHECKPOINTS },
    ModelArtifacts: undefined,
    StoppingCondition: {},
    CreationTime: new Date(0),
    ...fields,
  };
}

function progressFile(progress: Record<string, unknown>): { Body: never } {
  return { Body: { transformToByteArray: async () => new TextEncoder().encode(JSON.stringify(progress)) } as never };
}

/** An activity environment that records heartbeats; `heartbeatDetails` makes it a retry of an earlier attempt. */
function environment(heartbeatDetails?: ActivityProgress): { env: MockActivityEnvironment; heartbeats: ActivityProgress[] } {
  // Failures are the point of most tests here: keep the activity logger to real problems.
  const env = new MockActivityEnvironment(heartbeatDetails ? { heartbeatDetails, attempt: 2 } : {}, { logger: new DefaultLogger('ERROR') });
  const heartbeats: ActivityProgress[] = [];
  env.on('heartbeat', (details: ActivityProgress) => heartbeats.push(details));
  return { env, heartbeats };
}

const POLL = { job: REF, pollInterval: '5ms' };

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ApplicationFailure)) throw new Error(`expected an ApplicationFailure, got ${String(err)}`);
  return err;
}

describe('pollTraining', () => {
  it('follows InProgress → Training → Completed, heartbeating status and progress, and returns the artifact', async () => {
    sagemaker
      .on(DescribeTrainingJobCommand, { TrainingJobName: JOB })
      .resolvesOnce(job({ SecondaryStatus: 'Starting' }))
      .resolvesOnce(job({ SecondaryStatus: 'Training' }))
      .resolves(job({ TrainingJobStatus: 'Completed', SecondaryStatus: 'Completed', ModelArtifacts: { S3ModelArtifacts: `s3://bucket/lora/training/${JOB}/output/model.tar.gz` } }));
    s3.on(GetObjectCommand)
      .rejectsOnce(serviceError('NoSuchKey', 404))
      .resolvesOnce(progressFile({ step: 240, totalSteps: 2000, epoch: 2, totalEpochs: 10, loss: 0.0871, etaSeconds: 70 }))
      .resolves(progressFile({ step: 2000, totalSteps: 2000, epoch: 10, totalEpochs: 10, loss: 0.05, etaSeconds: 0 }));
    const { env, heartbeats } = environment();

    const final = (await env.run(pollTraining, POLL)) as TrainingState;

    expect(final).toEqual({
      status: 'Completed',
      secondaryStatus: 'Completed',
      artifactUri: `s3://bucket/lora/training/${JOB}/output/model.tar.gz`,
      progress: { step: 2000, totalSteps: 2000, epoch: 10, totalEpochs: 10, loss: 0.05, etaSeconds: 0 },
    });
    expect(heartbeats.map((h) => [h.training?.status, h.training?.secondaryStatus, h.done, h.total])).toEqual([
      ['InProgress', 'Starting', 0, 0],
      ['InProgress', 'Training', 240, 2000],
      ['Completed', 'Completed', 2000, 2000],
    ]);
    expect(heartbeats[1]).toMatchObject({ unit: 'steps', training: { progress: { epoch: 2, loss: 0.0871, etaSeconds: 70 } } });
  });

  it.each([
    [
      'Failed',
      job({ TrainingJobStatus: 'Failed', SecondaryStatus: 'Failed', FailureReason: 'AlgorithmError: No data found: sd-scripts found no images' }),
      'TrainingFailed',
      `training job ${JOB} failed: AlgorithmError: No data found: sd-scripts found no images`,
    ],
    [
      'Stopped by MaxRuntimeExceeded',
      job({ TrainingJobStatus: 'Stopped', SecondaryStatus: 'MaxRuntimeExceeded' }),
      'TrainingMaxRuntimeExceeded',
      `training job ${JOB} hit its maximum runtime (trainer.maxRuntimeSeconds) and was stopped: raise it or train fewer epochs`,
    ],
    [
      'Stopped by MaxWaitTimeExceeded (spot)',
      job({ TrainingJobStatus: 'Stopped', SecondaryStatus: 'MaxWaitTimeExceeded' }),
      'TrainingMaxRuntimeExceeded',
      `training job ${JOB} ran out of its spot wait time (trainer.maxWaitSeconds) and was stopped: raise it or train without spot`,
    ],
  ])('ends a %s job with a non-retryable failure of its own type', async (_case, ended, type, message) => {
    sagemaker.on(DescribeTrainingJobCommand).resolvesOnce(job({ SecondaryStatus: 'Training' })).resolves(ended);
    const failure = await failureOf(environment().env.run(pollTraining, POLL));
    expect(failure).toMatchObject({ type, message, nonRetryable: true });
  });

  it('keeps polling while the job is Stopping, and returns it Stopped for the workflow to end the run as cancelled', async () => {
    sagemaker
      .on(DescribeTrainingJobCommand)
      .resolvesOnce(job({ TrainingJobStatus: 'Stopping', SecondaryStatus: 'Stopping' }))
      .resolves(job({ TrainingJobStatus: 'Stopped', SecondaryStatus: 'Stopped' }));
    await expect(environment().env.run(pollTraining, POLL)).resolves.toMatchObject({ status: 'Stopped', secondaryStatus: 'Stopped' });
    expect(sagemaker.commandCalls(DescribeTrainingJobCommand)).toHaveLength(2);
  });

  it('lets throttling fail the attempt for Temporal to retry, and the retry resumes from the last heartbeat', async () => {
    sagemaker
      .on(DescribeTrainingJobCommand)
      .resolvesOnce(job({ SecondaryStatus: 'Training' }))
      .rejectsOnce(serviceError('ThrottlingException', 400))
      .resolvesOnce(job({ SecondaryStatus: 'Training' }))
      .resolves(job({ TrainingJobStatus: 'Completed', SecondaryStatus: 'Completed' }));
    s3.on(GetObjectCommand)
      .resolvesOnce(progressFile({ step: 100, totalSteps: 400, lossIsNaN: true }))
      // The retry cannot read progress at first: it keeps showing the last heartbeat's, NaN included.
      .rejectsOnce(serviceError('NoSuchKey', 404))
      .resolves(progressFile({ step: 400, totalSteps: 400, loss: 0.1 }));

    const first = environment();
    const thrown = await first.env.run(pollTraining, POLL).catch((err: unknown) => err);
    // Not an ApplicationFailure: Temporal retries it with backoff.
    expect(thrown).not.toBeInstanceOf(ApplicationFailure);
    expect(thrown).toMatchObject({ name: 'ThrottlingException' });
    const lastHeartbeat = first.heartbeats.at(-1)!;
    expect(lastHeartbeat.training?.progress).toEqual({ step: 100, totalSteps: 400, lossIsNaN: true });

    const retry = environment(lastHeartbeat);
    const final = (await retry.env.run(pollTraining, POLL)) as TrainingState;
    // First thing on resume: the last known state again, before any new describe.
    expect(retry.heartbeats[0]).toEqual(lastHeartbeat);
    expect(retry.heartbeats[1]?.training).toMatchObject({ status: 'InProgress', progress: { step: 100, lossIsNaN: true }, warnings: [NAN_LOSS_WARNING] });
    // Once NaN, always NaN: a later finite loss does not clear the warning.
    expect(final).toMatchObject({ status: 'Completed', progress: { step: 400, lossIsNaN: true }, warnings: [NAN_LOSS_WARNING] });
    expect(final.progress).not.toHaveProperty('loss');
  });

  it('fails at once, with AWS\'s message, on an error no retry can fix', async () => {
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('AccessDeniedException', 400));
    const failure = await failureOf(environment().env.run(pollTraining, POLL));
    expect(failure).toMatchObject({
      type: 'AccessDeniedException',
      nonRetryable: true,
      message: 'describe training job: AccessDeniedException: AccessDeniedException from the mock',
    });
  });

  it('ends with a cancellation when the run is cancelled between polls', async () => {
    sagemaker.on(DescribeTrainingJobCommand).resolves(job({ SecondaryStatus: 'Training' }));
    const { env } = environment();
    const polling = env.run(pollTraining, { job: REF, pollInterval: '1h' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    env.cancel();
    await expect(polling).rejects.toBeInstanceOf(CancelledFailure);
  });
});

describe('stopTraining', () => {
  it('sends StopTrainingJob and waits, heartbeating, until SageMaker reports Stopping', async () => {
    sagemaker.on(StopTrainingJobCommand).resolves({});
    sagemaker
      .on(DescribeTrainingJobCommand)
      .resolvesOnce(job({ SecondaryStatus: 'Training' }))
      .resolvesOnce(job({ SecondaryStatus: 'Training' }))
      .resolves(job({ TrainingJobStatus: 'Stopping', SecondaryStatus: 'Stopping' }));
    const { env, heartbeats } = environment();
    const stopped = await env.run(stopTraining, { job: REF, pollInterval: '5ms' });
    expect(stopped).toMatchObject({ status: 'Stopping', secondaryStatus: 'Stopping' });
    expect(sagemaker.commandCalls(StopTrainingJobCommand, { TrainingJobName: JOB })).toHaveLength(1);
    expect(heartbeats.map((h) => h.training?.status)).toEqual(['InProgress', 'InProgress']);
  });

  it('returns at once for a job that already ended', async () => {
    sagemaker.on(StopTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(DescribeTrainingJobCommand).resolves(job({ TrainingJobStatus: 'Completed', SecondaryStatus: 'Completed' }));
    await expect(environment().env.run(stopTraining, { job: REF })).resolves.toMatchObject({ status: 'Completed' });
  });

  it('returns undefined for a job that was never created', async () => {
    sagemaker.on(StopTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    await expect(environment().env.run(stopTraining, { job: REF })).resolves.toBeUndefined();
  });
});

describe('launchTraining', () => {
  const sagemakerRun = (trainer: Record<string, unknown> = {}): TrainingRun =>
    TrainingRunInput.parse({
      runName: 'demo',
      dataset: 's3://bucket/in/',
      store: 's3://bucket/lora',
      trainer: { kind: 'sagemaker', imageUri: 'image', roleArn: 'arn:aws:iam::123456789012:role/r', maxRuntimeSeconds: 3600, ...trainer },
    });
  const launch = (run: TrainingRun, datasetUri = 's3://bucket/lora/datasets/demo/abc') =>
    environment().env.run(launchTraining, { run, runId: 'run-1', jobName: JOB, datasetUri });

  it('creates the job with a per-job checkpoint prefix under the store, and spot waiting twice the runtime by default', async () => {
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(CreateTrainingJobCommand).resolves({});
    await expect(launch(sagemakerRun({ spot: true }))).resolves.toEqual({ backend: 'sagemaker', jobName: JOB, adopted: false });
    const request = sagemaker.commandCalls(CreateTrainingJobCommand)[0]!.args[0].input;
    expect(request).toMatchObject({
      OutputDataConfig: { S3OutputPath: 's3://bucket/lora/training' },
      CheckpointConfig: { S3Uri: CHECKPOINTS },
      EnableManagedSpotTraining: true,
      StoppingCondition: { MaxRuntimeInSeconds: 3600, MaxWaitTimeInSeconds: 7200 },
    });
  });

  it.each([
    // Input validation keeps bucket settings out of training.kohya; an input that skipped it (an
    // older client, a hand-written history) is still caught before any job is created.
    ['sd-scripts options that cannot work together', 's3://bucket/ds', { min_bucket_reso: 320 }, 'KohyaConfigError', /^sd-scripts options for sd15: min_bucket_reso: must be 256/],
    ['a dataset SageMaker cannot read', 'file:///tmp/ds', {}, 'InvalidTrainingSpecError', /^spec\.datasetUri must be an s3:\/\/ URI/],
  ])('fails without retries on %s', async (_case, datasetUri, kohya, type, message) => {
    const run = sagemakerRun();
    const failure = await failureOf(launch({ ...run, training: { ...run.training, kohya } }, datasetUri));
    expect(failure).toMatchObject({ type, nonRetryable: true });
    expect(failure.message).toMatch(message);
    expect(sagemaker.commandCalls(CreateTrainingJobCommand)).toHaveLength(0);
  });

  it.each([
    ['AccessDeniedException', 400],
    ['ValidationException', 400],
  ])('fails without retries, with AWS\'s message, when CreateTrainingJob says %s', async (name, status) => {
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(CreateTrainingJobCommand).rejects(serviceError(name, status));
    const failure = await failureOf(launch(sagemakerRun()));
    expect(failure).toMatchObject({ type: name, nonRetryable: true, message: `launch: ${name}: ${name} from the mock` });
  });

  it.each([
    ['ThrottlingException', 400],
    ['ResourceLimitExceeded', 400],
    ['InternalFailure', 500],
  ])('leaves %s to Temporal\'s retries', async (name, status) => {
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(CreateTrainingJobCommand).rejects(serviceError(name, status));
    const thrown = await launch(sagemakerRun()).catch((err: unknown) => err);
    expect(thrown).not.toBeInstanceOf(ApplicationFailure);
    expect(thrown).toMatchObject({ name });
  });
});
