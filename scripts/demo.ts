/**
 * `npm run demo`: the whole pipeline on the embedded default. Reuses a Temporal server at
 * 127.0.0.1:7233 or starts the dev server in the background, runs a worker in this process, and
 * trains on a generated example dataset with file:// storage and the local trainer in DRY-RUN mode
 * (no GPU: it writes a small, valid, untrained LoRA so every later stage runs for real).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { awsClients, awsConfigFromEnv } from '../adapters/aws';
import { PROJECT_ROOT } from '../adapters/project-paths';
import type { TrainingRunInput } from '../lib/pipeline/input';
import { startRun } from '../client/runs';
import { defaultWorkflowId } from '../lib/pipeline/names';
import type { RunOutcome } from '../lib/pipeline/status';
import { workerEnv } from '../worker/config';
import { createDeps, createLoraWorker } from '../worker/create';
import { statusQuery } from '../workflows/messages';
import { DEV_ADDRESS, ensureDevSearchAttributes, startDevServerInBackground, temporalIsUp, WEB_UI } from './dev-server';
import { writeExampleDataset } from './example-dataset';

const DEMO_TASK_QUEUE = 'lora-demo';

async function main(): Promise<void> {
  // The demo narrates its own progress; the worker only speaks up about problems.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  let serverNote = `reusing the Temporal server at ${DEV_ADDRESS}`;
  if (!(await temporalIsUp(DEV_ADDRESS))) {
    const pid = await startDevServerInBackground();
    serverNote = `started the Temporal dev server (pid ${pid}); it keeps running for the Web UI, "npm run stack:stop" stops it`;
  }
  console.log(`demo: ${serverNote}`);
  await ensureDevSearchAttributes(DEV_ADDRESS);

  const dataset = path.join(PROJECT_ROOT, '.data', 'demo', 'dataset');
  await fs.rm(dataset, { recursive: true, force: true });
  const images = await writeExampleDataset(dataset, { count: 6, triggerWord: 'lrdemo' });
  console.log(`demo: generated ${images.length} example images with captions in ${dataset}`);

  const config = workerEnv();
  const aws = awsClients(awsConfigFromEnv());
  const workerConnection = await NativeConnection.connect({ address: DEV_ADDRESS });
  const worker = await createLoraWorker({ connection: workerConnection, taskQueue: DEMO_TASK_QUEUE, deps: createDeps(config, aws) });
  const connection = await Connection.connect({ address: DEV_ADDRESS });
  const client = new Client({ connection });

  const input: TrainingRunInput = {
    runName: 'demo',
    dataset,
    triggerWord: 'lrdemo',
    trainer: { kind: 'local', dryRun: true },
    training: { epochs: 3, networkDim: 8, networkAlpha: 4 },
    pollInterval: '1s',
  };
  const workflowId = defaultWorkflowId(input.runName, new Date());
  const outcome = await worker.runUntil(async () => {
    const handle = await startRun(client, input, { taskQueue: DEMO_TASK_QUEUE, workflowId });
    console.log(`demo: run ${workflowId} started`);
    console.log(`demo: watch it at ${WEB_UI}/namespaces/default/workflows/${workflowId}`);
    let lastStage = '';
    const result = handle.result() as Promise<RunOutcome>;
    for (let done = false; !done; ) {
      done = await Promise.race([result.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 500))]);
      const stage = (await handle.query(statusQuery)).stage;
      if (stage !== lastStage) console.log(`demo: stage ${(lastStage = stage)}`);
    }
    return result;
  });
  await connection.close();
  await workerConnection.close();

  if (outcome.stage !== 'completed' || !outcome.lora) throw new Error(`the run ended in stage ${outcome.stage}: ${outcome.error ?? 'see the Web UI'}`);
  console.log(`demo: run id        ${workflowId}`);
  console.log(`demo: Web UI        ${WEB_UI}/namespaces/default/workflows/${workflowId}`);
  console.log(`demo: images        ${outcome.images?.kept} kept, ${outcome.images?.skipped} skipped`);
  console.log(`demo: LoRA (DRY RUN, untrained) registered as "${outcome.lora.name}"`);
  console.log(`demo:   file        ${fileURLToPath(outcome.lora.uri)}`);
  console.log(`demo:   sha256      ${outcome.lora.sha256} (AutoV2 ${outcome.lora.autoV2})`);
  console.log(`demo:   record      ${fileURLToPath(outcome.lora.recordUri)}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`demo: ${(err as Error).message}`);
    process.exit(1);
  },
);
