import { CreateBucketCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DescribeTrainingJobCommand, ListTagsCommand, ListTrainingJobsCommand, SageMakerClient } from '@aws-sdk/client-sagemaker';
import { SageMakerTrainer, TrainingJobConflictError } from '../../adapters/trainer/sagemaker';
import type { TrainingJobSpec } from '../../adapters/trainer/types';
import { trainingJobName } from '../../lib/job-name';
import { motoAwsClients, startMoto, type MotoServer } from '../support/moto';

const RUN_ID = 'lora-demo-20250101-120000';

function specFor(jobName: string, runId = RUN_ID): TrainingJobSpec {
  return {
    jobName,
    runId,
    datasetUri: 's3://lora-test/datasets/demo/',
    family: 'sdxl',
    checkpoint: 's3://lora-test/models/sdxl-base.safetensors',
    outputName: 'demo',
    kohyaConfig: { network_dim: 32, network_alpha: 16, resolution: '1024,1024', cache_latents: true },
    sagemaker: {
      imageUri: '123456789012.dkr.ecr.us-east-1.amazonaws.com/kohya-ss:latest',
      roleArn: 'arn:aws:iam::123456789012:role/SageMakerRole',
      instanceType: 'ml.g5.2xlarge',
      volumeSizeGb: 100,
      maxRuntimeSeconds: 3600,
      outputS3Uri: 's3://lora-test/training',
      checkpointS3Uri: `s3://lora-test/checkpoints/${jobName}/`,
    },
  };
}

let moto: MotoServer;
let sagemaker: SageMakerClient;
let s3: S3Client;
let trainer: SageMakerTrainer;

beforeAll(async () => {
  moto = await startMoto();
  ({ sagemaker, s3 } = motoAwsClients(moto.endpoint));
  trainer = new SageMakerTrainer({ client: sagemaker, s3 });
});

afterAll(async () => {
  sagemaker?.destroy();
  s3?.destroy();
  await moto?.stop();
});

beforeEach(async () => {
  await moto.reset();
  await s3.send(new CreateBucketCommand({ Bucket: 'lora-test' }));
});

describe('SageMakerTrainer on moto', () => {
  const jobName = trainingJobName('demo', RUN_ID);

  it('creates a job moto accepts, tagged and with string hyperparameters', async () => {
    expect(await trainer.launch(specFor(jobName))).toEqual({ backend: 'sagemaker', jobName, adopted: false });

    const job = await sagemaker.send(new DescribeTrainingJobCommand({ TrainingJobName: jobName }));
    expect(job.AlgorithmSpecification?.TrainingImage).toBe('123456789012.dkr.ecr.us-east-1.amazonaws.com/kohya-ss:latest');
    expect(job.InputDataConfig?.map((channel) => channel.ChannelName)).toEqual(['dataset', 'model']);
    expect(job.HyperParameters).toMatchObject({
      network_dim: '32',
      network_alpha: '16.0',
      cache_latents: 'true',
      resolution: '1024,1024',
      lora_family: 'sdxl',
      lora_model_file: 'sdxl-base.safetensors',
    });
    expect(job.CheckpointConfig).toEqual({ S3Uri: `s3://lora-test/checkpoints/${jobName}/`, LocalPath: '/opt/ml/checkpoints' });
    expect(job.StoppingCondition?.MaxRuntimeInSeconds).toBe(3600);
    const tags = await sagemaker.send(new ListTagsCommand({ ResourceArn: job.TrainingJobArn }));
    expect(tags.Tags).toEqual([
      { Key: 'lora:run-id', Value: RUN_ID },
      { Key: 'lora:output-name', Value: 'demo' },
    ]);
  });

  it('accepts a managed spot job with its wait time and checkpoint prefix', async () => {
    const spec = specFor(jobName);
    await trainer.launch({ ...spec, sagemaker: { ...spec.sagemaker!, spot: { maxWaitSeconds: 7200 } } });
    const job = await sagemaker.send(new DescribeTrainingJobCommand({ TrainingJobName: jobName }));
    expect(job.EnableManagedSpotTraining).toBe(true);
    expect(job.StoppingCondition).toMatchObject({ MaxRuntimeInSeconds: 3600, MaxWaitTimeInSeconds: 7200 });
    expect(job.CheckpointConfig?.S3Uri).toBe(`s3://lora-test/checkpoints/${jobName}/`);
    expect(job.HyperParameters?.lora_resume).toBe('true');
  });

  it('describes the job as Completed with the artifact under the output path, and the progress from the checkpoint prefix', async () => {
    await trainer.launch(specFor(jobName));
    const ref = { backend: 'sagemaker' as const, jobName };
    expect(await trainer.describe(ref)).toEqual({
      status: 'Completed',
      secondaryStatus: 'Completed',
      artifactUri: `s3://lora-test/training/${jobName}/output/model.tar.gz`,
    });
    // What SageMaker syncs from the container's /opt/ml/checkpoints.
    const progress = { step: 400, totalSteps: 400, epoch: 10, totalEpochs: 10, loss: 0.061, etaSeconds: 0, updatedAt: '2025-01-01T00:00:00+00:00' };
    await s3.send(new PutObjectCommand({ Bucket: 'lora-test', Key: `checkpoints/${jobName}/progress.json`, Body: JSON.stringify(progress) }));
    expect((await trainer.describe(ref)).progress).toEqual({ step: 400, totalSteps: 400, epoch: 10, totalEpochs: 10, loss: 0.061, etaSeconds: 0 });
  });

  it('adopts the job on a second launch instead of creating another', async () => {
    await trainer.launch(specFor(jobName));
    expect(await trainer.launch(specFor(jobName))).toEqual({ backend: 'sagemaker', jobName, adopted: true });
    const listed = await sagemaker.send(new ListTrainingJobsCommand({}));
    expect(listed.TrainingJobSummaries?.map((summary) => summary.TrainingJobName)).toEqual([jobName]);
  });

  it('refuses a job with this name from another run and leaves it untouched', async () => {
    await trainer.launch(specFor(jobName, 'some-other-workflow'));
    await expect(trainer.launch(specFor(jobName))).rejects.toBeInstanceOf(TrainingJobConflictError);
    const tags = await sagemaker.send(new ListTagsCommand({ ResourceArn: `arn:aws:sagemaker:us-east-1:123456789012:training-job/${jobName}` }));
    expect(tags.Tags?.find((tag) => tag.Key === 'lora:run-id')?.Value).toBe('some-other-workflow');
  });

  it('stop does not fail on a finished job although moto lacks StopTrainingJob', async () => {
    await trainer.launch(specFor(jobName));
    await expect(trainer.stop({ backend: 'sagemaker', jobName })).resolves.toMatchObject({ status: 'Completed' });
  });

  it('stop of a job that was never created is a no-op', async () => {
    await expect(trainer.stop({ backend: 'sagemaker', jobName: 'lora-never-launched' })).resolves.toBeUndefined();
  });
});
