/**
 * DRY RUN stand-in for sd-scripts' train_network.py, for hosts without a GPU (demo, CI). It reads
 * the same TOML config, finds the dataset the way sd-scripts does, prints kohya-style progress and
 * writes per-epoch and final LoRA files, but trains nothing: the weights are seeded noise and the
 * metadata says `ss_dry_run: "true"`.
 *
 *   node dist/trainers/dry-run-kohya.js --config_file <config.toml>
 *
 * Environment:
 *   LORA_FAMILY      sd15 | sdxl (default sd15): which base model's key names to write. sd-scripts
 *                    decides this by script (train_network.py vs sdxl_train_network.py), and its
 *                    config has no key for it, so the Kohya entrypoint passes it here.
 *   DRY_RUN_STEP_MS  pause per printed progress update, in ms (default 5); about 50 updates per run.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import sharp from 'sharp';
import { buildLora } from '../lib/lora/build';
import { BASE_MODEL_FAMILIES, BaseModelFamily } from '../lib/pipeline/input';

// The extensions sd-scripts globs for, in lower or upper case; subfolders are not searched.
const IMAGE_EXTENSION = /\.(png|jpg|jpeg|webp|bmp|PNG|JPG|JPEG|WEBP|BMP)$/;
const MAX_PROGRESS_UPDATES = 50;

interface DryRunConfig {
  trainDataDir: string;
  outputDir: string;
  outputName: string;
  epochs: number;
  networkDim: number;
  networkAlpha: number;
  batchSize: number;
  seed: number;
  saveEveryNEpochs?: number;
  /** save_state: a `<output_name>-<epoch>-state/` folder after every epoch, the newest `keepStates` kept. */
  saveState: boolean;
  keepStates?: number;
  /** resume: the state folder to go on from; its epoch is in its name. */
  resume?: string;
  captionExtension: string;
  /** Every option as read, for the LoRA's metadata. */
  options: Record<string, unknown>;
}

function fail(message: string): never {
  process.stderr.write(`dry-run-kohya: ${message}\n`);
  process.exit(1);
}

function readConfig(file: string): DryRunConfig {
  let table: Record<string, unknown>;
  try {
    table = parseToml(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`cannot read --config_file ${file}: ${(err as Error).message}`);
  }
  // sd-scripts flattens all sections into one namespace.
  const flat: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(table)) {
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)) Object.assign(flat, value);
    else flat[key] = value;
  }
  const text = (key: string): string => {
    const value = flat[key];
    if (typeof value !== 'string' || value === '') fail(`${file}: ${key} must be a non-empty string, got ${JSON.stringify(value)}`);
    return value;
  };
  const number = (key: string, fallback: number, integer: boolean): number => {
    const value = flat[key] ?? fallback;
    if (typeof value !== 'number' || !(value > 0) || (integer && !Number.isInteger(value))) {
      fail(`${file}: ${key} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  return {
    trainDataDir: text('train_data_dir'),
    outputDir: text('output_dir'),
    outputName: text('output_name'),
    // sd-scripts' defaults where a key is absent.
    epochs: number('max_train_epochs', 1, true),
    networkDim: number('network_dim', 4, true),
    networkAlpha: number('network_alpha', 1, false),
    batchSize: number('train_batch_size', 1, true),
    seed: typeof flat.seed === 'number' ? flat.seed : 42,
    saveEveryNEpochs: flat.save_every_n_epochs === undefined ? undefined : number('save_every_n_epochs', 1, true),
    saveState: flat.save_state === true,
    keepStates: flat.save_last_n_epochs_state === undefined ? undefined : number('save_last_n_epochs_state', 1, true),
    resume: typeof flat.resume === 'string' && flat.resume !== '' ? flat.resume : undefined,
    // sd-scripts' default is ".caption".
    captionExtension: typeof flat.caption_extension === 'string' ? flat.caption_extension : '.caption',
    options: flat,
  };
}

/** sd-scripts sorts buckets by (width, height). */
function bucketOrder(size: string): number {
  const [width, height] = size.split('x').map(Number);
  return width * 100_000 + height;
}

/** The epoch a state folder was saved after: `<output_name>-000002-state` is after epoch 2. */
function epochOfState(folder: string): number {
  const match = /-(\d{6})-state$/.exec(path.basename(folder));
  if (!match) fail(`resume: ${folder} is not a <output_name>-<epoch>-state folder`);
  return Number(match[1]);
}

/** What sd-scripts learns of the dataset: its `<repeats>_<name>/` folders, their captions' tags and the images' buckets. */
interface DatasetFacts {
  /** repeats × images over the folders sd-scripts reads. */
  imagesTimesRepeats: number;
  dirs: Record<string, { n_repeats: number; img_count: number }>;
  tagFrequency: Record<string, Record<string, number>>;
  /** Images per size: preprocessing wrote each one at its bucket. */
  buckets: Record<string, number>;
}

async function readDataset(trainDataDir: string, captionExtension: string): Promise<DatasetFacts> {
  const facts: DatasetFacts = { imagesTimesRepeats: 0, dirs: {}, tagFrequency: {}, buckets: {} };
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(trainDataDir, { withFileTypes: true });
  } catch {
    console.log(`not directory: ${trainDataDir}`);
    return facts;
  }
  for (const entry of entries.filter((e) => e.isDirectory()).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const [repeatsText, ...classTokens] = entry.name.split('_');
    if (!/^\d+$/.test(repeatsText) || Number(repeatsText) < 1) {
      console.log(`ignore directory without repeats: ${entry.name}`);
      continue;
    }
    const folder = path.join(trainDataDir, entry.name);
    const images = fs.readdirSync(folder).filter((name) => IMAGE_EXTENSION.test(name)).sort();
    info(`found directory ${folder} contains ${images.length} image files`);
    facts.dirs[entry.name] = { n_repeats: Number(repeatsText), img_count: images.length };
    facts.imagesTimesRepeats += Number(repeatsText) * images.length;
    const tags: Record<string, number> = {};
    for (const image of images) {
      // As sd-scripts reads captions: the first line, stripped; without a file, the class tokens.
      const captionFile = path.join(folder, image.replace(/\.[^.]+$/, captionExtension));
      const caption = fs.existsSync(captionFile) ? fs.readFileSync(captionFile, 'utf8').split(/\r\n|\r|\n/)[0].trim() : classTokens.join('_');
      for (const tag of caption.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean)) tags[tag] = (tags[tag] ?? 0) + 1;
      const { width, height } = await sharp(path.join(folder, image)).metadata();
      if (width !== undefined && height !== undefined) facts.buckets[`${width}x${height}`] = (facts.buckets[`${width}x${height}`] ?? 0) + 1;
    }
    facts.tagFrequency[entry.name] = tags;
  }
  return facts;
}

function familyFromEnv(): BaseModelFamily {
  const value = process.env.LORA_FAMILY ?? 'sd15';
  if (!(BASE_MODEL_FAMILIES as readonly string[]).includes(value)) fail(`LORA_FAMILY must be one of ${BASE_MODEL_FAMILIES.join(', ')}, got "${value}"`);
  return value as BaseModelFamily;
}

function stepDelayFromEnv(): number {
  const value = Number(process.env.DRY_RUN_STEP_MS ?? 5);
  if (!Number.isFinite(value) || value < 0) fail(`DRY_RUN_STEP_MS must be a number of milliseconds >= 0, got "${process.env.DRY_RUN_STEP_MS}"`);
  return value;
}

/** A tqdm-shaped bar: what sd-scripts prints on stderr, redrawn in place with `\r`. */
function progressBar(step: number, total: number, elapsedMs: number, loss: number): string {
  const percent = Math.floor((100 * step) / total);
  const filled = Math.floor((10 * step) / total);
  const bar = '█'.repeat(filled) + ' '.repeat(10 - filled);
  const rate = step / Math.max(elapsedMs / 1000, 1e-3);
  const clock = (seconds: number) => `${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(Math.floor(seconds % 60)).padStart(2, '0')}`;
  const remaining = rate > 0 ? (total - step) / rate : 0;
  // tqdm shows seconds per step once a step takes longer than a second, as real training does.
  const speed = rate >= 1 || rate === 0 ? `${rate.toFixed(2)}it/s` : `${(1 / rate).toFixed(2)}s/it`;
  return `steps: ${String(percent).padStart(3)}%|${bar}| ${step}/${total} [${clock(elapsedMs / 1000)}<${clock(remaining)}, ${speed}, avr_loss=${loss.toFixed(4)}]`;
}

/** A log line as sd-scripts' rich logger writes it on stderr when stderr is not a terminal. */
function info(message: string): void {
  process.stderr.write(`${new Date().toISOString().slice(0, 19).replace('T', ' ')} INFO     ${message}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const flagIndex = process.argv.indexOf('--config_file');
  const configFile = flagIndex >= 0 ? process.argv[flagIndex + 1] : undefined;
  if (!configFile) fail('usage: dry-run-kohya --config_file <config.toml>');

  process.on('SIGTERM', () => {
    console.log('DRY RUN: received SIGTERM, stopping');
    process.exit(143);
  });

  const startedAt = new Date();
  const family = familyFromEnv();
  const stepDelayMs = stepDelayFromEnv();
  console.log(`DRY RUN: no training happens, this stand-in for sd-scripts' train_network.py (${family}) writes an untrained LoRA`);
  const config = readConfig(configFile);

  const dataset = await readDataset(config.trainDataDir, config.captionExtension);
  const { imagesTimesRepeats } = dataset;
  if (imagesTimesRepeats === 0) {
    // sd-scripts' message, and like sd-scripts it returns without an error code.
    console.log('No data found. Please verify arguments (train_data_dir must be the parent of folders with images)');
    return;
  }
  const stepsPerEpoch = Math.ceil(imagesTimesRepeats / config.batchSize);
  const totalSteps = stepsPerEpoch * config.epochs;
  console.log(`num train images * repeats / 学習画像の数×繰り返し回数: ${imagesTimesRepeats}`);
  console.log(`num batches per epoch / 1epochのバッチ数: ${stepsPerEpoch}`);
  console.log(`num epochs / epoch数: ${config.epochs}`);
  console.log(`batch size per device / バッチサイズ: ${config.batchSize}`);
  console.log(`total optimization steps / 学習ステップ数: ${totalSteps}`);
  fs.mkdirSync(config.outputDir, { recursive: true });

  const save = (file: string, steps: number, epoch: number) => {
    const target = path.join(config.outputDir, file);
    console.log(`saving checkpoint: ${target}`);
    const lora = buildLora({
      family,
      networkDim: config.networkDim,
      networkAlpha: config.networkAlpha,
      outputName: config.outputName,
      epochs: config.epochs,
      epoch,
      steps,
      seed: config.seed,
      dryRun: true,
      startedAt,
      training: {
        options: config.options,
        datasetDirs: dataset.dirs,
        tagFrequency: dataset.tagFrequency,
        buckets: Object.fromEntries(Object.entries(dataset.buckets).sort(([a], [b]) => bucketOrder(a) - bucketOrder(b))),
        batchesPerEpoch: stepsPerEpoch,
        maxTrainSteps: totalSteps,
        finishedAt: new Date(),
      },
    });
    fs.writeFileSync(target, lora);
  };

  // As sd-scripts does on resume: the epochs already done are skipped, and its step bar and the
  // LoRA's ss_steps count only this process's steps (the bar's total stays the whole run's).
  const resumedEpochs = config.resume === undefined ? 0 : epochOfState(config.resume);
  if (config.resume !== undefined) console.log(`resume training from local state: ${config.resume}`);
  const stepsBefore = resumedEpochs * stepsPerEpoch;
  const updateEvery = Math.max(1, Math.ceil(totalSteps / MAX_PROGRESS_UPDATES));
  const trainingStart = Date.now();
  process.stderr.write(`steps:   0%|          | 0/${totalSteps} [00:00<?, ?it/s]`);
  for (let epoch = resumedEpochs + 1; epoch <= config.epochs; epoch++) {
    console.log(`\nepoch ${epoch}/${config.epochs}`);
    for (let step = (epoch - 1) * stepsPerEpoch + 1; step <= epoch * stepsPerEpoch; step++) {
      if (step % updateEvery !== 0 && step !== totalSteps) continue;
      await sleep(stepDelayMs);
      const loss = 0.05 + 0.1 * Math.exp((-3 * step) / totalSteps);
      process.stderr.write(`\r${progressBar(step - stepsBefore, totalSteps, Date.now() - trainingStart, loss)}`);
    }
    const isLast = epoch === config.epochs;
    if (!isLast && config.saveEveryNEpochs !== undefined && epoch % config.saveEveryNEpochs === 0) {
      save(`${config.outputName}-${String(epoch).padStart(6, '0')}.safetensors`, epoch * stepsPerEpoch - stepsBefore, epoch);
    }
    if (!isLast && config.saveState) saveState(config, epoch);
  }
  process.stderr.write('\n');
  save(`${config.outputName}.safetensors`, totalSteps - stepsBefore, config.epochs);
  info('model saved.');
}

/** A state folder after `epoch`, the older ones beyond save_last_n_epochs_state removed. */
function saveState(config: DryRunConfig, epoch: number): void {
  const name = (n: number) => path.join(config.outputDir, `${config.outputName}-${String(n).padStart(6, '0')}-state`);
  fs.mkdirSync(name(epoch), { recursive: true });
  fs.writeFileSync(path.join(name(epoch), 'train_state.json'), JSON.stringify({ current_epoch: epoch }));
  if (config.keepStates !== undefined) fs.rmSync(name(epoch - config.keepStates), { recursive: true, force: true });
}

main().catch((err: unknown) => {
  process.stderr.write(`dry-run-kohya: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
