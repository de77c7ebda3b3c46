/**
 * `lora config format` and `lora start --kohya…` as a user runs them (the compiled CLI, no
 * server): the reference extension's defaults come out as a TOML whose keys and value types are
 * the ones DESIGN.md §3 lists, and mistakes end in one line naming the file and the option.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse as parseToml } from 'smol-toml';

const CLI = path.resolve(__dirname, '../../dist/client/cli.js');
let tmp: string;

function lora(...args: string[]) {
  const env = { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:9' };
  const result = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function file(name: string, text: string): string {
  const target = path.join(tmp, name);
  writeFileSync(target, text);
  return target;
}

/** The reference extension's defaults (DESIGN.md §3), in sections as GUIs write them. */
const REFERENCE_DEFAULTS = `
[model_arguments]
network_module = "networks.lora"
network_dim = 32
network_alpha = 16
[optimizer_arguments]
unet_lr = 1e-4
text_encoder_lr = 1e-5
optimizer_type = "AdamW8bit"
lr_scheduler = "cosine_with_restarts"
[training_arguments]
train_batch_size = 1
max_train_epochs = 10
save_every_n_epochs = 1
mixed_precision = "fp16"
xformers = true
seed = 1337
clip_skip = 2
[dataset_arguments]
enable_bucket = true
min_bucket_reso = 256
max_bucket_reso = 1024
cache_latents = true
shuffle_caption = true
caption_extension = ".txt"
max_token_length = 225
`;

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kohya-config-cli-'));
  // lora start looks at a local dataset before connecting: this folder doubles as one.
  writeFileSync(path.join(tmp, 'a.png'), 'an image name is enough for that look');
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('lora config format', () => {
  it("prints the reference extension's defaults as TOML with DESIGN.md's keys and types, and no differences from the preset", () => {
    const result = lora('config', 'format', file('reference.toml', REFERENCE_DEFAULTS));
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const toml = parseToml(result.stdout);
    const types = Object.fromEntries(Object.entries(toml).map(([key, value]) => [key, typeof value]));
    expect(types).toEqual({
      network_module: 'string',
      network_dim: 'number',
      network_alpha: 'number',
      learning_rate: 'number',
      unet_lr: 'number',
      text_encoder_lr: 'number',
      optimizer_type: 'string',
      lr_scheduler: 'string',
      max_train_epochs: 'number',
      save_every_n_epochs: 'number',
      train_batch_size: 'number',
      mixed_precision: 'string',
      xformers: 'boolean',
      cache_latents: 'boolean',
      save_model_as: 'string',
      resolution: 'string',
      enable_bucket: 'boolean',
      min_bucket_reso: 'number',
      max_bucket_reso: 'number',
      bucket_reso_steps: 'number',
      caption_extension: 'string',
      shuffle_caption: 'boolean',
      max_token_length: 'number',
      clip_skip: 'number',
      seed: 'number',
    });
    expect(toml).toMatchObject({ resolution: '512,512', caption_extension: '.txt', network_alpha: 16, unet_lr: 1e-4, max_token_length: 225, clip_skip: 2 });
    // Integer options as TOML integers, float options as TOML floats: sd-scripts converts nothing.
    for (const key of ['network_dim', 'max_train_epochs', 'train_batch_size', 'min_bucket_reso', 'max_token_length', 'clip_skip', 'seed']) {
      expect(result.stdout).toMatch(new RegExp(`^${key} = \\d+$`, 'm'));
    }
    for (const key of ['network_alpha', 'learning_rate', 'unet_lr', 'text_encoder_lr']) {
      expect(result.stdout).toMatch(new RegExp(`^${key} = \\d[\\d.e+-]*$`, 'm'));
      expect(result.stdout).toMatch(new RegExp(`^${key} = [^\\n]*[.e]`, 'm'));
    }
    expect(result.stdout).toContain('# Differences from the sd15 preset: none');
  });

  it('lists the differences from the preset as TOML comments, flags winning over the file', () => {
    const result = lora(
      'config',
      'format',
      file('changed.toml', 'unet_lr = 2e-4\nnoise_offset = 0.05\nmax_token_length = 75\n'),
      '--base',
      'sdxl',
      '--kohya',
      'network_alpha=8',
      '--kohya',
      'optimizer_type=prodigy',
    );
    expect(result.status).toBe(0);
    expect(result.stdout.split('# Differences from the sdxl preset: 5\n')[1]).toBe(
      [
        '#   network_alpha = 8.0 (preset 16.0)',
        '#   unet_lr = 0.0002 (preset 0.0001)',
        '#   optimizer_type = "Prodigy" (preset "AdamW8bit")',
        '#   noise_offset = 0.05 (not in the preset)',
        "#   max_token_length: removed (preset 225; sd-scripts' default applies)",
        '',
      ].join('\n'),
    );
    expect(parseToml(result.stdout)).toMatchObject({ resolution: '1024,1024', no_half_vae: true, unet_lr: 2e-4 });
  });

  it('prints JSON with --json', () => {
    const result = lora('--json', 'config', 'format', file('json.toml', 'network_dim = 16\n'));
    expect(result.status).toBe(0);
    const parsed = JSON.parse(result.stdout);
    expect(parsed).toMatchObject({ base: 'sd15', options: { network_dim: 16 }, differences: [{ key: 'network_dim', preset: 32, value: 16 }] });
  });

  it.each([
    ['an unknown option', 'netwrok_dim = 8\n', [], /^lora: \S+typo\.toml: netwrok_dim: is not an sd-scripts option this pipeline supports \(did you mean "network_dim"\?\)$/],
    ['a value of the wrong type', 'network_dim = "32"\n', [], /^lora: \S+typo\.toml: network_dim: Invalid input: expected number, received string$/],
    ['a bucket setting preprocessing does not use', 'min_bucket_reso = 320\n', [], /^lora: \S+typo\.toml: sd-scripts options for sd15: min_bucket_reso: must be 256 for sd15, got 320/],
    ['cache_text_encoder_outputs with shuffled captions', 'cache_text_encoder_outputs = true\nnetwork_train_unet_only = true\n', ['--base', 'sdxl'], /cache_text_encoder_outputs: cannot be used with shuffle_caption = true/],
    ['a path the pipeline sets', '[paths]\ntrain_data_dir = "/data"\n', [], /^lora: \S+typo\.toml: train_data_dir: is set by the trainer to the uploaded dataset$/],
    ['invalid TOML', 'network_dim = \n', [], /^lora: \S+typo\.toml: not valid TOML/],
  ])('rejects %s in one line naming the file and the option', (_case, text, extra, message) => {
    const result = lora('config', 'format', file('typo.toml', text), ...(extra as string[]));
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr.trimEnd()).toMatch(message);
  });

  it('names a bad --kohya flag', () => {
    const result = lora('config', 'format', file('ok.toml', ''), '--kohya', 'unet_lr');
    expect(result.stderr.trimEnd()).toBe('lora: --kohya: expected KEY=VALUE, e.g. unet_lr=2e-4, got "unet_lr"');
  });
});

describe('lora config preset', () => {
  it('prints the sdxl preset', () => {
    const result = lora('config', 'preset', '--base', 'sdxl');
    expect(result.status).toBe(0);
    expect(parseToml(result.stdout)).toMatchObject({ resolution: '1024,1024', no_half_vae: true, min_bucket_reso: 512 });
  });
});

describe('lora start with sd-scripts options', () => {
  it('checks them before it connects, naming the file or the flag', () => {
    const typo = lora('start', '--dataset', tmp, '--name', 'cat', '--kohya-config', file('start.toml', 'unet_lr = "fast"\n'));
    expect(typo.stderr.trimEnd()).toMatch(/^lora: \S+start\.toml: unet_lr: Invalid input: expected number, received string$/);
    const conflict = lora('start', '--dataset', tmp, '--name', 'cat', '--dim', '16', '--kohya', 'network_dim=64');
    expect(conflict.stderr.trimEnd()).toBe('lora: input.training.kohya.network_dim: 64 conflicts with training.networkDim = 16; set only one of them');
    const buckets = lora('start', '--dataset', tmp, '--name', 'cat', '--base', 'sdxl', '--kohya', 'resolution=512');
    expect(buckets.stderr.trimEnd()).toMatch(/^lora: sd-scripts options for sdxl: resolution: must be "1024,1024" for sdxl/);
    // Valid options get as far as connecting; bucket settings equal to preprocessing's are fine.
    const valid = lora('start', '--dataset', tmp, '--name', 'cat', '--kohya', 'unet_lr=2e-4', '--kohya', 'resolution=512,512', '--kohya', 'optimizer_type=Lion');
    expect(valid.stderr.trimEnd()).toMatch(/^lora: cannot reach Temporal at 127\.0\.0\.1:9/);
  });
});
