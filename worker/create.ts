/** One way to assemble a worker, used by the worker process, the demo and the tests alike. */
import { NativeConnection, Worker } from '@temporalio/worker';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { createActivities, type ActivityDeps } from '../activities';
import { openStore } from '../adapters/store';
import { LocalTrainer } from '../adapters/trainer/local';
import { SageMakerTrainer } from '../adapters/trainer/sagemaker';
import type { WorkerEnv } from './config';

export interface AwsClients {
  s3: S3Client;
  sagemaker: SageMakerClient;
}

/** `trainerEnv` is extra environment for local training processes (e.g. CUDA_VISIBLE_DEVICES). */
export function createDeps(env: WorkerEnv, aws: AwsClients, trainerEnv?: Record<string, string>): ActivityDeps {
  const command = { sd15: env.LORA_KOHYA_COMMAND_SD15, sdxl: env.LORA_KOHYA_COMMAND_SDXL };
  return {
    workStore: openStore(env.LORA_WORK_STORE, aws),
    openStore: (uri) => openStore(uri ?? env.LORA_STORE, aws),
    trainers: {
      local: new LocalTrainer({ jobsDir: env.LORA_JOBS_DIR, command, env: trainerEnv }),
      sagemaker: new SageMakerTrainer({ client: aws.sagemaker }),
    },
  };
}

export async function createLoraWorker(options: {
  connection: NativeConnection;
  namespace?: string;
  taskQueue: string;
  deps: ActivityDeps;
}): Promise<Worker> {
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace ?? 'default',
    taskQueue: options.taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities: createActivities(options.deps),
    // Heartbeats carry the progress `lora status` draws; by default the SDK forwards one only every
    // 0.8 × heartbeatTimeout (up to a minute), which makes the bars crawl.
    maxHeartbeatThrottleInterval: '2s',
  });
}
