/**
 * `--follow` for `start` and `status`: poll the run about once a second until it is over, showing
 * progress as bars (terminal), plain lines (logs, pipes) or JSON lines (`--json`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import { FollowInterrupted } from './errors';
import { barText, FollowTracker, progressLine, type BarState } from './render';
import { isFinished, readRunSnapshot, type RunSnapshot } from './runs';

const POLL_INTERVAL_MS = 1000;

export type FollowOutput = 'bars' | 'lines' | 'json';

export function followOutputFor(json: boolean, isTTY: boolean): FollowOutput {
  if (json) return 'json';
  return isTTY ? 'bars' : 'lines';
}

interface FollowView {
  show(snapshot: RunSnapshot, now: number): void;
  close(): void;
}

/** Follows until the run is over and returns its last snapshot; Ctrl-C stops following, not the run. */
export async function followRun(
  client: Client,
  workflowId: string,
  output: FollowOutput,
  stream: NodeJS.WriteStream = process.stdout,
): Promise<RunSnapshot> {
  const view = viewFor(output, workflowId, stream);
  const interrupt = new AbortController();
  // Ctrl-C ends the wait at once, also mid-query (a query may wait seconds for a worker).
  const interrupted = new Promise<never>((_, reject) => {
    interrupt.signal.addEventListener('abort', () => reject(new FollowInterrupted(workflowId)), { once: true });
  });
  const onSigint = () => interrupt.abort();
  process.once('SIGINT', onSigint);
  try {
    for (;;) {
      const snapshot = await Promise.race([readOnce(client, workflowId, interrupt.signal), interrupted]);
      view.show(snapshot, Date.now());
      if (isFinished(snapshot)) return snapshot;
      await Promise.race([sleep(POLL_INTERVAL_MS, undefined, { signal: interrupt.signal }), interrupted]);
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    view.close();
  }
}

/**
 * One poll under its own abort signal linked to Ctrl-C: the abort cancels the RPC in flight, and
 * the listeners the SDK adds per call die with the short-lived signal instead of piling up.
 */
async function readOnce(client: Client, workflowId: string, interrupt: AbortSignal): Promise<RunSnapshot> {
  const poll = new AbortController();
  const forward = () => poll.abort();
  interrupt.addEventListener('abort', forward, { once: true });
  try {
    return await client.withAbortSignal(poll.signal, () => readRunSnapshot(client, workflowId));
  } finally {
    interrupt.removeEventListener('abort', forward);
  }
}

function viewFor(output: FollowOutput, workflowId: string, stream: NodeJS.WriteStream): FollowView {
  if (output === 'json') return new JsonLinesView(stream);
  return output === 'bars' ? new BarsView(workflowId, stream) : new PlainLinesView(workflowId, stream);
}

/** One JSON document per line, only when something changed. */
class JsonLinesView implements FollowView {
  private last = '';

  constructor(private readonly stream: NodeJS.WriteStream) {}

  show(snapshot: RunSnapshot): void {
    const line = JSON.stringify(snapshot);
    if (line === this.last) return;
    this.last = line;
    this.stream.write(`${line}\n`);
  }

  close(): void {}
}

/** For logs and pipes: events as they happen, a progress line whenever a count changes. */
class PlainLinesView implements FollowView {
  private readonly tracker: FollowTracker;
  private readonly lastShown = new Map<BarState['unit'], string>();

  constructor(workflowId: string, private readonly stream: NodeJS.WriteStream) {
    this.tracker = new FollowTracker(workflowId);
  }

  show(snapshot: RunSnapshot, now: number): void {
    const frame = this.tracker.update(snapshot, now);
    const lines = [...frame.log];
    for (const { state, eta } of frame.bars) {
      // Compared without the ETA, which drifts every second and would repeat the same count.
      const key = progressLine(state);
      if (this.lastShown.get(state.unit) === key) continue;
      this.lastShown.set(state.unit, key);
      lines.push(progressLine(state, eta));
    }
    for (const line of lines) this.stream.write(`${line}\n`);
  }

  close(): void {}
}

/** Live bars on a terminal, one per kind of work; events scroll above them. */
class BarsView implements FollowView {
  private readonly tracker: FollowTracker;
  private readonly multibar: MultiBar;
  private readonly bars = new Map<BarState['unit'], SingleBar>();

  constructor(workflowId: string, private readonly stream: NodeJS.WriteStream) {
    this.tracker = new FollowTracker(workflowId);
    this.multibar = new MultiBar(
      { stream, format: '{label} |{bar}| {percentage}% · {counts}{suffix}', hideCursor: true, barsize: 30, autopadding: true },
      Presets.shades_classic,
    );
  }

  show(snapshot: RunSnapshot, now: number): void {
    const frame = this.tracker.update(snapshot, now);
    for (const line of frame.log) this.log(line);
    for (const { state, eta } of frame.bars) {
      const payload = barText(state, eta);
      // cli-progress divides by the total; an unknown total (0) shows as an empty bar.
      const total = Math.max(state.total, 1);
      const bar = this.bars.get(state.unit);
      if (bar) {
        bar.setTotal(total);
        bar.update(state.value, payload);
      } else {
        this.bars.set(state.unit, this.multibar.create(total, state.value, payload));
      }
    }
  }

  close(): void {
    if (!this.bars.size) return;
    this.multibar.update(); // flushes logged lines, which stop() alone would drop
    this.multibar.stop();
  }

  /** MultiBar only prints logged lines while it draws bars; before the first bar, write directly. */
  private log(line: string): void {
    if (this.bars.size) this.multibar.log(`${line}\n`);
    else this.stream.write(`${line}\n`);
  }
}
