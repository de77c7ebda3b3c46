/**
 * The sd-scripts LoRA options this pipeline supports, as a zod schema: a user's overrides (a TOML
 * file, `--kohya key=value` flags, or `training.kohya` in the run input) are checked here, each
 * value normalised to the type sd-scripts reads from TOML (it converts nothing: `resolution` must
 * be the string "W,H"). Pure zod with no runtime imports from lib/pipeline, so the run input
 * schema can embed it and workflow code can load it.
 *
 * The resolution and bucket settings are preprocessing's (lib/kohya/buckets.ts): a run's overrides
 * leave them out, a config file may repeat them, and lib/kohya/config.ts, which adds them to the
 * reference defaults below to make the presets, checks that the repeated values are equal.
 */
import { z } from 'zod';
import { closestName } from '../did-you-mean';
import type { BaseModelFamily } from '../pipeline/input';

export type KohyaValue = string | number | boolean;
export type KohyaOptions = Record<string, KohyaValue>;

/** How a value is written to TOML: sd-scripts reads ints and floats as they are typed there. */
export type KohyaValueKind = 'int' | 'float' | 'bool' | 'string';

const positiveInt = (max: number) => z.number().int().min(1).max(max);

/** sd-scripts' built-in optimizers (it compares case-insensitively); `module.Class` names pass as given. */
const OPTIMIZERS = [
  'AdamW',
  'AdamW8bit',
  'PagedAdamW',
  'PagedAdamW8bit',
  'PagedAdamW32bit',
  'Lion',
  'Lion8bit',
  'PagedLion8bit',
  'SGDNesterov',
  'SGDNesterov8bit',
  'DAdaptation',
  'DAdaptAdaGrad',
  'DAdaptAdam',
  'DAdaptAdan',
  'DAdaptAdanIP',
  'DAdaptLion',
  'DAdaptSGD',
  'Prodigy',
  'AdaFactor',
] as const;
const LR_SCHEDULERS = ['linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'constant', 'constant_with_warmup', 'adafactor'] as const;

const optimizerType = z.string().transform((value, ctx) => {
  const builtIn = OPTIMIZERS.find((name) => name.toLowerCase() === value.toLowerCase());
  if (builtIn) return builtIn;
  if (/^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$/.test(value)) return value; // e.g. pytorch_optimizer.CAME
  const hint = closestName(value, OPTIMIZERS);
  ctx.addIssue({
    code: 'custom',
    message: `"${value}" is not an sd-scripts optimizer${hint ? ` (did you mean "${hint}"?)` : ''}: one of ${OPTIMIZERS.join(', ')}, or a module.Class name`,
  });
  return z.NEVER;
});

/** 512, "512", "512,512", "512x512" or [512, 512] → "512,512". */
const resolution = z
  .union([z.number(), z.string(), z.array(z.number())])
  .transform((value, ctx) => {
    const sides = Array.isArray(value) ? value : typeof value === 'number' ? [value] : value.split(/\s*[,x]\s*/).map((part) => (part === '' ? Number.NaN : Number(part)));
    const [width, height = width] = sides;
    if (sides.length > 2 || !sides.every((side) => Number.isInteger(side) && side >= 64 && side <= 8192)) {
      ctx.addIssue({ code: 'custom', message: `must be a size in pixels like "512,512" (width,height, each 64-8192), got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    return `${width},${height}`;
  });

/** sd-scripts appends the extension to the image's stem as given: ".txt", not "txt". */
const captionExtension = z
  .string()
  .transform((value) => (value.startsWith('.') ? value : `.${value}`))
  .pipe(z.literal('.txt', { error: 'must be ".txt": the pipeline writes each caption as <image>.txt (sd-scripts\' default is ".caption")' }));

interface OptionSpec {
  kind: KohyaValueKind;
  schema: z.ZodType<KohyaValue, unknown>;
  /** The family whose training script reads it; others reject it. */
  only?: BaseModelFamily;
}

const spec = (kind: KohyaValueKind, schema: z.ZodType<KohyaValue, unknown>, only?: BaseModelFamily): OptionSpec => ({ kind, schema, only });
const bool = () => spec('bool', z.boolean());
const rate = () => spec('float', z.number().positive().max(1));

/** Every option a user may set, in the order the normalised TOML lists them. */
const OPTION_SPECS = {
  // network
  network_module: spec('string', z.literal('networks.lora', { error: 'must be "networks.lora": registration verifies the output is a LoRA' })),
  network_dim: spec('int', positiveInt(1024)),
  network_alpha: spec('float', z.number().positive().max(1024)),
  network_dropout: spec('float', z.number().min(0).max(1)),
  network_train_unet_only: bool(),
  // optimizer and schedule
  learning_rate: rate(),
  unet_lr: rate(),
  text_encoder_lr: rate(),
  optimizer_type: spec('string', optimizerType),
  lr_scheduler: spec('string', z.enum(LR_SCHEDULERS)),
  lr_warmup_steps: spec('int', z.number().int().min(0)),
  lr_scheduler_num_cycles: spec('int', positiveInt(1000)),
  max_train_epochs: spec('int', positiveInt(1000)),
  // sd-scripts lets max_train_epochs win when both are set: a run with this leaves epochs out.
  max_train_steps: spec('int', positiveInt(10_000_000)),
  save_every_n_epochs: spec('int', positiveInt(1000)),
  save_last_n_epochs: spec('int', positiveInt(1000)),
  train_batch_size: spec('int', positiveInt(64)),
  gradient_accumulation_steps: spec('int', positiveInt(1024)),
  gradient_checkpointing: bool(),
  noise_offset: spec('float', z.number().min(0).max(1)),
  min_snr_gamma: spec('float', z.number().positive().max(100)),
  prior_loss_weight: spec('float', z.number().min(0)),
  // precision and speed
  mixed_precision: spec('string', z.enum(['no', 'fp16', 'bf16'])),
  save_precision: spec('string', z.enum(['float', 'fp16', 'bf16'])),
  xformers: bool(),
  sdpa: bool(),
  mem_eff_attn: bool(),
  full_fp16: bool(),
  full_bf16: bool(),
  lowram: bool(),
  cache_latents: bool(),
  cache_latents_to_disk: bool(),
  cache_text_encoder_outputs: spec('bool', z.boolean(), 'sdxl'),
  no_half_vae: bool(),
  max_data_loader_n_workers: spec('int', z.number().int().min(0).max(64)),
  persistent_data_loader_workers: bool(),
  // dataset and buckets (the bucket values must match preprocessing: lib/kohya/config.ts)
  save_model_as: spec('string', z.literal('safetensors', { error: 'must be "safetensors": registration reads safetensors files' })),
  resolution: spec('string', resolution),
  enable_bucket: spec('bool', z.literal(true, { error: 'must be true: preprocessing writes images at their bucket sizes' })),
  min_bucket_reso: spec('int', positiveInt(8192)),
  max_bucket_reso: spec('int', positiveInt(8192)),
  bucket_reso_steps: spec('int', positiveInt(1024)),
  bucket_no_upscale: bool(),
  flip_aug: bool(),
  // captions
  caption_extension: spec('string', captionExtension),
  shuffle_caption: bool(),
  keep_tokens: spec('int', z.number().int().min(0).max(225)),
  caption_dropout_rate: spec('float', z.number().min(0).max(1)),
  // 75 is sd-scripts' default (no key); 150 and 225 are the longer limits it accepts.
  max_token_length: spec('int', z.union([z.literal(75), z.literal(150), z.literal(225)], { error: 'must be 75, 150 or 225 (CLIP tokens; chunks of 75)' })),
  clip_skip: spec('int', positiveInt(12), 'sd15'),
  seed: spec('int', z.number().int().min(0).max(2 ** 32 - 1)),
  // where the trainer runs
  /** A folder on the training machine with `openai_clip-vit-large-patch14/` etc.: no model hub needed. */
  tokenizer_cache_dir: spec('string', z.string().regex(/^[^\u0000-\u001f"]+$/, { error: 'must be a folder path on the training machine' })),
  console_log_simple: bool(),
} satisfies Record<string, OptionSpec>;

export type KohyaOptionName = keyof typeof OPTION_SPECS;
export const KOHYA_OPTION_NAMES = Object.keys(OPTION_SPECS) as KohyaOptionName[];

/** The options a user set, each already in the type sd-scripts expects. */
export type KohyaOverrides = Partial<Record<KohyaOptionName, KohyaValue>>;

/** Options the pipeline sets itself, and why: a user value would be ignored or break the contract. */
const SET_BY_PIPELINE: Record<string, string> = {
  pretrained_model_name_or_path: "is set from the run's baseModel.checkpoint",
  train_data_dir: 'is set by the trainer to the uploaded dataset',
  output_dir: 'is set by the trainer',
  output_name: 'is the run name',
  dataset_config: 'is not supported: training reads the <repeats>_<concept>/ folders preprocessing wrote',
  reg_data_dir: 'is not supported: training reads the <repeats>_<concept>/ folders preprocessing wrote',
  config_file: 'is set by the trainer',
  save_state: 'is managed by the training container (managed spot resumes from its saved state)',
  save_last_n_epochs_state: 'is managed by the training container (managed spot resumes from its saved state)',
  resume: 'is managed by the training container (managed spot resumes from its saved state)',
};

/**
 * The reference extension's defaults for a family, apart from the resolution and bucket settings,
 * which preprocessing decides (lib/kohya/config.ts adds them to make the preset).
 */
export function referenceDefaults(family: BaseModelFamily): KohyaOptions {
  return {
    save_model_as: 'safetensors',
    network_module: 'networks.lora',
    network_dim: 32,
    network_alpha: 16,
    learning_rate: 1e-4,
    unet_lr: 1e-4,
    text_encoder_lr: 1e-5,
    optimizer_type: 'AdamW8bit',
    lr_scheduler: 'cosine_with_restarts',
    max_train_epochs: 10,
    save_every_n_epochs: 1,
    train_batch_size: 1,
    mixed_precision: 'fp16',
    xformers: true,
    cache_latents: true,
    // sd-scripts' default is ".caption"; our datasets carry .txt captions.
    caption_extension: '.txt',
    shuffle_caption: true,
    max_token_length: 225,
    seed: 1337,
    // clip_skip only applies to SD 1.x text encoders; SDXL's VAE overflows in fp16 without no_half_vae.
    ...(family === 'sdxl' ? { no_half_vae: true } : { clip_skip: 2 }),
  };
}

/** Where training runs. "gpu" is the preset as it is; "cpu" is what a host without CUDA needs. */
export const TRAINING_DEVICES = ['gpu', 'cpu'] as const;
export type TrainingDevice = (typeof TRAINING_DEVICES)[number];

/**
 * Options a device needs over the preset; a run's own `training.kohya` still wins. On CPU: no
 * half precision (CPU kernels are fp32), plain AdamW (bitsandbytes' 8-bit optimizers are CUDA-only)
 * and no xformers (a CUDA library). Checked end to end by `npm run test:kohya`.
 */
export const DEVICE_PROFILES: Record<TrainingDevice, KohyaOverrides> = {
  gpu: {},
  cpu: { mixed_precision: 'no', optimizer_type: 'AdamW', xformers: false },
};

/** The run input's shorthands for sd-scripts options (`training.epochs` is `max_train_epochs`). */
const KOHYA_SHORTHANDS = { epochs: 'max_train_epochs', networkDim: 'network_dim', networkAlpha: 'network_alpha' } as const;

/**
 * Options preprocessing decides: the images are written at the bucket sizes these give. A config
 * file may repeat them (lib/kohya/config.ts checks they are equal); a run's overrides leave them out.
 */
export const SET_BY_PREPROCESSING = ['resolution', 'enable_bucket', 'min_bucket_reso', 'max_bucket_reso', 'bucket_reso_steps'] as const;

/** An object of option → value, every unknown key, refused key and bad value reported at once under its own path. */
function optionsSchema(refused: Readonly<Record<string, string>>) {
  return z.record(z.string(), z.unknown()).transform((raw, ctx): KohyaOverrides => {
    const out: Record<string, KohyaValue> = {};
    for (const [key, value] of Object.entries(raw)) {
      if (Object.hasOwn(refused, key)) {
        ctx.addIssue({ code: 'custom', path: [key], message: refused[key]! });
        continue;
      }
      if (!Object.hasOwn(OPTION_SPECS, key)) {
        ctx.addIssue({ code: 'custom', path: [key], message: unknownOptionMessage(key) });
        continue;
      }
      const parsed = OPTION_SPECS[key as KohyaOptionName].schema.safeParse(value);
      if (parsed.success) out[key] = parsed.data;
      else for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', path: [key, ...issue.path], message: issue.message });
    }
    return out;
  });
}

/**
 * An sd-scripts config file's options (`lora config format`, `--kohya-config`): anything a user
 * may set, the bucket settings included; unknown keys get a did-you-mean hint.
 */
export const KohyaFileOptions = optionsSchema(SET_BY_PIPELINE);

/**
 * A run's sd-scripts overrides (`training.kohya`): the same, without the bucket settings, so that a
 * validated run always has usable options (the workflow derives its caption rules from them).
 */
export const KohyaOverrides = optionsSchema({
  ...SET_BY_PIPELINE,
  ...Object.fromEntries(SET_BY_PREPROCESSING.map((key) => [key, "is set from preprocessing's bucket settings, the sizes the images are written at: remove it"])),
});

/** File options as run overrides: the bucket settings left out (check them with resolveKohyaOptions first). */
export function withoutBucketSettings(options: KohyaOverrides): KohyaOverrides {
  return Object.fromEntries(Object.entries(options).filter(([key]) => !(SET_BY_PREPROCESSING as readonly string[]).includes(key)));
}

function unknownOptionMessage(key: string): string {
  const hint = closestName(key, [...KOHYA_OPTION_NAMES, ...Object.keys(SET_BY_PIPELINE)]);
  return `is not an sd-scripts option this pipeline supports${hint ? ` (did you mean "${hint}"?)` : ''}`;
}

export function kohyaValueKind(key: string): KohyaValueKind | undefined {
  return Object.hasOwn(OPTION_SPECS, key) ? OPTION_SPECS[key as KohyaOptionName].kind : undefined;
}

/** A problem with a merged option set, named by the option it is about. */
export interface KohyaIssue {
  key: string;
  message: string;
}

/**
 * Rules across options and families that sd-scripts enforces only after the GPU instance has
 * booted and the model is loaded, checked on the merged options (preset plus overrides).
 */
export function kohyaOptionIssues(family: BaseModelFamily, options: KohyaOptions): KohyaIssue[] {
  const issues: KohyaIssue[] = [];
  for (const [key, value] of Object.entries(options)) {
    const only = kohyaSpecOf(key)?.only;
    if (only && only !== family && value !== false) {
      issues.push({
        key,
        message:
          key === 'clip_skip'
            ? 'does not apply to sdxl (sdxl_train_network.py ignores it with a warning); remove it'
            : `only applies to ${only}, not ${family}`,
      });
    }
  }
  for (const [key, precision] of [['full_fp16', 'fp16'], ['full_bf16', 'bf16']] as const) {
    if (options[key] === true && options.mixed_precision !== precision) {
      issues.push({ key, message: `needs mixed_precision = "${precision}" (sd-scripts stops otherwise), got ${JSON.stringify(options.mixed_precision ?? 'no')}` });
    }
  }
  if (options.cache_text_encoder_outputs === true) {
    if (options.shuffle_caption === true) {
      issues.push({ key: 'cache_text_encoder_outputs', message: 'cannot be used with shuffle_caption = true (cached text encoder outputs cannot follow shuffled captions); set shuffle_caption = false' });
    }
    if (typeof options.caption_dropout_rate === 'number' && options.caption_dropout_rate > 0) {
      issues.push({ key: 'cache_text_encoder_outputs', message: 'cannot be used with caption_dropout_rate > 0' });
    }
    if (options.network_train_unet_only !== true) {
      issues.push({ key: 'cache_text_encoder_outputs', message: 'needs network_train_unet_only = true (the text encoder cannot be trained from cached outputs)' });
    }
  }
  return issues;
}

function kohyaSpecOf(key: string): OptionSpec | undefined {
  return Object.hasOwn(OPTION_SPECS, key) ? OPTION_SPECS[key as KohyaOptionName] : undefined;
}

/**
 * Folds the sd-scripts spellings of the run's shorthands (`network_dim` in `training.kohya`) into
 * the shorthand fields, so one value drives training, registration and the status; the same
 * setting given twice with different values is an error, reported on the override.
 */
export function foldKohyaShorthands(
  training: { epochs?: number; networkDim?: number; networkAlpha?: number; kohya: KohyaOverrides },
  defaults: { epochs: number; networkDim: number; networkAlpha: number },
  addIssue: (path: string[], message: string) => void,
): { epochs: number; networkDim: number; networkAlpha: number; kohya: KohyaOverrides } {
  const kohya: KohyaOverrides = { ...training.kohya };
  const folded = { ...defaults };
  for (const field of Object.keys(KOHYA_SHORTHANDS) as (keyof typeof KOHYA_SHORTHANDS)[]) {
    const option = KOHYA_SHORTHANDS[field];
    const given = training[field];
    // The schema made these numbers.
    const override = kohya[option] as number | undefined;
    delete kohya[option];
    if (given !== undefined && override !== undefined && given !== override) {
      addIssue(['kohya', option], `${override} conflicts with training.${field} = ${given}; set only one of them`);
    }
    folded[field] = given ?? override ?? defaults[field];
  }
  if (kohya.max_train_steps !== undefined && (training.epochs !== undefined || training.kohya.max_train_epochs !== undefined)) {
    addIssue(['kohya', 'max_train_steps'], 'conflicts with the number of epochs (sd-scripts lets max_train_epochs win); set only one of them');
  }
  return { ...folded, kohya };
}
