/** One way to assemble a worker, used by the worker process, the demo and the tests alike. */
import { NativeConnection, Worker } from '@temporalio/worker';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { createActivities, type ActivityDeps } from '../activities';
import { SageMakerModelRegistry } from '../adapters/model-registry/sagemaker';
import { WORKFLOW_BUNDLE } from '../adapters/project-paths';
import { openStore } from '../adapters/store';
import { LocalTrainer } from '../adapters/trainer/local';
import { SageMakerTrainer } from '../adapters/trainer/sagemaker';
import { trainingPollQueue } from '../lib/pipeline/names';
import { WorkerEnv, type WorkerQueues } from './config';

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
      local: new LocalTrainer({ jobsDir: env.LORA_JOBS_DIR, command, python: env.LORA_PYTHON, env: trainerEnv }),
      sagemaker: new SageMakerTrainer({ client: aws.sagemaker, s3: aws.s3 }),
    },
    modelRegistry:
      env.LORA_MODEL_PACKAGE_GROUP_PREFIX === undefined
        ? undefined
        : new SageMakerModelRegistry({ client: aws.sagemaker, groupPrefix: env.LORA_MODEL_PACKAGE_GROUP_PREFIX }),
  };
}

/** Limits per worker process (LORA_MAX_ACTIVITIES, LORA_MAX_TRAINING_POLLS, LORA_MAX_CACHED_WORKFLOWS). */
export interface WorkerCapacity {
  /** Preprocessing, uploads, registration: CPU, memory and network heavy. */
  maxActivities: number;
  /** Training polls: each holds a slot for hours but costs almost nothing. */
  maxTrainingPolls: number;
  maxCachedWorkflows: number;
}

export function capacityOf(env: WorkerEnv): WorkerCapacity {
  return { maxActivities: env.LORA_MAX_ACTIVITIES, maxTrainingPolls: env.LORA_MAX_TRAINING_POLLS, maxCachedWorkflows: env.LORA_MAX_CACHED_WORKFLOWS };
}

/**
 * A worker process: one Temporal worker for the workflow and the stage activities, and one on the
 * training-poll queue, so hundreds of runs parked in training never take the slots preprocessing
 * needs (`queues` keeps only one of them). They run and stop together.
 */
export class LoraWorker {
  constructor(private readonly workers: Worker[]) {}

  /** The task queues this process polls. */
  get taskQueues(): string[] {
    return this.workers.map((worker) => worker.options.taskQueue);
  }

  /** Resolves once every worker has shut down (SIGINT/SIGTERM or shutdown()). */
  async run(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.run()));
  }

  shutdown(): void {
    for (const worker of this.workers) if (worker.getState() === 'RUNNING') worker.shutdown();
  }

  /** Runs the workers while `task` runs, then shuts them down. */
  async runUntil<R>(task: () => Promise<R>): Promise<R> {
    const running = this.run();
    try {
      const stoppedEarly = running.then(() => {
        throw new Error('the worker stopped before the task finished');
      });
      return await Promise.race([task(), stoppedEarly]);
    } finally {
      this.shutdown();
      await running;
    }
  }
}

export async function createLoraWorker(options: {
  connection: NativeConnection;
  namespace?: string;
  taskQueue: string;
  deps: ActivityDeps;
  capacity?: WorkerCapacity;
  queues?: WorkerQueues;
}): Promise<LoraWorker> {
  const queues = options.queues ?? 'all';
  const capacity = options.capacity ?? capacityOf(WorkerEnv.parse({}));
  const activities = createActivities(options.deps);
  const common = {
    connection: options.connection,
    namespace: options.namespace ?? 'default',
    // Heartbeats carry the progress `lora status` draws; by default the SDK forwards one only every
    // 0.8 × heartbeatTimeout (up to a minute), which makes the bars crawl.
    maxHeartbeatThrottleInterval: '2s',
  } as const;
  const { pollTraining, ...stageActivities } = activities;
  // Compiled workers load the bundle `npm run build` made; the TypeScript sources (tests) bundle on the fly.
  const workflowCode = __filename.endsWith('.ts') ? { workflowsPath: require.resolve('../workflows') } : { workflowBundle: { codePath: WORKFLOW_BUNDLE } };
  const workers: Worker[] = [];
  if (queues !== 'training-polls') {
    workers.push(
      await Worker.create({
        ...common,
        taskQueue: options.taskQueue,
        ...workflowCode,
        maxCachedWorkflows: capacity.maxCachedWorkflows,
        activities: stageActivities,
        maxConcurrentActivityTaskExecutions: capacity.maxActivities,
      }),
    );
  }
  if (queues !== 'stages') {
    workers.push(
      await Worker.create({
        ...common,
        taskQueue: trainingPollQueue(options.taskQueue),
        activities: { pollTraining },
        maxConcurrentActivityTaskExecutions: capacity.maxTrainingPolls,
      }),
    );
  }
  return new LoraWorker(workers);
}
