/**
 * What sd-scripts' networks.lora patches, module by module, with the real layer sizes: every
 * attention and MLP linear of the CLIP text encoder(s), and in the U-Net every transformer's
 * proj_in/proj_out and its blocks' attention and feed-forward linears. Derived from the
 * architectures' regular shape; SD 1.5's list is checked against a LoRA real sd-scripts wrote in
 * `npm run test:kohya` (264 modules, 32 of them 1×1 convs). Pure.
 */
import type { BaseModelFamily } from '../pipeline/input';

export interface LoraModuleShape {
  name: string;
  inFeatures: number;
  outFeatures: number;
  /** A 1×1 Conv2d (SD 1.x proj_in/proj_out): its weights are [r, in, 1, 1] and [out, r, 1, 1]. */
  conv: boolean;
}

/** One transformer (Transformer2DModel / SpatialTransformer) with `depth` blocks of `channels`, cross-attending to `context`. */
function transformerModules(prefix: string, channels: number, depth: number, context: number, convProjection: boolean): LoraModuleShape[] {
  const linear = (name: string, inFeatures: number, outFeatures: number): LoraModuleShape => ({ name: `${prefix}_${name}`, inFeatures, outFeatures, conv: false });
  const modules = [
    { ...linear('proj_in', channels, channels), conv: convProjection },
    { ...linear('proj_out', channels, channels), conv: convProjection },
  ];
  for (let block = 0; block < depth; block++) {
    const at = `transformer_blocks_${block}`;
    modules.push(
      ...['to_q', 'to_k', 'to_v', 'to_out_0'].map((part) => linear(`${at}_attn1_${part}`, channels, channels)),
      linear(`${at}_attn2_to_q`, channels, channels),
      linear(`${at}_attn2_to_k`, context, channels),
      linear(`${at}_attn2_to_v`, context, channels),
      linear(`${at}_attn2_to_out_0`, channels, channels),
      // GEGLU: the first projection makes twice the hidden width (4 × channels).
      linear(`${at}_ff_net_0_proj`, channels, 8 * channels),
      linear(`${at}_ff_net_2`, 4 * channels, channels),
    );
  }
  return modules;
}

/** A CLIP text encoder's layers: q/k/v/out projections and the two MLP linears. */
function textEncoderModules(prefix: string, layers: number, width: number): LoraModuleShape[] {
  const modules: LoraModuleShape[] = [];
  for (let layer = 0; layer < layers; layer++) {
    const at = `${prefix}_text_model_encoder_layers_${layer}`;
    for (const part of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) modules.push({ name: `${at}_self_attn_${part}`, inFeatures: width, outFeatures: width, conv: false });
    modules.push({ name: `${at}_mlp_fc1`, inFeatures: width, outFeatures: 4 * width, conv: false });
    modules.push({ name: `${at}_mlp_fc2`, inFeatures: 4 * width, outFeatures: width, conv: false });
  }
  return modules;
}

/** SD 1.x: diffusers names, one block per transformer, 1×1 conv projections, CLIP ViT-L/14 (768) context. */
function sd15Modules(): LoraModuleShape[] {
  const transformers: [string, number][] = [
    ['down_blocks_0_attentions_0', 320], ['down_blocks_0_attentions_1', 320],
    ['down_blocks_1_attentions_0', 640], ['down_blocks_1_attentions_1', 640],
    ['down_blocks_2_attentions_0', 1280], ['down_blocks_2_attentions_1', 1280],
    ['mid_block_attentions_0', 1280],
    ...[0, 1, 2].map((i): [string, number] => [`up_blocks_1_attentions_${i}`, 1280]),
    ...[0, 1, 2].map((i): [string, number] => [`up_blocks_2_attentions_${i}`, 640]),
    ...[0, 1, 2].map((i): [string, number] => [`up_blocks_3_attentions_${i}`, 320]),
  ];
  return [
    ...textEncoderModules('lora_te', 12, 768),
    ...transformers.flatMap(([name, channels]) => transformerModules(`lora_unet_${name}`, channels, 1, 768, true)),
  ];
}

/** SDXL: the original SGM names, 2 or 10 blocks per transformer, linear projections, 2048 context, two text encoders. */
function sdxlModules(): LoraModuleShape[] {
  const transformers: [string, number, number][] = [
    ['input_blocks_4_1', 640, 2], ['input_blocks_5_1', 640, 2],
    ['input_blocks_7_1', 1280, 10], ['input_blocks_8_1', 1280, 10],
    ['middle_block_1', 1280, 10],
    ...[0, 1, 2].map((i): [string, number, number] => [`output_blocks_${i}_1`, 1280, 10]),
    ...[3, 4, 5].map((i): [string, number, number] => [`output_blocks_${i}_1`, 640, 2]),
  ];
  return [
    ...textEncoderModules('lora_te1', 12, 768),
    ...textEncoderModules('lora_te2', 32, 1280),
    ...transformers.flatMap(([name, channels, depth]) => transformerModules(`lora_unet_${name}`, channels, depth, 2048, false)),
  ];
}

const MODULES: Record<BaseModelFamily, LoraModuleShape[]> = { sd15: sd15Modules(), sdxl: sdxlModules() };

/** Every module networks.lora trains for this family, text encoders first. */
export function loraModules(family: BaseModelFamily): readonly LoraModuleShape[] {
  return MODULES[family];
}
