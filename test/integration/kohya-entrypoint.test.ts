/**
 * The SageMaker training image's entrypoint (docker/kohya/entrypoint.py), run with the venv's
 * Python against a temporary /opt/ml layout. sd-scripts is faked: a stand-in `accelerate` on PATH
 * records its arguments and runs the dry-run trainer (dist/trainers/dry-run-kohya.js), which prints
 * kohya-style output and writes a LoRA; other tests give a scripted trainer via LORA_KOHYA_COMMAND.
 * The hyperparameters are the ones createTrainingJobRequest sends, so the contract is tested end to end.
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { parse as parseToml } from 'smol-toml';
import { ENTRYPOINT_SCRIPT } from '../../adapters/trainer/entrypoint';
import { createTrainingJobRequest } from '../../adapters/trainer/sagemaker';
import type { TrainingJobSpec } from '../../adapters/trainer/types';
import { compiledScript, PROJECT_ROOT } from '../../adapters/project-paths';
import { kohyaOptionsFor } from '../../lib/kohya/config';
import { KohyaOutputParser, progressOfContainer } from '../../lib/kohya/progress';
import { trainingMetrics } from '../../lib/lora/registry';
import { readSafetensorsHeader } from '../../lib/safetensors';
import { verifyLora } from '../../lib/lora/verify';
import { TrainingRunInput } from '../../lib/pipeline/input';
import { installedTools } from '../../scripts/tools';

const DRY_RUN = compiledScript('trainers/dry-run-kohya');
const IMAGES = 3;
const REPEATS = 4;
/** The trainer reads each image's size (its bucket), as sd-scripts does: a real, small picture. */
const TINY_PNG = sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).png().toBuffer();

let tmp: string;
let python: string;
let binDir: string;

beforeAll(async () => {
  const source = path.join(PROJECT_ROOT, 'trainers', 'dry-run-kohya.ts');
  if ((statSync(DRY_RUN, { throwIfNoEntry: false })?.mtimeMs ?? 0) < statSync(source).mtimeMs) {
    throw new Error(`${DRY_RUN} is missing or older than ${source}: run "npx tsc -p tsconfig.build.json" (npm test does)`);
  }
  python = installedTools().python;
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kohya-entrypoint-'));
  // A stand-in for `accelerate launch … <script> --config_file X`: records argv, runs the dry run.
  binDir = path.join(tmp, 'bin');
  await fs.mkdir(binDir);
  await fs.writeFile(
    path.join(binDir, 'accelerate'),
    [
      `#!${python}`,
      'import json, os, sys',
      'args = sys.argv[1:]',
      'with open(os.environ["FAKE_ACCELERATE_ARGS"], "w") as f: json.dump(args, f)',
      'script = next(i for i, a in enumerate(args) if a.endswith(".py"))',
      'os.execv(os.environ["FAKE_NODE"], [os.environ["FAKE_NODE"], os.environ["FAKE_TRAINER"], *args[script + 1:]])',
    ].join('\n'),
    { mode: 0o755 },
  );
});

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

interface MlRoot {
  root: string;
  path: (...parts: string[]) => string;
}

/** An /opt/ml as SageMaker lays it out: hyperparameters and the input channels. */
async function mlRoot(name: string, hyperParameters: Record<string, string>, options: { images?: number; model?: string } = {}): Promise<MlRoot> {
  const root = path.join(tmp, name);
  const at = (...parts: string[]) => path.join(root, ...parts);
  await fs.mkdir(at('input', 'config'), { recursive: true });
  await fs.writeFile(at('input', 'config', 'hyperparameters.json'), JSON.stringify(hyperParameters));
  const folder = at('input', 'data', 'dataset', `${REPEATS}_style`);
  await fs.mkdir(folder, { recursive: true });
  for (let i = 0; i < (options.images ?? IMAGES); i++) {
    await fs.writeFile(path.join(folder, `img${i}.png`), await TINY_PNG);
    await fs.writeFile(path.join(folder, `img${i}.txt`), 'style, a picture');
  }
  if (options.model) {
    await fs.mkdir(at('input', 'data', 'model'), { recursive: true });
    await fs.writeFile(at('input', 'data', 'model', options.model), 'checkpoint bytes');
  }
  return { root, path: at };
}

/** The hyperparameters CreateTrainingJob would carry for this run (`sagemaker` adds to the job's settings). */
function hyperParametersFor(input: TrainingRunInput, sagemaker: Partial<NonNullable<TrainingJobSpec['sagemaker']>> = {}): Record<string, string> {
  const run = TrainingRunInput.parse(input);
  const spec: TrainingJobSpec = {
    jobName: 'lora-job',
    runId: 'run-1',
    datasetUri: 's3://bucket/datasets/x/',
    family: run.baseModel.family,
    checkpoint: run.baseModel.checkpoint,
    outputName: run.runName,
    kohyaConfig: kohyaOptionsFor(run),
    sagemaker: {
      imageUri: 'image',
      roleArn: 'arn:aws:iam::123456789012:role/r',
      instanceType: 'ml.g5.2xlarge',
      volumeSizeGb: 100,
      maxRuntimeSeconds: 3600,
      outputS3Uri: 's3://bucket/training',
      checkpointS3Uri: 's3://bucket/checkpoints/lora-job/',
      ...sagemaker,
    },
  };
  return createTrainingJobRequest(spec).HyperParameters!;
}

interface Run {
  code: number | null;
  output: string;
  pid: number;
}

/**
 * Runs the entrypoint to its end as SageMaker does (`<entrypoint> train`), with the ML root moved
 * to the test's folder; `whileRunning` may act on it (e.g. send SIGTERM).
 */
async function runEntrypoint(ml: MlRoot, env: Record<string, string> = {}, whileRunning?: (pid: number) => Promise<void>): Promise<Run> {
  // Its own process group, as in the container (PID 1) and under the local supervisor.
  const child = spawn(python, [ENTRYPOINT_SCRIPT, 'train', '--ml-root', ml.root], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      PATH: `${binDir}${path.delimiter}${process.env.PATH}`,
      LORA_SD_SCRIPTS: '/opt/sd-scripts',
      LORA_PROGRESS_INTERVAL_SECONDS: '0.1',
      FAKE_ACCELERATE_ARGS: ml.path('accelerate-args.json'),
      FAKE_NODE: process.execPath,
      FAKE_TRAINER: DRY_RUN,
      DRY_RUN_STEP_MS: '1',
      ...env,
    },
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const closed = new Promise<number | null>((resolve) => child.once('close', resolve));
  try {
    await whileRunning?.(child.pid!);
  } catch (err) {
    process.kill(-child.pid!, 'SIGKILL');
    await closed;
    throw err;
  }
  return { code: await closed, output, pid: child.pid! };
}

async function readText(file: string): Promise<string | undefined> {
  return fs.readFile(file, 'utf8').catch(() => undefined);
}

async function waitForFile(file: string, ready: (text: string) => boolean, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await readText(file);
    if (text !== undefined && ready(text)) return text;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${file}; last: ${text}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('Kohya entrypoint (SageMaker contract)', () => {
  it('trains an SDXL LoRA from the S3 model channel with the values typed as sd-scripts expects', async () => {
    // An all-digit run name: its output_name must stay a string, not become the number 2024.
    const hyperParameters = hyperParametersFor({
      runName: '2024',
      dataset: '/unused',
      baseModel: { family: 'sdxl', checkpoint: 's3://bucket/models/sdxl_base.safetensors' },
      training: { epochs: 2, networkDim: 8, networkAlpha: 4 },
    });
    expect(hyperParameters).toMatchObject({ network_alpha: '4.0', network_dim: '8', lora_family: 'sdxl', lora_model_file: 'sdxl_base.safetensors' });
    const ml = await mlRoot('sdxl', hyperParameters, { model: 'sdxl_base.safetensors' });

    // As the image sets it: the tokenizers it carries, so the job needs no model hub.
    const run = await runEntrypoint(ml, { LORA_TOKENIZER_CACHE_DIR: '/opt/tokenizers' });
    expect(run.output).toContain('model saved.');
    expect(run.code).toBe(0);

    // accelerate ran the SDXL script from LORA_SD_SCRIPTS with the config's mixed precision.
    const accelerateArgs = JSON.parse(await fs.readFile(ml.path('accelerate-args.json'), 'utf8')) as string[];
    expect(accelerateArgs[0]).toBe('launch');
    expect(accelerateArgs.join(' ')).toContain('--mixed_precision fp16 /opt/sd-scripts/sdxl_train_network.py --config_file');

    const tomlText = await fs.readFile(ml.path('output', 'data', 'config.toml'), 'utf8');
    const toml = parseToml(tomlText);
    expect(toml).toMatchObject({
      output_name: '2024',
      resolution: '1024,1024',
      caption_extension: '.txt',
      no_half_vae: true,
      network_dim: 8,
      max_train_epochs: 2,
      train_data_dir: ml.path('input', 'data', 'dataset'),
      output_dir: ml.path('model'),
      pretrained_model_name_or_path: ml.path('input', 'data', 'model', 'sdxl_base.safetensors'),
      tokenizer_cache_dir: '/opt/tokenizers',
    });
    // Floats keep their point, integers do not: sd-scripts takes the TOML types as they are.
    expect(tomlText).toMatch(/^network_alpha = 4\.0$/m);
    expect(tomlText).toMatch(/^text_encoder_lr = 1e-05$/m);
    expect(tomlText).toMatch(/^min_bucket_reso = 512$/m);
    expect(toml).not.toHaveProperty('lora_family');

    const steps = 2 * IMAGES * REPEATS;
    expect((await fs.readdir(ml.path('model'))).sort()).toEqual(['2024-000001.safetensors', '2024.safetensors']);
    const lora = verifyLora(await fs.readFile(ml.path('model', '2024.safetensors')), { family: 'sdxl', networkDim: 8 });
    expect(lora.metadata).toMatchObject({ ss_base_model_version: 'sdxl_base_v1-0', ss_steps: String(steps) });
    const progress = JSON.parse(await fs.readFile(ml.path('checkpoints', 'progress.json'), 'utf8'));
    expect(progress).toMatchObject({ step: steps, totalSteps: steps, epoch: 2, totalEpochs: 2 });
    expect(progress.loss).toBeGreaterThan(0);
    expect(await readText(ml.path('output', 'failure'))).toBeUndefined();
  });

  it('passes a model id through when the checkpoint is not in S3', async () => {
    const hyperParameters = hyperParametersFor({ runName: 'plain', dataset: '/unused', training: { epochs: 1, networkDim: 4, networkAlpha: 2 } });
    const ml = await mlRoot('model-id', hyperParameters);
    const run = await runEntrypoint(ml);
    expect(run.code).toBe(0);
    const toml = parseToml(await fs.readFile(ml.path('output', 'data', 'config.toml'), 'utf8'));
    expect(toml).toMatchObject({ pretrained_model_name_or_path: 'runwayml/stable-diffusion-v1-5', clip_skip: 2, resolution: '512,512' });
    const accelerateArgs = JSON.parse(await fs.readFile(ml.path('accelerate-args.json'), 'utf8')) as string[];
    expect(accelerateArgs).toContain('/opt/sd-scripts/train_network.py');
  });

  it('fails with "No data found" although sd-scripts exits 0', async () => {
    const ml = await mlRoot('empty', hyperParametersFor({ runName: 'empty', dataset: '/unused' }), { images: 0 });
    const run = await runEntrypoint(ml);
    expect(run.output).toContain('No data found. Please verify arguments');
    expect(run.code).toBe(1);
    expect(await fs.readFile(ml.path('output', 'failure'), 'utf8')).toBe(
      `No data found: sd-scripts found no images in <repeats>_<name>/ folders under ${ml.path('input', 'data', 'dataset')}\n`,
    );
  });

  it('fails with the trainer\'s last line when it crashes', async () => {
    const ml = await mlRoot('crash', hyperParametersFor({ runName: 'crash', dataset: '/unused' }));
    const crash = "console.log('loading model'); console.error('Traceback (most recent call last):\\ntorch.OutOfMemoryError: CUDA out of memory.'); process.exit(3)";
    const run = await runEntrypoint(ml, { LORA_KOHYA_COMMAND: JSON.stringify([process.execPath, '-e', crash, '--']) });
    expect(run.code).toBe(1);
    expect(await fs.readFile(ml.path('output', 'failure'), 'utf8')).toBe('sd-scripts exited with code 3: torch.OutOfMemoryError: CUDA out of memory.\n');
  });

  it('fails with the trainer\'s own error under accelerate launch, not accelerate\'s, and unwraps sd-scripts\' log lines', async () => {
    const ml = await mlRoot('accelerate-crash', hyperParametersFor({ runName: 'accelerate-crash', dataset: '/unused' }));
    // As sd-scripts' rich logger decides its width, and as accelerate reports a child that failed.
    const crash = [
      'console.log(`columns=${process.env.COLUMNS}`);',
      "console.error('Traceback (most recent call last):\\nImportError: No xformers / xformersがインストールされていないようです');",
      "console.error('Traceback (most recent call last):\\n  File \"/venv/bin/accelerate\", line 8\\nsubprocess.CalledProcessError: Command \\'[python, train_network.py]\\' returned non-zero exit status 1.');",
      'process.exit(1)',
    ].join(' ');
    const run = await runEntrypoint(ml, { LORA_KOHYA_COMMAND: JSON.stringify([process.execPath, '-e', crash, '--']) });
    expect(run.code).toBe(1);
    expect(run.output).toContain('columns=320\n');
    expect(await fs.readFile(ml.path('output', 'failure'), 'utf8')).toBe('sd-scripts exited with code 1: ImportError: No xformers / xformersがインストールされていないようです\n');
  });

  it.each([
    ['a missing hyperparameters file', undefined, /^\S+hyperparameters\.json is missing/],
    ['an unknown family', { lora_family: 'sd3', output_name: 'x' }, /^hyperparameter lora_family must be one of sd15, sdxl, got 'sd3'$/],
    ['a value of the wrong type', { lora_family: 'sd15', lora_string_options: 'output_name', output_name: 'x', network_dim: 'thirty-two' }, /^hyperparameter network_dim='thirty-two': expected a number or true\/false/],
    ['a path the entrypoint sets itself', { lora_family: 'sd15', output_name: 'x', output_dir: '/tmp/x' }, /^hyperparameters set output_dir, which the entrypoint sets itself$/],
  ])('fails on %s with a one-line reason', async (name, hyperParameters, reason) => {
    const ml = await mlRoot(`bad-${name.replace(/\W+/g, '-')}`, hyperParameters ?? {});
    if (!hyperParameters) await fs.rm(ml.path('input', 'config', 'hyperparameters.json'));
    const run = await runEntrypoint(ml);
    expect(run.code).toBe(1);
    const failure = await fs.readFile(ml.path('output', 'failure'), 'utf8');
    expect(failure.split('\n')).toHaveLength(2);
    expect(failure.trim()).toMatch(reason);
  });

  it('reports progress as lib/kohya/progress.ts reads it, NaN loss included', async () => {
    // Recorded-style sd-scripts output: totals, epochs on stdout, the tqdm bar redrawn with \r on stderr.
    const stdout = [
      'num train images * repeats / 学習画像の数×繰り返し回数: 40',
      'num epochs / epoch数: 2',
      'total optimization steps / 学習ステップ数: 40',
      '',
      'epoch 1/2',
      'saving checkpoint: /opt/ml/model/x-000001.safetensors',
      '',
      'epoch 2/2',
    ];
    const stderr = [
      'steps:   0%|          | 0/40 [00:00<?, ?it/s]',
      '\rsteps:  50%|█████     | 20/40 [00:10<00:10, 2.00it/s, avr_loss=0.0871]',
      '\rsteps:  75%|███████▌  | 30/40 [00:15<00:05, 2.00it/s, avr_loss=nan]',
      '\rsteps: 100%|██████████| 40/40 [00:20<00:00, 2.00it/s, avr_loss=0.0712]\n',
    ];
    const script = `process.stdout.write(${JSON.stringify(stdout.join('\n') + '\n')}); process.stderr.write(${JSON.stringify(stderr.join(''))});`;
    const ml = await mlRoot('progress', hyperParametersFor({ runName: 'progress', dataset: '/unused' }));
    await runEntrypoint(ml, { LORA_KOHYA_COMMAND: JSON.stringify([process.execPath, '-e', script, '--']) });

    const parser = new KohyaOutputParser();
    parser.feed(stdout.join('\n') + '\n', 'stdout');
    parser.feed(stderr.join(''), 'stderr');
    const expected = parser.end().progress;
    expect(expected).toEqual({ step: 40, totalSteps: 40, epoch: 2, totalEpochs: 2, lossIsNaN: true, etaSeconds: 0 });
    const { updatedAt, ...written } = JSON.parse(await fs.readFile(ml.path('checkpoints', 'progress.json'), 'utf8'));
    expect(written).toEqual(expected);
    expect(Date.parse(updatedAt)).not.toBeNaN();
  });

  it('writes progress while training runs, and stops the trainer on SIGTERM', async () => {
    const ml = await mlRoot('sigterm', hyperParametersFor({ runName: 'sigterm', dataset: '/unused', training: { epochs: 3 } }));
    const run = await runEntrypoint(ml, { DRY_RUN_STEP_MS: '300' }, async (pid) => {
      const progress = JSON.parse(await waitForFile(ml.path('checkpoints', 'progress.json'), (text) => /"step": [1-9]/.test(text)));
      expect(progress.step).toBeLessThan(progress.totalSteps);
      // SageMaker's StopTrainingJob signals only the container's PID 1: the entrypoint.
      process.kill(pid, 'SIGTERM');
    });
    expect(run.code).toBe(143);
    expect(run.output).toContain('entrypoint: received SIGTERM, stopping the trainer');
    expect(run.output).toContain('DRY RUN: received SIGTERM, stopping');
    expect(await fs.readFile(ml.path('output', 'failure'), 'utf8')).toBe('stopped: the job received SIGTERM before training finished\n');
    await expect(fs.access(ml.path('model', 'sigterm.safetensors'))).rejects.toThrow();
  });

  it('with lora_resume (managed spot) trains into checkpoints/, resumes from the newest state and copies the LoRA out', async () => {
    const hyperParameters = hyperParametersFor({ runName: 'spot', dataset: '/unused', training: { epochs: 3 } }, { spot: { maxWaitSeconds: 7200 } });
    expect(hyperParameters.lora_resume).toBe('true');
    const ml = await mlRoot('spot', hyperParameters);
    // What an interrupted first attempt left behind, synced back from the checkpoint prefix.
    for (const state of ['spot-000001-state', 'spot-000002-state', 'other-000009-state']) {
      await fs.mkdir(ml.path('checkpoints', 'output', state), { recursive: true });
    }
    for (const epochFile of ['spot-000001.safetensors', 'spot-000002.safetensors']) await fs.writeFile(ml.path('checkpoints', 'output', epochFile), 'from the first attempt');
    const run = await runEntrypoint(ml);
    expect(run.code).toBe(0);
    expect(run.output).toContain(`entrypoint: resuming from ${ml.path('checkpoints', 'output', 'spot-000002-state')}`);
    const toml = parseToml(await fs.readFile(ml.path('output', 'data', 'config.toml'), 'utf8'));
    expect(toml).toMatchObject({
      output_dir: ml.path('checkpoints', 'output'),
      save_state: true,
      save_last_n_epochs_state: 1,
      resume: ml.path('checkpoints', 'output', 'spot-000002-state'),
    });
    // The first attempt's epoch files and this attempt's final file, copied out for SageMaker to upload.
    expect((await fs.readdir(ml.path('model'))).sort()).toEqual(['spot-000001.safetensors', 'spot-000002.safetensors', 'spot.safetensors']);
  });

  it('after a resume, progress counts the whole run although sd-scripts\' bar restarts at 0', async () => {
    const hyperParameters = hyperParametersFor({ runName: 'respot', dataset: '/unused', training: { epochs: 3 } }, { spot: { maxWaitSeconds: 7200 } });
    const ml = await mlRoot('respot', hyperParameters);
    // Three images × 4 repeats: 12 steps an epoch. The first attempt saved its state after epoch 1.
    await fs.mkdir(ml.path('checkpoints', 'output', 'respot-000001-state'), { recursive: true });
    const run = await runEntrypoint(ml);
    expect(run.code).toBe(0);
    // As sd-scripts does, the stand-in restarted its bar: its last redraw says 24 of 36.
    expect(run.output).toMatch(/\| 24\/36 \[/);
    expect(run.output).not.toMatch(/\| 36\/36 \[/);
    const progress = JSON.parse(await fs.readFile(ml.path('checkpoints', 'progress.json'), 'utf8'));
    expect(progress).toMatchObject({ step: 36, totalSteps: 36, epoch: 3, totalEpochs: 3 });
    // It saved a state after epoch 2 and kept only the newest (save_last_n_epochs_state = 1).
    expect((await fs.readdir(ml.path('checkpoints', 'output'))).filter((name) => name.endsWith('-state'))).toEqual(['respot-000002-state']);
    // ss_steps holds only this process's steps (as sd-scripts' does); registration takes the larger count.
    const lora = await fs.readFile(ml.path('model', 'respot.safetensors'));
    const metadata = readSafetensorsHeader(lora).metadata;
    expect(metadata.ss_steps).toBe('24');
    expect(trainingMetrics(metadata, progressOfContainer(progress)).steps).toBe(36);
  });
});
