/**
 * `npm run test:kohya`: the pipeline trains with real Kohya-SS sd-scripts (scripts/setup-kohya.sh
 * installs it outside the clone: sd-scripts at the Dockerfile's pin, torch on CPU, an offline CLIP
 * tokenizer and a random SD 1.5 checkpoint made by sd-scripts' own library), through the real
 * Temporal dev server, the local trainer (not the dry run) and `--device cpu`: real progress in the
 * status, both epoch files, a verified and registered LoRA; a failing job whose reason is the real
 * error line; a cancel mid-training that leaves no process behind. Minutes, on two cores.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { readRunSnapshot, startRun } from '../../client/runs';
import { bucketSettings, selectBucketNoUpscale } from '../../lib/kohya/buckets';
import { compiledScript } from '../../adapters/project-paths';
import { verifyLora } from '../../lib/lora/verify';
import { readSafetensorsHeader } from '../../lib/safetensors';
import { mulberry32 } from '../../lib/random';
import type { TrainingRunInput } from '../../lib/pipeline/input';
import type { RunOutcome, TrainingProgress } from '../../lib/pipeline/status';
import { writeExampleDataset } from '../../scripts/example-dataset';
import { WorkerEnv } from '../../worker/config';
import { createDeps, createLoraWorker, type LoraWorker } from '../../worker/create';
import { startTemporal } from '../support/temporal';

const TASK_QUEUE = 'real-sd-scripts-test';

/** What scripts/setup-kohya.sh installed (its kohya.json). */
interface KohyaInstall {
  sdScripts: string;
  accelerate: string;
  tokenizer: string;
  checkpoint: string;
}

let env: TestWorkflowEnvironment;
let worker: LoraWorker;
let workerRun: Promise<void>;
let tmp: string;
let kohya: KohyaInstall;

async function readInstall(): Promise<KohyaInstall> {
  const home = process.env.LORA_KOHYA_HOME ?? path.join(os.homedir(), '.cache', 'lora-pipeline', 'kohya-fb4eb3b9');
  const file = path.join(home, 'kohya.json');
  const text = await fs.readFile(file, 'utf8').catch(() => {
    throw new Error(`${file} is missing: run "bash scripts/setup-kohya.sh" (npm run test:kohya does)`);
  });
  return JSON.parse(text) as KohyaInstall;
}

beforeAll(async () => {
  kohya = await readInstall();
  env = await startTemporal();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'lora-kohya-'));
  const config = WorkerEnv.parse({
    LORA_WORK_STORE: pathToFileURL(path.join(tmp, 'work')).href,
    LORA_STORE: pathToFileURL(path.join(tmp, 'store')).href,
    LORA_JOBS_DIR: path.join(tmp, 'jobs'),
    // The README's command: accelerate launch, one process, as the image runs it.
    LORA_KOHYA_COMMAND_SD15: JSON.stringify([
      kohya.accelerate, 'launch', '--num_processes', '1', '--num_machines', '1', '--num_cpu_threads_per_process', '2',
      '--dynamo_backend', 'no', '--mixed_precision', 'no', path.join(kohya.sdScripts, 'train_network.py'),
    ]),
  });
  const aws = { s3: new S3Client({ region: 'us-east-1' }), sagemaker: new SageMakerClient({ region: 'us-east-1' }) };
  // As the image sets it: the tokenizers built offline; nothing may reach for the model hub.
  const trainerEnv = { LORA_TOKENIZER_CACHE_DIR: kohya.tokenizer, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' };
  worker = await createLoraWorker({ connection: env.nativeConnection, taskQueue: TASK_QUEUE, deps: createDeps(config, aws, trainerEnv) });
  workerRun = worker.run();
});

afterAll(async () => {
  if (worker) {
    worker.shutdown();
    await workerRun;
  }
  await env?.teardown();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function startRealRun(runName: string, kohyaOptions: Record<string, unknown> = {}): Promise<WorkflowHandle> {
  const dataset = path.join(tmp, `${runName}-dataset`);
  await writeExampleDataset(dataset, { count: 2 });
  const input: TrainingRunInput = {
    runName,
    dataset,
    triggerWord: 'lrdemo',
    repeats: 1,
    baseModel: { family: 'sd15', checkpoint: kohya.checkpoint },
    preprocess: { size: 256 },
    trainer: { kind: 'local', dryRun: false },
    training: { epochs: 2, networkDim: 4, networkAlpha: 2, device: 'cpu', kohya: { seed: 7, ...kohyaOptions } },
    pollInterval: '1s',
  };
  return startRun(env.client, input, { taskQueue: TASK_QUEUE, workflowId: `${runName}-${Date.now()}` });
}

/** The trainer's processes: every process whose command line names this test's job folder or sd-scripts. */
async function trainerProcesses(): Promise<{ pid: number; command: string; peakKiB: number }[]> {
  const found: { pid: number; command: string; peakKiB: number }[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const command = await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (!command.includes(tmp) && !command.includes(kohya.sdScripts)) continue;
    const status = await fs.readFile(`/proc/${entry}/status`, 'utf8').catch(() => '');
    found.push({ pid: Number(entry), command: command.replace(/\0/g, ' ').trim(), peakKiB: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) });
  }
  return found;
}

interface Watched {
  progress: TrainingProgress[];
  peakKiB: number;
}

/** Polls the run as `lora status` does until `done` holds or it ends, keeping every progress seen and the trainer's peak memory. */
async function watch(handle: WorkflowHandle, done: (watched: Watched) => boolean = () => false, timeoutMs = 15 * 60_000): Promise<Watched> {
  const watched: Watched = { progress: [], peakKiB: 0 };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const snapshot = await readRunSnapshot(env.client, handle.workflowId);
    for (const activity of snapshot.activities) {
      const progress = activity.progress?.training?.progress;
      if (progress?.step !== undefined) watched.progress.push(progress);
    }
    const processes = await trainerProcesses();
    watched.peakKiB = Math.max(watched.peakKiB, ...processes.map((p) => p.peakKiB));
    if (done(watched) || snapshot.execution !== 'RUNNING') return watched;
    if (Date.now() > deadline) throw new Error(`run ${handle.workflowId} still in stage ${snapshot.status.stage}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function failureOf(handle: WorkflowHandle): Promise<string> {
  const error = await handle.result().then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(WorkflowFailedError);
  let current = error as Error;
  while (current.cause instanceof Error) current = current.cause;
  return current.message;
}

test('trains with real sd-scripts on CPU: real progress, both epoch files, a verified and registered LoRA', async () => {
  const started = Date.now();
  const handle = await startRealRun('real');
  const watched = await watch(handle);
  const outcome: RunOutcome = await handle.result();
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  console.log(`real sd-scripts: ${seconds} s for the whole run, trainer peak ${(watched.peakKiB / 1024 / 1024).toFixed(1)} GiB RSS`);

  expect(outcome.stage).toBe('completed');
  // Progress as sd-scripts printed it: steps of 2 images × 1 repeat × 2 epochs, a real loss.
  expect(watched.progress.length).toBeGreaterThan(0);
  expect(Math.max(...watched.progress.map((p) => p.step ?? 0))).toBeGreaterThanOrEqual(1);
  expect(watched.progress.every((p) => p.totalSteps === 4)).toBe(true);
  expect(watched.progress.some((p) => typeof p.loss === 'number' && p.loss > 0)).toBe(true);

  // Both epoch files in the job's output, and the final one registered, verified as a real LoRA.
  const jobDir = path.join(tmp, 'jobs', outcome.job!.jobName);
  expect((await fs.readdir(path.join(jobDir, 'model'))).sort()).toEqual(['real-000001.safetensors', 'real.safetensors']);
  const log = await fs.readFile(path.join(jobDir, 'log.txt'), 'utf8');
  expect(log).toMatch(/steps: 100%\|[^|]*\| 4\/4/);
  console.log(log.split(/\r|\n/).filter((line) => line.startsWith('steps:')).slice(-1)[0]);
  const lora = await fs.readFile(path.join(tmp, 'store', 'models', 'Lora', 'real.safetensors'));
  const verified = verifyLora(lora, { family: 'sd15', networkDim: 4 });
  // sd-scripts' SD 1.5 LoRA: 72 text encoder and 192 U-Net modules, F32, its own metadata.
  expect(verified.modules).toBe(264);
  expect(verified.metadata).toMatchObject({ ss_network_dim: '4', ss_network_alpha: '2.0', ss_output_name: 'real', ss_num_epochs: '2', ss_steps: '4' });
  expect(outcome.lora).toMatchObject({ name: 'real', sizeBytes: lora.length });
  console.log(`registered ${outcome.lora?.name} at ${outcome.lora?.uri}: ${verified.modules} modules, sha256 ${outcome.lora?.sha256.slice(0, 12)}, AutoV2 ${outcome.lora?.autoV2}`);
  const record = JSON.parse(await fs.readFile(path.join(tmp, 'store', 'registry', 'real.json'), 'utf8'));
  expect(record).toMatchObject({ name: 'real', baseModel: { family: 'sd15', checkpoint: kohya.checkpoint }, metrics: { steps: 4, epochs: 2 } });

  // The dry-run trainer, given the very config sd-scripts ran with, writes the same LoRA but for its
  // weights: the same tensors, dtypes and shapes, the same metadata keys and, but for what only
  // this run could know (times, hashes, ids), the same values. So the stand-in cannot drift away.
  const dryRun = await dryRunLike(path.join(jobDir, 'output', 'data', 'config.toml'));
  const real = readSafetensorsHeader(lora);
  const fake = readSafetensorsHeader(dryRun);
  const shapes = (header: typeof real) => Object.fromEntries(Object.entries(header.tensors).map(([name, info]) => [name, `${info.dtype} [${info.shape.join(', ')}]`]));
  expect(shapes(fake)).toEqual(shapes(real));
  const RUN_SPECIFIC = ['ss_session_id', 'ss_training_started_at', 'ss_training_finished_at', 'modelspec.date', 'sshs_model_hash', 'sshs_legacy_hash', 'ss_sd_scripts_commit_hash', 'ss_sd_model_hash', 'ss_new_sd_model_hash'];
  const comparable = (metadata: Record<string, string>) => Object.fromEntries(Object.entries(metadata).filter(([key]) => !RUN_SPECIFIC.includes(key)));
  expect(comparable(fake.metadata)).toEqual({ ...comparable(real.metadata), ss_dry_run: 'true', 'modelspec.description': fake.metadata['modelspec.description'] });
  expect(Object.keys(fake.metadata).sort()).toEqual([...Object.keys(real.metadata), 'ss_dry_run', 'modelspec.description'].sort());
}, 20 * 60_000);

/** The dry-run trainer's final LoRA for a config sd-scripts ran with (its output_dir moved aside). */
async function dryRunLike(configFile: string): Promise<Buffer> {
  const out = path.join(tmp, 'dry-run-like');
  const config = (await fs.readFile(configFile, 'utf8')).replace(/^output_dir = .*$/m, `output_dir = ${JSON.stringify(out)}`);
  const copy = path.join(tmp, 'dry-run-like.toml');
  await fs.writeFile(copy, config);
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, [compiledScript('trainers/dry-run-kohya'), '--config_file', copy], { env: { ...process.env, LORA_FAMILY: 'sd15', DRY_RUN_STEP_MS: '0' } }, (error, _stdout, stderr) =>
      error ? reject(new Error(`dry run failed: ${stderr}`)) : resolve(),
    );
  });
  const name = /^output_name = "(.*)"$/m.exec(config)?.[1] ?? '';
  return fs.readFile(path.join(out, `${name}.safetensors`));
}

test('a failing job records the real error line, not accelerate\'s', async () => {
  // xformers is not installed here (it needs CUDA): sd-scripts raises ImportError after loading the model.
  const handle = await startRealRun('broken', { xformers: true });
  const reason = await failureOf(handle);
  console.log(`failure recorded: ${reason}`);
  expect(reason).toMatch(/sd-scripts exited with code 1: ImportError: No xformers/);
  expect(reason).not.toContain('CalledProcessError');
}, 20 * 60_000);

test('a cancel mid-training stops every trainer process', async () => {
  const handle = await startRealRun('cancelled');
  await watch(handle, (watched) => watched.progress.some((p) => (p.step ?? 0) >= 1));
  expect((await trainerProcesses()).length).toBeGreaterThan(0);
  await handle.cancel();
  await handle.result().catch(() => undefined);
  // The workflow's cleanup waited for the stop to be confirmed: nothing of the job is left running.
  expect(await trainerProcesses()).toEqual([]);
}, 20 * 60_000);

test('bucket_no_upscale: every bucket preprocessing picks is the one sd-scripts picks, for 1,000 sizes per family', async () => {
  const random = mulberry32(20261207);
  const sizes: [number, number][] = Array.from({ length: 1000 }, (_, i) => {
    // Mostly photo-like sizes, some tiny or extreme, some already on the step.
    const side = () => (i % 10 === 0 ? 64 * (1 + Math.floor(random() * 40)) : 64 + Math.floor(random() * 5000));
    return [side(), side()];
  });
  for (const settings of [bucketSettings('sd15'), bucketSettings('sdxl')]) {
    const reference = await runPython(path.join(__dirname, '..', 'support', 'kohya_buckets.py'), { resolution: settings.resolution, step: settings.step, sizes });
    let compared = 0;
    sizes.forEach(([width, height], i) => {
      const theirs = reference[i] as { bucket?: number[]; resized?: number[]; error?: string };
      if (theirs.error) return; // sd-scripts fails on this size itself
      const ours = selectBucketNoUpscale(settings, width, height);
      expect({ size: [width, height], bucket: [ours.bucket.width, ours.bucket.height], resized: [ours.resized.width, ours.resized.height] }).toEqual({
        size: [width, height],
        bucket: theirs.bucket,
        resized: theirs.resized,
      });
      compared += 1;
    });
    // Written at its bucket, an image is a fixed point: sd-scripts neither resizes nor crops it again.
    const written = sizes.map(([width, height]) => selectBucketNoUpscale(settings, width, height).bucket).filter((b) => b.width > 0 && b.height > 0);
    const again = await runPython(path.join(__dirname, '..', 'support', 'kohya_buckets.py'), { resolution: settings.resolution, step: settings.step, sizes: written.map((b) => [b.width, b.height]) });
    expect(again.map((r) => (r as { bucket: number[] }).bucket)).toEqual(written.map((b) => [b.width, b.height]));
    console.log(`bucket_no_upscale at ${settings.resolution}: ${compared} of ${sizes.length} sizes identical to sd-scripts (the rest fail in sd-scripts too)`);
    expect(compared).toBeGreaterThan(950);
  }
}, 5 * 60_000);

/** Runs a helper with the kohya venv's Python in sd-scripts' folder, JSON in and out. */
function runPython(script: string, input: unknown): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(path.join(path.dirname(kohya.accelerate), 'python'), [script], { cwd: kohya.sdScripts, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${script}: ${stderr || error.message}`));
      else resolve(JSON.parse(stdout) as unknown[]);
    });
    child.stdin?.end(JSON.stringify(input));
  });
}
