/**
 * `lora start`: from flags (and an optional input file) to a validated workflow input. Pure apart
 * from `readInputFile`, so every rule here is unit-tested without a server.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import type { z } from 'zod';
import { TrainingRunInput, type TrainingRun } from '../lib/pipeline/input';
import { flagName, formatIssuesNamingFlags, parseNumberFlag } from './flags';

/** The run-input flags of `lora start`, as commander hands them over (numbers still text). */
export interface StartFlags {
  dataset?: string;
  name?: string;
  base?: string;
  checkpoint?: string;
  repeats?: string;
  concept?: string;
  triggerWord?: string;
  review?: string;
  reviewTimeout?: string;
  trainer?: string;
  dryRun?: boolean;
  store?: string;
  epochs?: string;
  dim?: string;
  alpha?: string;
  device?: string;
  pollInterval?: string;
  sagemakerImage?: string;
  sagemakerRole?: string;
  instanceType?: string;
}

/** The input field each flag sets; read backwards, it names the flag in validation errors. */
const FIELD_OF_FLAG = {
  dataset: 'dataset',
  name: 'runName',
  base: 'baseModel.family',
  checkpoint: 'baseModel.checkpoint',
  repeats: 'repeats',
  concept: 'concept',
  triggerWord: 'triggerWord',
  review: 'review.policy',
  reviewTimeout: 'review.timeout',
  trainer: 'trainer.kind',
  dryRun: 'trainer.dryRun',
  store: 'store',
  epochs: 'training.epochs',
  dim: 'training.networkDim',
  alpha: 'training.networkAlpha',
  device: 'training.device',
  pollInterval: 'pollInterval',
  sagemakerImage: 'trainer.imageUri',
  sagemakerRole: 'trainer.roleArn',
  instanceType: 'trainer.instanceType',
} as const satisfies Record<keyof StartFlags, string>;

type FlagKey = keyof typeof FIELD_OF_FLAG;

const NUMERIC_FLAGS: ReadonlySet<FlagKey> = new Set(['repeats', 'epochs', 'dim', 'alpha']);
const SAGEMAKER_FLAGS = ['sagemakerImage', 'sagemakerRole', 'instanceType'] as const;
const REQUIRED_FLAGS = ['dataset', 'name'] as const;

type InputObject = Record<string, unknown>;

/**
 * Merges flags over the file's fields (flags win), resolves a local dataset path against `cwd`
 * and validates the result; errors name the flag when a flag supplied the bad value.
 */
export function buildStartInput(flags: StartFlags, fileInput: unknown, cwd: string): TrainingRun {
  const merged = structuredClone(fileInput === undefined ? {} : requireObject(fileInput));
  const given = (Object.keys(FIELD_OF_FLAG) as FlagKey[]).filter((key) => flags[key] !== undefined && flags[key] !== false);

  applyTrainerKind(merged, flags);
  for (const key of given) {
    const raw = flags[key] as string | true;
    setField(merged, FIELD_OF_FLAG[key], NUMERIC_FLAGS.has(key) ? parseNumberFlag(flagName(key), raw as string) : raw);
  }

  const missing = REQUIRED_FLAGS.filter((key) => fieldOf(merged, FIELD_OF_FLAG[key]) === undefined).map(flagName);
  if (missing.length) {
    throw new Error(`${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} required (as flags or in the --input file)`);
  }
  if (typeof merged.dataset === 'string' && isLocalPath(merged.dataset)) {
    merged.dataset = path.resolve(cwd, merged.dataset);
  }

  const result = TrainingRunInput.safeParse(merged);
  if (!result.success) throw new Error(formatIssuesNamingFlags(result.error, (issue) => flagOf(issue, given)));
  return result.data;
}

/** A dataset without a URI scheme is a path on this machine. */
export function isLocalPath(dataset: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:\/\//i.test(dataset);
}

/** Said once at start: the path is resolved here, but read by the worker. */
export function localDatasetNote(dataset: string): string | undefined {
  return isLocalPath(dataset)
    ? `dataset ${dataset} is a path on this machine: the worker reads it from its own filesystem, so it must run here or see the same path (use an s3:// URI otherwise)`
    : undefined;
}

/** Loads `--input`: JSON, or TOML when the name ends in .toml. */
export function readInputFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`--input: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const isToml = file.toLowerCase().endsWith('.toml');
  try {
    return isToml ? parseToml(text) : JSON.parse(text);
  } catch (err) {
    const firstLine = (err as Error).message.split('\n')[0];
    throw new Error(`--input: ${file} is not valid ${isToml ? 'TOML' : 'JSON'} (${firstLine})`);
  }
}

function requireObject(value: unknown): InputObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`--input: must hold an object of run fields, got ${Array.isArray(value) ? 'an array' : typeof value}`);
  }
  return value as InputObject;
}

/**
 * `--trainer`, or a flag that only one trainer takes, picks the trainer kind. Switching kinds drops
 * the file's trainer options, which belong to the other kind; mixing kinds on the command line is
 * an error named after the offending flag.
 */
function applyTrainerKind(merged: InputObject, flags: StartFlags): void {
  const sagemakerFlags = SAGEMAKER_FLAGS.filter((key) => flags[key] !== undefined);
  const implied = sagemakerFlags.length ? 'sagemaker' : flags.dryRun ? 'local' : undefined;
  const fileTrainer = isObject(merged.trainer) ? merged.trainer : undefined;
  const kind = flags.trainer ?? implied ?? fileTrainer?.kind ?? 'local';

  if (kind === 'local' && sagemakerFlags.length) {
    throw new Error(`${sagemakerFlags.map(flagName).join(', ')}: only apply with --trainer sagemaker`);
  }
  if (kind === 'sagemaker' && flags.dryRun) throw new Error('--dry-run: only applies with --trainer local');
  if (merged.trainer === undefined || (fileTrainer && fileTrainer.kind !== kind)) merged.trainer = { kind };
}

/** The flag behind an issue, if a flag set that field (or, for an unknown key, that key). */
function flagOf(issue: z.core.$ZodIssue, given: readonly FlagKey[]): string | undefined {
  const fields =
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => [...issue.path, key].join('.'))
      : [issue.path.join('.')];
  const key = given.find((flag) => fields.includes(FIELD_OF_FLAG[flag]));
  if (key) return flagName(key);
  // A missing value that a flag gives: name the flag, and where else it may come from.
  const missing = issue.code === 'invalid_type' && issue.input === undefined;
  const flag = missing ? (Object.keys(FIELD_OF_FLAG) as FlagKey[]).find((candidate) => fields.includes(FIELD_OF_FLAG[candidate])) : undefined;
  return flag && `${flagName(flag)} (or ${FIELD_OF_FLAG[flag]} in --input)`;
}

function setField(target: InputObject, field: string, value: unknown): void {
  const parts = field.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    if (!isObject(node[part])) node[part] = {};
    node = node[part] as InputObject;
  }
  node[parts[parts.length - 1]] = value;
}

function fieldOf(source: InputObject, field: string): unknown {
  return field.split('.').reduce<unknown>((node, part) => (isObject(node) ? node[part] : undefined), source);
}

function isObject(value: unknown): value is InputObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
