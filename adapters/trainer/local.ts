/**
 * Kohya-SS on this host, through the same entrypoint the SageMaker image runs
 * (docker/kohya/entrypoint.py), with the job folder `<jobsDir>/<jobName>/` as its ML root:
 *
 *   job.json                            what to run (written once, exclusively: whoever creates it owns the launch)
 *   status.json                         written only by the supervisor (trainers/local-runner), atomically; holds the pids
 *   log.txt                             the entrypoint's and sd-scripts' stdout and stderr
 *   input/config/hyperparameters.json   the sd-scripts options, encoded as for SageMaker
 *   output/data/config.toml             the sd-scripts config the entrypoint wrote, paths filled in
 *   output/failure                      the entrypoint's one-line reason when it fails
 *   checkpoints/progress.json           the entrypoint's progress file
 *   model/                              the LoRA files
 *
 * The supervisor runs detached from the worker, so training survives a worker restart and any
 * worker (or a new LocalTrainer) can describe or stop the job from these files alone.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { compiledScript } from '../project-paths';
import type { BaseModelFamily } from '../../lib/pipeline/input';
import type { TrainingJobRef, TrainingProgress, TrainingState } from '../../lib/pipeline/status';
import { CHANNELS, ENTRYPOINT_SCRIPT, entrypointArgs, entrypointHyperParameters, KOHYA_COMMAND_ENV, ML_PATHS } from './entrypoint';
import { InvalidTrainingSpecError, type KohyaConfig, type Trainer, type TrainingJobSpec } from './types';
import { createExclusive } from '../store/file';

export const JOB_FILE = 'job.json';
export const STATUS_FILE = 'status.json';
export const LOG_FILE = 'log.txt';

/** Environment variables the worker reads the sd-scripts command prefix from, per family (worker/config.ts). */
export const COMMAND_ENV: Record<BaseModelFamily, string> = {
  sd15: 'LORA_KOHYA_COMMAND_SD15',
  sdxl: 'LORA_KOHYA_COMMAND_SDXL',
};

/** A supervisor that has not written status.json by then never started (e.g. the worker died mid-launch). */
export const RUNNER_START_TIMEOUT_MS = 60_000;
export const DEFAULT_STOP_GRACE_MS = 10_000;

export interface LocalJobFile {
  jobName: string;
  runId: string;
  family: BaseModelFamily;
  /** The entrypoint's argv. */
  command: string[];
  /** The entrypoint's environment on top of the supervisor's: the sd-scripts command. */
  env: Record<string, string>;
  trainDataDir: string;
  outputDir: string;
  outputName: string;
  createdAt: string;
}

export interface LocalJobStatus {
  status: TrainingState['status'];
  secondaryStatus: string;
  progress: TrainingProgress;
  runnerPid: number;
  childPid?: number;
  exitCode?: number | null;
  signal?: string | null;
  failureReason?: string;
  updatedAt: string;
}

export const TERMINAL_STATUSES: ReadonlySet<TrainingState['status']> = new Set(['Completed', 'Failed', 'Stopped']);

export interface LocalTrainerOptions {
  /** Where job folders live; must be on a disk this host can write. */
  jobsDir: string;
  /**
   * The sd-scripts command prefix per family, e.g. `['accelerate', 'launch', '/opt/sd-scripts/train_network.py']`
   * (SDXL: `sdxl_train_network.py`); the entrypoint appends `--config_file <config.toml>`. Dry runs need none.
   */
  command?: Partial<Record<BaseModelFamily, readonly string[]>>;
  /** Python 3 to run the entrypoint with (default `python3`). */
  python?: string;
  /**
   * Extra environment for the supervisor and the trainer on top of this process's, e.g.
   * CUDA_VISIBLE_DEVICES, LORA_STOP_GRACE_MS or the dry run's DRY_RUN_STEP_MS.
   */
  env?: Record<string, string>;
}

export class LocalTrainer implements Trainer {
  readonly backend = 'local' as const;
  readonly jobsDir: string;
  private readonly command: Partial<Record<BaseModelFamily, readonly string[]>>;
  private readonly python: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(options: LocalTrainerOptions) {
    this.jobsDir = path.resolve(options.jobsDir);
    this.command = options.command ?? {};
    this.python = options.python ?? 'python3';
    this.env = { ...process.env, ...options.env };
  }

  async launch(spec: TrainingJobSpec): Promise<TrainingJobRef & { adopted: boolean }> {
    const jobDir = this.jobDirOf(spec.jobName);
    const ref = { backend: this.backend, jobName: spec.jobName };
    if (await exists(path.join(jobDir, JOB_FILE))) return { ...ref, adopted: true };

    const trainDataDir = localPathOf(spec.datasetUri);
    const hyperParameters = entrypointHyperParameters({
      family: spec.family,
      kohyaConfig: { ...checkedKohyaConfig(spec.kohyaConfig), output_name: spec.outputName },
      pretrainedModel: spec.checkpoint,
    });
    const job: LocalJobFile = {
      jobName: spec.jobName,
      runId: spec.runId,
      family: spec.family,
      // The job folder in the argv also lets isOurProcess recognise the entrypoint by its command line.
      command: [this.python, ENTRYPOINT_SCRIPT, ...entrypointArgs(jobDir, { [CHANNELS.dataset]: trainDataDir })],
      env: { [KOHYA_COMMAND_ENV]: JSON.stringify(await this.commandFor(spec)) },
      trainDataDir,
      outputDir: path.join(jobDir, ML_PATHS.model),
      outputName: spec.outputName,
      createdAt: new Date().toISOString(),
    };
    const runner = compiledScript('trainers/local-runner');
    await assertCompiled(runner);

    const hyperParametersFile = path.join(jobDir, ML_PATHS.hyperParameters);
    await fs.mkdir(path.dirname(hyperParametersFile), { recursive: true });
    // hyperparameters.json first: whoever sees job.json may rely on it. Concurrent launchers write the same bytes.
    await writeFileAtomic(hyperParametersFile, JSON.stringify(hyperParameters, null, 2) + '\n');
    if (!(await createExclusive(path.join(jobDir, JOB_FILE), JSON.stringify(job, null, 2) + '\n'))) {
      return { ...ref, adopted: true };
    }
    await startDetached(process.execPath, [runner, jobDir], jobDir, this.env);
    return { ...ref, adopted: false };
  }

  async describe(ref: TrainingJobRef): Promise<TrainingState> {
    const jobDir = this.jobDirOf(ref.jobName);
    const job = await readJobFile(jobDir);
    if (!job) throw new Error(`no local training job "${ref.jobName}": ${path.join(jobDir, JOB_FILE)} does not exist`);
    const logFile = path.join(jobDir, LOG_FILE);
    const status = await readStatusFile(jobDir);
    if (!status) {
      if (Date.now() - Date.parse(job.createdAt) < RUNNER_START_TIMEOUT_MS) return { status: 'InProgress', secondaryStatus: 'Starting' };
      return {
        status: 'Failed',
        secondaryStatus: 'Failed',
        failureReason: `the local trainer's supervisor never started: no ${path.join(jobDir, STATUS_FILE)} (see ${logFile})`,
      };
    }
    const current = await this.settledStatus(jobDir, status);
    if (!current) {
      return {
        ...stateOf(status, job),
        status: 'Failed',
        secondaryStatus: 'Failed',
        failureReason: `local trainer process exited unexpectedly (see ${logFile})`,
      };
    }
    return stateOf(current, job);
  }

  async stop(ref: TrainingJobRef): Promise<TrainingState | undefined> {
    await this.stopAndWait(ref);
    return (await readJobFile(this.jobDirOf(ref.jobName))) ? this.describe(ref) : undefined;
  }

  /** Signals the supervisor and waits until the job has ended (it escalates to SIGKILL itself). */
  private async stopAndWait(ref: TrainingJobRef): Promise<void> {
    const jobDir = this.jobDirOf(ref.jobName);
    const job = await readJobFile(jobDir);
    if (!job) return; // never launched: nothing to stop
    const graceMs = stopGraceMs(this.env);
    // The supervisor escalates to SIGKILL after the grace period; allow it time to record that.
    const deadline = Date.now() + graceMs + 5_000;
    let signalled = false;
    for (;;) {
      const status = await readStatusFile(jobDir);
      if (status) {
        const current = await this.settledStatus(jobDir, status);
        if (current && TERMINAL_STATUSES.has(current.status)) return;
        if (!current) {
          // The supervisor is gone: stop what it may have left running and record the stop ourselves.
          await killProcessGroup(status.childPid, jobDir);
          const stopped: LocalJobStatus = {
            ...status,
            status: 'Stopped',
            secondaryStatus: 'Stopped',
            failureReason: 'stopped after the local trainer supervisor had exited unexpectedly',
            updatedAt: new Date().toISOString(),
          };
          await writeFileAtomic(path.join(jobDir, STATUS_FILE), JSON.stringify(stopped, null, 2));
          return;
        }
        if (!signalled) {
          signalRunner(current.runnerPid);
          signalled = true;
        }
      } else if (Date.now() - Date.parse(job.createdAt) >= RUNNER_START_TIMEOUT_MS) {
        return; // the supervisor never started, so nothing runs
      }
      if (Date.now() > deadline) {
        throw new Error(`local training job "${ref.jobName}" did not stop within ${Math.round((graceMs + 5_000) / 1000)} s (see ${path.join(jobDir, LOG_FILE)})`);
      }
      await sleep(100);
    }
  }

  private jobDirOf(jobName: string): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(jobName)) {
      throw new InvalidTrainingSpecError(`jobName: "${jobName}" must be 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit`);
    }
    return path.join(this.jobsDir, jobName);
  }

  private async commandFor(spec: TrainingJobSpec): Promise<string[]> {
    if (spec.dryRun) {
      const script = compiledScript('trainers/dry-run-kohya');
      await assertCompiled(script);
      return [process.execPath, script];
    }
    const command = this.command[spec.family];
    if (!command || command.length === 0) {
      throw new InvalidTrainingSpecError(
        `the local trainer command for ${spec.family} is not configured: set ${COMMAND_ENV[spec.family]} ` +
          `(e.g. "accelerate launch /opt/sd-scripts/${spec.family === 'sdxl' ? 'sdxl_' : ''}train_network.py") ` +
          'or LocalTrainerOptions.command, or run with trainer.dryRun',
      );
    }
    return [...command];
  }

  /**
   * The status if its supervisor is still alive or it is terminal; undefined when the supervisor
   * died without recording an end. Re-reads once, as the supervisor writes its final status just
   * before exiting.
   */
  private async settledStatus(jobDir: string, status: LocalJobStatus): Promise<LocalJobStatus | undefined> {
    if (TERMINAL_STATUSES.has(status.status) || isOurProcess(status.runnerPid, jobDir)) return status;
    const reread = await readStatusFile(jobDir);
    return reread && TERMINAL_STATUSES.has(reread.status) ? reread : undefined;
  }
}

function stateOf(status: LocalJobStatus, job: LocalJobFile): TrainingState {
  const state: TrainingState = { status: status.status, secondaryStatus: status.secondaryStatus };
  if (status.failureReason) state.failureReason = status.failureReason;
  if (Object.keys(status.progress).length) state.progress = status.progress;
  if (status.status === 'Completed') state.artifactUri = pathToFileURL(job.outputDir).href + '/';
  return state;
}

function localPathOf(datasetUri: string): string {
  if (!datasetUri.startsWith('file://')) {
    throw new InvalidTrainingSpecError(`datasetUri: the local trainer reads datasets from this host's disk and needs a file:// URI, got "${datasetUri}"`);
  }
  return fileURLToPath(datasetUri);
}

function checkedKohyaConfig(config: KohyaConfig): KohyaConfig {
  for (const [key, value] of Object.entries(config)) {
    const ok = typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value));
    if (!ok) throw new InvalidTrainingSpecError(`kohyaConfig.${key}: must be a string, boolean or finite number, got ${String(value)}`);
  }
  return config;
}

export function stopGraceMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.LORA_STOP_GRACE_MS;
  if (raw === undefined || raw === '') return DEFAULT_STOP_GRACE_MS;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`LORA_STOP_GRACE_MS: must be a number of milliseconds >= 0, got "${raw}"`);
  return value;
}

async function readJobFile(jobDir: string): Promise<LocalJobFile | undefined> {
  return readJson<LocalJobFile>(path.join(jobDir, JOB_FILE));
}

export async function readStatusFile(jobDir: string): Promise<LocalJobStatus | undefined> {
  return readJson<LocalJobStatus>(path.join(jobDir, STATUS_FILE));
}

async function readJson<T>(file: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new Error(`${file}: not valid JSON: ${(err as Error).message}`);
  }
}

function signalRunner(pid: number): void {
  try {
    process.kill(pid, 'SIGTERM');
  } catch (err) {
    // Exited meanwhile: the next status read tells how it ended.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Whether `pid` is alive and still a process we started for this job: where /proc exists, its
 * command line must mention the job folder (`/<jobName>`, so that another spelling of the jobs
 * path matches too); a recycled pid or a zombie counts as dead.
 */
function isOurProcess(pid: number | undefined, jobDir: string): boolean {
  if (!pid || !isAlive(pid)) return false;
  try {
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8'); // arguments end in NUL
    // Empty while it is exiting (its memory is gone, the process not yet): still ours until it is.
    if (commandLine === '') return true;
    const name = path.basename(jobDir);
    return commandLine.includes(`${path.sep}${name}\0`) || commandLine.includes(`${path.sep}${name}${path.sep}`);
  } catch (err) {
    // No procfs (macOS): isAlive is all we have.
    return (err as NodeJS.ErrnoException).code === 'ENOENT' && !hasProcfs();
  }
}

/**
 * Whether `pid` still exists and has not finished exiting: a zombie counts as gone (an orphan waits
 * for PID 1 to reap it, which some container inits never do).
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // "pid (comm) state ...": the command name may itself contain spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch (err) {
    // Gone meanwhile, or no procfs (macOS): then the signal check is all we have.
    return (err as NodeJS.ErrnoException).code === 'ENOENT' && !hasProcfs();
  }
}

function hasProcfs(): boolean {
  try {
    readFileSync('/proc/self/cmdline');
    return true;
  } catch {
    return false;
  }
}

/**
 * SIGKILLs a trainer's process group (the supervisor starts it as a group leader) if it is still
 * ours, and waits (bounded) until it is gone.
 */
async function killProcessGroup(pid: number | undefined, jobDir: string): Promise<void> {
  if (!pid || !isOurProcess(pid, jobDir)) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
  const deadline = Date.now() + 5_000;
  while (isAlive(pid)) {
    if (Date.now() > deadline) throw new Error(`trainer process group ${pid} survived SIGKILL for 5 s`);
    await sleep(50);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

async function assertCompiled(script: string): Promise<void> {
  if (!(await exists(script))) throw new Error(`${script} is missing: run "npm run build" (child processes run from dist/)`);
}

async function writeFileAtomic(file: string, content: string): Promise<void> {
  const temp = `${file}.${randomUUID()}.tmp`;
  await fs.writeFile(temp, content);
  await fs.rename(temp, file);
}


/** Starts a process in its own session with no ties to ours, resolving once it runs. */
function startDetached(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, detached: true, stdio: 'ignore' });
    child.once('error', (err) => reject(new Error(`could not start ${command} ${args.join(' ')}: ${err.message}`)));
    child.once('spawn', () => {
      child.unref();
      resolve();
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
