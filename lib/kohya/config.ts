/**
 * The sd-scripts options for a run: the reference extension's defaults per family (the preset),
 * the bucket settings preprocessing used, and the user's overrides (lib/kohya/options.ts).
 * Values are in the types sd-scripts reads from TOML. Paths (train_data_dir, output_dir, the
 * checkpoint) are filled in by the trainer, which knows where things are on its machine.
 */
import type { BaseModelFamily, TrainingRun } from '../pipeline/input';
import { bucketSettings, runBucketSettings, type BucketSettings } from './buckets';
import { DEVICE_PROFILES, KOHYA_OPTION_NAMES, kohyaOptionIssues, referenceDefaults, type KohyaIssue, type KohyaOptions, type KohyaOverrides, type KohyaValue } from './options';

export type { KohyaOptions, KohyaValue } from './options';

/** sd-scripts' limit when max_token_length is absent: one CLIP chunk. */
export const DEFAULT_MAX_TOKEN_LENGTH = 75;

/** The reference extension's defaults for a family, with preprocessing's bucket settings. */
export function kohyaPreset(family: BaseModelFamily, buckets: BucketSettings = bucketSettings(family)): KohyaOptions {
  return ordered({ ...referenceDefaults(family), ...bucketOptions(buckets) });
}

/** The resolution and bucket settings preprocessing wrote the images for: a config may not differ. */
function bucketOptions(buckets: BucketSettings): KohyaOptions {
  return {
    resolution: `${buckets.resolution},${buckets.resolution}`,
    enable_bucket: true,
    min_bucket_reso: buckets.minBucketReso,
    max_bucket_reso: buckets.maxBucketReso,
    bucket_reso_steps: buckets.step,
  };
}

/** Overrides that cannot work for this family or together; `issues` names each option. */
export class KohyaConfigError extends Error {
  override readonly name = 'KohyaConfigError';
  constructor(
    readonly family: BaseModelFamily,
    readonly issues: KohyaIssue[],
  ) {
    super(`sd-scripts options for ${family}: ${issues.map((issue) => `${issue.key}: ${issue.message}`).join('; ')}`);
  }
}

/**
 * The preset with the overrides applied and checked; throws KohyaConfigError naming every problem.
 * `buckets` are the settings preprocessing used (the family's defaults unless the run changed them).
 */
export function resolveKohyaOptions(
  family: BaseModelFamily,
  overrides: KohyaOverrides,
  buckets: BucketSettings = bucketSettings(family),
): KohyaOptions {
  const issues: KohyaIssue[] = [];
  const otherFamily: BaseModelFamily = family === 'sdxl' ? 'sd15' : 'sdxl';
  for (const [key, expected] of Object.entries(bucketOptions(buckets))) {
    const given = overrides[key as keyof KohyaOverrides];
    if (given === undefined || given === expected) continue;
    const hint = bucketOptions(bucketSettings(otherFamily))[key] === given ? ` (that is the ${otherFamily} value: is the base model ${otherFamily}?)` : '';
    issues.push({
      key,
      message: `must be ${JSON.stringify(expected)} for ${family}, got ${JSON.stringify(given)}: preprocessing wrote the images at the bucket sizes this value gives${hint}`,
    });
  }
  const merged: KohyaOptions = { ...kohyaPreset(family, buckets), ...withoutUndefined(overrides) };
  // 75 is sd-scripts' default, which it selects by the key's absence.
  if (merged.max_token_length === DEFAULT_MAX_TOKEN_LENGTH) delete merged.max_token_length;
  issues.push(...kohyaOptionIssues(family, merged));
  if (issues.length) throw new KohyaConfigError(family, issues);
  return ordered(merged);
}

/**
 * A run's options: the preset at the run's bucket settings, its shorthands and `training.kohya`,
 * and the run name as output name. A validated run's options are always usable.
 */
export function kohyaOptionsFor(run: Pick<TrainingRun, 'baseModel' | 'training' | 'runName' | 'preprocess'>): KohyaOptions {
  const { epochs, networkDim, networkAlpha, kohya, device } = run.training;
  const overrides = { ...DEVICE_PROFILES[device], ...kohya, max_train_epochs: epochs, network_dim: networkDim, network_alpha: networkAlpha };
  const options = resolveKohyaOptions(run.baseModel.family, overrides, runBucketSettings(run));
  // A run that trains for a number of steps leaves the epochs out: sd-scripts would let them win.
  if (kohya.max_train_steps !== undefined) delete options.max_train_epochs;
  return { ...options, output_name: run.runName };
}

/** The CLIP token limit the options give (sd-scripts uses 75 when the key is absent). */
export function maxTokenLengthOf(options: KohyaOptions): number {
  return typeof options.max_token_length === 'number' ? options.max_token_length : DEFAULT_MAX_TOKEN_LENGTH;
}

export interface KohyaDifference {
  key: string;
  /** undefined: the preset does not set it. */
  preset?: KohyaValue;
  /** undefined: the options leave it out (sd-scripts' default applies). */
  value?: KohyaValue;
}

/** What `options` change relative to the family's preset, in option order. */
export function kohyaDifferences(family: BaseModelFamily, options: KohyaOptions): KohyaDifference[] {
  const preset = kohyaPreset(family);
  const keys = Object.keys(ordered({ ...preset, ...options }));
  return keys.filter((key) => preset[key] !== options[key]).map((key) => ({ key, preset: preset[key], value: options[key] }));
}

/**
 * sd-scripts flattens a config file's sections (`[training_arguments]` etc.) into one namespace;
 * so does this, reporting an option set in two places.
 */
export function flattenKohyaSections(table: Record<string, unknown>): { options: Record<string, unknown>; issues: KohyaIssue[] } {
  const options: Record<string, unknown> = {};
  const where = new Map<string, string>();
  const issues: KohyaIssue[] = [];
  const add = (key: string, value: unknown, place: string) => {
    const earlier = where.get(key);
    if (earlier !== undefined) issues.push({ key, message: `is set twice (${earlier} and ${place}); sd-scripts would keep only one` });
    else where.set(key, place);
    options[key] = value;
  };
  for (const [key, value] of Object.entries(table)) {
    if (isSection(value)) for (const [inner, innerValue] of Object.entries(value)) add(inner, innerValue, `[${key}]`);
    else add(key, value, 'the top level');
  }
  return { options, issues };
}

function isSection(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** Options in the order lib/kohya/options.ts lists them; anything else after. */
function ordered(options: KohyaOptions): KohyaOptions {
  const rank = (key: string) => {
    const index = (KOHYA_OPTION_NAMES as string[]).indexOf(key);
    return index === -1 ? KOHYA_OPTION_NAMES.length : index;
  };
  return Object.fromEntries(Object.entries(options).sort(([a], [b]) => rank(a) - rank(b)));
}

function withoutUndefined(overrides: KohyaOverrides): KohyaOptions {
  return Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined)) as KohyaOptions;
}
