import {
  CreateTrainingJobCommand,
  DescribeTrainingJobCommand,
  type DescribeTrainingJobResponse,
  ListTagsCommand,
  SageMakerClient,
  StopTrainingJobCommand,
} from '@aws-sdk/client-sagemaker';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { hyperParameters } from '../../adapters/trainer/entrypoint';
import { createTrainingJobRequest, SageMakerTrainer, TrainingJobConflictError } from '../../adapters/trainer/sagemaker';
import { InvalidTrainingSpecError, type TrainingJobSpec } from '../../adapters/trainer/types';
import { NAN_LOSS_WARNING } from '../../lib/kohya/progress';

const JOB = 'lora-demo-0123456789ab';
const ARN = `arn:aws:sagemaker:us-east-1:123456789012:training-job/${JOB}`;
const REF = { backend: 'sagemaker' as const, jobName: JOB };

const spec: TrainingJobSpec = {
  jobName: JOB,
  runId: 'lora-demo-20250101-120000',
  datasetUri: 's3://bucket/datasets/demo/',
  family: 'sd15',
  checkpoint: 's3://bucket/models/base/v1-5-pruned.safetensors',
  outputName: 'demo',
  kohyaConfig: { network_dim: 32, network_alpha: 16, learning_rate: 0.0001, shuffle_caption: true, resolution: '512,512', output_name: 'ignored' },
  sagemaker: {
    imageUri: '123456789012.dkr.ecr.us-east-1.amazonaws.com/kohya:latest',
    roleArn: 'arn:aws:iam::123456789012:role/SageMakerRole',
    instanceType: 'ml.g5.2xlarge',
    volumeSizeGb: 100,
    maxRuntimeSeconds: 86400,
    outputS3Uri: 's3://bucket/training',
    checkpointS3Uri: `s3://bucket/checkpoints/${JOB}/`,
  },
};

/** Service errors as the SDK raises them: a name and the HTTP status. */
function serviceError(name: string, httpStatusCode: number): Error {
  return Object.assign(new Error(`${name} from the mock`), { name, $fault: httpStatusCode >= 500 ? 'server' : 'client', $metadata: { httpStatusCode } });
}

/** A GetObject response whose body reads as `text`. */
function objectBody(text: string): { Body: never } {
  return { Body: { transformToByteArray: async () => new TextEncoder().encode(text) } as never };
}

function job(fields: Partial<DescribeTrainingJobResponse>): DescribeTrainingJobResponse {
  return {
    TrainingJobName: JOB,
    TrainingJobArn: ARN,
    ModelArtifacts: undefined,
    TrainingJobStatus: 'InProgress',
    SecondaryStatus: 'Starting',
    StoppingCondition: { MaxRuntimeInSeconds: 86400 },
    CreationTime: new Date(0),
    OutputDataConfig: { S3OutputPath: 's3://bucket/training' },
    ...fields,
  };
}

const sagemaker = mockClient(SageMakerClient);
const s3 = mockClient(S3Client);
const trainer = new SageMakerTrainer({ client: new SageMakerClient({ region: 'us-east-1' }) });

beforeEach(() => {
  sagemaker.reset();
  s3.reset();
});
afterAll(() => {
  sagemaker.restore();
  s3.restore();
});

describe('describe', () => {
  it('follows a job from Starting through Training to Completed with its artifact', async () => {
    sagemaker
      .on(DescribeTrainingJobCommand, { TrainingJobName: JOB })
      .resolvesOnce(job({ TrainingJobStatus: 'InProgress', SecondaryStatus: 'Starting' }))
      .resolvesOnce(job({ TrainingJobStatus: 'InProgress', SecondaryStatus: 'Training' }))
      .resolvesOnce(
        job({
          TrainingJobStatus: 'Completed',
          SecondaryStatus: 'Completed',
          ModelArtifacts: { S3ModelArtifacts: `s3://bucket/training/${JOB}/output/model.tar.gz` },
        }),
      );
    expect(await trainer.describe(REF)).toEqual({ status: 'InProgress', secondaryStatus: 'Starting' });
    expect(await trainer.describe(REF)).toEqual({ status: 'InProgress', secondaryStatus: 'Training' });
    expect(await trainer.describe(REF)).toEqual({
      status: 'Completed',
      secondaryStatus: 'Completed',
      artifactUri: `s3://bucket/training/${JOB}/output/model.tar.gz`,
    });
  });

  it('computes the artifact URI from S3OutputPath when ModelArtifacts is absent', async () => {
    sagemaker
      .on(DescribeTrainingJobCommand)
      .resolves(job({ TrainingJobStatus: 'Completed', SecondaryStatus: 'Completed', OutputDataConfig: { S3OutputPath: 's3://bucket/training/' } }));
    expect((await trainer.describe(REF)).artifactUri).toBe(`s3://bucket/training/${JOB}/output/model.tar.gz`);
  });

  it('reports a failure with its reason and no artifact', async () => {
    sagemaker
      .on(DescribeTrainingJobCommand)
      .resolves(job({ TrainingJobStatus: 'Failed', SecondaryStatus: 'Failed', FailureReason: 'AlgorithmError: CUDA out of memory' }));
    expect(await trainer.describe(REF)).toEqual({
      status: 'Failed',
      secondaryStatus: 'Failed',
      failureReason: 'AlgorithmError: CUDA out of memory',
    });
  });

  it('reports Stopped, and a stop by MaxRuntimeExceeded in the secondary status', async () => {
    sagemaker
      .on(DescribeTrainingJobCommand)
      .resolvesOnce(job({ TrainingJobStatus: 'Stopped', SecondaryStatus: 'Stopped' }))
      .resolvesOnce(job({ TrainingJobStatus: 'Stopped', SecondaryStatus: 'MaxRuntimeExceeded' }));
    expect(await trainer.describe(REF)).toEqual({ status: 'Stopped', secondaryStatus: 'Stopped' });
    expect(await trainer.describe(REF)).toEqual({ status: 'Stopped', secondaryStatus: 'MaxRuntimeExceeded' });
  });

  it('rejects a status outside the contract, naming the job', async () => {
    sagemaker.on(DescribeTrainingJobCommand).resolves(job({ TrainingJobStatus: 'Paused' as never }));
    await expect(trainer.describe(REF)).rejects.toThrow(`training job "${JOB}" has an unknown TrainingJobStatus "Paused"`);
  });
});

describe('live progress from the checkpoint prefix', () => {
  const withS3 = new SageMakerTrainer({ client: new SageMakerClient({ region: 'us-east-1' }), s3: new S3Client({ region: 'us-east-1' }) });
  const training = job({ SecondaryStatus: 'Training', CheckpointConfig: { S3Uri: `s3://bucket/checkpoints/${JOB}/` } });
  const progressKey = { Bucket: 'bucket', Key: `checkpoints/${JOB}/progress.json` };

  it("reads the container's progress.json: steps, epoch, loss, ETA", async () => {
    sagemaker.on(DescribeTrainingJobCommand).resolves(training);
    s3.on(GetObjectCommand, progressKey).resolves(
      objectBody(JSON.stringify({ step: 240, totalSteps: 2000, epoch: 2, totalEpochs: 10, loss: 0.0871, etaSeconds: 70, updatedAt: '2025-01-01T00:00:00Z' })),
    );
    expect(await withS3.describe(REF)).toEqual({
      status: 'InProgress',
      secondaryStatus: 'Training',
      progress: { step: 240, totalSteps: 2000, epoch: 2, totalEpochs: 10, loss: 0.0871, etaSeconds: 70 },
    });
  });

  it('turns a NaN loss into a warning', async () => {
    sagemaker.on(DescribeTrainingJobCommand).resolves(training);
    s3.on(GetObjectCommand).resolves(objectBody(JSON.stringify({ step: 300, totalSteps: 2000, lossIsNaN: true })));
    expect(await withS3.describe(REF)).toMatchObject({ progress: { step: 300, lossIsNaN: true }, warnings: [NAN_LOSS_WARNING] });
  });

  it('reports no progress before the container has written any', async () => {
    sagemaker.on(DescribeTrainingJobCommand).resolves(training);
    s3.on(GetObjectCommand).rejects(serviceError('NoSuchKey', 404));
    expect(await withS3.describe(REF)).toEqual({ status: 'InProgress', secondaryStatus: 'Training' });
  });

  it.each([
    ['cannot be read', () => s3.on(GetObjectCommand).rejects(serviceError('AccessDenied', 403)), /reading s3:\/\/bucket\/checkpoints\/.*\/progress\.json failed: AccessDenied: AccessDenied from the mock$/],
    ['is not JSON', () => s3.on(GetObjectCommand).resolves(objectBody('{"step": 3')), /progress\.json is not JSON/],
    ['has the wrong shape', () => s3.on(GetObjectCommand).resolves(objectBody('{"step": "three"}')), /progress\.json is not a progress file/],
  ])('keeps watching with a warning when progress.json %s', async (_case, arrange, warning) => {
    sagemaker.on(DescribeTrainingJobCommand).resolves(training);
    arrange();
    const state = await withS3.describe(REF);
    expect(state).toMatchObject({ status: 'InProgress', secondaryStatus: 'Training' });
    expect(state.progress).toBeUndefined();
    expect(state.warnings).toHaveLength(1);
    expect(state.warnings![0]).toMatch(/^live progress unavailable: /);
    expect(state.warnings![0]).toMatch(warning);
  });
});

describe('launch', () => {
  it('creates the job when none exists, with channels, tags and string hyperparameters', async () => {
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(CreateTrainingJobCommand).resolves({ TrainingJobArn: ARN });

    expect(await trainer.launch(spec)).toEqual({ backend: 'sagemaker', jobName: JOB, adopted: false });

    const creates = sagemaker.commandCalls(CreateTrainingJobCommand);
    expect(creates).toHaveLength(1);
    const input = creates[0]!.args[0].input;
    expect(input).toMatchObject({
      TrainingJobName: JOB,
      AlgorithmSpecification: { TrainingImage: spec.sagemaker!.imageUri, TrainingInputMode: 'File' },
      RoleArn: spec.sagemaker!.roleArn,
      OutputDataConfig: { S3OutputPath: 's3://bucket/training' },
      CheckpointConfig: { S3Uri: `s3://bucket/checkpoints/${JOB}/`, LocalPath: '/opt/ml/checkpoints' },
      ResourceConfig: { InstanceType: 'ml.g5.2xlarge', InstanceCount: 1, VolumeSizeInGB: 100 },
      StoppingCondition: { MaxRuntimeInSeconds: 86400 },
      Tags: [
        { Key: 'lora:run-id', Value: spec.runId },
        { Key: 'lora:output-name', Value: 'demo' },
      ],
    });
    expect(input.InputDataConfig?.map((channel) => [channel.ChannelName, channel.DataSource?.S3DataSource?.S3Uri])).toEqual([
      ['dataset', 's3://bucket/datasets/demo/'],
      ['model', 's3://bucket/models/base/v1-5-pruned.safetensors'],
    ]);
    expect(input.InputDataConfig?.every((channel) => channel.DataSource?.S3DataSource?.S3DataType === 'S3Prefix')).toBe(true);
    const hyperParameters = input.HyperParameters ?? {};
    expect(Object.values(hyperParameters).every((value) => typeof value === 'string')).toBe(true);
    expect(hyperParameters).toEqual({
      network_dim: '32',
      // A float option keeps its decimal point, so sd-scripts reads a float from the TOML.
      network_alpha: '16.0',
      learning_rate: '0.0001',
      shuffle_caption: 'true',
      resolution: '512,512',
      output_name: 'demo',
      // For the entrypoint: which script, which values stay strings, which file in the model channel.
      lora_family: 'sd15',
      lora_string_options: 'resolution,output_name',
      lora_model_file: 'v1-5-pruned.safetensors',
    });
    // No spot unless asked for.
    expect(input).not.toHaveProperty('EnableManagedSpotTraining');
    expect(input.StoppingCondition).not.toHaveProperty('MaxWaitTimeInSeconds');
  });

  it('asks for managed spot with the wait time, and tells the entrypoint to resume from its checkpoints', () => {
    const input = createTrainingJobRequest({ ...spec, sagemaker: { ...spec.sagemaker!, spot: { maxWaitSeconds: 172800 } } });
    expect(input).toMatchObject({
      EnableManagedSpotTraining: true,
      StoppingCondition: { MaxRuntimeInSeconds: 86400, MaxWaitTimeInSeconds: 172800 },
      CheckpointConfig: { S3Uri: `s3://bucket/checkpoints/${JOB}/` },
    });
    expect(input.HyperParameters?.lora_resume).toBe('true');
  });

  it.each([
    ['a file:// dataset', { datasetUri: 'file:///data/demo' }, 'spec.datasetUri must be an s3:// URI for the sagemaker trainer, got "file:///data/demo"'],
    ['a local checkpoint prefix', { sagemaker: { ...spec.sagemaker!, checkpointS3Uri: '/tmp/ckpt' } }, 'spec.sagemaker.checkpointS3Uri must be an s3:// URI for the sagemaker trainer, got "/tmp/ckpt"'],
    ['a spot wait shorter than the runtime', { sagemaker: { ...spec.sagemaker!, spot: { maxWaitSeconds: 60 } } }, 'spec.sagemaker.spot.maxWaitSeconds (60) must be ≥ maxRuntimeSeconds (86400)'],
  ])('rejects %s before calling SageMaker', (_case, overrides, message) => {
    const build = () => createTrainingJobRequest({ ...spec, ...overrides });
    expect(build).toThrow(InvalidTrainingSpecError);
    expect(build).toThrow(message);
  });

  it('after a throttled create, the retry creates the job once', async () => {
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(CreateTrainingJobCommand).rejectsOnce(serviceError('ThrottlingException', 400)).resolves({ TrainingJobArn: ARN });
    await expect(trainer.launch(spec)).rejects.toMatchObject({ name: 'ThrottlingException' });
    expect(await trainer.launch(spec)).toEqual({ backend: 'sagemaker', jobName: JOB, adopted: false });
    expect(sagemaker.commandCalls(CreateTrainingJobCommand)).toHaveLength(2);
  });

  it('passes a non-S3 checkpoint through and adds no model channel', async () => {
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(CreateTrainingJobCommand).resolves({ TrainingJobArn: ARN });
    await trainer.launch({ ...spec, checkpoint: 'runwayml/stable-diffusion-v1-5' });
    const input = sagemaker.commandCalls(CreateTrainingJobCommand)[0]!.args[0].input;
    expect(input.InputDataConfig?.map((channel) => channel.ChannelName)).toEqual(['dataset']);
    expect(input.HyperParameters?.pretrained_model_name_or_path).toBe('runwayml/stable-diffusion-v1-5');
    expect(input.HyperParameters).not.toHaveProperty('lora_model_file');
  });

  it.each(['ResourceInUse', 'ValidationException'])('adopts the job when the create response was lost and the retry hits %s', async (duplicate) => {
    sagemaker
      .on(DescribeTrainingJobCommand)
      .rejectsOnce(serviceError('ValidationException', 400))
      .resolves(job({ TrainingJobStatus: 'InProgress', SecondaryStatus: 'Starting' }));
    sagemaker.on(CreateTrainingJobCommand).rejects(serviceError(duplicate, 400));
    sagemaker.on(ListTagsCommand, { ResourceArn: ARN }).resolves({ Tags: [{ Key: 'lora:run-id', Value: spec.runId }] });

    expect(await trainer.launch(spec)).toEqual({ backend: 'sagemaker', jobName: JOB, adopted: true });
    expect(sagemaker.commandCalls(CreateTrainingJobCommand)).toHaveLength(1);
    expect(sagemaker.commandCalls(ListTagsCommand)).toHaveLength(1);
  });

  it('adopts an existing job of the same run without creating', async () => {
    sagemaker.on(DescribeTrainingJobCommand).resolves(job({}));
    sagemaker
      .on(ListTagsCommand, { ResourceArn: ARN })
      .resolvesOnce({ Tags: [{ Key: 'team', Value: 'x' }], NextToken: 'page-2' })
      .resolvesOnce({ Tags: [{ Key: 'lora:run-id', Value: spec.runId }] });
    expect(await trainer.launch(spec)).toEqual({ backend: 'sagemaker', jobName: JOB, adopted: true });
    expect(sagemaker.commandCalls(CreateTrainingJobCommand)).toHaveLength(0);
    expect(sagemaker.commandCalls(ListTagsCommand)[1]!.args[0].input.NextToken).toBe('page-2');
  });

  it("refuses another run's job, naming it", async () => {
    sagemaker.on(DescribeTrainingJobCommand).resolves(job({}));
    sagemaker.on(ListTagsCommand).resolves({ Tags: [{ Key: 'lora:run-id', Value: 'someone-else' }] });
    const launch = trainer.launch(spec);
    await expect(launch).rejects.toBeInstanceOf(TrainingJobConflictError);
    await expect(launch).rejects.toThrow(`training job "${JOB}" already exists but its lora:run-id tag is "someone-else", not "${spec.runId}"`);
    expect(sagemaker.commandCalls(CreateTrainingJobCommand)).toHaveLength(0);
  });

  it('rethrows a create ValidationException when no job appeared (genuinely bad input)', async () => {
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(CreateTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    await expect(trainer.launch(spec)).rejects.toMatchObject({ name: 'ValidationException', message: 'ValidationException from the mock' });
  });

  it('propagates other describe failures instead of creating', async () => {
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('AccessDeniedException', 400));
    await expect(trainer.launch(spec)).rejects.toMatchObject({ name: 'AccessDeniedException' });
    expect(sagemaker.commandCalls(CreateTrainingJobCommand)).toHaveLength(0);
  });

  it('requires spec.sagemaker and an s3:// dataset, naming the field', async () => {
    await expect(trainer.launch({ ...spec, sagemaker: undefined })).rejects.toThrow(/spec\.sagemaker is required .*job "lora-demo-0123456789ab"/);
    await expect(trainer.launch({ ...spec, datasetUri: 'file:///data/demo' })).rejects.toThrow(
      'spec.datasetUri must be an s3:// URI for the sagemaker trainer, got "file:///data/demo"',
    );
    expect(sagemaker.calls()).toHaveLength(0);
  });
});

describe('hyperParameters', () => {
  it('keeps strings, writes booleans as true/false and numbers as JSON, floats of float options with a point', () => {
    expect(hyperParameters({ a: 'x,y', b: 1e-5, c: false, d: 10, network_alpha: 16, unet_lr: 2e-4, network_dim: 32 })).toEqual({
      a: 'x,y',
      b: '0.00001',
      c: 'false',
      d: '10',
      network_alpha: '16.0',
      unet_lr: '0.0002',
      network_dim: '32',
    });
  });

  it('rejects numbers that are not what the option takes', () => {
    expect(() => hyperParameters({ network_dim: 3.5 })).toThrow('kohya option "network_dim" must be a whole number, got 3.5');
    expect(() => hyperParameters({ learning_rate: Infinity })).toThrow('kohya option "learning_rate" must be a finite number, got Infinity');
  });

  it('rejects what SageMaker would reject, naming the option and the limit', () => {
    expect(() => hyperParameters({ long: 'x'.repeat(2501) })).toThrow('kohya option "long" is 2501 characters; SageMaker hyperparameter values are limited to 2500');
    const many = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, i]));
    expect(() => hyperParameters(many)).toThrow('kohya config has 101 options; SageMaker accepts at most 100 hyperparameters');
  });
});

describe('stop', () => {
  it('stops a running job and returns the state SageMaker reports right after', async () => {
    sagemaker.on(StopTrainingJobCommand).resolves({});
    sagemaker.on(DescribeTrainingJobCommand).resolves(job({ TrainingJobStatus: 'Stopping', SecondaryStatus: 'Stopping' }));
    await expect(trainer.stop(REF)).resolves.toEqual({ status: 'Stopping', secondaryStatus: 'Stopping' });
    expect(sagemaker.commandCalls(StopTrainingJobCommand, { TrainingJobName: JOB })).toHaveLength(1);
  });

  it.each(['Completed', 'Failed', 'Stopped', 'Stopping'] as const)('is a no-op when the job is already %s', async (status) => {
    sagemaker.on(StopTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(DescribeTrainingJobCommand).resolves(job({ TrainingJobStatus: status }));
    await expect(trainer.stop(REF)).resolves.toMatchObject({ status });
  });

  it('tolerates a server without StopTrainingJob (moto) when the job is finished', async () => {
    sagemaker.on(StopTrainingJobCommand).rejects(serviceError('SyntaxError', 500));
    sagemaker.on(DescribeTrainingJobCommand).resolves(job({ TrainingJobStatus: 'Completed', SecondaryStatus: 'Completed' }));
    await expect(trainer.stop(REF)).resolves.toMatchObject({ status: 'Completed' });
  });

  it('returns undefined for a job that was never created (a run cancelled mid-launch)', async () => {
    sagemaker.on(StopTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    sagemaker.on(DescribeTrainingJobCommand).rejects(serviceError('ValidationException', 400));
    await expect(trainer.stop(REF)).resolves.toBeUndefined();
  });

  it('rethrows when the job is still running', async () => {
    sagemaker.on(StopTrainingJobCommand).rejects(serviceError('ThrottlingException', 400));
    sagemaker.on(DescribeTrainingJobCommand).resolves(job({ TrainingJobStatus: 'InProgress', SecondaryStatus: 'Training' }));
    await expect(trainer.stop(REF)).rejects.toMatchObject({ name: 'ThrottlingException' });
  });
});
