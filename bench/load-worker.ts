/**
 * The real worker process with the fake trainer standing in for the local backend; the load
 * benchmark reads its slots and cache from the worker's Prometheus metrics (LORA_METRICS_ADDRESS).
 */
import { runWorkerFromEnv } from '../worker/main';
import { FakeTrainer } from './fake-trainer';

const trainingMs = Number(process.env.BENCH_TRAINING_MS ?? 3_600_000);
runWorkerFromEnv({ local: new FakeTrainer(trainingMs) }).catch((err: unknown) => {
  console.error(`load-worker: ${(err as Error).message}`);
  process.exit(1);
});
