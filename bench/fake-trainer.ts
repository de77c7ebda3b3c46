/**
 * TEST DOUBLE for the load benchmark: a trainer that keeps every job "InProgress" for a set time
 * with steadily advancing steps, so hundreds of runs can sit in the polling stage without GPUs
 * or child processes. Never registered by the real worker.
 */
import type { Trainer, TrainingJobSpec } from '../adapters/trainer/types';
import type { TrainingJobRef, TrainingState } from '../lib/pipeline/status';

export class FakeTrainer implements Trainer {
  readonly backend = 'local' as const;
  private readonly startedAt = new Map<string, number>();

  constructor(
    private readonly durationMs: number,
    private readonly totalSteps = 1000,
  ) {}

  async launch(spec: TrainingJobSpec): Promise<TrainingJobRef & { adopted: boolean }> {
    const adopted = this.startedAt.has(spec.jobName);
    if (!adopted) this.startedAt.set(spec.jobName, Date.now());
    return { backend: 'local', jobName: spec.jobName, adopted };
  }

  async describe(ref: TrainingJobRef): Promise<TrainingState> {
    const started = this.startedAt.get(ref.jobName) ?? Date.now();
    const share = Math.min(1, (Date.now() - started) / this.durationMs);
    const step = Math.floor(share * this.totalSteps);
    if (share < 1) return { status: 'InProgress', secondaryStatus: 'Training', progress: { step, totalSteps: this.totalSteps, loss: 0.1 } };
    return { status: 'Failed', failureReason: 'fake trainer: benchmark job finished without an artifact' };
  }

  async stop(): Promise<TrainingState> {
    return { status: 'Stopped', secondaryStatus: 'Stopped' };
  }
}
