/**
 * sd-scripts options from a TOML file or `KEY=VALUE` flags, for `lora config format` and
 * `lora start --kohya-config FILE --kohya KEY=VALUE`. The rules live in lib/kohya; this module
 * reads and writes TOML and names the file or flag a problem came from.
 */
import { readFileSync } from 'node:fs';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import type { z } from 'zod';
import { runBucketSettings } from '../lib/kohya/buckets';
import { flattenKohyaSections, KohyaConfigError, kohyaDifferences, resolveKohyaOptions, type KohyaDifference } from '../lib/kohya/config';
import { KohyaFileOptions, kohyaValueKind, withoutBucketSettings, type KohyaOptions, type KohyaOverrides, type KohyaValue } from '../lib/kohya/options';
import type { BaseModelFamily, TrainingRun } from '../lib/pipeline/input';

/** The options of an sd-scripts TOML file, its sections flattened as sd-scripts does. */
function readKohyaFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let table: Record<string, unknown>;
  try {
    table = parseToml(text);
  } catch (err) {
    throw new Error(`${file}: not valid TOML (${(err as Error).message.split('\n')[0]})`);
  }
  const { options, issues } = flattenKohyaSections(table);
  if (issues.length) throw new Error(`${file}: ${issues.map((issue) => `${issue.key}: ${issue.message}`).join('; ')}`);
  return options;
}

/** `--kohya KEY=VALUE`: the value as TOML would read it (`2e-4`, `false`, `"x"`), else as plain text (`AdamW8bit`, `512,512`). */
function parseKohyaAssignment(text: string): [string, unknown] {
  const match = /^([A-Za-z0-9_]+)=(.*)$/s.exec(text);
  if (!match) throw new Error(`--kohya: expected KEY=VALUE, e.g. unet_lr=2e-4, got "${text}"`);
  const [, key, raw] = match as unknown as [string, string, string];
  try {
    return [key, parseToml(`value = ${raw}`).value];
  } catch {
    return [key, raw];
  }
}

/** Validates options, naming `where` (a file or a flag) and the option in every problem. */
function kohyaFileOptionsOf(raw: Record<string, unknown>, where: string): KohyaOverrides {
  const parsed = KohyaFileOptions.safeParse(raw);
  if (!parsed.success) throw new Error(`${where}: ${issuesText(parsed.error)}`);
  return parsed.data;
}

function issuesText(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
}

/** The options of an sd-scripts TOML file and `KEY=VALUE` assignments (these win), each checked. */
export function kohyaOptionsFrom(file: string | undefined, assignments: readonly string[]): KohyaOverrides {
  const fromFile = file === undefined ? {} : kohyaFileOptionsOf(readKohyaFile(file), file);
  return { ...fromFile, ...kohyaFileOptionsOf(Object.fromEntries(assignments.map(parseKohyaAssignment)), '--kohya') };
}

/**
 * The run input with `training.kohya` extended by a file's and flags' options (over the input
 * file's own), or the input unchanged when there are none. Bucket settings are left out: the run
 * takes preprocessing's (assertKohyaOptionsUsable checks the given ones are equal).
 */
export function withKohyaOverrides(fileInput: unknown, options: KohyaOverrides): unknown {
  const overrides = withoutBucketSettings(options);
  if (Object.keys(overrides).length === 0) return fileInput;
  const input = isObject(fileInput) ? structuredClone(fileInput) : {};
  const training = isObject(input.training) ? input.training : (input.training = {});
  training.kohya = { ...(isObject(training.kohya) ? training.kohya : {}), ...overrides };
  return input;
}

/**
 * Checks the options a file and flags gave, with the run's own, against the run's family: their
 * bucket settings (which the run input leaves out) must be preprocessing's.
 */
export function assertKohyaOptionsUsable(run: TrainingRun, given: KohyaOverrides): void {
  try {
    resolveKohyaOptions(run.baseModel.family, { ...run.training.kohya, ...given }, runBucketSettings(run));
  } catch (err) {
    if (err instanceof KohyaConfigError) throw new Error(err.message);
    throw err;
  }
}

/** TOML with each value in the type sd-scripts reads: float options always with a point (16.0). */
export function kohyaToml(options: KohyaOptions): string {
  return Object.entries(options)
    .map(([key, value]) => stringifyToml({ [key]: value }, { numbersAsFloat: kohyaValueKind(key) === 'float' }))
    .join('');
}

export interface FormattedKohyaConfig {
  base: BaseModelFamily;
  options: KohyaOptions;
  differences: KohyaDifference[];
}

/** A file's options normalised over the family's preset, and how they differ from it. */
export function formatKohyaConfig(base: BaseModelFamily, overrides: KohyaOverrides, where: string): FormattedKohyaConfig {
  let options: KohyaOptions;
  try {
    options = resolveKohyaOptions(base, overrides);
  } catch (err) {
    if (err instanceof KohyaConfigError) throw new Error(`${where}: ${err.message}`);
    throw err;
  }
  return { base, options, differences: kohyaDifferences(base, options) };
}

/** The normalised TOML, then the differences as comments, so the whole output is still a valid config. */
export function formattedKohyaLines(formatted: FormattedKohyaConfig, source: string): string[] {
  const { base, options, differences } = formatted;
  const value = (key: string, v: KohyaValue) => kohyaToml({ [key]: v }).trim().slice(key.length + 3);
  return [
    `# sd-scripts LoRA options for ${base}: ${source} over the ${base} preset, normalised`,
    ...kohyaToml(options).trimEnd().split('\n'),
    '',
    `# Differences from the ${base} preset: ${differences.length || 'none'}`,
    ...differences.map((d) =>
      d.value === undefined
        ? `#   ${d.key}: removed (preset ${value(d.key, d.preset!)}; sd-scripts' default applies)`
        : d.preset === undefined
          ? `#   ${d.key} = ${value(d.key, d.value)} (not in the preset)`
          : `#   ${d.key} = ${value(d.key, d.value)} (preset ${value(d.key, d.preset)})`,
    ),
  ];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
