/**
 * `npm run worker`: one worker process for every stage. Configuration comes from the environment
 * (TEMPORAL_*, LORA_*, AWS_*), validated on start so a typo names the variable.
 */
import { NativeConnection } from '@temporalio/worker';
import { awsClients, awsConfigFromEnv } from '../adapters/aws';
import { temporalConfigFromEnv, tlsOf, unreachableMessage } from '../client/connection';
import { workerEnv } from './config';
import { createDeps, createLoraWorker } from './create';

async function main(): Promise<void> {
  const temporal = temporalConfigFromEnv(process.env);
  const config = workerEnv();
  const aws = awsConfigFromEnv(process.env);
  const connection = await NativeConnection.connect({ address: temporal.address, tls: tlsOf(temporal), apiKey: temporal.apiKey }).catch(() => {
    throw new Error(unreachableMessage(temporal));
  });
  const worker = await createLoraWorker({
    connection,
    namespace: temporal.namespace,
    taskQueue: config.LORA_TASK_QUEUE,
    deps: createDeps(config, awsClients(aws)),
  });
  console.log(`worker: polling task queue "${config.LORA_TASK_QUEUE}" on ${temporal.address} (namespace ${temporal.namespace})`);
  console.log(`worker: work store ${config.LORA_WORK_STORE}, default store ${config.LORA_STORE}, local jobs in ${config.LORA_JOBS_DIR}`);
  // Worker.run() returns after SIGINT/SIGTERM once in-flight tasks finished or were handed back.
  await worker.run();
  await connection.close();
}

main().catch((err: unknown) => {
  console.error(`worker: ${(err as Error).message}`);
  process.exit(1);
});
