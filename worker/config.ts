/** Worker configuration from the environment, validated once at start-up with field-naming errors. */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { PROJECT_ROOT } from '../adapters/project-paths';
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

export const WorkerEnv = z.object({
  LORA_TASK_QUEUE: z.string().min(1).default(TASK_QUEUE),
  LORA_WORK_STORE: z.string().regex(/^(file|s3):\/\//, 'must be a file:// or s3:// URI').default(pathToFileURL(path.join(dataDir, 'work')).href),
  LORA_STORE: z.string().regex(/^(file|s3):\/\//, 'must be a file:// or s3:// URI').default(pathToFileURL(path.join(dataDir, 'store')).href),
  LORA_JOBS_DIR: z.string().min(1).default(path.join(dataDir, 'jobs')),
  LORA_KOHYA_COMMAND_SD15: COMMAND,
  LORA_KOHYA_COMMAND_SDXL: COMMAND,
});
export type WorkerEnv = z.output<typeof WorkerEnv>;

export function workerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv {
  return parseOrThrow(WorkerEnv, env, 'env');
}
