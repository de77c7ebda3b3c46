/**
 * `npm run worker`: one worker process for every stage. Configuration comes from the environment
 * (TEMPORAL_*, LORA_*, AWS_*), validated on start so a typo names the variable.
 */
import { DefaultLogger, NativeConnection, Runtime, type LogEntry } from '@temporalio/worker';
import { awsClients, awsConfigFromEnv } from '../adapters/aws';
import type { Trainer } from '../adapters/trainer/types';
import { temporalConfigFromEnv, tlsOf, unreachableMessage } from '../client/connection';
import { allocatorOf } from './allocator';
import { workerEnv, type WorkerEnv } from './config';
import { ensureSearchAttributes, registerByHandMessage } from './search-attributes';
import { capacityOf, createDeps, createLoraWorker } from './create';

/** Runs until SIGINT/SIGTERM; `trainers` replaces backends (the load benchmark's fake trainer). */
export async function runWorkerFromEnv(trainers: Partial<Record<Trainer['backend'], Trainer>> = {}): Promise<void> {
  const temporal = temporalConfigFromEnv(process.env);
  const config = workerEnv();
  installRuntime(config);
  const connection = await NativeConnection.connect({ address: temporal.address, tls: tlsOf(temporal), apiKey: temporal.apiKey }).catch(() => {
    throw new Error(unreachableMessage(temporal));
  });
  await checkSearchAttributes(connection, temporal.namespace);
  const deps = createDeps(config, awsClients(awsConfigFromEnv(process.env)));
  Object.assign(deps.trainers, trainers);
  const worker = await createLoraWorker({
    connection,
    namespace: temporal.namespace,
    taskQueue: config.LORA_TASK_QUEUE,
    deps,
    capacity: capacityOf(config),
    queues: config.LORA_WORKER_QUEUES,
  });
  const queues = worker.taskQueues.map((queue) => `"${queue}"`).join(' and ');
  console.log(`worker: polling task queue ${queues} on ${temporal.address} (namespace ${temporal.namespace})`);
  console.log(`worker: work store ${config.LORA_WORK_STORE}, default store ${config.LORA_STORE}, local jobs in ${config.LORA_JOBS_DIR}`);
  if ((await allocatorOf()) === 'glibc') {
    console.log('worker: glibc malloc keeps the memory preprocessing frees; install libjemalloc2 and start through scripts/with-allocator.sh (npm run worker does)');
  }
  // Worker.run() returns after SIGINT/SIGTERM once in-flight tasks finished or were handed back.
  await worker.run();
  await connection.close();
}

/** Adds the search attributes a namespace lacks, or stops with how to register them by hand. */
async function checkSearchAttributes(connection: NativeConnection, namespace: string): Promise<void> {
  let added: string[] | undefined;
  try {
    added = await ensureSearchAttributes(connection.operatorService, namespace);
  } catch (err) {
    throw new Error(`the search attributes could not be checked or added (${(err as Error).message}): ${registerByHandMessage(namespace)}`);
  }
  if (added === undefined) console.log(`worker: this server does not let workers check search attributes (Temporal Cloud): ${registerByHandMessage(namespace)}`);
  else if (added.length > 0) console.log(`worker: registered the search attributes ${added.join(', ')} in namespace "${namespace}"`);
}

/**
 * Logs and metrics for operators. Activity and workflow log lines carry the workflow id (the run
 * id) in their metadata, so `json` logs can be filtered per run.
 */
function installRuntime(config: WorkerEnv): void {
  const writeJson = (entry: LogEntry): void => {
    const time = new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString();
    process.stderr.write(`${JSON.stringify({ time, level: entry.level, message: entry.message, ...entry.meta })}\n`);
  };
  Runtime.install({
    logger: new DefaultLogger(config.LORA_LOG_LEVEL, config.LORA_LOG_FORMAT === 'json' ? writeJson : undefined),
    telemetryOptions: config.LORA_METRICS_ADDRESS ? { metrics: { prometheus: { bindAddress: config.LORA_METRICS_ADDRESS } } } : undefined,
  });
  if (config.LORA_METRICS_ADDRESS) console.log(`worker: Prometheus metrics at http://${config.LORA_METRICS_ADDRESS}/metrics`);
}

if (require.main === module) {
  runWorkerFromEnv().catch((err: unknown) => {
    console.error(`worker: ${(err as Error).message}`);
    process.exit(1);
  });
}
