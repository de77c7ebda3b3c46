/**
 * What a run reports about itself: the `status` query's answer (kept in workflow state, so it must
 * stay small: counts and keys, never per-image lists) and the progress activities heartbeat.
 */

export const STAGES = [
  'preprocessing',
  'checking_captions',
  'awaiting_review',
  'uploading',
  'launching',
  'training',
  'registering',
  'completed',
  'failed',
  'rejected',
  'cancelled',
  'review_timed_out',
] as const;
export type Stage = (typeof STAGES)[number];

export const TERMINAL_STAGES: readonly Stage[] = ['completed', 'failed', 'rejected', 'cancelled', 'review_timed_out'];

export interface ImageCounts {
  found: number;
  kept: number;
  skipped: number;
}

export interface IssueCounts {
  error: number;
  warning: number;
  info: number;
}

export interface ReviewDecision {
  decision: 'approved' | 'rejected' | 'timed_out' | 'not_needed';
  reviewer?: string;
  comment?: string;
  /** Workflow time of the decision, ISO 8601. */
  at: string;
  /** Approved although caption errors remained. */
  force?: boolean;
  /** How the decision arrived: an update (validated before history) or a plain signal. */
  via?: 'update' | 'signal';
  /** Caption issue counts when the decision was made. */
  captions?: IssueCounts;
  /** What the reviewers changed before deciding. */
  edits?: { batches: number; captions: number; editors: string[] };
}

export interface TrainingJobRef {
  backend: 'local' | 'sagemaker';
  jobName: string;
}

export interface TrainingProgress {
  step?: number;
  totalSteps?: number;
  epoch?: number;
  totalEpochs?: number;
  loss?: number;
  /** Set when kohya printed avr_loss=nan: training goes on, but the LoRA will be useless. */
  lossIsNaN?: boolean;
  /** Time left as the trainer's progress bar estimates it. */
  etaSeconds?: number;
}

export interface TrainingState {
  status: 'InProgress' | 'Completed' | 'Failed' | 'Stopping' | 'Stopped';
  secondaryStatus?: string;
  failureReason?: string;
  progress?: TrainingProgress;
  /** What the user should know while the job goes on, e.g. a NaN loss or progress that cannot be read. */
  warnings?: string[];
  /** Where the trained output is: a file:// directory (local) or an s3:// model.tar.gz (SageMaker). */
  artifactUri?: string;
}

export interface RegisteredLora {
  name: string;
  uri: string;
  sha256: string;
  autoV2: string;
  sizeBytes: number;
  recordUri: string;
}

export interface RunStatus {
  runName: string;
  stage: Stage;
  baseModel: string;
  images?: ImageCounts;
  captions?: IssueCounts & { reportKey: string };
  review?: ReviewDecision;
  dataset?: { uri: string; files: number; bytes: number; manifestSha256: string };
  job?: TrainingJobRef;
  training?: Pick<TrainingState, 'status' | 'secondaryStatus' | 'warnings'>;
  lora?: RegisteredLora;
  error?: string;
}

export type RunOutcome = Pick<RunStatus, 'stage' | 'runName' | 'images' | 'captions' | 'review' | 'dataset' | 'job' | 'lora' | 'error'>;

/** What a long activity heartbeats; the CLI reads it from the pending activity to draw progress bars. */
export interface ActivityProgress {
  done: number;
  total: number;
  unit: 'images' | 'bytes' | 'steps';
  training?: TrainingState;
}
