/**
 * The local trainer end to end with real processes: the detached supervisor runs the Kohya
 * entrypoint (docker/kohya/entrypoint.py, with the venv's Python), which runs the dry-run trainer
 * or a stand-in command. The supervisor and the dry run run from dist/, so build first (`npm test`
 * does; by hand: npx tsc -p tsconfig.build.json).
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { isAlive, LocalTrainer, readStatusFile } from '../../adapters/trainer/local';
import type { TrainingJobSpec } from '../../adapters/trainer/types';
import { verifyLora } from '../../lib/lora/verify';
import { compiledScript, PROJECT_ROOT } from '../../adapters/project-paths';
import type { TrainingJobRef, TrainingState } from '../../lib/pipeline/status';
import { installedTools } from '../../scripts/tools';

const CHILD_SCRIPTS = ['trainers/local-runner', 'trainers/dry-run-kohya', 'adapters/trainer/local', 'adapters/trainer/entrypoint'];
const IMAGES = 4;
const REPEATS = 5;

let tmp: string;
let jobsDir: string;
let python: string;
let datasetUri: string;
let emptyDatasetUri: string;

beforeAll(async () => {
  for (const script of CHILD_SCRIPTS) {
    const compiled = compiledScript(script);
    const source = path.join(PROJECT_ROOT, `${script}.ts`);
    let stale: boolean;
    try {
      stale = statSync(compiled).mtimeMs < statSync(source).mtimeMs;
    } catch {
      stale = true;
    }
    if (stale) throw new Error(`${compiled} is missing or older than ${source}: run "npx tsc -p tsconfig.build.json" (npm test does)`);
  }
  python = installedTools().python;
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'local-trainer-'));
  jobsDir = path.join(tmp, 'jobs');
  const folder = path.join(tmp, 'ds', `${REPEATS}_demo`);
  await fs.mkdir(folder, { recursive: true });
  for (let i = 0; i < IMAGES; i++) {
    await sharp({ create: { width: 64, height: 64, channels: 3, background: '#888' } }).png().toFile(path.join(folder, `img${i}.png`));
    await fs.writeFile(path.join(folder, `img${i}.txt`), 'demo, a grey square');
  }
  await fs.mkdir(path.join(tmp, 'empty', `${REPEATS}_demo`), { recursive: true });
  datasetUri = `file://${path.join(tmp, 'ds')}`;
  emptyDatasetUri = `file://${path.join(tmp, 'empty')}`;
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

function spec(jobName: string, overrides: Partial<TrainingJobSpec> = {}): TrainingJobSpec {
  return {
    jobName,
    runId: `run-${jobName}`,
    datasetUri,
    family: 'sd15',
    checkpoint: 'runwayml/stable-diffusion-v1-5',
    outputName: 'demo',
    kohyaConfig: { max_train_epochs: 3, save_every_n_epochs: 1, network_dim: 8, network_alpha: 4, train_batch_size: 1, seed: 1337 },
    dryRun: true,
    ...overrides,
  };
}

async function waitFor(
  trainer: LocalTrainer,
  ref: TrainingJobRef,
  done: (state: TrainingState) => boolean,
  timeoutMs = 30_000,
): Promise<TrainingState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await trainer.describe(ref);
    if (done(state)) return state;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${ref.jobName}; last state ${JSON.stringify(state)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const isTerminal = (state: TrainingState) => ['Completed', 'Failed', 'Stopped'].includes(state.status);

const isRunning = (pid: number | undefined): boolean => pid !== undefined && isAlive(pid);

async function waitForLog(jobName: string, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  const file = path.join(jobsDir, jobName, 'log.txt');
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(await fs.readFile(file, 'utf8').catch(() => ''))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern} in ${file}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('LocalTrainer with the dry-run trainer', () => {
  it('trains to Completed and writes a LoRA that verifies', async () => {
    const trainer = new LocalTrainer({ python, jobsDir });
    const ref = await trainer.launch(spec('job-complete'));
    expect(ref).toEqual({ backend: 'local', jobName: 'job-complete', adopted: false });

    const state = await waitFor(trainer, ref, isTerminal);
    expect(state.status).toBe('Completed');
    expect(state.secondaryStatus).toBe('Completed');
    const stepsPerEpoch = IMAGES * REPEATS;
    expect(state.progress).toMatchObject({ step: 3 * stepsPerEpoch, totalSteps: 3 * stepsPerEpoch, epoch: 3, totalEpochs: 3 });
    expect(state.progress?.loss).toBeGreaterThan(0);

    expect(state.artifactUri).toBe(`file://${path.join(jobsDir, 'job-complete', 'model')}/`);
    const outputDir = fileURLToPath(state.artifactUri!);
    expect((await fs.readdir(outputDir)).sort()).toEqual(['demo-000001.safetensors', 'demo-000002.safetensors', 'demo.safetensors']);
    const summary = verifyLora(await fs.readFile(path.join(outputDir, 'demo.safetensors')), { family: 'sd15', networkDim: 8 });
    expect(summary.metadata).toMatchObject({ ss_dry_run: 'true', ss_steps: String(3 * stepsPerEpoch), ss_network_alpha: '4.0' });

    // The entrypoint gave sd-scripts our paths and typed values, and the log holds its output.
    const config = await fs.readFile(path.join(jobsDir, 'job-complete', 'output', 'data', 'config.toml'), 'utf8');
    expect(config).toContain(`train_data_dir = "${path.join(tmp, 'ds')}"`);
    expect(config).toContain(`output_dir = "${outputDir.replace(/\/$/, '')}"`);
    expect(config).toContain('pretrained_model_name_or_path = "runwayml/stable-diffusion-v1-5"');
    expect(config).toContain('network_alpha = 4.0\n');
    expect(config).toContain('network_dim = 8\n');
    const log = await fs.readFile(path.join(jobsDir, 'job-complete', 'log.txt'), 'utf8');
    expect(log).toContain('entrypoint: $ ');
    expect(log).toContain('DRY RUN: no training happens');
    expect(log).toContain('model saved.');
    // The entrypoint's progress file agrees with what the supervisor read from the same output.
    const progressFile = JSON.parse(await fs.readFile(path.join(jobsDir, 'job-complete', 'checkpoints', 'progress.json'), 'utf8'));
    expect(progressFile).toMatchObject({ step: state.progress!.step, totalSteps: state.progress!.totalSteps, epoch: 3, totalEpochs: 3, loss: state.progress!.loss });
  });

  it('adopts the job on a second launch and describes it from a new instance (worker restart)', async () => {
    const jobFile = path.join(jobsDir, 'job-complete', 'job.json');
    const before = await fs.readFile(jobFile, 'utf8');
    const again = await new LocalTrainer({ python, jobsDir }).launch(spec('job-complete'));
    expect(again).toEqual({ backend: 'local', jobName: 'job-complete', adopted: true });
    expect(await fs.readFile(jobFile, 'utf8')).toBe(before);
    const restarted = new LocalTrainer({ python, jobsDir });
    await expect(restarted.describe(again)).resolves.toMatchObject({ status: 'Completed' });
  });

  it('keeps training after the launching worker process exits, and a restarted worker re-attaches', async () => {
    // The first "worker" is a process of its own that launches the job and exits while it trains.
    const launcher = [
      `const { LocalTrainer } = require(${JSON.stringify(compiledScript('adapters/trainer/local'))});`,
      `new LocalTrainer(${JSON.stringify({ python, jobsDir, env: { DRY_RUN_STEP_MS: '100' } })})`,
      `  .launch(${JSON.stringify(spec('job-reattach'))})`,
      '  .then((ref) => process.stdout.write(JSON.stringify(ref)));',
    ].join('\n');
    const child = spawn(process.execPath, ['-e', launcher], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exitCode = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(exitCode).toBe(0);
    expect(JSON.parse(output)).toEqual({ backend: 'local', jobName: 'job-reattach', adopted: false });

    // The restarted worker: a new trainer adopts the job instead of launching it again.
    const restarted = new LocalTrainer({ python, jobsDir });
    const ref = await restarted.launch(spec('job-reattach'));
    expect(ref.adopted).toBe(true);
    const running = await waitFor(restarted, ref, (state) => state.progress?.step !== undefined || isTerminal(state));
    expect(running.status).toBe('InProgress');
    const { runnerPid } = (await readStatusFile(path.join(jobsDir, 'job-reattach')))!;
    expect(runnerPid).not.toBe(child.pid);
    expect(isRunning(runnerPid)).toBe(true);

    const done = await waitFor(restarted, ref, isTerminal);
    expect(done).toMatchObject({ status: 'Completed', progress: { step: 3 * IMAGES * REPEATS, epoch: 3 } });
    const log = await fs.readFile(path.join(jobsDir, 'job-reattach', 'log.txt'), 'utf8');
    expect(log.match(/DRY RUN: no training happens/g)).toHaveLength(1);
  });

  it('launches once when two launches race', async () => {
    const first = new LocalTrainer({ python, jobsDir });
    const second = new LocalTrainer({ python, jobsDir });
    const refs = await Promise.all([first.launch(spec('job-race')), second.launch(spec('job-race'))]);
    expect(refs.map((ref) => ref.adopted).sort()).toEqual([false, true]);
    await expect(waitFor(first, refs[0], isTerminal)).resolves.toMatchObject({ status: 'Completed' });
    const log = await fs.readFile(path.join(jobsDir, 'job-race', 'log.txt'), 'utf8');
    expect(log.match(/DRY RUN: no training happens/g)).toHaveLength(1);
  });

  it('writes SDXL key names for an SDXL job', async () => {
    const trainer = new LocalTrainer({ python, jobsDir });
    const ref = await trainer.launch(spec('job-sdxl', { family: 'sdxl', checkpoint: 'sdxl.safetensors' }));
    const state = await waitFor(trainer, ref, isTerminal);
    expect(state.status).toBe('Completed');
    const lora = await fs.readFile(path.join(fileURLToPath(state.artifactUri!), 'demo.safetensors'));
    expect(verifyLora(lora, { family: 'sdxl', networkDim: 8 }).metadata.ss_base_model_version).toBe('sdxl_base_v1-0');
  });

  it('stops a running job', async () => {
    // One second per printed step keeps the job running until we stop it.
    const trainer = new LocalTrainer({ python, jobsDir, env: { DRY_RUN_STEP_MS: '1000' } });
    const ref = await trainer.launch(spec('job-stop'));
    // Progress shows up while it runs: the dry run prints its totals and "epoch 1/3" first.
    const running = await waitFor(trainer, ref, (state) => state.progress?.epoch !== undefined || isTerminal(state));
    expect(running).toMatchObject({ status: 'InProgress', secondaryStatus: 'Training' });
    expect(running.progress).toMatchObject({ epoch: 1, totalEpochs: 3, totalSteps: 3 * IMAGES * REPEATS });
    const childPid = (await readStatusFile(path.join(jobsDir, 'job-stop')))!.childPid;
    expect(isRunning(childPid)).toBe(true);

    await expect(trainer.stop(ref)).resolves.toMatchObject({ status: 'Stopped', secondaryStatus: 'Stopped' });
    await expect(trainer.describe(ref)).resolves.toMatchObject({ status: 'Stopped', secondaryStatus: 'Stopped' });
    expect(isRunning(childPid)).toBe(false);
    await expect(fs.access(path.join(jobsDir, 'job-stop', 'model', 'demo.safetensors'))).rejects.toThrow();
    // Stopping again is a no-op.
    await expect(trainer.stop(ref)).resolves.toMatchObject({ status: 'Stopped' });
    await expect(trainer.describe(ref)).resolves.toMatchObject({ status: 'Stopped' });
  });

  it('fails with "No data found" when the dataset has no images, although sd-scripts exits 0', async () => {
    const trainer = new LocalTrainer({ python, jobsDir });
    const ref = await trainer.launch(spec('job-empty', { datasetUri: emptyDatasetUri }));
    const state = await waitFor(trainer, ref, isTerminal);
    expect(state.status).toBe('Failed');
    expect(state.failureReason).toMatch(/^No data found: /);
    expect(state.failureReason).toContain(path.join(tmp, 'empty'));
    expect(state.artifactUri).toBeUndefined();
    // sd-scripts (here the dry run) exited 0; the entrypoint turned that into a failure.
    expect(await fs.readFile(path.join(jobsDir, 'job-empty', 'log.txt'), 'utf8')).toContain('No data found. Please verify arguments');
    expect((await readStatusFile(path.join(jobsDir, 'job-empty')))!.exitCode).toBe(1);
  });

  it('reports a vanished supervisor as failed, and stop() cleans up after it', async () => {
    const trainer = new LocalTrainer({ python, jobsDir, env: { DRY_RUN_STEP_MS: '1000' } });
    const ref = await trainer.launch(spec('job-orphan'));
    await waitFor(trainer, ref, (state) => state.secondaryStatus === 'Training');
    const { runnerPid, childPid } = (await readStatusFile(path.join(jobsDir, 'job-orphan')))!;
    process.kill(runnerPid, 'SIGKILL');

    const state = await waitFor(trainer, ref, (s) => s.status !== 'InProgress');
    expect(state.status).toBe('Failed');
    expect(state.failureReason).toBe(`local trainer process exited unexpectedly (see ${path.join(jobsDir, 'job-orphan', 'log.txt')})`);

    await trainer.stop(ref);
    expect(isRunning(childPid)).toBe(false);
    await expect(trainer.describe(ref)).resolves.toMatchObject({ status: 'Stopped' });
  });
});

describe('LocalTrainer with a configured command', () => {
  // Stand-ins for sd-scripts: node scripts; `--` ends node's options so `--config_file` reaches them.
  const node = (code: string) => [process.execPath, '-e', code, '--'];

  it('fails with the last line of output when the trainer exits non-zero', async () => {
    const trainer = new LocalTrainer({
      jobsDir,
      command: {
        sd15: node(
          "if (!process.argv.includes('--config_file')) process.exit(9);" +
            "console.log('loading model'); console.error('Traceback (most recent call last):\\ntorch.OutOfMemoryError: CUDA out of memory.'); process.exit(3)",
        ),
      },
    });
    const ref = await trainer.launch(spec('job-crash', { dryRun: false }));
    const state = await waitFor(trainer, ref, isTerminal);
    expect(state.status).toBe('Failed');
    expect(state.failureReason).toBe(
      `sd-scripts exited with code 3: torch.OutOfMemoryError: CUDA out of memory. (exit code 1; see ${path.join(jobsDir, 'job-crash', 'log.txt')})`,
    );
    expect(await fs.readFile(path.join(jobsDir, 'job-crash', 'output', 'failure'), 'utf8')).toBe(
      'sd-scripts exited with code 3: torch.OutOfMemoryError: CUDA out of memory.\n',
    );
  });

  it('fails with the reason when the trainer command cannot start', async () => {
    const trainer = new LocalTrainer({ python, jobsDir, command: { sd15: [path.join(tmp, 'no-such-accelerate'), 'launch'] } });
    const ref = await trainer.launch(spec('job-missing-command', { dryRun: false }));
    const state = await waitFor(trainer, ref, isTerminal);
    expect(state.status).toBe('Failed');
    expect(state.failureReason).toBe(
      `could not start ${path.join(tmp, 'no-such-accelerate')}: No such file or directory (exit code 1; see ${path.join(jobsDir, 'job-missing-command', 'log.txt')})`,
    );
  });

  it('fails a trainer that exits 0 without writing the LoRA', async () => {
    const trainer = new LocalTrainer({ python, jobsDir, command: { sd15: node("console.log('done')") } });
    const ref = await trainer.launch(spec('job-nothing', { dryRun: false }));
    const state = await waitFor(trainer, ref, isTerminal);
    expect(state).toMatchObject({ status: 'Failed' });
    expect(state.failureReason).toMatch(/^sd-scripts exited 0 but wrote no demo\.safetensors in .*\/job-nothing\/model \(exit code 1;/);
  });

  it('kills a trainer that ignores SIGTERM after the grace period', async () => {
    const trainer = new LocalTrainer({
      jobsDir,
      command: {
        sd15: node("process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.log('ready:', process.pid); setInterval(() => {}, 1000)"),
      },
      env: { LORA_STOP_GRACE_MS: '300' },
    });
    const ref = await trainer.launch(spec('job-stubborn', { dryRun: false }));
    // Only once it printed "ready" has it installed its SIGTERM handler (the log's first line shows its code).
    await waitForLog('job-stubborn', /^ready: \d+$/m);
    const trainerPid = Number(/^ready: (\d+)$/m.exec(await fs.readFile(path.join(jobsDir, 'job-stubborn', 'log.txt'), 'utf8'))![1]);
    const { childPid } = (await readStatusFile(path.join(jobsDir, 'job-stubborn')))!;
    const started = Date.now();
    await expect(trainer.stop(ref)).resolves.toMatchObject({ status: 'Stopped' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    // Both the entrypoint and the trainer it started are gone.
    expect(isRunning(childPid)).toBe(false);
    expect(isRunning(trainerPid)).toBe(false);
    expect((await readStatusFile(path.join(jobsDir, 'job-stubborn')))!.signal).toBe('SIGKILL');
    const log = await fs.readFile(path.join(jobsDir, 'job-stubborn', 'log.txt'), 'utf8');
    expect(log).toContain('entrypoint: received SIGTERM, stopping the trainer');
    expect(log).toContain('ignoring SIGTERM');
    expect(log).toContain('still running after the grace period: SIGKILL');
  });
});
