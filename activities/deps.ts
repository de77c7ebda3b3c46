/**
 * What activities need from the worker: stores and trainers are injected so tests can point them
 * at moto or a temp dir, and so activities stay thin adapters over the pure modules in lib/.
 */
import type { ModelRegistry } from '../adapters/model-registry/sagemaker';
import type { ObjectStore } from '../adapters/store/types';
import type { Trainer } from '../adapters/trainer/types';
import type { TrainingJobRef } from '../lib/pipeline/status';

export interface ActivityDeps {
  /** Worker-side scratch store for processed images, manifests and reports (file:// by default). */
  workStore: ObjectStore;
  /** The run's destination store (datasets, LoRAs, registry); `undefined` means the worker default. */
  openStore(uri?: string): ObjectStore;
  trainers: Record<TrainingJobRef['backend'], Trainer>;
  /** When configured, registered LoRAs in S3 also become SageMaker Model Registry versions. */
  modelRegistry?: ModelRegistry;
}
