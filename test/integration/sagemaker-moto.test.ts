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
    },
  };
}

let moto: MotoServer;
let sagemaker: SageMakerClient;
let trainer: SageMakerTrainer;

beforeAll(async () => {
  moto = await startMoto();
  sagemaker = motoAwsClients(moto.endpoint).sagemaker;
  trainer = new SageMakerTrainer({ client: sagemaker });
});

afterAll(async () => {
  sagemaker?.destroy();
  await moto?.stop();
});

beforeEach(() => moto.reset());

describe('SageMakerTrainer on moto', () => {
  const jobName = trainingJobName('demo', RUN_ID);

  it('creates a job moto accepts, tagged and with string hyperparameters', async () => {
    expect(await trainer.launch(specFor(jobName))).toEqual({ backend: 'sagemaker', jobName, adopted: false });

    const job = await sagemaker.send(new DescribeTrainingJobCommand({ TrainingJobName: jobName }));
    expect(job.AlgorithmSpecification?.TrainingImage).toBe('123456789012.dkr.ecr.us-east-1.amazonaws.com/kohya-ss:latest');
    expect(job.InputDataConfig?.map((channel) => channel.ChannelName)).toEqual(['dataset', 'model']);
    expect(job.HyperParameters).toMatchObject({ network_dim: '32', cache_latents: 'true', resolution: '1024,1024', lora_family: 'sdxl' });
    const tags = await sagemaker.send(new ListTagsCommand({ ResourceArn: job.TrainingJobArn }));
    expect(tags.Tags).toEqual([
      { Key: 'lora:run-id', Value: RUN_ID },
      { Key: 'lora:output-name', Value: 'demo' },
    ]);
  });

  it('describes the job as Completed with the artifact under the output path', async () => {
    await trainer.launch(specFor(jobName));
    expect(await trainer.describe({ backend: 'sagemaker', jobName })).toEqual({
      status: 'Completed',
      secondaryStatus: 'Completed',
      artifactUri: `s3://lora-test/training/${jobName}/output/model.tar.gz`,
    });
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
    await expect(trainer.stop({ backend: 'sagemaker', jobName })).resolves.toBeUndefined();
  });

  it('stop fails for a job that does not exist', async () => {
    // No finished job excuses the failed StopTrainingJob, so moto's error (HTTP 500) surfaces.
    await expect(trainer.stop({ backend: 'sagemaker', jobName: 'lora-never-launched' })).rejects.toHaveProperty('$metadata.httpStatusCode', 500);
  });
});
