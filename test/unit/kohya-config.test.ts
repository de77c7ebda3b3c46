import { closestName } from '../../lib/did-you-mean';
import { flattenKohyaSections, KohyaConfigError, kohyaDifferences, kohyaOptionsFor, kohyaPreset, maxTokenLengthOf, resolveKohyaOptions } from '../../lib/kohya/config';
import { KohyaFileOptions, KohyaOverrides, withoutBucketSettings } from '../../lib/kohya/options';
import { formatZodError, TrainingRunInput } from '../../lib/pipeline/input';

function overridesError(raw: unknown): string {
  const result = KohyaFileOptions.safeParse(raw);
  if (result.success) throw new Error(`expected ${JSON.stringify(raw)} to be rejected`);
  return formatZodError(result.error, 'kohya');
}

function configError(run: () => unknown): KohyaConfigError {
  try {
    run();
  } catch (err) {
    if (err instanceof KohyaConfigError) return err;
    throw err;
  }
  throw new Error('expected a KohyaConfigError');
}

describe('presets', () => {
  it("sd15: the reference extension's defaults at 512 with preprocessing's buckets", () => {
    expect(kohyaPreset('sd15')).toEqual({
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
      save_model_as: 'safetensors',
      resolution: '512,512',
      enable_bucket: true,
      min_bucket_reso: 256,
      max_bucket_reso: 1024,
      bucket_reso_steps: 64,
      caption_extension: '.txt',
      shuffle_caption: true,
      max_token_length: 225,
      clip_skip: 2,
      seed: 1337,
    });
  });

  it('sdxl: 1024 with no_half_vae and without clip_skip', () => {
    const preset = kohyaPreset('sdxl');
    expect(preset).toMatchObject({ resolution: '1024,1024', no_half_vae: true, min_bucket_reso: 512, max_bucket_reso: 2048 });
    expect(preset).not.toHaveProperty('clip_skip');
  });
});

describe('options schemas', () => {
  it('normalises values to the types sd-scripts reads', () => {
    expect(
      KohyaFileOptions.parse({ resolution: 768, caption_extension: 'txt', optimizer_type: 'adamw8bit', unet_lr: 2e-4, shuffle_caption: false }),
    ).toEqual({ resolution: '768,768', caption_extension: '.txt', optimizer_type: 'AdamW8bit', unet_lr: 2e-4, shuffle_caption: false });
    expect(KohyaFileOptions.parse({ resolution: [1024, 768] })).toEqual({ resolution: '1024,768' });
    expect(KohyaFileOptions.parse({ resolution: '512x512' })).toEqual({ resolution: '512,512' });
    expect(KohyaOverrides.parse({ optimizer_type: 'pytorch_optimizer.CAME' })).toEqual({ optimizer_type: 'pytorch_optimizer.CAME' });
  });

  it("keeps preprocessing's bucket settings out of a run's overrides, which a file may repeat", () => {
    const result = KohyaOverrides.safeParse({ resolution: '512,512', min_bucket_reso: 256, seed: 3 });
    expect(result.success).toBe(false);
    expect(formatZodError(result.error!, 'kohya')).toBe(
      [
        "kohya.resolution: is set from preprocessing's bucket settings, the sizes the images are written at: remove it",
        "kohya.min_bucket_reso: is set from preprocessing's bucket settings, the sizes the images are written at: remove it",
      ].join('; '),
    );
    const fromFile = KohyaFileOptions.parse({ resolution: '512,512', min_bucket_reso: 256, seed: 3 });
    expect(withoutBucketSettings(fromFile)).toEqual({ seed: 3 });
  });

  it('rejects unknown options with a did-you-mean hint, and every other problem at once', () => {
    expect(overridesError({ netwrok_dim: 8, networkAlpha: 4, unet_lr: 'fast', frobnicate: 1 })).toBe(
      [
        'kohya.netwrok_dim: is not an sd-scripts option this pipeline supports (did you mean "network_dim"?)',
        'kohya.networkAlpha: is not an sd-scripts option this pipeline supports (did you mean "network_alpha"?)',
        'kohya.unet_lr: Invalid input: expected number, received string',
        'kohya.frobnicate: is not an sd-scripts option this pipeline supports',
      ].join('; '),
    );
  });

  it('says why the pipeline sets some options itself', () => {
    expect(overridesError({ train_data_dir: '/x', output_name: 'y', resume: '/z' })).toBe(
      [
        'kohya.train_data_dir: is set by the trainer to the uploaded dataset',
        'kohya.output_name: is the run name',
        'kohya.resume: is managed by the training container (managed spot resumes from its saved state)',
      ].join('; '),
    );
  });

  it('pins what the pipeline relies on, saying why', () => {
    expect(overridesError({ caption_extension: '.caption' })).toMatch(/^kohya\.caption_extension: must be "\.txt": the pipeline writes each caption as <image>\.txt/);
    expect(overridesError({ network_module: 'lycoris.kohya' })).toMatch(/^kohya\.network_module: must be "networks\.lora"/);
    expect(overridesError({ max_token_length: 100 })).toBe('kohya.max_token_length: must be 75, 150 or 225 (CLIP tokens; chunks of 75)');
    expect(overridesError({ optimizer_type: 'Adamw9bit' })).toMatch(/^kohya\.optimizer_type: "Adamw9bit" is not an sd-scripts optimizer \(did you mean "AdamW8bit"\?\)/);
    expect(overridesError({ resolution: '512,abc' })).toMatch(/^kohya\.resolution: must be a size in pixels like "512,512"/);
  });
});

describe('resolveKohyaOptions', () => {
  it('applies overrides over the preset, in option order', () => {
    const options = resolveKohyaOptions('sd15', { unet_lr: 2e-4, noise_offset: 0.05 });
    expect(options).toMatchObject({ unet_lr: 2e-4, noise_offset: 0.05, clip_skip: 2 });
    expect(Object.keys(options).indexOf('noise_offset')).toBeLessThan(Object.keys(options).indexOf('resolution'));
  });

  it('accepts bucket settings equal to preprocessing\'s and rejects others, hinting at the other family', () => {
    expect(resolveKohyaOptions('sdxl', { resolution: '1024,1024', bucket_reso_steps: 64 })).toMatchObject({ resolution: '1024,1024' });
    const error = configError(() => resolveKohyaOptions('sdxl', { resolution: '512,512', min_bucket_reso: 256 }));
    expect(error.issues.map((issue) => issue.key)).toEqual(['resolution', 'min_bucket_reso']);
    expect(error.message).toMatch(
      /^sd-scripts options for sdxl: resolution: must be "1024,1024" for sdxl, got "512,512": preprocessing wrote the images at the bucket sizes this value gives \(that is the sd15 value: is the base model sd15\?\)/,
    );
  });

  it('rejects cache_text_encoder_outputs with shuffle_caption (the preset\'s) and without network_train_unet_only', () => {
    const error = configError(() => resolveKohyaOptions('sdxl', { cache_text_encoder_outputs: true }));
    expect(error.issues).toEqual([
      { key: 'cache_text_encoder_outputs', message: expect.stringContaining('cannot be used with shuffle_caption = true') },
      { key: 'cache_text_encoder_outputs', message: expect.stringContaining('needs network_train_unet_only = true') },
    ]);
    expect(resolveKohyaOptions('sdxl', { cache_text_encoder_outputs: true, shuffle_caption: false, network_train_unet_only: true })).toMatchObject({
      cache_text_encoder_outputs: true,
    });
  });

  it('rejects options of the other family', () => {
    expect(configError(() => resolveKohyaOptions('sd15', { cache_text_encoder_outputs: true, shuffle_caption: false, network_train_unet_only: true })).message).toContain(
      'cache_text_encoder_outputs: only applies to sdxl, not sd15',
    );
    expect(configError(() => resolveKohyaOptions('sdxl', { clip_skip: 2 })).message).toContain('clip_skip: does not apply to sdxl');
  });

  it('leaves max_token_length out for 75, sd-scripts\' default, and reports the limit either way', () => {
    const options = resolveKohyaOptions('sd15', { max_token_length: 75 });
    expect(options).not.toHaveProperty('max_token_length');
    expect(maxTokenLengthOf(options)).toBe(75);
    expect(maxTokenLengthOf(resolveKohyaOptions('sd15', {}))).toBe(225);
  });
});

describe('kohyaOptionsFor and the run input', () => {
  it('puts the run\'s shorthands, overrides and name into the options', () => {
    const run = TrainingRunInput.parse({ runName: 'cat', dataset: '/d', training: { epochs: 4, networkDim: 16, kohya: { unet_lr: 3e-4 } } });
    expect(kohyaOptionsFor(run)).toMatchObject({ max_train_epochs: 4, network_dim: 16, network_alpha: 16, unet_lr: 3e-4, output_name: 'cat', max_token_length: 225 });
  });

  it("uses the run's preprocess size for the resolution and buckets, as preprocessing does", () => {
    const run = TrainingRunInput.parse({ runName: 'cat', dataset: '/d', preprocess: { size: 640 } });
    expect(kohyaOptionsFor(run)).toMatchObject({ resolution: '640,640', min_bucket_reso: 256, max_bucket_reso: 1024 });
  });

  it('folds sd-scripts spellings of the shorthands into them, so registration checks the same dim', () => {
    const run = TrainingRunInput.parse({ runName: 'cat', dataset: '/d', training: { kohya: { network_dim: 64, max_train_epochs: 3 } } });
    expect(run.training).toEqual({ epochs: 3, networkDim: 64, networkAlpha: 16, kohya: {}, device: 'gpu' });
    expect(TrainingRunInput.parse({ runName: 'cat', dataset: '/d' }).training).toEqual({ epochs: 10, networkDim: 32, networkAlpha: 16, kohya: {}, device: 'gpu' });
  });

  it('names the problems in training.kohya when the input is parsed', () => {
    const error = (training: Record<string, unknown>) => {
      const result = TrainingRunInput.safeParse({ runName: 'cat', dataset: '/d', baseModel: { family: 'sdxl' }, training });
      return result.success ? undefined : formatZodError(result.error);
    };
    expect(error({ networkDim: 16, kohya: { network_dim: 8 } })).toBe(
      'input.training.kohya.network_dim: 8 conflicts with training.networkDim = 16; set only one of them',
    );
    expect(error({ kohya: { clip_skip: 2, cache_text_encoder_outputs: true, network_train_unet_only: true } })).toBe(
      [
        'input.training.kohya.clip_skip: does not apply to sdxl (sdxl_train_network.py ignores it with a warning); remove it',
        'input.training.kohya.cache_text_encoder_outputs: cannot be used with shuffle_caption = true (cached text encoder outputs cannot follow shuffled captions); set shuffle_caption = false',
      ].join('; '),
    );
    expect(error({ networkDim: 8, kohya: { network_dim: 8, unet_lr: 2e-4 } })).toBeUndefined();
  });

  it('supports the options a CPU host, an offline host or a step budget needs, each validated', () => {
    const run = (training: Record<string, unknown>) => TrainingRunInput.safeParse({ runName: 'cat', dataset: '/d', training });
    const options = (training: Record<string, unknown>) => {
      const parsed = run(training);
      if (!parsed.success) throw new Error(formatZodError(parsed.error));
      return kohyaOptionsFor(parsed.data);
    };
    expect(
      options({ kohya: { tokenizer_cache_dir: '/opt/tokenizers', lowram: true, mem_eff_attn: true, console_log_simple: true, mixed_precision: 'fp16', full_fp16: true } }),
    ).toMatchObject({ tokenizer_cache_dir: '/opt/tokenizers', lowram: true, mem_eff_attn: true, console_log_simple: true, full_fp16: true });
    // Steps instead of epochs: sd-scripts would let max_train_epochs win, so it is left out.
    const bySteps = options({ kohya: { max_train_steps: 1200 } });
    expect(bySteps).toMatchObject({ max_train_steps: 1200 });
    expect(bySteps).not.toHaveProperty('max_train_epochs');
    const error = (training: Record<string, unknown>) => {
      const parsed = run(training);
      return parsed.success ? undefined : formatZodError(parsed.error);
    };
    expect(error({ epochs: 3, kohya: { max_train_steps: 1200 } })).toBe(
      'input.training.kohya.max_train_steps: conflicts with the number of epochs (sd-scripts lets max_train_epochs win); set only one of them',
    );
    expect(error({ kohya: { full_fp16: true, mixed_precision: 'bf16' } })).toBe('input.training.kohya.full_fp16: needs mixed_precision = "fp16" (sd-scripts stops otherwise), got "bf16"');
    expect(error({ kohya: { full_bf16: true, mixed_precision: 'no' } })).toMatch(/full_bf16: needs mixed_precision = "bf16"/);
    expect(error({ kohya: { tokenizer_cache_dir: 'a\nb' } })).toBe('input.training.kohya.tokenizer_cache_dir: must be a folder path on the training machine');
  });

  it('--device cpu: what a host without CUDA needs over the preset, the run\'s own options still winning', () => {
    const cpu = (training: Record<string, unknown>, trainer?: Record<string, unknown>) =>
      TrainingRunInput.safeParse({ runName: 'cat', dataset: '/d', training: { device: 'cpu', ...training }, ...(trainer && { trainer }) });
    const parsed = cpu({});
    if (!parsed.success) throw parsed.error;
    expect(kohyaOptionsFor(parsed.data)).toMatchObject({ mixed_precision: 'no', optimizer_type: 'AdamW', xformers: false });
    const own = cpu({ kohya: { optimizer_type: 'Lion' } });
    if (!own.success) throw own.error;
    expect(kohyaOptionsFor(own.data)).toMatchObject({ mixed_precision: 'no', optimizer_type: 'Lion' });
    expect(kohyaOptionsFor(TrainingRunInput.parse({ runName: 'cat', dataset: '/d' }))).toMatchObject({ mixed_precision: 'fp16', optimizer_type: 'AdamW8bit', xformers: true });
    const onSageMaker = cpu({}, { kind: 'sagemaker', imageUri: 'i', roleArn: 'arn:aws:iam::123456789012:role/r' });
    expect(onSageMaker.success ? undefined : formatZodError(onSageMaker.error)).toBe(
      'input.training.device: must be "gpu" with trainer.kind "sagemaker": its instance types are GPU instances',
    );
  });

  it('checks the spot options', () => {
    const base = { runName: 'cat', dataset: 's3://bucket/d', trainer: { kind: 'sagemaker', imageUri: 'i', roleArn: 'arn:aws:iam::123456789012:role/r', maxRuntimeSeconds: 3600 } };
    const error = (trainer: Record<string, unknown>) => {
      const result = TrainingRunInput.safeParse({ ...base, trainer: { ...base.trainer, ...trainer } });
      return result.success ? undefined : formatZodError(result.error);
    };
    expect(error({ maxWaitSeconds: 7200 })).toBe('input.trainer.maxWaitSeconds: only applies with trainer.spot = true');
    expect(error({ spot: true, maxWaitSeconds: 1800 })).toBe('input.trainer.maxWaitSeconds: must be ≥ trainer.maxRuntimeSeconds (3600)');
    expect(error({ spot: true, maxWaitSeconds: 7200, checkpointS3Uri: 's3://bucket/ckpt' })).toBeUndefined();
  });
});

describe('differences and sections', () => {
  it('lists changed, added and removed options against the preset', () => {
    const options = resolveKohyaOptions('sd15', { unet_lr: 2e-4, noise_offset: 0.05, max_token_length: 75 });
    expect(kohyaDifferences('sd15', options)).toEqual([
      { key: 'unet_lr', preset: 1e-4, value: 2e-4 },
      { key: 'noise_offset', preset: undefined, value: 0.05 },
      { key: 'max_token_length', preset: 225, value: undefined },
    ]);
    expect(kohyaDifferences('sd15', kohyaPreset('sd15'))).toEqual([]);
  });

  it('flattens sections as sd-scripts does and reports an option set twice', () => {
    expect(flattenKohyaSections({ seed: 1, network: { network_dim: 8 }, training: { unet_lr: 1e-4 } })).toEqual({
      options: { seed: 1, network_dim: 8, unet_lr: 1e-4 },
      issues: [],
    });
    expect(flattenKohyaSections({ a: { seed: 1 }, b: { seed: 2 } }).issues).toEqual([
      { key: 'seed', message: 'is set twice ([a] and [b]); sd-scripts would keep only one' },
    ]);
  });
});

describe('closestName', () => {
  it('finds plausible typos only', () => {
    const names = ['network_dim', 'network_alpha', 'seed', 'unet_lr'];
    expect(closestName('network-dim', names)).toBe('network_dim');
    expect(closestName('NetworkAlpha', names)).toBe('network_alpha');
    expect(closestName('sede', names)).toBe('seed');
    expect(closestName('unte_lr', names)).toBe('unet_lr');
    expect(closestName('batch', names)).toBeUndefined();
  });
});
