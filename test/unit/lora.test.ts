import { buildLora, LoraBuildSpec } from '../../lib/lora/build';
import { expectationFor, InvalidLoraError, loraHeaderLength, verifyLora, verifyLoraHeader } from '../../lib/lora/verify';
import { readSafetensorsHeader, sha256AfterHeader, tensorValues, TensorToWrite, writeSafetensors } from '../../lib/safetensors';

const STARTED_AT = new Date('2024-05-01T12:00:00Z');

function spec(overrides: Partial<LoraBuildSpec> = {}): LoraBuildSpec {
  return {
    family: 'sd15',
    networkDim: 4,
    networkAlpha: 2,
    outputName: 'demo',
    epochs: 10,
    steps: 500,
    seed: 1337,
    dryRun: true,
    startedAt: STARTED_AT,
    ...overrides,
  };
}

/**
 * Decodes a file into writable tensors, lets the test damage them, and writes it again; the
 * sshs_model_hash is renewed (as a fresh sd-scripts save would) unless the test set it itself.
 */
function rewrite(buf: Buffer, damage: (tensors: TensorToWrite[], metadata: Record<string, string>) => TensorToWrite[] | void): Buffer {
  const header = readSafetensorsHeader(buf);
  let tensors: TensorToWrite[] = Object.entries(header.tensors).map(([name, info]) => ({
    name,
    dtype: 'F16',
    shape: info.shape,
    data: tensorValues(buf, header, name),
  }));
  const metadata = { ...header.metadata };
  tensors = damage(tensors, metadata) ?? tensors;
  const written = writeSafetensors(tensors, metadata);
  if (metadata.sshs_model_hash === undefined || metadata.sshs_model_hash !== header.metadata.sshs_model_hash) return written;
  return writeSafetensors(tensors, { ...metadata, sshs_model_hash: sha256AfterHeader(written) });
}

describe('buildLora', () => {
  it('writes an SD 1.5 LoRA shaped like sd-scripts\' own: every module, F32, 1×1 conv projections, its metadata keys', () => {
    const file = buildLora(spec());
    const summary = verifyLora(file, { family: 'sd15', networkDim: 4 });
    expect(summary).toMatchObject({ tensorCount: 792, modules: 264, rank: 4 });

    const header = readSafetensorsHeader(file);
    const names = Object.keys(header.tensors);
    expect(names).toContain('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight');
    expect(names.filter((n) => n.startsWith('lora_unet_'))).toHaveLength(3 * 192);
    expect(names.filter((n) => n.startsWith('lora_te_'))).toHaveLength(3 * 72);
    expect(new Set(Object.values(header.tensors).map((t) => t.dtype))).toEqual(new Set(['F32']));
    expect(header.tensors['lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight'].shape).toEqual([4, 768]);
    expect(header.tensors['lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight'].shape).toEqual([320, 4]);
    expect(header.tensors['lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj.lora_up.weight'].shape).toEqual([10240, 4]);
    expect(header.tensors['lora_unet_up_blocks_3_attentions_2_proj_out.lora_down.weight'].shape).toEqual([4, 320, 1, 1]);
    expect(names.filter((n) => n.endsWith('proj_in.lora_down.weight') || n.endsWith('proj_out.lora_down.weight'))).toHaveLength(32);
    expect(header.tensors['lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha'].shape).toEqual([]);
    expect(Array.from(tensorValues(file, header, 'lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha'))).toEqual([2]);

    // sd-scripts' spelling: Python's str() of each value.
    expect(summary.metadata).toMatchObject({
      ss_output_name: 'demo',
      ss_network_dim: '4',
      ss_network_alpha: '2.0',
      ss_network_module: 'networks.lora',
      ss_base_model_version: 'sd_v1',
      ss_num_epochs: '10',
      ss_steps: '500',
      ss_seed: '1337',
      ss_training_started_at: '1714564800.0',
      ss_learning_rate: '0.0001',
      ss_text_encoder_lr: 'None',
      ss_v2: 'False',
      'modelspec.architecture': 'stable-diffusion-v1/lora',
      'modelspec.title': 'demo',
      'modelspec.resolution': '512x512',
      'modelspec.date': '2024-05-01T12:00:00',
      ss_dry_run: 'true',
    });
    expect(Object.keys(summary.metadata).length).toBeGreaterThanOrEqual(100);
    expect(summary.metadata['modelspec.description']).toMatch(/dry-run.*untrained|untrained.*dry-run/i);
    expect(summary.metadata.sshs_model_hash).toBe(sha256AfterHeader(file));
    expect(summary.metadata.sshs_legacy_hash).toMatch(/^[0-9a-f]{8}$/);
  });

  it('writes the run\'s facts into the metadata as sd-scripts spells them', () => {
    const facts = {
      options: { resolution: '256,256', learning_rate: 1e-5, unet_lr: 2.5e-5, optimizer_type: 'AdamW8bit', save_precision: 'fp16', shuffle_caption: true, pretrained_model_name_or_path: '/models/sd15.safetensors' },
      datasetDirs: { '1_acme': { n_repeats: 1, img_count: 2 } },
      tagFrequency: { '1_acme': { acme: 2, 'café au lait': 1 } },
      buckets: { '256x256': 2 },
      batchesPerEpoch: 2,
      maxTrainSteps: 4,
    };
    const file = buildLora(spec({ training: facts, epochs: 2, steps: 4, epoch: 2 }));
    const { metadata, tensors } = readSafetensorsHeader(file);
    expect(metadata).toMatchObject({
      ss_resolution: '(256, 256)',
      'modelspec.resolution': '256x256',
      ss_learning_rate: '1e-05',
      ss_unet_lr: '2.5e-05',
      ss_optimizer: 'bitsandbytes.optim.adamw.AdamW8bit',
      ss_shuffle_caption: 'True',
      ss_sd_model_name: 'sd15.safetensors',
      ss_dataset_dirs: '{"1_acme": {"n_repeats": 1, "img_count": 2}}',
      ss_tag_frequency: '{"1_acme": {"acme": 2, "caf\\u00e9 au lait": 1}}',
      ss_bucket_info: '{"buckets": {"0": {"resolution": [256, 256], "count": 2}}, "mean_img_ar_error": 0.0}',
      ss_num_train_images: '2',
      ss_max_train_steps: '4',
    });
    expect(new Set(Object.values(tensors).map((t) => t.dtype))).toEqual(new Set(['F16']));
  });

  it('writes an SDXL LoRA with both text encoders and the SGM U-Net names', () => {
    const file = buildLora(spec({ family: 'sdxl', networkDim: 1, networkAlpha: 1 }));
    const summary = verifyLora(file, { family: 'sdxl', networkDim: 1 });
    expect(summary).toMatchObject({ modules: 72 + 192 + 722, rank: 1 });
    const names = Object.keys(readSafetensorsHeader(file).tensors);
    expect(names.filter((n) => n.startsWith('lora_te1_') && n.endsWith('.alpha'))).toHaveLength(72);
    expect(names.filter((n) => n.startsWith('lora_te2_') && n.endsWith('.alpha'))).toHaveLength(192);
    expect(names.some((n) => n.startsWith('lora_te_'))).toBe(false);
    expect(names).toContain('lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha');
    expect(names).toContain('lora_unet_middle_block_1_transformer_blocks_9_ff_net_2.alpha');
    expect(summary.metadata).toMatchObject({
      ss_base_model_version: 'sdxl_base_v1-0',
      'modelspec.architecture': 'stable-diffusion-xl-v1-base/lora',
      'modelspec.resolution': '1024x1024',
    });
  });

  it('is deterministic for a spec and differs by seed', () => {
    expect(buildLora(spec()).equals(buildLora(spec()))).toBe(true);
    expect(sha256AfterHeader(buildLora(spec({ seed: 1 })))).not.toBe(sha256AfterHeader(buildLora(spec())));
  });

  it('marks only dry runs as dry runs', () => {
    const metadata = verifyLora(buildLora(spec({ dryRun: false, epoch: 3 })), { family: 'sd15' }).metadata;
    expect(metadata.ss_dry_run).toBeUndefined();
    expect(metadata['modelspec.description']).toBeUndefined();
    expect(metadata.ss_epoch).toBe('3');
  });

  it('names a bad parameter', () => {
    expect(() => buildLora(spec({ networkDim: 0 }))).toThrow('networkDim: must be an integer >= 1, got 0');
    expect(() => buildLora(spec({ epoch: 11 }))).toThrow('epoch: must be an integer from 1 to epochs (10), got 11');
  });
});

describe('verifyLora', () => {
  const good = buildLora(spec({ networkDim: 8, networkAlpha: 4 }));
  const downQ = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight';

  it('rejects a truncated file as not safetensors', () => {
    expect(() => verifyLora(good.subarray(0, good.length - 100), { family: 'sd15' })).toThrow(
      /^not a valid safetensors file: tensor ".*": data_offsets \[\d+, \d+\] lie outside the \d+-byte data section$/,
    );
    expect(() => verifyLora(Buffer.from('<html>not found</html>'), { family: 'sd15' })).toThrow(/^not a valid safetensors file: header length/);
  });

  it('throws InvalidLoraError so callers can branch on the name', () => {
    let caught: unknown;
    try {
      verifyLora(Buffer.alloc(3), { family: 'sd15' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidLoraError);
    expect((caught as Error).name).toBe('InvalidLoraError');
  });

  it('names the module whose alpha is missing', () => {
    const damaged = rewrite(good, (tensors) => tensors.filter((t) => t.name !== 'lora_te_text_model_encoder_layers_0_self_attn_v_proj.alpha'));
    expect(() => verifyLora(damaged, { family: 'sd15' })).toThrow(
      'module "lora_te_text_model_encoder_layers_0_self_attn_v_proj" is incomplete: missing .alpha',
    );
  });

  it('names a rank that differs from network_dim', () => {
    expect(() => verifyLora(good, { family: 'sd15', networkDim: 32 })).toThrow('rank mismatch: the LoRA has rank 8 but network_dim is 32');
  });

  it('names a module whose down and up ranks disagree', () => {
    const damaged = rewrite(good, (tensors) => {
      const down = tensors.find((t) => t.name === downQ)!;
      down.shape = [4, 320];
      down.data = down.data.subarray(0, 4 * 320);
    });
    expect(() => verifyLora(damaged, { family: 'sd15' })).toThrow(
      'module "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": lora_down rank 4 does not match lora_up rank 8',
    );
  });

  it('names metadata that contradicts the tensors', () => {
    const damaged = rewrite(good, (_tensors, metadata) => {
      metadata.ss_network_dim = '64';
    });
    expect(() => verifyLora(damaged, { family: 'sd15' })).toThrow('rank mismatch: metadata ss_network_dim is 64 but the tensors have rank 8');
  });

  it('names the tensor holding NaN or Inf', () => {
    const withNaN = rewrite(good, (tensors) => {
      tensors.find((t) => t.name === downQ)!.data[17] = NaN;
    });
    expect(() => verifyLora(withNaN, { family: 'sd15' })).toThrow(`tensor "${downQ}" contains NaN`);
    const withInf = rewrite(good, (tensors) => {
      tensors.find((t) => t.name === downQ)!.data[0] = 1e6; // beyond F16: stored as Inf
    });
    expect(() => verifyLora(withInf, { family: 'sd15' })).toThrow(`tensor "${downQ}" contains Inf`);
  });

  it('rejects a full checkpoint', () => {
    const checkpoint = writeSafetensors(
      [
        { name: 'model.diffusion_model.input_blocks.0.0.weight', dtype: 'F16', shape: [2, 2], data: new Float32Array(4) },
        { name: 'first_stage_model.decoder.conv_in.bias', dtype: 'F16', shape: [2], data: new Float32Array(2) },
      ],
      {},
    );
    expect(() => verifyLora(checkpoint, { family: 'sd15' })).toThrow(
      /^no LoRA tensors \(lora_unet_\*, lora_te\*_\*\) found; the file starts with first_stage_model\.decoder\.conv_in\.bias, model\.diffusion_model.*not a kohya LoRA$/,
    );
  });

  it('rejects stray tensors in a LoRA', () => {
    const damaged = rewrite(good, (tensors) => [...tensors, { name: 'lora_unet_x.hada_w1_a', dtype: 'F16', shape: [1], data: new Float32Array(1) }]);
    expect(() => verifyLora(damaged, { family: 'sd15' })).toThrow('tensor "lora_unet_x.hada_w1_a" is not part of a LoRA module');
  });

  it('rejects a LoRA for the other base model family', () => {
    const sdxl = buildLora(spec({ family: 'sdxl', networkDim: 1 }));
    expect(() => verifyLora(sdxl, { family: 'sd15' })).toThrow('metadata ss_base_model_version is "sdxl_base_v1-0", which is not SD 1.x (family sd15)');
    const sdxlArchitectureOnly = rewrite(sdxl, (_tensors, metadata) => {
      delete metadata.ss_base_model_version;
    });
    expect(() => verifyLora(sdxlArchitectureOnly, { family: 'sd15' })).toThrow(
      'metadata modelspec.architecture is "stable-diffusion-xl-v1-base/lora", which is not SD 1.x (family sd15)',
    );
    // Without the metadata the key names alone must give it away.
    const sdxlKeysOnly = rewrite(sdxlArchitectureOnly, (_tensors, metadata) => {
      delete metadata['modelspec.architecture'];
    });
    expect(() => verifyLora(sdxlKeysOnly, { family: 'sd15' })).toThrow(/^module "lora_te1_.*" uses SDXL key names, but the base model family is sd15/);
    const sd15KeysOnly = rewrite(good, (_tensors, metadata) => {
      delete metadata.ss_base_model_version;
      delete metadata['modelspec.architecture'];
    });
    expect(() => verifyLora(sd15KeysOnly, { family: 'sdxl' })).toThrow(/^module "lora_te_.*" uses SD 1\.x key names, but the base model family is sdxl/);
    const sdxlUnetOnly = rewrite(sdxlKeysOnly, (tensors) => tensors.filter((t) => t.name.startsWith('lora_unet_')));
    expect(() => verifyLora(sdxlUnetOnly, { family: 'sd15' })).toThrow(/^module "lora_unet_input_blocks_.*" uses SDXL key names/);
  });
});

describe('verifyLora: what else must match the run', () => {
  const good = buildLora(spec({ networkDim: 8, networkAlpha: 4 }));
  const run = { family: 'sd15' as const, networkDim: 8, networkAlpha: 4, networkModule: 'networks.lora' };
  const module = 'lora_unet_down_blocks_0_attentions_0_proj_in';
  /** A 1×1 conv module (SD 1.x proj_in): rank `rank`, kernel `k`×`k` on lora_down. */
  const convModule = (name: string, rank: number, k = 1): TensorToWrite[] => [
    { name: `${name}.lora_down.weight`, dtype: 'F16', shape: [rank, 320, k, k], data: new Float32Array(rank * 320 * k * k) },
    { name: `${name}.lora_up.weight`, dtype: 'F16', shape: [320, rank, 1, 1], data: new Float32Array(320 * rank) },
    { name: `${name}.alpha`, dtype: 'F16', shape: [], data: Float32Array.of(4) },
  ];

  it('passes the matching run and returns the hash of the bytes after the header', () => {
    const verified = verifyLora(good, run);
    expect(verified.sha256AfterHeader).toBe(sha256AfterHeader(good));
    expect(verified.sha256AfterHeader).toBe(verified.metadata.sshs_model_hash);
  });

  it('holds 1x1 conv modules to network_dim and 3x3 conv modules only to each other', () => {
    // The built file already holds sd-scripts' 32 proj_in/proj_out 1×1 convs, at the network's rank.
    expect(verifyLora(good, { family: 'sd15', networkDim: 8 }).modules).toBe(264);
    const otherRank = rewrite(good, (tensors) => [...tensors.filter((t) => !t.name.startsWith(`${module}.`)), ...convModule(module, 4)]);
    expect(() => verifyLora(otherRank, { family: 'sd15', networkDim: 8 })).toThrow(
      `rank mismatch: module "${module}" has rank 4 but "lora_te_text_model_encoder_layers_0_mlp_fc1" has rank 8`,
    );
    const locon = rewrite(good, (tensors) => [...tensors, ...convModule('lora_unet_down_blocks_0_resnets_0_conv1', 4, 3)]);
    expect(verifyLora(locon, { family: 'sd15', networkDim: 8 }).rank).toBe(8);
    const mixedLocon = rewrite(locon, (tensors) => [...tensors, ...convModule('lora_unet_down_blocks_0_resnets_1_conv2', 2, 3)]);
    expect(() => verifyLora(mixedLocon, { family: 'sd15' })).toThrow(
      'rank mismatch: conv module "lora_unet_down_blocks_0_resnets_1_conv2" has rank 2 but "lora_unet_down_blocks_0_resnets_0_conv1" has rank 4',
    );
  });

  it('names an alpha that differs from network_alpha, within the precision of its dtype', () => {
    const alpha = 'lora_te_text_model_encoder_layers_0_self_attn_v_proj.alpha';
    const damaged = rewrite(good, (tensors) => {
      tensors.find((t) => t.name === alpha)!.data[0] = 8;
    });
    expect(() => verifyLora(damaged, { ...run, networkAlpha: 4 })).toThrow(`tensor "${alpha}" is 8 but network_alpha is 4`);
    // 0.3 is not exact in F16 (0.2998…): still the configured alpha.
    const inexact = rewrite(good, (tensors, metadata) => {
      for (const t of tensors.filter((t) => t.name.endsWith('.alpha'))) t.data[0] = 0.3;
      metadata.ss_network_alpha = '0.3';
    });
    expect(verifyLora(inexact, { ...run, networkAlpha: 0.3 }).rank).toBe(8);
  });

  it('names metadata from another configuration', () => {
    const withMetadata = (changes: Record<string, string>) =>
      rewrite(good, (_tensors, metadata) => {
        Object.assign(metadata, changes);
      });
    expect(() => verifyLora(withMetadata({ ss_network_alpha: '16.0' }), run)).toThrow("metadata ss_network_alpha is 16.0 but the run's network_alpha is 4");
    expect(verifyLora(withMetadata({ ss_network_alpha: '4.0' }), run).rank).toBe(8);
    expect(verifyLora(withMetadata({ ss_network_alpha: 'Dynamic', ss_network_dim: 'Dynamic' }), run).rank).toBe(8);
    expect(() => verifyLora(withMetadata({ ss_network_module: 'lycoris.kohya' }), run)).toThrow(
      'metadata ss_network_module is "lycoris.kohya" but the run trains networks.lora',
    );
  });

  it('names an sshs_model_hash that does not match the bytes after the header', () => {
    const wrong = 'a'.repeat(64);
    const damaged = rewrite(good, (_tensors, metadata) => {
      metadata.sshs_model_hash = wrong;
    });
    expect(() => verifyLora(damaged, run)).toThrow(
      `metadata sshs_model_hash is ${wrong} but the bytes after the header hash to ${sha256AfterHeader(damaged)}: the tensors changed after sd-scripts saved the file`,
    );
    // Without a recorded hash there is nothing to compare: the file passes.
    const unhashed = rewrite(good, (_tensors, metadata) => {
      delete metadata.sshs_model_hash;
    });
    expect(verifyLora(unhashed, run).sha256AfterHeader).toBe(sha256AfterHeader(unhashed));
  });

  it('finds NaN in BF16 tensors', () => {
    const header = readSafetensorsHeader(good);
    const bf16 = writeSafetensors(
      Object.entries(header.tensors).map(([name, info]) => {
        const data = tensorValues(good, header, name);
        if (name.endsWith('attn1_to_k.lora_up.weight')) data[7] = NaN;
        return { name, dtype: 'BF16' as const, shape: info.shape, data };
      }),
      {},
    );
    expect(() => verifyLora(bf16, { family: 'sd15' })).toThrow(
      'tensor "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k.lora_up.weight" contains NaN (element 7)',
    );
  });

  it('judges the structure from the header bytes alone', () => {
    const headerEnd = 8 + loraHeaderLength(good, good.length);
    expect(verifyLoraHeader(good.subarray(0, headerEnd), good.length, run)).toMatchObject({ modules: 264, rank: 8 });
    const checkpoint = writeSafetensors([{ name: 'model.diffusion_model.out.2.weight', dtype: 'F16', shape: [4], data: new Float32Array(4) }], {});
    const checkpointEnd = 8 + loraHeaderLength(checkpoint, checkpoint.length);
    expect(() => verifyLoraHeader(checkpoint.subarray(0, checkpointEnd), checkpoint.length, run)).toThrow(/^no LoRA tensors/);
    expect(() => loraHeaderLength(Buffer.from('<html>'), 6)).toThrow('not a valid safetensors file: file is 6 bytes, shorter than the 8-byte header length prefix');
  });

  it('takes its expectation from the kohya options the run used', () => {
    expect(expectationFor('sdxl', { network_dim: 16, network_alpha: 8, network_module: 'networks.lora', seed: 1 })).toEqual({
      family: 'sdxl',
      networkDim: 16,
      networkAlpha: 8,
      networkModule: 'networks.lora',
    });
    expect(expectationFor('sd15', {})).toEqual({ family: 'sd15', networkDim: undefined, networkAlpha: undefined, networkModule: undefined });
  });
});
