/**
 * Kohya-SS as a SageMaker training job. The job name is the idempotency key: launch describes
 * before it creates, and a create that reports a duplicate (a retry whose first response was lost)
 * adopts the job, but only when its `lora:run-id` tag says it belongs to the same workflow.
 */
import {
  CreateTrainingJobCommand,
  type CreateTrainingJobRequest,
  DescribeTrainingJobCommand,
  type DescribeTrainingJobResponse,
  ListTagsCommand,
  SageMakerClient,
  StopTrainingJobCommand,
  type TrainingInstanceType,
} from '@aws-sdk/client-sagemaker';
import type { TrainingJobRef, TrainingState } from '../../lib/pipeline/status';
import type { KohyaConfig, Trainer, TrainingJobSpec } from './types';

export const RUN_ID_TAG = 'lora:run-id';
export const OUTPUT_NAME_TAG = 'lora:output-name';

/** Where SageMaker puts things inside the training container. */
export const CONTAINER_PATHS = {
  /** Channel `dataset`: the `<repeats>_<concept>/` folders. */
  dataset: '/opt/ml/input/data/dataset',
  /** Channel `model`: the checkpoint, when it comes from S3. */
  model: '/opt/ml/input/data/model',
  /** Everything here is packed into `<S3OutputPath>/<job>/output/model.tar.gz`. */
  output: '/opt/ml/model',
} as const;

// CreateTrainingJob limits on HyperParameters.
const MAX_HYPERPARAMETERS = 100;
const MAX_HYPERPARAMETER_VALUE_LENGTH = 2500;

const TERMINAL_STATUSES: ReadonlySet<string> = new Set(['Completed', 'Failed', 'Stopped']);
const STATUSES: ReadonlySet<string> = new Set(['InProgress', 'Completed', 'Failed', 'Stopping', 'Stopped']);

/** A job with our name exists but was started by another workflow: adopting it would be wrong. */
export class TrainingJobConflictError extends Error {
  override readonly name = 'TrainingJobConflictError';
  constructor(
    readonly jobName: string,
    readonly expectedRunId: string,
    readonly actualRunId: string | undefined,
  ) {
    super(
      `training job "${jobName}" already exists but its ${RUN_ID_TAG} tag is ${
        actualRunId === undefined ? 'missing' : `"${actualRunId}"`
      }, not "${expectedRunId}": refusing to adopt another run's job`,
    );
  }
}

export class SageMakerTrainer implements Trainer {
  readonly backend = 'sagemaker' as const;
  private readonly client: SageMakerClient;

  constructor(options: { client: SageMakerClient }) {
    this.client = options.client;
  }

  async launch(spec: TrainingJobSpec): Promise<TrainingJobRef & { adopted: boolean }> {
    const request = createTrainingJobRequest(spec);
    const ref: TrainingJobRef = { backend: this.backend, jobName: spec.jobName };
    const existing = await this.findJob(spec.jobName);
    if (existing) {
      await this.assertOwnedBy(existing, spec);
      return { ...ref, adopted: true };
    }
    try {
      await this.client.send(new CreateTrainingJobCommand(request));
      return { ...ref, adopted: false };
    } catch (err) {
      // SageMaker reports a duplicate name as ValidationException (or ResourceInUse); the name
      // alone cannot tell it from bad input, so look: if the job now exists, it is a duplicate.
      const name = (err as { name?: unknown }).name;
      if (name !== 'ValidationException' && name !== 'ResourceInUse') throw err;
      const created = await this.findJob(spec.jobName);
      if (!created) throw err;
      await this.assertOwnedBy(created, spec);
      return { ...ref, adopted: true };
    }
  }

  async describe(ref: TrainingJobRef): Promise<TrainingState> {
    const job = await this.client.send(new DescribeTrainingJobCommand({ TrainingJobName: ref.jobName }));
    return trainingStateOf(job);
  }

  async stop(ref: TrainingJobRef): Promise<void> {
    try {
      await this.client.send(new StopTrainingJobCommand({ TrainingJobName: ref.jobName }));
    } catch (err) {
      // Stopping a finished job is a ValidationException on AWS, and moto does not implement
      // StopTrainingJob at all (HTTP 500). Either way the job's status decides: nothing left to
      // stop is success, anything else is the original failure.
      const state = await this.describe(ref).catch(() => undefined);
      if (state && (TERMINAL_STATUSES.has(state.status) || state.status === 'Stopping')) return;
      throw err;
    }
  }

  /** The job's ARN, or undefined when no job has that name. */
  private async findJob(jobName: string): Promise<{ arn: string } | undefined> {
    try {
      const job = await this.client.send(new DescribeTrainingJobCommand({ TrainingJobName: jobName }));
      if (!job.TrainingJobArn) throw new Error(`DescribeTrainingJob for "${jobName}" returned no TrainingJobArn`);
      return { arn: job.TrainingJobArn };
    } catch (err) {
      // A missing job is a ValidationException ("Requested resource not found"). Other
      // validation failures (a malformed name) resurface from CreateTrainingJob with their reason.
      const name = (err as { name?: unknown }).name;
      if (name === 'ValidationException' || name === 'ResourceNotFound') return undefined;
      throw err;
    }
  }

  /** DescribeTrainingJob does not return tags; ListTags does. */
  private async assertOwnedBy(job: { arn: string }, spec: TrainingJobSpec): Promise<void> {
    const tags = [];
    let nextToken: string | undefined;
    do {
      const page = await this.client.send(new ListTagsCommand({ ResourceArn: job.arn, NextToken: nextToken }));
      tags.push(...(page.Tags ?? []));
      nextToken = page.NextToken;
    } while (nextToken);
    const runId = tags.find((tag) => tag.Key === RUN_ID_TAG)?.Value;
    if (runId !== spec.runId) throw new TrainingJobConflictError(spec.jobName, spec.runId, runId);
  }
}

/** The CreateTrainingJob request for a spec; throws an Error naming the field when one is unusable. */
export function createTrainingJobRequest(spec: TrainingJobSpec): CreateTrainingJobRequest {
  const sagemaker = spec.sagemaker;
  if (!sagemaker) {
    throw new Error(
      `spec.sagemaker is required by the sagemaker trainer (job "${spec.jobName}"): imageUri, roleArn, instanceType, volumeSizeGb, maxRuntimeSeconds, outputS3Uri`,
    );
  }
  if (!spec.datasetUri.startsWith('s3://')) {
    throw new Error(`spec.datasetUri must be an s3:// URI for the sagemaker trainer, got "${spec.datasetUri}"`);
  }
  if (!sagemaker.outputS3Uri.startsWith('s3://')) {
    throw new Error(`spec.sagemaker.outputS3Uri must be an s3:// URI, got "${sagemaker.outputS3Uri}"`);
  }
  const checkpointFromS3 = spec.checkpoint.startsWith('s3://');
  const channels: CreateTrainingJobRequest['InputDataConfig'] = [s3Channel('dataset', spec.datasetUri)];
  if (checkpointFromS3) channels.push(s3Channel('model', spec.checkpoint));
  return {
    TrainingJobName: spec.jobName,
    AlgorithmSpecification: { TrainingImage: sagemaker.imageUri, TrainingInputMode: 'File' },
    RoleArn: sagemaker.roleArn,
    InputDataConfig: channels,
    OutputDataConfig: { S3OutputPath: sagemaker.outputS3Uri },
    ResourceConfig: {
      InstanceType: sagemaker.instanceType as TrainingInstanceType,
      InstanceCount: 1,
      VolumeSizeInGB: sagemaker.volumeSizeGb,
    },
    StoppingCondition: { MaxRuntimeInSeconds: sagemaker.maxRuntimeSeconds },
    HyperParameters: hyperParameters({
      ...spec.kohyaConfig,
      // The container's paths, which only this backend knows.
      pretrained_model_name_or_path: checkpointFromS3 ? checkpointInContainer(spec.checkpoint) : spec.checkpoint,
      train_data_dir: CONTAINER_PATHS.dataset,
      output_dir: CONTAINER_PATHS.output,
      output_name: spec.outputName,
      // For the container's entrypoint: which sd-scripts program to run, and what it must produce.
      lora_family: spec.family,
      lora_output_name: spec.outputName,
    }),
    Tags: [
      { Key: RUN_ID_TAG, Value: spec.runId },
      { Key: OUTPUT_NAME_TAG, Value: spec.outputName },
    ],
  };
}

/**
 * SageMaker hyperparameters are string → string: strings are passed as they are, numbers and
 * booleans JSON-encoded ("32", "0.0001", "true") for the entrypoint to turn back into TOML values.
 */
export function hyperParameters(config: KohyaConfig): Record<string, string> {
  const entries = Object.entries(config);
  if (entries.length > MAX_HYPERPARAMETERS) {
    throw new Error(`kohya config has ${entries.length} options; SageMaker accepts at most ${MAX_HYPERPARAMETERS} hyperparameters`);
  }
  return Object.fromEntries(
    entries.map(([key, value]) => {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      if (text.length > MAX_HYPERPARAMETER_VALUE_LENGTH) {
        throw new Error(
          `kohya option "${key}" is ${text.length} characters; SageMaker hyperparameter values are limited to ${MAX_HYPERPARAMETER_VALUE_LENGTH}`,
        );
      }
      return [key, text];
    }),
  );
}

/** Maps DescribeTrainingJob to the pipeline's TrainingState. */
export function trainingStateOf(job: DescribeTrainingJobResponse): TrainingState {
  const status = job.TrainingJobStatus;
  if (status === undefined || !STATUSES.has(status)) {
    throw new Error(`training job "${job.TrainingJobName}" has an unknown TrainingJobStatus "${String(status)}"`);
  }
  const state: TrainingState = { status: status as TrainingState['status'] };
  if (job.SecondaryStatus) state.secondaryStatus = job.SecondaryStatus;
  if (job.FailureReason) state.failureReason = job.FailureReason;
  if (status === 'Completed') {
    const artifact = job.ModelArtifacts?.S3ModelArtifacts ?? defaultArtifactUri(job);
    if (artifact) state.artifactUri = artifact;
  }
  return state;
}

/** `<S3OutputPath>/<job>/output/model.tar.gz`: where SageMaker packs /opt/ml/model. */
function defaultArtifactUri(job: DescribeTrainingJobResponse): string | undefined {
  const outputPath = job.OutputDataConfig?.S3OutputPath;
  if (!outputPath || !job.TrainingJobName) return undefined;
  return `${outputPath.replace(/\/+$/, '')}/${job.TrainingJobName}/output/model.tar.gz`;
}

function s3Channel(name: string, s3Uri: string): NonNullable<CreateTrainingJobRequest['InputDataConfig']>[number] {
  return {
    ChannelName: name,
    DataSource: { S3DataSource: { S3DataType: 'S3Prefix', S3Uri: s3Uri, S3DataDistributionType: 'FullyReplicated' } },
  };
}

/**
 * SageMaker copies each object below an S3Prefix to the channel directory with the prefix cut at
 * its last "/": `s3://b/m/x.safetensors` → `model/x.safetensors`, `s3://b/m/sd15/` → `model/…`.
 */
function checkpointInContainer(checkpointUri: string): string {
  const name = checkpointUri.slice(checkpointUri.lastIndexOf('/') + 1);
  return name === '' ? CONTAINER_PATHS.model : `${CONTAINER_PATHS.model}/${name}`;
}
