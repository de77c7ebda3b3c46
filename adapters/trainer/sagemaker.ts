/**
 * Kohya-SS as a SageMaker training job. The job name is the idempotency key: launch describes
 * before it creates, and a create that reports a duplicate (a retry whose first response was lost)
 * adopts the job, but only when its `lora:run-id` tag says it belongs to the same workflow.
 * Live progress comes from the progress.json the container writes into /opt/ml/checkpoints, which
 * SageMaker syncs to the job's checkpoint prefix.
 */
import type { S3Client } from '@aws-sdk/client-s3';
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
import { ContainerProgress, progressOfContainer, progressWarnings } from '../../lib/kohya/progress';
import type { TrainingJobRef, TrainingProgress, TrainingState } from '../../lib/pipeline/status';
import { ObjectNotFoundError } from '../store/types';
import { S3Store } from '../store/s3';
import { CHANNELS, CONTAINER_ML_ROOT, entrypointHyperParameters, ML_PATHS, PROGRESS_FILE } from './entrypoint';
import { InvalidTrainingSpecError, type Trainer, type TrainingJobSpec } from './types';

export const RUN_ID_TAG = 'lora:run-id';
export const OUTPUT_NAME_TAG = 'lora:output-name';

/** Where SageMaker syncs the checkpoint prefix inside the container (its default LocalPath). */
const CONTAINER_CHECKPOINTS = `${CONTAINER_ML_ROOT}/${ML_PATHS.checkpoints}`;

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
  private readonly s3: S3Client | undefined;

  /** Without `s3` the trainer reports status only, no live progress. */
  constructor(options: { client: SageMakerClient; s3?: S3Client }) {
    this.client = options.client;
    this.s3 = options.s3;
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
    const state = trainingStateOf(job);
    const checkpointUri = job.CheckpointConfig?.S3Uri;
    if (!this.s3 || !checkpointUri) return state;
    const read = await readProgress(this.s3, checkpointUri);
    const warnings = [...progressWarnings(read.progress), ...(read.warning ? [read.warning] : [])];
    return {
      ...state,
      ...(read.progress && Object.keys(read.progress).length ? { progress: read.progress } : {}),
      ...(warnings.length ? { warnings } : {}),
    };
  }

  async stop(ref: TrainingJobRef): Promise<TrainingState | undefined> {
    try {
      await this.client.send(new StopTrainingJobCommand({ TrainingJobName: ref.jobName }));
    } catch (err) {
      // Stopping a finished job is a ValidationException on AWS, and moto does not implement
      // StopTrainingJob at all (HTTP 500). Either way the job's status decides: no job, or nothing
      // left to stop, is success; anything else is the original failure.
      if (!(await this.findJob(ref.jobName))) return undefined;
      const state = await this.describe(ref);
      if (TERMINAL_STATUSES.has(state.status) || state.status === 'Stopping') return state;
      throw err;
    }
    return this.describe(ref);
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

/**
 * The container's progress.json. Progress is a nicety: a missing file (not written or synced
 * yet) means no progress, and any other problem becomes a warning, never a failed watch.
 */
async function readProgress(s3: S3Client, checkpointUri: string): Promise<{ progress?: TrainingProgress; warning?: string }> {
  const uri = `${checkpointUri.replace(/\/+$/, '')}/${PROGRESS_FILE}`;
  let text: string;
  try {
    text = (await new S3Store(checkpointUri, s3).get(PROGRESS_FILE)).toString('utf8');
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return {};
    const { name, message } = err as Error;
    return { warning: `live progress unavailable: reading ${uri} failed: ${name}: ${message}` };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { warning: `live progress unavailable: ${uri} is not JSON (${(err as Error).message})` };
  }
  const parsed = ContainerProgress.safeParse(json);
  if (!parsed.success) return { warning: `live progress unavailable: ${uri} is not a progress file (${parsed.error.issues[0]?.message})` };
  return { progress: progressOfContainer(parsed.data) };
}

/** The CreateTrainingJob request for a spec; throws an Error naming the field when one is unusable. */
export function createTrainingJobRequest(spec: TrainingJobSpec): CreateTrainingJobRequest {
  const sagemaker = spec.sagemaker;
  if (!sagemaker) {
    throw new InvalidTrainingSpecError(
      `spec.sagemaker is required by the sagemaker trainer (job "${spec.jobName}"): imageUri, roleArn, instanceType, volumeSizeGb, maxRuntimeSeconds, outputS3Uri, checkpointS3Uri`,
    );
  }
  for (const [field, uri] of [
    ['spec.datasetUri', spec.datasetUri],
    ['spec.sagemaker.outputS3Uri', sagemaker.outputS3Uri],
    ['spec.sagemaker.checkpointS3Uri', sagemaker.checkpointS3Uri],
  ] as const) {
    if (!uri.startsWith('s3://')) throw new InvalidTrainingSpecError(`${field} must be an s3:// URI for the sagemaker trainer, got "${uri}"`);
  }
  if (sagemaker.spot && sagemaker.spot.maxWaitSeconds < sagemaker.maxRuntimeSeconds) {
    throw new InvalidTrainingSpecError(`spec.sagemaker.spot.maxWaitSeconds (${sagemaker.spot.maxWaitSeconds}) must be ≥ maxRuntimeSeconds (${sagemaker.maxRuntimeSeconds})`);
  }
  const checkpointFromS3 = spec.checkpoint.startsWith('s3://');
  const channels: CreateTrainingJobRequest['InputDataConfig'] = [s3Channel(CHANNELS.dataset, spec.datasetUri)];
  if (checkpointFromS3) channels.push(s3Channel(CHANNELS.model, spec.checkpoint));
  return {
    TrainingJobName: spec.jobName,
    AlgorithmSpecification: { TrainingImage: sagemaker.imageUri, TrainingInputMode: 'File' },
    RoleArn: sagemaker.roleArn,
    InputDataConfig: channels,
    OutputDataConfig: { S3OutputPath: sagemaker.outputS3Uri },
    CheckpointConfig: { S3Uri: sagemaker.checkpointS3Uri, LocalPath: CONTAINER_CHECKPOINTS },
    ResourceConfig: {
      InstanceType: sagemaker.instanceType as TrainingInstanceType,
      InstanceCount: 1,
      VolumeSizeInGB: sagemaker.volumeSizeGb,
    },
    ...(sagemaker.spot ? { EnableManagedSpotTraining: true } : {}),
    StoppingCondition: {
      MaxRuntimeInSeconds: sagemaker.maxRuntimeSeconds,
      ...(sagemaker.spot ? { MaxWaitTimeInSeconds: sagemaker.spot.maxWaitSeconds } : {}),
    },
    HyperParameters: entrypointHyperParameters({
      family: spec.family,
      kohyaConfig: { ...spec.kohyaConfig, output_name: spec.outputName },
      ...(checkpointFromS3 ? { modelFile: modelFileOf(spec.checkpoint) } : { pretrainedModel: spec.checkpoint }),
      // A spot job restarts after an interruption; resuming from the last epoch's state saves the hours done.
      resume: sagemaker.spot !== undefined,
    }),
    Tags: [
      { Key: RUN_ID_TAG, Value: spec.runId },
      { Key: OUTPUT_NAME_TAG, Value: spec.outputName },
    ],
  };
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
 * its last "/": `s3://b/m/x.safetensors` → `model/x.safetensors`; a prefix ending in "/" names no
 * file, and the entrypoint takes the channel's only model file.
 */
function modelFileOf(checkpointUri: string): string {
  return checkpointUri.slice(checkpointUri.lastIndexOf('/') + 1);
}
