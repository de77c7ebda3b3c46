/**
 * Writes a small but structurally faithful kohya LoRA (networks.lora): a few real-looking modules,
 * each a `lora_down` [rank, in] / `lora_up` [out, rank] / `alpha` triple in F16, with the metadata
 * sd-scripts writes. The dry-run trainer uses it so everything downstream handles a real format.
 * Pure and deterministic for a given spec (and `startedAt`).
 */
import type { BaseModelFamily } from '../pipeline/input';
import { sha256AfterHeader, TensorToWrite, writeSafetensors } from '../safetensors';
import { mulberry32 } from '../random';

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
}

interface ModuleShape {
  name: string;
  inFeatures: number;
  outFeatures: number;
}

/**
 * Kohya names modules after the model it patches: diffusers names for the SD 1.x U-Net
 * (`down_blocks_0_attentions_0`), the original SGM names for SDXL (`input_blocks_4_1`), and the
 * CLIP text encoders as `lora_te_` (SD 1.x) or `lora_te1_`/`lora_te2_` (SDXL's two encoders).
 * Dimensions are the real ones of those layers.
 */
const MODULES: Record<BaseModelFamily, ModuleShape[]> = {
  sd15: [
    { name: 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q', inFeatures: 320, outFeatures: 320 },
    { name: 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k', inFeatures: 320, outFeatures: 320 },
    { name: 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k', inFeatures: 768, outFeatures: 320 },
    { name: 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v', inFeatures: 768, outFeatures: 320 },
    { name: 'lora_te_text_model_encoder_layers_0_self_attn_q_proj', inFeatures: 768, outFeatures: 768 },
    { name: 'lora_te_text_model_encoder_layers_0_self_attn_v_proj', inFeatures: 768, outFeatures: 768 },
  ],
  sdxl: [
    { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q', inFeatures: 640, outFeatures: 640 },
    { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k', inFeatures: 640, outFeatures: 640 },
    { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k', inFeatures: 2048, outFeatures: 640 },
    { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_v', inFeatures: 2048, outFeatures: 640 },
    { name: 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', inFeatures: 768, outFeatures: 768 },
    { name: 'lora_te2_text_model_encoder_layers_0_self_attn_q_proj', inFeatures: 1280, outFeatures: 1280 },
  ],
};

export const BASE_MODEL_VERSION: Record<BaseModelFamily, string> = { sd15: 'sd_v1', sdxl: 'sdxl_base_v1-0' };
export const MODELSPEC_ARCHITECTURE: Record<BaseModelFamily, string> = {
  sd15: 'stable-diffusion-v1/lora',
  sdxl: 'stable-diffusion-xl-v1-base/lora',
};
const RESOLUTION: Record<BaseModelFamily, string> = { sd15: '512x512', sdxl: '1024x1024' };

export function buildLora(spec: LoraBuildSpec): Buffer {
  checkSpec(spec);
  const tensors: TensorToWrite[] = [];
  for (const module of MODULES[spec.family]) {
    const random = mulberry32(spec.seed ^ stringHash(module.name));
    // Kaiming-like scale for down, small up weights: the magnitudes of a briefly trained LoRA.
    const downScale = 1 / Math.sqrt(module.inFeatures);
    const down = new Float32Array(spec.networkDim * module.inFeatures).map(() => (random() * 2 - 1) * downScale);
    const up = new Float32Array(module.outFeatures * spec.networkDim).map(() => (random() * 2 - 1) * 0.01);
    tensors.push(
      { name: `${module.name}.lora_down.weight`, dtype: 'F16', shape: [spec.networkDim, module.inFeatures], data: down },
      { name: `${module.name}.lora_up.weight`, dtype: 'F16', shape: [module.outFeatures, spec.networkDim], data: up },
      { name: `${module.name}.alpha`, dtype: 'F16', shape: [], data: Float32Array.of(spec.networkAlpha) },
    );
  }

  const metadata: Record<string, string> = {
    ss_output_name: spec.outputName,
    ss_network_module: 'networks.lora',
    ss_network_dim: String(spec.networkDim),
    ss_network_alpha: String(spec.networkAlpha),
    ss_base_model_version: BASE_MODEL_VERSION[spec.family],
    ss_v2: 'False',
    ss_num_epochs: String(spec.epochs),
    ss_steps: String(spec.steps),
    ss_seed: String(spec.seed),
    // sd-scripts stores time.time(): seconds since the epoch as a float.
    ss_training_started_at: String((spec.startedAt ?? new Date()).getTime() / 1000),
    'modelspec.sai_model_spec': '1.0.0',
    'modelspec.architecture': MODELSPEC_ARCHITECTURE[spec.family],
    'modelspec.title': spec.outputName,
    'modelspec.resolution': RESOLUTION[spec.family],
  };
  if (spec.epoch !== undefined) metadata.ss_epoch = String(spec.epoch);
  if (spec.dryRun) {
    metadata.ss_dry_run = 'true';
    metadata['modelspec.description'] =
      'DRY RUN: untrained file written by the dry-run trainer (no training happened); its weights are seeded noise.';
  }
  // The hash covers only the data section, which the header does not change: write once to hash it.
  const hash = sha256AfterHeader(writeSafetensors(tensors, metadata));
  return writeSafetensors(tensors, { ...metadata, sshs_model_hash: hash });
}

function checkSpec(spec: LoraBuildSpec): void {
  if (!(spec.family in MODULES)) throw new Error(`family: must be one of ${Object.keys(MODULES).join(', ')}, got "${spec.family}"`);
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
