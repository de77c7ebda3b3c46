/**
 * The sd-scripts options for a run: the reference extension's defaults per family plus the run's
 * own settings. Values are already in the types sd-scripts reads from TOML (it does no conversion:
 * `resolution` must be the string "W,H"). Paths (train_data_dir, output_dir, the checkpoint) are
 * filled in by the trainer backend, which knows where things are on its machine.
 */
import type { TrainingRun } from '../pipeline/input';
import { bucketSettings } from './buckets';

export type KohyaValue = string | number | boolean;
export type KohyaOptions = Record<string, KohyaValue>;

export function kohyaOptionsFor(run: Pick<TrainingRun, 'baseModel' | 'training' | 'runName'>): KohyaOptions {
  const family = run.baseModel.family;
  const buckets = bucketSettings(family);
  const common: KohyaOptions = {
    output_name: run.runName,
    save_model_as: 'safetensors',
    network_module: 'networks.lora',
    network_dim: run.training.networkDim,
    network_alpha: run.training.networkAlpha,
    learning_rate: 1e-4,
    unet_lr: 1e-4,
    text_encoder_lr: 1e-5,
    optimizer_type: 'AdamW8bit',
    lr_scheduler: 'cosine_with_restarts',
    max_train_epochs: run.training.epochs,
    save_every_n_epochs: 1,
    train_batch_size: 1,
    mixed_precision: 'fp16',
    resolution: `${buckets.resolution},${buckets.resolution}`,
    enable_bucket: true,
    min_bucket_reso: buckets.minBucketReso,
    max_bucket_reso: buckets.maxBucketReso,
    bucket_reso_steps: buckets.step,
    // sd-scripts' default is ".caption"; our datasets carry .txt captions.
    caption_extension: '.txt',
    shuffle_caption: true,
    max_token_length: 225,
    xformers: true,
    cache_latents: true,
    seed: 1337,
  };
  // clip_skip only applies to SD 1.x text encoders; SDXL's VAE overflows in fp16 without no_half_vae.
  return family === 'sdxl' ? { ...common, no_half_vae: true } : { ...common, clip_skip: 2 };
}
