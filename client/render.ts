/**
 * Everything the CLI shows, as pure functions of what it read: summaries, progress bar states,
 * ETA and loss formatting, the run list. No I/O here, so all of it is unit-tested.
 */
import type { ActivityProgress, ReviewDecision, RunStatus, Stage } from '../lib/pipeline/status';
import { STAGES } from '../lib/pipeline/status';
import type { PendingActivity } from './heartbeat';
import type { RunListEntry, RunSnapshot } from './runs';

// ---- units ---------------------------------------------------------------------------------------

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Two units at most: "42s", "3m 05s", "1h 02m", "2d 03h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${pad(Math.floor((s % 86400) / 3600))}h`;
}

/**
 * Four significant digits, as kohya's avr_loss is read. A NaN loss arrives as a flag: JSON turns
 * NaN into null, so the number alone cannot say it.
 */
export function formatLoss(loss: number | null | undefined, lossIsNaN = false): string | undefined {
  if (lossIsNaN || Number.isNaN(loss)) return 'NaN';
  return loss === undefined || loss === null ? undefined : String(Number(loss.toPrecision(4)));
}

export interface ProgressSample {
  /** Milliseconds (any epoch, as long as both samples use the same one). */
  at: number;
  done: number;
}

/** Seconds left at the average rate between two samples; undefined until there is a rate. */
export function etaSeconds(first: ProgressSample, latest: ProgressSample, total: number): number | undefined {
  const elapsedSeconds = (latest.at - first.at) / 1000;
  const advanced = latest.done - first.done;
  if (elapsedSeconds <= 0 || advanced <= 0 || total <= 0) return undefined;
  return Math.max(0, total - latest.done) / (advanced / elapsedSeconds);
}

export function stageLabel(stage: Stage): string {
  return stage.replace(/_/g, ' ');
}

export function webUiUrl(base: string, namespace: string, workflowId: string): string {
  return `${base.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

// ---- progress bars ---------------------------------------------------------------------------------

/** One bar per kind of work: images preprocessed, bytes uploaded, training steps. */
export interface BarState {
  unit: ActivityProgress['unit'];
  label: string;
  value: number;
  total: number;
  /** "120/300 images", "12.0 MiB/45.0 MiB", "step 240/2000". */
  counts: string;
  /** Training only: "loss 0.0871 · epoch 1/10", or the backend's status while no step is known. */
  detail?: string;
  lossIsNaN: boolean;
}

const BAR_LABEL: Record<ActivityProgress['unit'], string> = { images: 'preprocessing', bytes: 'uploading', steps: 'training' };
const STAGE_OF_BAR: Record<ActivityProgress['unit'], Stage> = { images: 'preprocessing', bytes: 'uploading', steps: 'training' };
const LABEL_WIDTH = Math.max(...Object.values(BAR_LABEL).map((label) => label.length));

export function barStateOf(progress: ActivityProgress): BarState {
  const base = { unit: progress.unit, label: BAR_LABEL[progress.unit], lossIsNaN: false };
  if (progress.unit !== 'steps') {
    return { ...base, value: progress.done, total: progress.total, counts: countsOf(progress.unit, progress.done, progress.total) };
  }

  const training = progress.training;
  const steps = training?.progress;
  const value = steps?.step ?? progress.done;
  const total = steps?.totalSteps ?? progress.total;
  const loss = formatLoss(steps?.loss, steps?.lossIsNaN);
  const detail = [
    loss && `loss ${loss}`,
    steps?.epoch !== undefined && `epoch ${steps.epoch}${steps.totalEpochs ? `/${steps.totalEpochs}` : ''}`,
    // Before kohya prints a step (SageMaker: Starting, Downloading…), the backend's word is all there is.
    total <= 0 && (training?.secondaryStatus ?? training?.status),
  ].filter((part): part is string => Boolean(part));
  return {
    ...base,
    value,
    total,
    counts: countsOf('steps', value, total),
    detail: detail.length ? detail.join(' · ') : undefined,
    lossIsNaN: loss === 'NaN',
  };
}

/** The bar of work that finished between two polls: full, whatever its last heartbeat said. */
export function filledBar(state: BarState): BarState {
  return { ...state, value: state.total, counts: countsOf(state.unit, state.total, state.total) };
}

function countsOf(unit: ActivityProgress['unit'], value: number, total: number): string {
  if (unit === 'images') return `${value}/${total} images`;
  if (unit === 'bytes') return `${formatBytes(value)}/${formatBytes(total)}`;
  return total > 0 ? `step ${value}/${total}` : 'waiting for the first step';
}

export function percentOf(state: Pick<BarState, 'value' | 'total'>): number {
  return state.total > 0 ? Math.min(100, Math.floor((state.value / state.total) * 100)) : 0;
}

/** The text around a bar (cli-progress payload) and, joined, the plain line for non-TTY output. */
export function barText(state: BarState, eta?: number): { label: string; counts: string; suffix: string } {
  const suffix = [state.detail, eta !== undefined && `ETA ${formatDuration(eta)}`].filter(Boolean).join(' · ');
  return { label: state.label.padEnd(LABEL_WIDTH), counts: state.counts, suffix: suffix && ` · ${suffix}` };
}

export function progressLine(state: BarState, eta?: number): string {
  const text = barText(state, eta);
  return `${text.label} ${String(percentOf(state)).padStart(3)}% · ${text.counts}${text.suffix}`;
}

export function nanWarning(workflowId: string): string {
  return `warning: training loss is NaN: training goes on, but the LoRA will be useless; consider "lora cancel ${workflowId}" and a lower learning rate`;
}

export function retryLine(activity: PendingActivity): string | undefined {
  if (activity.attempt <= 1) return undefined;
  const why = activity.lastFailure ? ` after: ${activity.lastFailure}` : '';
  return `${activity.type}: attempt ${activity.attempt}${why}`;
}

// ---- summaries ---------------------------------------------------------------------------------------

export function reviewHintLines(workflowId: string): string[] {
  return [
    `waiting for a reviewer: lora review show ${workflowId} (the issues) or lora review serve ${workflowId} (the review page)`,
    `                     then lora approve ${workflowId} --reviewer <name> [--comment <text>]`,
    `                     or lora reject ${workflowId} --reviewer <name> --reason <text>`,
  ];
}

/** The human summary of a run: what `status` prints and what `--follow` ends with. */
export function summaryLines(snapshot: RunSnapshot): string[] {
  const { status } = snapshot;
  const rows: [string, string | undefined][] = [
    ['run', `${status.runName} (${snapshot.workflowId}, ${snapshot.execution})`],
    ['stage', stageLabel(status.stage)],
    ['base model', status.baseModel],
    ['images', status.images && `${status.images.found} found · ${status.images.kept} kept · ${status.images.skipped} skipped`],
    [
      'captions',
      status.captions &&
        `${plural(status.captions.error, 'error')} · ${plural(status.captions.warning, 'warning')} · ${status.captions.info} info (report ${status.captions.reportKey})`,
    ],
    ['review', reviewText(status)],
    [
      'dataset',
      status.dataset &&
        `${status.dataset.uri} · ${plural(status.dataset.files, 'file')} · ${formatBytes(status.dataset.bytes)} · manifest ${status.dataset.manifestSha256.slice(0, 12)}`,
    ],
    ['job', status.job && `${status.job.backend} ${status.job.jobName}${trainingText(status)}`],
    [
      'lora',
      status.lora &&
        `${status.lora.name} at ${status.lora.uri} · ${formatBytes(status.lora.sizeBytes)} · sha256 ${status.lora.sha256.slice(0, 12)} · AutoV2 ${status.lora.autoV2}`,
    ],
    ['error', status.error],
    ['note', snapshot.statusNote],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  const lines = rows.filter(([, value]) => value !== undefined).flatMap(([label, value]) => [
    `${`${label}:`.padEnd(width)}${value}`,
    ...(label === 'images' ? skippedLines(snapshot, width) : []),
  ]);
  return status.stage === 'awaiting_review' && snapshot.execution === 'RUNNING'
    ? [...lines, ...reviewHintLines(snapshot.workflowId)]
    : lines;
}

/** A skipped file and why; names are quoted when they hold characters a terminal would not show plainly. */
export function skippedFileLines(files: readonly { source: string; reason: string }[]): string[] {
  return files.map((file) => `  ${printableName(file.source)}: ${file.reason}`);
}

export function printableName(name: string): string {
  return /^[^\p{C}]*$/u.test(name) ? name : JSON.stringify(name);
}

/** Under the image counts: the first skipped files with why, and where the rest are. */
function skippedLines(snapshot: RunSnapshot, width: number): string[] {
  const skipped = snapshot.skippedFiles;
  const total = snapshot.status.images?.skipped ?? 0;
  if (!skipped || total === 0) return [];
  const indent = ' '.repeat(width);
  return [
    ...skippedFileLines(skipped.first).map((line) => `${indent}${line.trimStart()}`),
    ...(total > skipped.first.length ? [`${indent}… ${total - skipped.first.length} more in ${skipped.manifestUri}`] : []),
  ];
}

/** `lora status` without --follow: the summary, then live progress and retries of pending activities. */
export function statusLines(snapshot: RunSnapshot): string[] {
  const states = snapshot.activities.flatMap((activity) => (activity.progress ? [barStateOf(activity.progress)] : []));
  return [
    ...summaryLines(snapshot),
    ...states.map((state) => progressLine(state)),
    ...(states.some((state) => state.lossIsNaN) ? [nanWarning(snapshot.workflowId)] : []),
    ...snapshot.activities.flatMap((activity) => retryLine(activity) ?? []),
  ];
}

/** Logged when --follow sees the stage change: the stage plus what it was given to work on. */
export function stageChangeLines(status: RunStatus, workflowId: string): string[] {
  const detail: Partial<Record<Stage, string | undefined>> = {
    checking_captions: status.images && `${status.images.kept} images kept, ${status.images.skipped} skipped`,
    awaiting_review: status.captions && `${plural(status.captions.error, 'caption error')}, ${plural(status.captions.warning, 'warning')}`,
    launching: status.dataset?.uri,
    training: status.job?.jobName,
    failed: status.error,
  };
  const extra = detail[status.stage];
  const line = `stage: ${stageLabel(status.stage)}${extra ? ` (${extra})` : ''}`;
  return status.stage === 'awaiting_review' ? [line, ...reviewHintLines(workflowId)] : [line];
}

export function listLines(entries: readonly RunListEntry[]): string[] {
  if (!entries.length) return ['no runs found'];
  const header = ['WORKFLOW ID', 'STATUS', 'STAGE', 'RUN', 'BASE', 'STARTED (UTC)'];
  const rows = entries.map((entry) => [
    entry.workflowId,
    entry.execution,
    entry.stage ?? '-',
    entry.runName ?? '-',
    entry.baseModel ?? '-',
    entry.startTime.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ''),
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)));
  return [header, ...rows].map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd());
}

// ---- following a run ---------------------------------------------------------------------------------

export interface ShownBar {
  state: BarState;
  eta?: number;
}

export interface FollowFrame {
  /** Lines to print once, above the bars: stage changes, warnings, retries. */
  log: string[];
  bars: ShownBar[];
}

interface TrackedBar {
  state: BarState;
  first: ProgressSample;
  latest: ProgressSample;
}

/**
 * Turns successive snapshots into what changed: each event is logged once, and each bar keeps its
 * own rate for the ETA. Time comes in as an argument, so it is as testable as the rest.
 */
export class FollowTracker {
  private lastStage?: Stage;
  private readonly logged = new Set<string>();
  private readonly bars = new Map<ActivityProgress['unit'], TrackedBar>();

  constructor(private readonly workflowId: string) {}

  update(snapshot: RunSnapshot, now: number): FollowFrame {
    const log: string[] = [];
    const once = (line: string | undefined) => {
      if (line && !this.logged.has(line)) {
        this.logged.add(line);
        log.push(line);
      }
    };

    if (snapshot.status.stage !== this.lastStage) {
      this.lastStage = snapshot.status.stage;
      log.push(...stageChangeLines(snapshot.status, this.workflowId));
    }
    once(snapshot.statusNote);

    const seen = new Set<ActivityProgress['unit']>();
    for (const activity of snapshot.activities) {
      once(retryLine(activity));
      if (!activity.progress) continue;
      const state = barStateOf(activity.progress);
      seen.add(state.unit);
      this.track(state, now);
      if (state.lossIsNaN) once(nanWarning(this.workflowId));
    }
    // A bar whose activity finished while the run moved on ends full, not at its last heartbeat.
    for (const [unit, bar] of this.bars) {
      if (!seen.has(unit) && isPast(snapshot.status.stage, STAGE_OF_BAR[unit])) {
        bar.state = filledBar(bar.state);
      }
    }

    return {
      log,
      bars: [...this.bars.values()].map((bar) => ({ state: bar.state, eta: this.etaOf(bar, seen) })),
    };
  }

  private track(state: BarState, now: number): void {
    const sample = { at: now, done: state.value };
    const bar = this.bars.get(state.unit);
    // A new bar, or one that went backwards (a retried activity starting over), restarts its rate.
    if (!bar || state.value < bar.latest.done) {
      this.bars.set(state.unit, { state, first: sample, latest: sample });
      return;
    }
    bar.state = state;
    // The rate is measured between changes, so polling faster than heartbeats does not dilute it.
    if (state.value !== bar.latest.done) bar.latest = sample;
  }

  private etaOf(bar: TrackedBar, active: ReadonlySet<ActivityProgress['unit']>): number | undefined {
    return active.has(bar.state.unit) ? etaSeconds(bar.first, bar.latest, bar.state.total) : undefined;
  }
}

/** True when `stage` comes after `barStage` on the way to completion (not on the way to a failure). */
function isPast(stage: Stage, barStage: Stage): boolean {
  const index = STAGES.indexOf(stage);
  return index > STAGES.indexOf(barStage) && index <= STAGES.indexOf('completed');
}

function reviewText(status: RunStatus): string | undefined {
  if (!status.review) return status.stage === 'awaiting_review' ? 'waiting for a reviewer' : undefined;
  return decisionText(status.review);
}

/** A review decision in one line; a forced approval says so. */
export function decisionText(decision: ReviewDecision): string {
  const what = decision.decision === 'not_needed' ? 'not needed' : decision.decision.replace('_', ' ');
  const by = decision.reviewer ? ` by ${decision.reviewer}` : '';
  const forced = decision.force ? ' (forced past caption errors)' : '';
  const comment = decision.comment ? `: ${decision.comment}` : '';
  return `${what}${by}${forced} at ${decision.at}${comment}`;
}


function trainingText(status: RunStatus): string {
  const training = status.training;
  if (!training) return '';
  return ` (${[training.status, training.secondaryStatus].filter(Boolean).join(', ')})`;
}

export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
