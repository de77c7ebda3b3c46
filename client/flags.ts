/**
 * Command-line flags as the user typed them: parsing numbers and naming the flag (not the
 * internal field) when validation fails, so every message says what to change on the command line.
 */
import { InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { formatZodError } from '../lib/pipeline/input';

/** `triggerWord` → `--trigger-word`: commander's camel-casing, reversed. */
export function flagName(optionKey: string): string {
  return `--${optionKey.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** A number typed on the command line; zod checks the range, this only rejects what is not a number. */
export function parseNumberFlag(flag: string, raw: string): number {
  const value = raw.trim() === '' ? Number.NaN : Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${flag}: must be a number, got "${raw}"`);
  return value;
}

/**
 * One line for all problems. `flagOf` returns the flag responsible for an issue (or undefined when
 * the value did not come from a flag: then the issue is named by its field under `root`).
 */
export function formatIssuesNamingFlags(
  error: z.ZodError,
  flagOf: (issue: z.core.$ZodIssue) => string | undefined,
  root = 'input',
): string {
  return error.issues
    .map((issue) => {
      const flag = flagOf(issue);
      return flag ? `${flag}: ${issue.message}` : formatZodError(new z.ZodError([issue]), root);
    })
    .join('; ');
}

/** Validates flag values against a zod schema whose fields are the (camel-cased) flag names. */
export function parseFlags<S extends z.ZodType>(schema: S, values: Record<string, unknown>): z.output<S> {
  const result = schema.safeParse(values);
  if (!result.success) {
    throw new Error(formatIssuesNamingFlags(result.error, (issue) => (issue.path.length ? flagName(String(issue.path[0])) : undefined)));
  }
  return result.data;
}

/** For commander's argParser: a whole number ≥ 1, or commander's one-line "invalid argument" error. */
export function positiveInteger(raw: string): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError('Expected a whole number of at least 1.');
  return value;
}
