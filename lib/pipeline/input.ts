/**
 * The workflow's input contract. Pure (zod only) so the workflow, the client and the worker all
 * validate the same shape; defaults are filled here, once, so history records what actually ran.
 */
import { z } from 'zod';
import { DEVICE_PROFILES, foldKohyaShorthands, kohyaOptionIssues, KohyaOverrides, referenceDefaults, TRAINING_DEVICES } from '../kohya/options';
import { PreprocessOptions } from '../image/options';

export const BASE_MODEL_FAMILIES = ['sd15', 'sdxl'] as const;
export type BaseModelFamily = (typeof BASE_MODEL_FAMILIES)[number];

/** Square training side per family: SD 1.5 was trained at 512, SDXL at 1024. */
export const TARGET_SIZE: Record<BaseModelFamily, number> = { sd15: 512, sdxl: 1024 };

/** Instance types the reference extension offered; the first is the default. */
export const SAGEMAKER_INSTANCE_TYPES = ['ml.g5.2xlarge', 'ml.g5.4xlarge', 'ml.g4dn.12xlarge'] as const;

/** Run names become kohya folder names, LoRA file names and SageMaker job names: keep them tame. */
export const RUN_NAME = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9-]{0,39}$/,
    'must be 1-40 characters of lower-case letters, digits and "-", starting with a letter or digit',
  );

/** "7d", "90m", "30s", "2h" or a number of milliseconds; what Temporal's duration strings accept. */
export const DURATION = z
  .union([z.number().int().positive(), z.string().regex(/^\d+(ms|s|m|h|d)$/, 'must look like 30s, 15m, 2h or 7d')])
  .transform((v) => (typeof v === 'number' ? `${v}ms` : v));

/** Words or phrases no caption may contain, matched as whole words, case-insensitively. */
export const BannedTerms = z
  .array(z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters'))
  .max(500, 'must list at most 500 terms');

const S3_URI = z.string().regex(/^s3:\/\/[a-z0-9.-]{3,63}(\/.*)?$/, 'must be an s3://bucket/prefix URI');

export const LocalTrainerOptions = z
  .object({
    kind: z.literal('local'),
    /**
     * The dry-run trainer stands in for Kohya-SS where no GPU exists (demo, CI): it prints kohya-style
     * progress and writes a small but valid LoRA. Off by default; the command itself is worker config,
     * never workflow input, so starting a run cannot execute arbitrary programs on the worker.
     */
    dryRun: z.boolean().default(false),
  })
  .strict();

export const SageMakerTrainerOptions = z
  .object({
    kind: z.literal('sagemaker'),
    imageUri: z.string().min(1, 'is required: the Kohya-SS training image in ECR'),
    roleArn: z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/, 'must be an IAM role ARN'),
    instanceType: z.enum(SAGEMAKER_INSTANCE_TYPES).default('ml.g5.2xlarge'),
    volumeSizeGb: z.number().int().min(30).max(16384).default(100),
    maxRuntimeSeconds: z.number().int().min(600).max(28 * 24 * 3600).default(24 * 3600),
    /** Where SageMaker writes `<job>/output/model.tar.gz`; defaults to `<store>/training/`. */
    outputS3Uri: S3_URI.optional(),
    /**
     * Prefix under which each job's /opt/ml/checkpoints is synced (`<prefix>/<job>/`): live progress
     * and, with spot, the state a restarted job resumes from. Defaults to `<store>/checkpoints/`.
     */
    checkpointS3Uri: S3_URI.optional(),
    /** Managed spot training: cheaper, may be interrupted; the job resumes from its last saved epoch. */
    spot: z.boolean().default(false),
    /** Spot only: total time including waiting for capacity, ≥ maxRuntimeSeconds; default 2 × maxRuntimeSeconds. */
    maxWaitSeconds: z.number().int().min(600).max(2 * 28 * 24 * 3600).optional(),
  })
  .strict();

export const TrainerOptions = z.discriminatedUnion('kind', [LocalTrainerOptions, SageMakerTrainerOptions]);
export type TrainerOptions = z.infer<typeof TrainerOptions>;

export const REVIEW_POLICIES = ['on-error', 'always'] as const;

/** What `training` holds when the input leaves a field out. */
const TRAINING_DEFAULTS = { epochs: 10, networkDim: 32, networkAlpha: 16 };

export const TrainingRunInput = z
  .object({
    runName: RUN_NAME,
    /** Local folder, file:// or s3:// URI: flat images with captions beside them. */
    dataset: z.string().min(1, 'is required: a folder of images with .txt captions'),
    /** Where datasets, LoRAs and the registry live; the worker's default store when omitted. */
    store: z.string().regex(/^(file|s3):\/\//, 'must be a file:// or s3:// URI').optional(),
    baseModel: z
      .object({
        family: z.enum(BASE_MODEL_FAMILIES).default('sd15'),
        /** Checkpoint path or URI handed to sd-scripts as pretrained_model_name_or_path. */
        checkpoint: z.string().min(1).default('runwayml/stable-diffusion-v1-5'),
      })
      .strict()
      .default({ family: 'sd15', checkpoint: 'runwayml/stable-diffusion-v1-5' }),
    /** Kohya folder `<repeats>_<concept>`: how often each image is seen per epoch. */
    repeats: z.number().int().min(1).max(10000).default(10),
    /** Class tokens in the folder name; defaults to the run name. */
    concept: z.string().regex(/^[^\s/\\_][^/\\]*$/, 'must be a folder-safe name without "/" or "\\"').optional(),
    triggerWord: z.string().min(1).optional(),
    /** How images are cropped, sized, encoded and checked (lib/image/options.ts); all optional. */
    preprocess: PreprocessOptions.prefault({}),
    /** Caption check settings (the token limit comes from the kohya options' max_token_length). */
    captions: z
      .object({ bannedTerms: BannedTerms.default([]) })
      .strict()
      .default({ bannedTerms: [] }),
    review: z
      .object({
        policy: z.enum(REVIEW_POLICIES).default('on-error'),
        timeout: DURATION.default('7d'),
      })
      .strict()
      .default({ policy: 'on-error', timeout: '7d' }),
    trainer: TrainerOptions.default({ kind: 'local', dryRun: false }),
    training: z
      .object({
        epochs: z.number().int().min(1).max(1000).optional(),
        networkDim: z.number().int().min(1).max(1024).optional(),
        networkAlpha: z.number().positive().max(1024).optional(),
        /** "cpu" sets what a host without CUDA needs over the preset (lib/kohya/options.ts DEVICE_PROFILES). */
        device: z.enum(TRAINING_DEVICES).default('gpu'),
        /**
         * sd-scripts options over the family's preset (lib/kohya/options.ts lists them); its
         * max_train_epochs, network_dim and network_alpha fold into the three fields above.
         */
        kohya: KohyaOverrides.default({}),
      })
      .strict()
      .transform((training, ctx) => ({
        ...foldKohyaShorthands(training, TRAINING_DEFAULTS, (path, message) => ctx.addIssue({ code: 'custom', path, message })),
        device: training.device,
      }))
      .prefault({}),
    /** How often training status is polled. */
    pollInterval: DURATION.default('30s'),
  })
  .strict()
  .superRefine((input, ctx) => {
    if (input.trainer.kind === 'sagemaker' && input.store && !input.store.startsWith('s3://')) {
      ctx.addIssue({
        code: 'custom',
        path: ['store'],
        message: 'must be an s3:// URI when trainer.kind is "sagemaker": SageMaker reads the dataset from S3',
      });
    }
    if (input.trainer.kind === 'sagemaker' && input.trainer.maxWaitSeconds !== undefined) {
      const { spot, maxWaitSeconds, maxRuntimeSeconds } = input.trainer;
      const problem = !spot ? 'only applies with trainer.spot = true' : maxWaitSeconds < maxRuntimeSeconds ? `must be ≥ trainer.maxRuntimeSeconds (${maxRuntimeSeconds})` : undefined;
      if (problem) ctx.addIssue({ code: 'custom', path: ['trainer', 'maxWaitSeconds'], message: problem });
    }
    const family = input.baseModel.family;
    if (input.trainer.kind === 'sagemaker' && input.training.device === 'cpu') {
      ctx.addIssue({ code: 'custom', path: ['training', 'device'], message: 'must be "gpu" with trainer.kind "sagemaker": its instance types are GPU instances' });
    }
    const deviceOptions = DEVICE_PROFILES[input.training.device];
    for (const issue of kohyaOptionIssues(family, { ...referenceDefaults(family), ...deviceOptions, ...input.training.kohya })) {
      ctx.addIssue({ code: 'custom', path: ['training', 'kohya', issue.key], message: issue.message });
    }
  });

export type TrainingRunInput = z.input<typeof TrainingRunInput>;
export type TrainingRun = z.output<typeof TrainingRunInput>;

/** One line per problem, each naming the field: what users see from the CLI and in the failure. */
export function formatZodError(error: z.ZodError, root = 'input'): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.length ? `${root}.${issue.path.join('.')}` : root;
      return `${path}: ${issue.message}`;
    })
    .join('; ');
}

/** Parse a schema or throw an Error whose message names every bad field. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, root = 'input'): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new Error(formatZodError(result.error, root));
  return result.data;
}

export function conceptOf(run: Pick<TrainingRun, 'concept' | 'runName'>): string {
  return run.concept ?? run.runName;
}

/** The kohya training folder for this run, e.g. `10_demo`. */
export function kohyaFolderOf(run: Pick<TrainingRun, 'concept' | 'runName' | 'repeats'>): string {
  return `${run.repeats}_${conceptOf(run)}`;
}
