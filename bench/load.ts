/**
 * `npm run bench:load`: N runs (default 200) parked in the training-poll stage on one worker
 * process with the fake trainer. Prints the worker's CPU share and RSS, the activity slots in use
 * (from its Prometheus metrics), and how long a preprocessing run started meanwhile takes, as a
 * ratio to the same run on the idle worker measured first. Goals: under 10 % of one core, under
 * 300 MB, and no starvation (latency ratio near 1).
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { startRun } from '../client/runs';
import type { TrainingRunInput } from '../lib/pipeline/input';
import { statusQuery } from '../workflows/messages';
import { writeExampleDataset } from '../scripts/example-dataset';
import { DevServerProcess, freePort, WorkerProcess } from '../scripts/processes';
import { allocatorOf } from '../worker/allocator';

const RUNS = Number(process.env.BENCH_LOAD_RUNS ?? 200);
const WINDOW_MS = Number(process.env.BENCH_LOAD_WINDOW_MS ?? 30_000);
/** After the last run parks: the allocator hands back what the burst of preprocessing freed. */
const SETTLE_MS = Number(process.env.BENCH_LOAD_SETTLE_MS ?? 20_000);
const TASK_QUEUE = 'bench-load';
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

async function rssMb(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

/** CPU share of one core, mean and highest RSS over a window. */
async function measure(pid: number, windowMs: number): Promise<{ cpuShare: number; rss: number; peakRss: number }> {
  const cpu0 = await cpuSeconds(pid);
  const t0 = Date.now();
  const samples: number[] = [];
  while (Date.now() - t0 < windowMs) {
    samples.push(await rssMb(pid));
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const cpuShare = (await cpuSeconds(pid)) - cpu0;
  return { cpuShare: cpuShare / ((Date.now() - t0) / 1000), rss: samples.reduce((a, b) => a + b, 0) / samples.length, peakRss: Math.max(...samples) };
}

async function slotsUsed(metricsUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const used: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^temporal_worker_task_slots_used\{.*task_queue="([^"]+)".*worker_type="ActivityWorker".*\} (\d+)/.exec(line);
    if (match) used[match[1]] = Number(match[2]);
  }
  return used;
}

async function main(): Promise<void> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-load-'));
  const server = await DevServerProcess.start(tmp);
  const metricsAddress = `127.0.0.1:${await freePort()}`;
  const worker = new WorkerProcess(
    {
      TEMPORAL_ADDRESS: server.address,
      LORA_TASK_QUEUE: TASK_QUEUE,
      LORA_WORK_STORE: pathToFileURL(path.join(tmp, 'work')).href,
      LORA_STORE: pathToFileURL(path.join(tmp, 'store')).href,
      LORA_JOBS_DIR: path.join(tmp, 'jobs'),
      LORA_METRICS_ADDRESS: metricsAddress,
      LORA_LOG_LEVEL: 'WARN',
    },
    path.join(tmp, 'worker.log'),
    'bench/load-worker',
  );
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  try {
    const tiny = path.join(tmp, 'tiny');
    const probe = path.join(tmp, 'probe');
    await writeExampleDataset(tiny, { count: 1 });
    await writeExampleDataset(probe, { count: 12, scale: 2 });

    const start = (id: string, dataset: string, extra: Partial<TrainingRunInput> = {}) =>
      startRun(client, { runName: 'load', dataset, trainer: { kind: 'local' }, training: { epochs: 1, networkDim: 4, networkAlpha: 2 }, ...extra }, { taskQueue: TASK_QUEUE, workflowId: id });

    /** From start to the end of preprocessing, by the server's own event times. */
    const preprocessLatency = async (id: string): Promise<number> => {
      const handle = await start(id, probe, { review: { policy: 'always', timeout: '1h' } });
      while ((await handle.query(statusQuery)).stage !== 'awaiting_review') await new Promise((r) => setTimeout(r, 200));
      const events = (await handle.fetchHistory()).events ?? [];
      await handle.terminate('benchmark probe done');
      const ms = (e: (typeof events)[number]) => Number(e.eventTime!.seconds) * 1000 + (e.eventTime!.nanos ?? 0) / 1e6;
      const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'finishPreprocess');
      const finished = events.find((e) => String(e.activityTaskCompletedEventAttributes?.scheduledEventId) === String(scheduled?.eventId));
      if (!finished) throw new Error(`${id}: no completed finishPreprocess in its history`);
      return ms(finished) - ms(events[0]);
    };

    await preprocessLatency('probe-warmup');
    const idleLatency = await preprocessLatency('probe-idle');
    const idle = await measure(worker.pid, 10_000);

    console.log(`starting ${RUNS} runs that park in training (fake trainer, poll every 30 s) …`);
    const t0 = Date.now();
    await Promise.all(Array.from({ length: RUNS }, (_, i) => start(`parked-${i}`, tiny)));
    let parkingPeakRss = 0;
    for (;;) {
      parkingPeakRss = Math.max(parkingPeakRss, await rssMb(worker.pid));
      const parked = await client.workflow.count(`TaskQueue = "${TASK_QUEUE}" AND LoraStage = "training" AND ExecutionStatus = "Running"`);
      if (parked.count >= RUNS) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    console.log(`${RUNS} runs parked in training after ${((Date.now() - t0) / 1000).toFixed(0)} s; measuring after ${SETTLE_MS / 1000} s to settle`);
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const loaded = await measure(worker.pid, WINDOW_MS);
    const slots = await slotsUsed(`http://${metricsAddress}/metrics`);
    const loadedLatency = await preprocessLatency('probe-loaded');

    const mark = (ok: boolean) => (ok ? 'PASS' : 'MISS');
    console.log('');
    console.log(`load benchmark: ${RUNS} runs parked in training, one worker process, ${os.cpus().length} cores`);
    console.log(`  worker CPU, idle            ${(idle.cpuShare * 100).toFixed(2)} % of one core`);
    console.log(`  worker CPU, ${RUNS} parked      ${(loaded.cpuShare * 100).toFixed(2)} % of one core   goal < 10 %   ${mark(loaded.cpuShare < 0.1)}`);
    console.log(`  worker memory allocator     ${await allocatorOf(worker.pid)} (LORA_ALLOCATOR=glibc to compare)`);
    console.log(`  worker RSS, idle            ${idle.rss.toFixed(0)} MB`);
    console.log(`  worker RSS, highest while the runs preprocessed and parked   ${parkingPeakRss.toFixed(0)} MB`);
    console.log(`  worker RSS, ${RUNS} parked      ${loaded.rss.toFixed(0)} MB   (${(loaded.rss / idle.rss).toFixed(2)}× idle)   goal < 300 MB   ${mark(loaded.rss < 300)}`);
    console.log(`  activity slots in use       ${Object.entries(slots).map(([queue, n]) => `${queue}: ${n}`).join(', ')}`);
    console.log(`  preprocessing latency, idle    ${(idleLatency / 1000).toFixed(2)} s`);
    console.log(`  preprocessing latency, loaded  ${(loadedLatency / 1000).toFixed(2)} s   ratio ${(loadedLatency / idleLatency).toFixed(2)}   goal: no starvation (≈ 1)   ${mark(loadedLatency / idleLatency < 1.5)}`);
  } finally {
    await worker.stop();
    await connection.close();
    await server.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:load: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);
