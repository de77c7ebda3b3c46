/**
 * The contract with the Kohya training entrypoint, docker/kohya/entrypoint.py: the program the
 * SageMaker image runs and the local trainer runs too. It reads SageMaker's layout under an ML root
 * (/opt/ml in the container, the job folder locally):
 *
 *   input/config/hyperparameters.json  sd-scripts options plus the lora_* parameters below
 *   input/data/<channel>/              the dataset (and the checkpoint when it comes from S3)
 *   model/                             the LoRA files it leaves (SageMaker packs them as model.tar.gz)
 *   checkpoints/progress.json          live progress (SageMaker syncs it to the checkpoint prefix)
 *   output/failure                     a one-line reason when it fails
 *   output/data/config.toml            the sd-scripts config it ran with
 */
import * as path from 'node:path';
import { kohyaValueKind } from '../../lib/kohya/options';
import type { BaseModelFamily } from '../../lib/pipeline/input';
import { PROJECT_ROOT } from '../project-paths';
import { InvalidTrainingSpecError, type KohyaConfig } from './types';

export const ENTRYPOINT_SCRIPT = path.join(PROJECT_ROOT, 'docker', 'kohya', 'entrypoint.py');

/** Paths below the ML root. */
export const ML_PATHS = {
  hyperParameters: 'input/config/hyperparameters.json',
  model: 'model',
  checkpoints: 'checkpoints',
  failure: 'output/failure',
} as const;

export const CHANNELS = { dataset: 'dataset', model: 'model' } as const;
export const PROGRESS_FILE = 'progress.json';
export const CONTAINER_ML_ROOT = '/opt/ml';

/** The entrypoint's argv for a local job: its ML root and dataset instead of SageMaker's paths. */
export function entrypointArgs(mlRoot: string, channels: Record<string, string>): string[] {
  return ['--ml-root', mlRoot, ...Object.entries(channels).flatMap(([name, dir]) => ['--channel', `${name}=${dir}`])];
}

/** The sd-scripts command prefix as a JSON array (`--config_file <toml>` is appended). */
export const KOHYA_COMMAND_ENV = 'LORA_KOHYA_COMMAND';

/** Hyperparameters for the entrypoint itself; every other one is an sd-scripts option. */
const ENTRYPOINT_PARAMETERS = {
  /** sd15 | sdxl: train_network.py or sdxl_train_network.py. */
  family: 'lora_family',
  /** Comma-separated names of the options whose values are strings, so "2024" stays a string. */
  stringOptions: 'lora_string_options',
  /** The checkpoint's file name inside the model channel (empty: the channel's only model file). */
  modelFile: 'lora_model_file',
  /** "true": save state every epoch in checkpoints/ and resume from it after a (spot) restart. */
  resume: 'lora_resume',
} as const;

// CreateTrainingJob limits on HyperParameters.
const MAX_HYPERPARAMETERS = 100;
const MAX_HYPERPARAMETER_VALUE_LENGTH = 2500;

export interface EntrypointInput {
  family: BaseModelFamily;
  /** sd-scripts options without paths (the entrypoint fills those in). */
  kohyaConfig: KohyaConfig;
  /** A model id or a path the trainer can open; omitted when the checkpoint comes in the model channel. */
  pretrainedModel?: string;
  /** The checkpoint's file name in the model channel. */
  modelFile?: string;
  resume?: boolean;
}

/** The hyperparameters.json the entrypoint reads, for both backends. */
export function entrypointHyperParameters(input: EntrypointInput): Record<string, string> {
  const options: KohyaConfig = { ...input.kohyaConfig };
  if (input.pretrainedModel !== undefined) options.pretrained_model_name_or_path = input.pretrainedModel;
  const stringOptions = Object.keys(options).filter((key) => typeof options[key] === 'string');
  return hyperParameters({
    ...options,
    [ENTRYPOINT_PARAMETERS.family]: input.family,
    [ENTRYPOINT_PARAMETERS.stringOptions]: stringOptions.join(','),
    ...(input.modelFile !== undefined ? { [ENTRYPOINT_PARAMETERS.modelFile]: input.modelFile } : {}),
    ...(input.resume ? { [ENTRYPOINT_PARAMETERS.resume]: true } : {}),
  });
}

/**
 * SageMaker hyperparameters are string → string: strings are passed as they are, booleans as
 * "true"/"false", numbers as JSON numbers written the way sd-scripts must read them (a float
 * option always with a decimal point: "16.0", "0.0001"), for the entrypoint to turn back into TOML.
 */
export function hyperParameters(config: KohyaConfig): Record<string, string> {
  const entries = Object.entries(config);
  if (entries.length > MAX_HYPERPARAMETERS) {
    throw new InvalidTrainingSpecError(`kohya config has ${entries.length} options; SageMaker accepts at most ${MAX_HYPERPARAMETERS} hyperparameters`);
  }
  return Object.fromEntries(
    entries.map(([key, value]) => {
      const text = typeof value === 'number' ? numberText(key, value) : String(value);
      if (text.length > MAX_HYPERPARAMETER_VALUE_LENGTH) {
        throw new InvalidTrainingSpecError(
          `kohya option "${key}" is ${text.length} characters; SageMaker hyperparameter values are limited to ${MAX_HYPERPARAMETER_VALUE_LENGTH}`,
        );
      }
      return [key, text];
    }),
  );
}

function numberText(key: string, value: number): string {
  if (!Number.isFinite(value)) throw new InvalidTrainingSpecError(`kohya option "${key}" must be a finite number, got ${value}`);
  const kind = kohyaValueKind(key);
  if (kind === 'int' && !Number.isInteger(value)) throw new InvalidTrainingSpecError(`kohya option "${key}" must be a whole number, got ${value}`);
  const text = JSON.stringify(value);
  return kind === 'float' && /^-?\d+$/.test(text) ? `${text}.0` : text;
}
