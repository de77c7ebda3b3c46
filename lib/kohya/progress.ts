/**
 * Reads sd-scripts' console output as it arrives. tqdm redraws its bar with `\r`, so chunks are
 * split on `\r` and `\n`; a partial line waits for the next chunk. Pure: the supervisor feeds it,
 * tests feed it recorded lines.
 */
import { z } from 'zod';
import type { TrainingProgress, TrainingState } from '../pipeline/status';

export interface KohyaOutputState {
  progress: TrainingProgress;
  /** sd-scripts printed "No data found": it exits 0 without training. */
  noDataFound: boolean;
  /** sd-scripts printed "model saved.": the final LoRA was written. */
  modelSaved: boolean;
  /** The last non-empty line seen. */
  lastLine?: string;
  /**
   * The last Python exception line (`ImportError: No xformers`), except accelerate's wrapper
   * around an earlier one: with lastLine, the likely reason when the process fails.
   */
  errorLine?: string;
}

/** The reason to report for a failed trainer: its own exception line, else its last line. */
export function failureLineOf(state: KohyaOutputState): string | undefined {
  return state.errorLine ?? state.lastLine;
}

export type OutputStream = 'stdout' | 'stderr';

// `steps:  12%|█▏        | 240/2000 [00:10<01:10, 3.2it/s, avr_loss=0.0871]`
const STEPS_LINE = /steps:\s*\d+%\|[^|]*\|\s*(\d+)\/(\d+)(?:\s*\[([^\]]*)\])?/;
const AVERAGE_LOSS = /avr_loss=([^,\]\s]+)/;
// tqdm's `elapsed<remaining`, each [h:]mm:ss; "?" before the rate is known.
const REMAINING = /<(?:(\d+):)?(\d+):(\d+)(?=[,\]\s]|$)/;
// `epoch 1/10` (plain print or inside a log line's message)
const EPOCH_LINE = /(?:^|\s)epoch (\d+)\/(\d+)(?=\s|$)/;
// Totals sd-scripts prints before training starts: "num epochs / epoch数: 10".
const TOTAL_EPOCHS = /num epochs \/ [^:]*:\s*(\d+)/;
const TOTAL_STEPS = /total optimization steps \/ [^:]*:\s*(\d+)/;
// A Python exception's last traceback line: `ImportError: No xformers`, `torch.OutOfMemoryError: …`.
const ERROR_LINE = /^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception)(?::|$)/;
// What `accelerate launch` raises when its child fails: it hides the child's own error, printed before it.
const LAUNCHER_ERROR = 'subprocess.CalledProcessError:';

export class KohyaOutputParser {
  private readonly tails: Record<OutputStream, string> = { stdout: '', stderr: '' };
  private readonly current: KohyaOutputState = { progress: {}, noDataFound: false, modelSaved: false };

  /** Feeds a chunk of one stream (each stream keeps its own partial line) and returns the state. */
  feed(chunk: string, stream: OutputStream = 'stdout'): KohyaOutputState {
    const pieces = (this.tails[stream] + chunk).split(/\r\n|\r|\n/);
    this.tails[stream] = pieces.pop() ?? '';
    for (const line of pieces) this.readLine(line);
    return this.state;
  }

  /** Reads the partial lines left at the end of the output. */
  end(): KohyaOutputState {
    for (const stream of ['stdout', 'stderr'] as const) {
      this.readLine(this.tails[stream]);
      this.tails[stream] = '';
    }
    return this.state;
  }

  get state(): KohyaOutputState {
    return { ...this.current, progress: { ...this.current.progress } };
  }

  private readLine(raw: string): void {
    const line = raw.trim();
    if (line === '') return;
    this.current.lastLine = line;
    if (ERROR_LINE.test(line) && !(line.startsWith(LAUNCHER_ERROR) && this.current.errorLine)) this.current.errorLine = line;
    // Checked on every line: the last progress bar redraw can share its line with these.
    if (line.includes('No data found')) this.current.noDataFound = true;
    if (line.includes('model saved.')) this.current.modelSaved = true;
    const progress = this.current.progress;

    const steps = STEPS_LINE.exec(line);
    if (steps) {
      progress.step = Number(steps[1]);
      progress.totalSteps = Number(steps[2]);
      const remaining = REMAINING.exec(steps[3] ?? '');
      if (remaining) progress.etaSeconds = Number(remaining[1] ?? 0) * 3600 + Number(remaining[2]) * 60 + Number(remaining[3]);
      else delete progress.etaSeconds;
      const loss = AVERAGE_LOSS.exec(steps[3] ?? '');
      // Sticky: once the average is NaN the weights are too, even if a later line looks fine.
      if (loss && !progress.lossIsNaN) {
        const value = Number(loss[1]);
        if (Number.isFinite(value)) {
          progress.loss = value;
        } else {
          progress.lossIsNaN = true;
          delete progress.loss;
        }
      }
      return;
    }
    const epoch = EPOCH_LINE.exec(line);
    if (epoch) {
      progress.epoch = Number(epoch[1]);
      progress.totalEpochs = Number(epoch[2]);
      return;
    }
    const totalEpochs = TOTAL_EPOCHS.exec(line);
    if (totalEpochs) progress.totalEpochs = Number(totalEpochs[1]);
    const totalSteps = TOTAL_STEPS.exec(line);
    if (totalSteps) progress.totalSteps = Number(totalSteps[1]);
  }
}

/**
 * `progress.json` as the training container's entrypoint (docker/kohya/entrypoint.py) writes it
 * into /opt/ml/checkpoints, from where SageMaker syncs it to the job's checkpoint prefix. It comes
 * from another program, so it is parsed, not trusted; unknown fields are ignored.
 */
export const ContainerProgress = z.object({
  step: z.number().int().min(0).optional(),
  totalSteps: z.number().int().min(0).optional(),
  epoch: z.number().int().min(0).optional(),
  totalEpochs: z.number().int().min(0).optional(),
  loss: z.number().optional(),
  lossIsNaN: z.boolean().optional(),
  etaSeconds: z.number().min(0).optional(),
});
export type ContainerProgress = z.output<typeof ContainerProgress>;

/** The progress fields of a container's progress.json. */
export function progressOfContainer(file: ContainerProgress): TrainingProgress {
  const { step, totalSteps, epoch, totalEpochs, loss, lossIsNaN, etaSeconds } = file;
  const progress: TrainingProgress = { step, totalSteps, epoch, totalEpochs, loss, etaSeconds };
  if (lossIsNaN) {
    progress.lossIsNaN = true;
    delete progress.loss;
  }
  return Object.fromEntries(Object.entries(progress).filter(([, value]) => value !== undefined));
}

export const NAN_LOSS_WARNING = 'training loss is NaN: the job goes on, but the LoRA will be useless (try a lower learning rate, or mixed_precision = "bf16")';

/** Warnings a status should carry for this progress. */
export function progressWarnings(progress: TrainingProgress | undefined): string[] {
  return progress?.lossIsNaN ? [NAN_LOSS_WARNING] : [];
}

/**
 * The state to report after `next`, given the one reported before (the last heartbeat, also from
 * an attempt on a worker that died): a NaN loss stays reported, and a poll that could not read
 * progress keeps the last progress rather than blanking it.
 */
export function carryTrainingState(previous: TrainingState | undefined, next: TrainingState): TrainingState {
  let progress = next.progress ?? (next.status === 'InProgress' ? previous?.progress : undefined);
  if (previous?.progress?.lossIsNaN && progress && !progress.lossIsNaN) {
    const { loss: _loss, ...rest } = progress;
    progress = { ...rest, lossIsNaN: true };
  }
  const warnings = [...new Set([...progressWarnings(progress), ...(next.warnings ?? [])])];
  const { progress: _progress, warnings: _warnings, ...rest } = next;
  return { ...rest, ...(progress ? { progress } : {}), ...(warnings.length ? { warnings } : {}) };
}
