/**
 * Supervisor of one local training job, started detached by LocalTrainer so that training
 * survives the worker:
 *
 *   node dist/trainers/local-runner.js <jobDir>
 *
 * Runs job.json's command (the Kohya entrypoint) in its own process group, appends its output to
 * log.txt, reads progress from it and keeps status.json current (atomically, at most every
 * STATUS_INTERVAL_MS and at the end). SIGTERM stops the job: SIGTERM to the trainer's group,
 * SIGKILL after LORA_STOP_GRACE_MS. A failure's reason is the entrypoint's output/failure line.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { failureLineOf, KohyaOutputParser, KohyaOutputState } from '../lib/kohya/progress';
import { ML_PATHS } from '../adapters/trainer/entrypoint';
import { LocalJobFile, LocalJobStatus, JOB_FILE, LOG_FILE, STATUS_FILE, stopGraceMs } from '../adapters/trainer/local';

const STATUS_INTERVAL_MS = 500;
const MAX_REASON_CHARS = 500;

class Supervisor {
  private readonly statusFile: string;
  private readonly logFd: number;
  private readonly parser = new KohyaOutputParser();
  private record: LocalJobStatus;
  private child?: ChildProcess;
  private spawnError?: Error;
  private stopRequested = false;
  private finished = false;
  private lastWrite = 0;
  private pendingWrite?: NodeJS.Timeout;
  private killTimer?: NodeJS.Timeout;
  private graceMs = 0;

  constructor(
    private readonly jobDir: string,
    private readonly job: LocalJobFile,
  ) {
    this.statusFile = path.join(jobDir, STATUS_FILE);
    this.logFd = fs.openSync(path.join(jobDir, LOG_FILE), 'a');
    this.record = {
      status: 'InProgress',
      secondaryStatus: 'Starting',
      progress: {},
      runnerPid: process.pid,
      updatedAt: new Date().toISOString(),
    };
    // Before the first status write: whoever reads our pid from it may signal us right away.
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => this.requestStop());
    this.writeStatus();
  }

  /** Called synchronously after construction, so no stop request can arrive in between. */
  start(): void {
    this.graceMs = stopGraceMs();
    const [command, ...args] = this.job.command;
    fs.writeSync(this.logFd, `[local-runner ${new Date().toISOString()}] $ ${this.job.command.join(' ')}\n`);
    // Own process group, so a stop reaches the trainer's own children (accelerate spawns workers).
    const child = spawn(command, args, {
      cwd: this.jobDir,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.job.env, PYTHONUNBUFFERED: '1' },
    });
    this.child = child;
    child.once('spawn', () => {
      this.record = { ...this.record, secondaryStatus: 'Training', childPid: child.pid };
      this.writeStatus();
    });
    child.once('error', (err) => {
      this.spawnError = err;
      // A failed spawn emits no 'close'.
      if (child.pid === undefined) this.finish(null, null);
    });
    for (const stream of ['stdout', 'stderr'] as const) {
      const source = child[stream]!;
      source.setEncoding('utf8');
      source.on('data', (chunk: string) => {
        fs.writeSync(this.logFd, chunk);
        this.parser.feed(chunk, stream);
        this.scheduleStatus();
      });
    }
    child.once('close', (code, signal) => this.finish(code, signal));
  }

  private requestStop(): void {
    if (this.stopRequested || this.finished) return;
    this.stopRequested = true;
    fs.writeSync(this.logFd, `\n[local-runner ${new Date().toISOString()}] stop requested: SIGTERM to the trainer\n`);
    this.record = { ...this.record, status: 'Stopping', secondaryStatus: 'Stopping' };
    this.writeStatus();
    this.signalChild('SIGTERM');
    this.killTimer = setTimeout(() => {
      fs.writeSync(this.logFd, `\n[local-runner ${new Date().toISOString()}] still running after the grace period: SIGKILL\n`);
      this.signalChild('SIGKILL');
    }, this.graceMs);
  }

  private signalChild(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  private finish(exitCode: number | null, signal: NodeJS.Signals | null): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.killTimer);
    const output = this.parser.end();
    this.record = {
      ...this.record,
      ...this.outcome(exitCode, signal, output),
      progress: output.progress,
      exitCode,
      signal,
    };
    this.writeStatus();
    fs.writeSync(this.logFd, `\n[local-runner ${new Date().toISOString()}] ${this.record.status}${this.record.failureReason ? `: ${this.record.failureReason}` : ''}\n`);
    fs.closeSync(this.logFd);
    process.exit(0);
  }

  private outcome(
    exitCode: number | null,
    signal: NodeJS.Signals | null,
    output: KohyaOutputState,
  ): Pick<LocalJobStatus, 'status' | 'secondaryStatus' | 'failureReason'> {
    const logFile = path.join(this.jobDir, LOG_FILE);
    const failed = (failureReason: string) => ({ status: 'Failed' as const, secondaryStatus: 'Failed', failureReason });
    if (this.stopRequested) return { status: 'Stopped', secondaryStatus: 'Stopped' };
    if (this.spawnError) return failed(`could not start ${this.job.command[0]}: ${this.spawnError.message}`);
    if (exitCode !== 0) {
      const how = exitCode === null ? `killed by ${signal}` : `exit code ${exitCode}`;
      const reason = this.entrypointFailure() ?? failureLineOf(output);
      return failed(`${reason ? truncate(reason) : 'no output'} (${how}; see ${logFile})`);
    }
    // sd-scripts exits 0 when it finds no images; only the log tells.
    if (output.noDataFound) {
      return failed(`No data found: sd-scripts found no images in <repeats>_<name>/ folders under ${this.job.trainDataDir} (see ${logFile})`);
    }
    const lora = path.join(this.job.outputDir, `${this.job.outputName}.safetensors`);
    if (!fs.existsSync(lora)) return failed(`training exited 0 but did not write ${lora} (see ${logFile})`);
    return { status: 'Completed', secondaryStatus: 'Completed' };
  }

  /** The first line of the entrypoint's output/failure, if it wrote one. */
  private entrypointFailure(): string | undefined {
    try {
      return fs.readFileSync(path.join(this.jobDir, ML_PATHS.failure), 'utf8').split('\n')[0]?.trim() || undefined;
    } catch {
      return undefined;
    }
  }

  private scheduleStatus(): void {
    if (this.pendingWrite || this.finished) return;
    const wait = Math.max(0, this.lastWrite + STATUS_INTERVAL_MS - Date.now());
    this.pendingWrite = setTimeout(() => {
      this.pendingWrite = undefined;
      if (this.finished) return;
      this.record = { ...this.record, progress: this.parser.state.progress };
      this.writeStatus();
    }, wait);
  }

  /** tmp + rename: a reader sees the old or the new status, never half of one. */
  private writeStatus(): void {
    this.record.updatedAt = new Date().toISOString();
    const temp = `${this.statusFile}.${process.pid}.tmp`;
    fs.writeFileSync(temp, JSON.stringify(this.record, null, 2) + '\n');
    fs.renameSync(temp, this.statusFile);
    this.lastWrite = Date.now();
  }

  /** Last resort: record the crash and take the trainer down with us rather than orphan it. */
  crashed(err: unknown): never {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
    try {
      fs.writeSync(this.logFd, `\n[local-runner ${new Date().toISOString()}] crashed: ${message}\n`);
      this.signalChild('SIGKILL');
      this.record = { ...this.record, status: 'Failed', secondaryStatus: 'Failed', failureReason: `local trainer supervisor crashed: ${truncate(String(err))}` };
      this.writeStatus();
    } finally {
      process.exit(1);
    }
  }
}

function truncate(text: string): string {
  return text.length > MAX_REASON_CHARS ? `${text.slice(0, MAX_REASON_CHARS)}…` : text;
}

function main(): void {
  const jobDir = process.argv[2];
  if (!jobDir) {
    process.stderr.write('usage: local-runner <jobDir>\n');
    process.exit(2);
  }
  const job = JSON.parse(fs.readFileSync(path.join(jobDir, JOB_FILE), 'utf8')) as LocalJobFile;
  const supervisor = new Supervisor(jobDir, job);
  process.on('uncaughtException', (err) => supervisor.crashed(err));
  try {
    supervisor.start();
  } catch (err) {
    supervisor.crashed(err);
  }
}

main();
