/**
 * Writes a kohya LoRA (networks.lora) shaped exactly like the one sd-scripts writes: every module it
 * trains (lib/lora/kohya-structure.ts), `lora_down` / `lora_up` / `alpha` in the saved precision (F32
 * by default, as sd-scripts saves), and the ~100 metadata keys sd-scripts records, their values in
 * its (Python) spelling. The dry-run trainer uses it, so everything downstream handles real files;
 * `npm run test:kohya` compares it with what real sd-scripts wrote. Pure and deterministic for a
 * given spec (and `startedAt`).
 */
import type { BaseModelFamily } from '../pipeline/input';
import { sha256Hex } from '../hash';
import { sha256AfterHeader, TensorToWrite, withMetadata, writeSafetensors, type WritableDtype } from '../safetensors';
import { mulberry32 } from '../random';
import { loraModules } from './kohya-structure';

export interface LoraBuildSpec {
  family: BaseModelFamily;
  networkDim: number;
  networkAlpha: number;
  outputName: string;
  /** Total epochs of the run (ss_num_epochs). */
  epochs: number;
  /** Optimisation steps done when the file was saved (ss_steps). */
  steps: number;
  seed: number;
  dryRun: boolean;
  /** The epoch this file was saved after (ss_epoch); the final file carries the last epoch. */
  epoch?: number;
  /** ss_training_started_at; the current time when omitted. */
  startedAt?: Date;
  /** What the trainer knew of its run, for the metadata sd-scripts records; defaults where absent. */
  training?: TrainingFacts;
}

/** The run as sd-scripts describes it in a LoRA's metadata. */
export interface TrainingFacts {
  /** The sd-scripts options as read from the config (flattened). */
  options: Readonly<Record<string, unknown>>;
  /** Per `<repeats>_<name>` folder: its repeats and image count. */
  datasetDirs: Readonly<Record<string, { n_repeats: number; img_count: number }>>;
  /** Per folder, how often each caption tag occurs (tags as sd-scripts splits them: by ","). */
  tagFrequency: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** Images per bucket resolution, e.g. {"256x256": 2}. */
  buckets: Readonly<Record<string, number>>;
  batchesPerEpoch: number;
  maxTrainSteps: number;
  finishedAt?: Date;
}

export const BASE_MODEL_VERSION: Record<BaseModelFamily, string> = { sd15: 'sd_v1', sdxl: 'sdxl_base_v1-0' };
export const MODELSPEC_ARCHITECTURE: Record<BaseModelFamily, string> = {
  sd15: 'stable-diffusion-v1/lora',
  sdxl: 'stable-diffusion-xl-v1-base/lora',
};

const PRECISION_DTYPE: Record<string, WritableDtype> = { float: 'F32', fp16: 'F16', bf16: 'BF16' };

export function buildLora(spec: LoraBuildSpec): Buffer {
  checkSpec(spec);
  const options = spec.training?.options ?? {};
  const dtype = PRECISION_DTYPE[String(options.save_precision ?? 'float')] ?? 'F32';
  const tensors: TensorToWrite[] = [];
  for (const module of loraModules(spec.family)) {
    const random = mulberry32(spec.seed ^ stringHash(module.name));
    // Kaiming-like scale for down, small up weights: the magnitudes of a briefly trained LoRA.
    const downScale = 1 / Math.sqrt(module.inFeatures);
    const down = new Float32Array(spec.networkDim * module.inFeatures);
    for (let i = 0; i < down.length; i++) down[i] = (random() * 2 - 1) * downScale;
    const up = new Float32Array(module.outFeatures * spec.networkDim);
    for (let i = 0; i < up.length; i++) up[i] = (random() * 2 - 1) * 0.01;
    const kernel = module.conv ? [1, 1] : [];
    tensors.push(
      { name: `${module.name}.lora_down.weight`, dtype, shape: [spec.networkDim, module.inFeatures, ...kernel], data: down },
      { name: `${module.name}.lora_up.weight`, dtype, shape: [module.outFeatures, spec.networkDim, ...kernel], data: up },
      { name: `${module.name}.alpha`, dtype, shape: [], data: Float32Array.of(spec.networkAlpha) },
    );
  }
  const metadata = kohyaMetadata(spec);
  // sd-scripts hashes a file holding only the ss_ keys (library/train_util.py, precalculate_safetensors_hashes).
  const forHashes = writeSafetensors(tensors, Object.fromEntries(Object.entries(metadata).filter(([key]) => key.startsWith('ss_'))));
  const hashes = { sshs_model_hash: sha256AfterHeader(forHashes), sshs_legacy_hash: sha256Hex(forHashes.subarray(0x100000, 0x110000)).slice(0, 8) };
  return withMetadata(forHashes, { ...metadata, ...hashes });
}

/** Python's str() of a value as sd-scripts records it: None, True/False, 16.0, 1e-05. */
function python(value: unknown, float = false): string {
  if (value === undefined || value === null) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'number') {
    if (!float) return String(value);
    if (Number.isInteger(value) && Math.abs(value) < 1e16) return `${value}.0`;
    const [mantissa, exponent] = value.toExponential().split('e');
    const power = Number(exponent);
    return power < -4 || power >= 16 ? `${mantissa}e${power < 0 ? '-' : '+'}${String(Math.abs(power)).padStart(2, '0')}` : String(value);
  }
  return String(value);
}

/** Python's json.dumps with its defaults: ", " and ": " separators, non-ASCII escaped; `floats` print with a point. */
function pythonJson(value: unknown, floats: ReadonlySet<string> = new Set(), key?: string): string {
  if (Array.isArray(value)) return `[${value.map((item) => pythonJson(item, floats)).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${pythonJson(k)}: ${pythonJson(v, floats, k)}`).join(', ')}}`;
  }
  if (typeof value === 'number') return python(value, key !== undefined && floats.has(key));
  return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The optimizer's class as sd-scripts names it (module.Class), for the built-in names. */
const OPTIMIZER_CLASSES: Record<string, string> = {
  adamw: 'torch.optim.adamw.AdamW',
  adamw8bit: 'bitsandbytes.optim.adamw.AdamW8bit',
  pagedadamw: 'bitsandbytes.optim.adamw.PagedAdamW',
  pagedadamw8bit: 'bitsandbytes.optim.adamw.PagedAdamW8bit',
  pagedadamw32bit: 'bitsandbytes.optim.adamw.PagedAdamW32bit',
  lion: 'lion_pytorch.lion_pytorch.Lion',
  lion8bit: 'bitsandbytes.optim.lion.Lion8bit',
  pagedlion8bit: 'bitsandbytes.optim.lion.PagedLion8bit',
  sgdnesterov: 'torch.optim.sgd.SGD',
  sgdnesterov8bit: 'bitsandbytes.optim.sgd.SGD8bit',
  prodigy: 'prodigyopt.prodigy.Prodigy',
  adafactor: 'transformers.optimization.Adafactor',
};

/** The metadata sd-scripts' train_network.py records, its keys all present, values from what the run knew. */
function kohyaMetadata(spec: LoraBuildSpec): Record<string, string> {
  const facts = spec.training;
  const o = facts?.options ?? {};
  const [width, height] = String(o.resolution ?? (spec.family === 'sdxl' ? '1024,1024' : '512,512')).split(',').map(Number);
  const images = Object.values(facts?.datasetDirs ?? {}).reduce((sum, dir) => sum + dir.img_count * dir.n_repeats, 0);
  const started = spec.startedAt ?? new Date();
  const seconds = (date: Date) => python(date.getTime() / 1000, true);
  const optimizer = String(o.optimizer_type ?? 'AdamW');
  const none = (...keys: string[]) => Object.fromEntries(keys.map((key) => [key, 'None']));
  const metadata: Record<string, string> = {
    ss_session_id: String(mulberry32(spec.seed ^ stringHash(spec.outputName))() * 2 ** 31 >>> 0),
    ss_training_started_at: seconds(started),
    ss_output_name: spec.outputName,
    ss_learning_rate: python(o.learning_rate ?? 1e-4, true),
    ss_text_encoder_lr: python(o.text_encoder_lr, true),
    ss_unet_lr: python(o.unet_lr, true),
    ss_num_train_images: String(images),
    ss_num_validation_images: '0',
    ss_num_reg_images: '0',
    ss_num_batches_per_epoch: String(facts?.batchesPerEpoch ?? spec.steps),
    ss_num_epochs: String(spec.epochs),
    ss_gradient_checkpointing: python(o.gradient_checkpointing ?? false),
    ss_gradient_accumulation_steps: String(o.gradient_accumulation_steps ?? 1),
    ss_max_train_steps: String(facts?.maxTrainSteps ?? spec.steps),
    ss_lr_warmup_steps: String(o.lr_warmup_steps ?? 0),
    ss_lr_scheduler: String(o.lr_scheduler ?? 'constant'),
    ss_network_module: 'networks.lora',
    ss_network_dim: String(spec.networkDim),
    ss_network_alpha: python(spec.networkAlpha, true),
    ss_network_dropout: python(o.network_dropout, true),
    ss_mixed_precision: String(o.mixed_precision ?? 'no'),
    ss_full_fp16: python(o.full_fp16 ?? false),
    ss_v2: 'False',
    ss_base_model_version: BASE_MODEL_VERSION[spec.family],
    ss_clip_skip: python(o.clip_skip),
    ss_max_token_length: python(o.max_token_length),
    ss_cache_latents: python(o.cache_latents ?? false),
    ss_seed: String(spec.seed),
    ss_lowram: python(o.lowram ?? false),
    ss_noise_offset: python(o.noise_offset, true),
    ss_multires_noise_discount: '0.3',
    ss_adaptive_noise_scale: 'None',
    ss_zero_terminal_snr: 'False',
    ss_training_comment: 'None',
    ss_sd_scripts_commit_hash: spec.dryRun ? '(dry run)' : '(unknown)',
    ss_optimizer: OPTIMIZER_CLASSES[optimizer.toLowerCase()] ?? optimizer,
    ss_max_grad_norm: '1.0',
    ss_fp8_base: 'False',
    ss_fp8_base_unet: 'False',
    ss_validation_seed: 'None',
    ss_validation_split: '0.0',
    ss_loss_type: 'l2',
    ss_huber_schedule: 'snr',
    ss_huber_c: '0.1',
    ss_huber_scale: '1.0',
    ss_debiased_estimation: 'False',
    ss_ip_noise_gamma_random_strength: 'False',
    ss_noise_offset_random_strength: 'False',
    ss_min_snr_gamma: python(o.min_snr_gamma, true),
    ss_scale_weight_norms: 'None',
    ss_prior_loss_weight: python(o.prior_loss_weight ?? 1, true),
    ...none('ss_multires_noise_iterations', 'ss_ip_noise_gamma', 'ss_max_validation_steps', 'ss_validate_every_n_epochs', 'ss_validate_every_n_steps', 'ss_resize_interpolation'),
    ...none('ss_cpo_beta', 'ss_ddo_alpha', 'ss_ddo_beta', 'ss_dpo_beta', 'ss_mapo_beta', 'ss_bpo_beta', 'ss_bpo_lambda', 'ss_sdpo_beta'),
    // the dataset
    ss_batch_size_per_device: String(o.train_batch_size ?? 1),
    ss_total_batch_size: String(o.train_batch_size ?? 1),
    ss_resolution: `(${width}, ${height})`,
    ss_enable_bucket: python(o.enable_bucket ?? false),
    ss_min_bucket_reso: String(o.min_bucket_reso ?? 256),
    ss_max_bucket_reso: String(o.max_bucket_reso ?? 1024),
    ss_bucket_no_upscale: python(o.bucket_no_upscale ?? false),
    ss_keep_tokens: String(o.keep_tokens ?? 0),
    ss_shuffle_caption: python(o.shuffle_caption ?? false),
    ss_caption_dropout_rate: python(o.caption_dropout_rate ?? 0, true),
    ss_caption_dropout_every_n_epochs: '0',
    ss_caption_tag_dropout_rate: '0.0',
    ss_color_aug: 'False',
    ss_flip_aug: python(o.flip_aug ?? false),
    ss_random_crop: 'False',
    ss_face_crop_aug_range: 'None',
    ss_dataset_dirs: pythonJson(facts?.datasetDirs ?? {}),
    ss_reg_dataset_dirs: '{}',
    ss_tag_frequency: pythonJson(facts?.tagFrequency ?? {}),
    ss_bucket_info: pythonJson(
      {
        buckets: Object.fromEntries(Object.entries(facts?.buckets ?? {}).map(([size, count], i) => [String(i), { resolution: size.split('x').map(Number), count }])),
        mean_img_ar_error: 0,
      },
      new Set(['mean_img_ar_error']),
    ),
    // the model
    ss_sd_model_name: String(o.pretrained_model_name_or_path ?? '').split(/[\\/]/).pop() ?? '',
    ss_sd_model_hash: spec.dryRun ? '(dry run)' : 'None',
    ss_new_sd_model_hash: spec.dryRun ? '(dry run)' : 'None',
    ss_epoch: String(spec.epoch ?? spec.epochs),
    ss_steps: String(spec.steps),
    ss_training_finished_at: seconds(facts?.finishedAt ?? started),
    'modelspec.sai_model_spec': '1.0.0',
    'modelspec.architecture': MODELSPEC_ARCHITECTURE[spec.family],
    'modelspec.implementation': 'diffusers',
    'modelspec.title': spec.outputName,
    'modelspec.resolution': `${width}x${height}`,
    'modelspec.prediction_type': 'epsilon',
    'modelspec.date': started.toISOString().slice(0, 19),
    // sd-scripts records clip_skip as the text encoder layer used, when it is set.
    ...(o.clip_skip !== undefined && { 'modelspec.encoder_layer': String(o.clip_skip) }),
  };
  if (spec.dryRun) {
    metadata.ss_dry_run = 'true';
    metadata['modelspec.description'] =
      'DRY RUN: untrained file written by the dry-run trainer (no training happened); its weights are seeded noise.';
  }
  return metadata;
}

function checkSpec(spec: LoraBuildSpec): void {
  if (!(spec.family in BASE_MODEL_VERSION)) throw new Error(`family: must be one of ${Object.keys(BASE_MODEL_VERSION).join(', ')}, got "${spec.family}"`);
  if (!Number.isInteger(spec.networkDim) || spec.networkDim < 1) throw new Error(`networkDim: must be an integer >= 1, got ${spec.networkDim}`);
  if (!(spec.networkAlpha > 0) || !Number.isFinite(spec.networkAlpha)) throw new Error(`networkAlpha: must be a positive number, got ${spec.networkAlpha}`);
  if (!Number.isInteger(spec.epochs) || spec.epochs < 1) throw new Error(`epochs: must be an integer >= 1, got ${spec.epochs}`);
  if (!Number.isInteger(spec.steps) || spec.steps < 0) throw new Error(`steps: must be an integer >= 0, got ${spec.steps}`);
  if (spec.epoch !== undefined && !(Number.isInteger(spec.epoch) && spec.epoch >= 1 && spec.epoch <= spec.epochs)) {
    throw new Error(`epoch: must be an integer from 1 to epochs (${spec.epochs}), got ${spec.epoch}`);
  }
  if (!Number.isInteger(spec.seed)) throw new Error(`seed: must be an integer, got ${spec.seed}`);
  if (spec.outputName.trim() === '') throw new Error('outputName: must not be empty');
}


function stringHash(text: string): number {
  let hash = 2166136261;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619);
  return hash >>> 0;
}
