/**
 * `npm run bench:scale`: a generated dataset of distinct 640×480 JPEGs with captions (default
 * 10,000) through preprocessing, caption checks and upload on a real dev server and a real worker
 * process, after a 200-image baseline measured in the same run. For each: the time from the run's
 * start to the end of its upload (by the server's event times), the worker's peak RSS (VmHWM; a
 * fresh worker per dataset) and the history's event count once the run completed. Prints the
 * ratios to the baseline and the goals: peak RSS under 500 MB, under 2,000 events.
 *
 *   npm run bench:scale [-- --images 10000 --baseline 200]   (or BENCH_SCALE_IMAGES, BENCH_SCALE_BASELINE)
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { z } from 'zod';
import { readRunSnapshot, startRun } from '../client/runs';
import { parseOrThrow, type TrainingRunInput } from '../lib/pipeline/input';
import type { RunOutcome } from '../lib/pipeline/status';
import { DevServerProcess, WorkerProcess } from '../scripts/processes';
import { writeNoiseDataset } from './noise-dataset';
import { allocatorOf } from '../worker/allocator';

const TASK_QUEUE = 'bench-scale';
const TRIGGER_WORD = 'scaletest';
const GOAL_PEAK_RSS_MB = 500;
const GOAL_EVENTS = 2000;
const RUN_TIMEOUT_MS = 3 * 3600_000;
const PROGRESS_EVERY_MS = 30_000;

const Flags = z.object({
  images: z.coerce.number().int().min(1).max(100_000).default(10_000),
  baseline: z.coerce.number().int().min(1).max(100_000).default(200),
});

/** The activities whose completions split the run into stages, in the order they run. */
const STAGE_ENDS = ['finishPreprocess', 'checkCaptions', 'uploadDataset'] as const;

interface Measurement {
  images: number;
  generateSeconds: number;
  datasetMb: number;
  outcome: RunOutcome;
  /** Seconds from the run's start to each stage-ending activity's completion. */
  endOf: Record<(typeof STAGE_ENDS)[number], number>;
  batches: number;
  events: number;
  readyRssMb: number;
  startupPeakMb: number;
  runPeakMb: number;
}

/** What a run of the benchmark has started and must stop, also when it fails or is interrupted. */
interface Resources {
  server?: DevServerProcess;
  worker?: WorkerProcess;
  connection?: Connection;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { images: { type: 'string' }, baseline: { type: 'string' } } });
  const flags = parseOrThrow(
    Flags,
    { images: values.images ?? process.env.BENCH_SCALE_IMAGES, baseline: values.baseline ?? process.env.BENCH_SCALE_BASELINE },
    'bench:scale flags',
  );
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-scale-'));
  const resources: Resources = {};
  // Ctrl-C still stops the server and the worker and removes the (large) temp folder.
  let onSignal: (signal: NodeJS.Signals) => void = () => undefined;
  const interrupted = new Promise<never>((_, reject) => {
    onSignal = (signal) => reject(new Error(`interrupted by ${signal}`));
  });
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    await Promise.race([interrupted, benchmark(flags, tmp, resources)]);
  } finally {
    await resources.worker?.stop();
    await resources.connection?.close();
    await resources.server?.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

async function benchmark(flags: z.infer<typeof Flags>, tmp: string, resources: Resources): Promise<void> {
  const cpus = os.cpus();
  console.log(`scale benchmark: ${flags.baseline} then ${flags.images} distinct 640×480 JPEGs with captions`);
  console.log(`machine: ${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GB, node ${process.version}`);
  console.log('');
  resources.server = await DevServerProcess.start(tmp);
  resources.connection = await Connection.connect({ address: resources.server.address });
  const client = new Client({ connection: resources.connection });
  const baseline = await measure(client, resources, tmp, flags.baseline);
  const large = await measure(client, resources, tmp, flags.images);
  report(baseline, large);
}

/** One dataset, one fresh worker process, one run; everything of it removed afterwards. */
async function measure(client: Client, resources: Resources, tmp: string, images: number): Promise<Measurement> {
  const dir = path.join(tmp, `run-${images}`);
  const dataset = path.join(dir, 'dataset');
  const generating = Date.now();
  await writeNoiseDataset(dataset, { count: images, seed: images, triggerWord: TRIGGER_WORD });
  const generateSeconds = (Date.now() - generating) / 1000;
  const datasetMb = (await folderBytes(dataset)) / 2 ** 20;
  console.log(`[${images}] generated ${images} images (${datasetMb.toFixed(0)} MB) in ${generateSeconds.toFixed(1)} s`);

  const logFile = path.join(dir, 'worker.log');
  const worker = new WorkerProcess(
    {
      TEMPORAL_ADDRESS: resources.server!.address,
      LORA_TASK_QUEUE: TASK_QUEUE,
      LORA_WORK_STORE: pathToFileURL(path.join(dir, 'work')).href,
      LORA_STORE: pathToFileURL(path.join(dir, 'store')).href,
      LORA_JOBS_DIR: path.join(dir, 'jobs'),
      LORA_LOG_LEVEL: 'WARN',
    },
    logFile,
  );
  resources.worker = worker;
  try {
    await waitForWorker(worker, logFile);
    console.log(`[${images}] worker memory allocator: ${await allocatorOf(worker.pid)} (LORA_ALLOCATOR=glibc to compare)`);
    const startup = await memoryOf(worker.pid);
    // Startup (bundling the workflow code) has a peak of its own: reset the high-water mark so the
    // run's own peak is measured too (clear_refs "5", Linux ≥ 4.0).
    await fs.writeFile(`/proc/${worker.pid}/clear_refs`, '5');

    const input: TrainingRunInput = {
      runName: `scale-${images}`,
      dataset,
      triggerWord: TRIGGER_WORD,
      review: { policy: 'on-error' },
      trainer: { kind: 'local', dryRun: true },
      training: { epochs: 1 },
      pollInterval: '1s',
    };
    const handle = await startRun(client, input, { taskQueue: TASK_QUEUE, workflowId: `bench-scale-${images}-${Date.now()}` });
    const sampled = await waitForEnd(client, handle, worker.pid, images);
    const run = await memoryOf(worker.pid);
    const outcome = await handle.result();
    const history = await handle.fetchHistory();
    const events = history.events ?? [];
    const timing = stageTimes(events);
    console.log(`[${images}] ${outcome.stage}: through upload in ${timing.endOf.uploadDataset.toFixed(1)} s, peak RSS ${run.peakMb.toFixed(0)} MB, ${events.length} events`);
    const byActivity = [...sampled].map(([type, mb]) => `${type} ${mb.toFixed(0)}`).join(', ');
    console.log(`[${images}] highest RSS sampled (1 s) while each activity ran, MB: ${byActivity}\n`);
    return {
      images,
      generateSeconds,
      datasetMb,
      outcome,
      ...timing,
      events: events.length,
      readyRssMb: startup.rssMb,
      startupPeakMb: startup.peakMb,
      runPeakMb: run.peakMb,
    };
  } catch (err) {
    const log = await fs.readFile(logFile, 'utf8').catch(() => '');
    console.error(`[${images}] worker log, last lines:\n${log.split('\n').slice(-20).join('\n')}`);
    throw err;
  } finally {
    await worker.stop();
    resources.worker = undefined;
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function waitForWorker(worker: WorkerProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const log = await fs.readFile(logFile, 'utf8').catch(() => '');
    if (log.includes('worker: polling task queue')) return;
    if (!worker.running) throw new Error(`the worker exited during start-up:\n${log}`);
    if (Date.now() > deadline) throw new Error(`the worker did not start polling within 120 s:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * Until the run ends; fails at once if it waits for a reviewer (the generated captions are clean).
 * Returns the worker's highest RSS sampled while each activity type was pending: where the peak is.
 */
async function waitForEnd(client: Client, handle: WorkflowHandle, pid: number, images: number): Promise<Map<string, number>> {
  const started = Date.now();
  let lastReport = started;
  const highest = new Map<string, number>();
  for (;;) {
    const { execution, status, activities } = await readRunSnapshot(client, handle.workflowId);
    if (execution !== 'RUNNING') return highest;
    const { rssMb } = await memoryOf(pid);
    for (const { type } of activities) highest.set(type, Math.max(rssMb, highest.get(type) ?? 0));
    if (status.stage === 'awaiting_review') {
      throw new Error(`${handle.workflowId} waits for review: caption checks found ${JSON.stringify(status.captions)}`);
    }
    if (Date.now() - lastReport >= PROGRESS_EVERY_MS) {
      lastReport = Date.now();
      const counts = status.images ? `, ${status.images.kept + status.images.skipped}/${status.images.found} images done` : '';
      console.log(`[${images}] ${((Date.now() - started) / 1000).toFixed(0)} s: ${status.stage}${counts}`);
    }
    if (Date.now() - started > RUN_TIMEOUT_MS) throw new Error(`${handle.workflowId} still in ${status.stage} after ${RUN_TIMEOUT_MS / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

/** By the server's event times: no polling granularity in the figures. */
function stageTimes(events: HistoryEvent[]): Pick<Measurement, 'endOf' | 'batches'> {
  const ms = (event: HistoryEvent) => Number(event.eventTime!.seconds) * 1000 + (event.eventTime!.nanos ?? 0) / 1e6;
  const nameOf = new Map<string, string>();
  for (const event of events) {
    const name = event.activityTaskScheduledEventAttributes?.activityType?.name;
    if (name) nameOf.set(String(event.eventId), name);
  }
  const completedAt = (name: string): number => {
    const completed = events.filter((e) => nameOf.get(String(e.activityTaskCompletedEventAttributes?.scheduledEventId)) === name);
    if (completed.length === 0) throw new Error(`no completed ${name} in the run's history`);
    return (ms(completed[completed.length - 1]) - ms(events[0])) / 1000;
  };
  const endOf = Object.fromEntries(STAGE_ENDS.map((name) => [name, completedAt(name)])) as Measurement['endOf'];
  return { endOf, batches: [...nameOf.values()].filter((name) => name === 'preprocessBatch').length };
}

async function memoryOf(pid: number): Promise<{ rssMb: number; peakMb: number }> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const kB = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: kB('VmRSS') / 1024, peakMb: kB('VmHWM') / 1024 };
}

async function folderBytes(dir: string): Promise<number> {
  const names = await fs.readdir(dir);
  const sizes = await Promise.all(names.map(async (name) => (await fs.stat(path.join(dir, name))).size));
  return sizes.reduce((sum, size) => sum + size, 0);
}

function report(base: Measurement, large: Measurement): void {
  const perImageMs = (m: Measurement) => (m.endOf.uploadDataset * 1000) / m.images;
  const lifetimePeak = (m: Measurement) => Math.max(m.startupPeakMb, m.runPeakMb);
  const rows: [string, (m: Measurement) => number, number][] = [
    ['images kept', (m) => m.outcome.images?.kept ?? 0, 0],
    ['dataset generation (s)', (m) => m.generateSeconds, 1],
    ['preprocessing (s)', (m) => m.endOf.finishPreprocess, 1],
    ['caption checks (s)', (m) => m.endOf.checkCaptions - m.endOf.finishPreprocess, 1],
    ['upload (s)', (m) => m.endOf.uploadDataset - m.endOf.checkCaptions, 1],
    ['start → upload done (s)', (m) => m.endOf.uploadDataset, 1],
    ['  per image (ms)', perImageMs, 2],
    ['preprocessBatch activities', (m) => m.batches, 0],
    ['history events (completed run)', (m) => m.events, 0],
    ['worker RSS when ready (MB)', (m) => m.readyRssMb, 0],
    ['worker peak RSS, start-up (MB)', (m) => m.startupPeakMb, 0],
    ['worker peak RSS, run (MB)', (m) => m.runPeakMb, 0],
  ];
  const a = `${base.images} images`;
  const b = `${large.images} images`;
  console.log(`${''.padEnd(32)} ${a.padStart(14)} ${b.padStart(14)} ${'ratio'.padStart(8)}`);
  for (const [label, value, digits] of rows) {
    const ratio = value(base) > 0 ? `${(value(large) / value(base)).toFixed(2)}×` : '';
    console.log(`${label.padEnd(32)} ${value(base).toFixed(digits).padStart(14)} ${value(large).toFixed(digits).padStart(14)} ${ratio.padStart(8)}`);
  }
  const mark = (ok: boolean) => (ok ? 'PASS' : 'MISS');
  console.log('');
  console.log(`time per image, ${large.images}/${base.images}: ${(perImageMs(large) / perImageMs(base)).toFixed(2)}×`);
  console.log(`peak RSS during the run, ${large.images}/${base.images}: ${(large.runPeakMb / base.runPeakMb).toFixed(2)}×`);
  console.log(`goal: worker peak RSS < ${GOAL_PEAK_RSS_MB} MB at ${large.images} images: ${lifetimePeak(large).toFixed(0)} MB  ${mark(lifetimePeak(large) < GOAL_PEAK_RSS_MB)}`);
  console.log(`goal: < ${GOAL_EVENTS} history events at ${large.images} images: ${large.events}  ${mark(large.events < GOAL_EVENTS)}`);
  const incomplete = [base, large].filter((m) => m.outcome.images?.kept !== m.images);
  for (const m of incomplete) console.log(`note: the ${m.images}-image run kept ${m.outcome.images?.kept} images (found ${m.outcome.images?.found}, skipped ${m.outcome.images?.skipped})`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:scale: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);
