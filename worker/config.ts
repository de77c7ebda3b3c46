/** Worker configuration from the environment, validated once at start-up with field-naming errors. */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { PROJECT_ROOT } from '../adapters/project-paths';
import { MODEL_PACKAGE_GROUP_PREFIX } from '../lib/lora/model-package';
import { TASK_QUEUE } from '../lib/pipeline/names';
import { parseOrThrow } from '../lib/pipeline/input';

/** A command as a JSON array (`["accelerate","launch","train_network.py"]`) or space-separated words. */
const COMMAND = z
  .string()
  .transform((value, ctx) => {
    if (!value.trim().startsWith('[')) return value.trim().split(/\s+/);
    try {
      return z.array(z.string().min(1)).min(1).parse(JSON.parse(value));
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be a JSON array of strings or space-separated words' });
      return z.NEVER;
    }
  })
  .optional();

const dataDir = path.join(PROJECT_ROOT, '.data');

/**
 * What a worker process serves: `all`; `stages` (the workflow and the stage activities); or
 * `training-polls` (only the polls: no workflow code, no image work, so one small process can hold
 * hundreds of runs in training while stage workers come and go).
 */
export const WORKER_QUEUES = ['all', 'stages', 'training-polls'] as const;
export type WorkerQueues = (typeof WORKER_QUEUES)[number];

export const WorkerEnv = z.object({
  LORA_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE),
  LORA_WORKER_QUEUES: z.enum(WORKER_QUEUES).default('all'),
  LORA_WORK_STORE: z.string().regex(/^(file|s3):\/\//, 'must be a file:// or s3:// URI').default(pathToFileURL(path.join(dataDir, 'work')).href),
  LORA_STORE: z.string().regex(/^(file|s3):\/\//, 'must be a file:// or s3:// URI').default(pathToFileURL(path.join(dataDir, 'store')).href),
  LORA_JOBS_DIR: z.string().min(1).default(path.join(dataDir, 'jobs')),
  /** Concurrent stage activities (preprocess batches, uploads, registrations) on this worker. */
  LORA_MAX_ACTIVITIES: z.coerce.number().int().min(1).max(1000).default(8),
  /** Concurrent training polls on this worker: cheap, but each holds its slot for the whole job. */
  LORA_MAX_TRAINING_POLLS: z.coerce.number().int().min(1).max(100000).default(1000),
  /**
   * Workflows kept in memory between tasks. Runs parked in training get a task only when their
   * poll ends, so evicting them costs one short replay then, and saves memory all along.
   */
  LORA_MAX_CACHED_WORKFLOWS: z.coerce.number().int().min(0).max(100000).default(20),
  /** host:port for a Prometheus `/metrics` endpoint with the Temporal runtime's worker metrics. */
  LORA_METRICS_ADDRESS: z.string().regex(/^[^\s:/]+:\d{1,5}$/, 'must be host:port, e.g. 0.0.0.0:9464').optional(),
  /** `json`: one JSON object per log line (for log collectors); `pretty`: the SDK's readable lines. */
  LORA_LOG_FORMAT: z.enum(['pretty', 'json']).default('pretty'),
  LORA_LOG_LEVEL: z.enum(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR']).default('INFO'),
  LORA_KOHYA_COMMAND_SD15: COMMAND,
  LORA_KOHYA_COMMAND_SDXL: COMMAND,
  /** Python 3 that runs the Kohya entrypoint (docker/kohya/entrypoint.py) for local training, dry runs too. */
  LORA_PYTHON: z.string().min(1).default('python3'),
  /** Set to also register each LoRA (S3 stores only) in the SageMaker Model Registry, group `<prefix>-<run name>`. */
  LORA_MODEL_PACKAGE_GROUP_PREFIX: z.preprocess((value) => (value === '' ? undefined : value), MODEL_PACKAGE_GROUP_PREFIX.optional()),
});
export type WorkerEnv = z.output<typeof WorkerEnv>;

export function workerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv {
  return parseOrThrow(WorkerEnv, env, 'env');
}
