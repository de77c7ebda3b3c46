/**
 * A training backend: Kohya-SS on SageMaker or on this host. Launch must be idempotent per job
 * name (a retry adopts the job it already started); describe is cheap and side-effect free.
 */
import type { BaseModelFamily } from '../../lib/pipeline/input';
import type { TrainingJobRef, TrainingState } from '../../lib/pipeline/status';

export type KohyaConfig = Record<string, string | number | boolean>;

export interface TrainingJobSpec {
  jobName: string;
  /** Temporal workflow id; tagged on the job so an orphan can be traced back to its run. */
  runId: string;
  /** file:// or s3:// prefix holding the `<repeats>_<concept>/` folder(s). */
  datasetUri: string;
  family: BaseModelFamily;
  checkpoint: string;
  outputName: string;
  /** The sd-scripts options; paths in it are filled in by the backend. */
  kohyaConfig: KohyaConfig;
  sagemaker?: {
    imageUri: string;
    roleArn: string;
    instanceType: string;
    volumeSizeGb: number;
    maxRuntimeSeconds: number;
    outputS3Uri: string;
    /** This job's own prefix for /opt/ml/checkpoints: progress.json and the spot resume state. */
    checkpointS3Uri: string;
    /** Managed spot training, waiting at most this long in total (≥ maxRuntimeSeconds). */
    spot?: { maxWaitSeconds: number };
  };
  /** Local backend only: run the labelled dry-run stand-in instead of sd-scripts. */
  dryRun?: boolean;
}

/** A spec the backend cannot run as given (a file:// dataset for SageMaker, no sd-scripts command): retrying cannot help. */
export class InvalidTrainingSpecError extends Error {
  override readonly name = 'InvalidTrainingSpecError';
}

export interface Trainer {
  readonly backend: TrainingJobRef['backend'];
  launch(spec: TrainingJobSpec): Promise<TrainingJobRef & { adopted: boolean }>;
  describe(ref: TrainingJobRef): Promise<TrainingState>;
  /**
   * Asks the job to stop and returns its state right after; stopping a finished job is a no-op.
   * undefined when no job of that name exists (it was never launched).
   */
  stop(ref: TrainingJobRef): Promise<TrainingState | undefined>;
}
