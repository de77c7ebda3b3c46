/**
 * The LoRA registry in a store: where a registered LoRA and its record live (the WebUI's
 * `models/Lora/` layout), how a name is versioned when different bytes claim it, which outputs are
 * epoch files, and the record every reader validates. Pure: zod and strings only.
 */
import { z } from 'zod';
import { BASE_MODEL_FAMILIES, formatZodError } from '../pipeline/input';
import type { TrainingProgress } from '../pipeline/status';

export const LORA_DIR = 'models/Lora';
export const REGISTRY_DIR = 'registry';

export function loraKey(name: string): string {
  return `${LORA_DIR}/${name}.safetensors`;
}

export function recordKey(name: string): string {
  return `${REGISTRY_DIR}/${name}.json`;
}

/** The record's name from its key, or undefined for anything else under `registry/`. */
export function nameOfRecordKey(key: string): string | undefined {
  return new RegExp(`^${REGISTRY_DIR}/([^/]+)\\.json$`).exec(key)?.[1];
}

/** `<name>` for the first file registered under a name, then `<name>-v2`, `-v3`, … */
export function versionedName(baseName: string, version: number): string {
  if (!Number.isInteger(version) || version < 1) throw new Error(`version: must be an integer >= 1, got ${version}`);
  return version === 1 ? baseName : `${baseName}-v${version}`;
}

/** sd-scripts saves `<output_name>-000001.safetensors` after each epoch; the final file has no suffix. */
export function epochOf(outputName: string, file: string): number | undefined {
  if (!file.startsWith(`${outputName}-`)) return undefined;
  const match = /^(\d{6})\.safetensors$/.exec(file.slice(outputName.length + 1));
  return match ? Number(match[1]) : undefined;
}

/**
 * Steps and epochs as sd-scripts recorded them (ss_steps, ss_num_epochs); the loss as the poller last
 * saw it. A job resumed from saved state records only its own steps in ss_steps, while its progress
 * counts the whole run: the larger of the two is what was trained.
 */
export function trainingMetrics(metadata: Record<string, string>, progress?: TrainingProgress): RegistryRecord['metrics'] {
  const integer = (value: string | undefined) => (value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined);
  const metrics: RegistryRecord['metrics'] = {};
  const recorded = integer(metadata.ss_steps);
  const steps = recorded === undefined ? progress?.step : Math.max(recorded, progress?.step ?? 0);
  const epochs = integer(metadata.ss_num_epochs) ?? progress?.totalEpochs;
  if (steps !== undefined) metrics.steps = steps;
  if (epochs !== undefined) metrics.epochs = epochs;
  if (progress?.loss !== undefined && Number.isFinite(progress.loss) && !progress.lossIsNaN) metrics.finalLoss = progress.loss;
  return metrics;
}

const SHA256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits');

export const RegistryRecord = z.object({
  /** The registered name: the run name, or `<run name>-vN` when that name holds other bytes. */
  name: z.string().min(1),
  /** The LoRA at `models/Lora/<name>.safetensors`. */
  uri: z.string().min(1),
  /** This record, `registry/<name>.json`. */
  recordUri: z.string().min(1),
  /** SHA-256 of the whole file: what the WebUI and Civitai show. */
  sha256: SHA256,
  /** The first 10 hex digits of `sha256` (the WebUI's AutoV2 short hash). */
  autoV2: z.string().regex(/^[0-9a-f]{10}$/, 'must be 10 lower-case hex digits'),
  /** SHA-256 of the bytes after the header; equals `sshs_model_hash` when sd-scripts wrote one. */
  sha256AfterHeader: SHA256,
  sizeBytes: z.number().int().nonnegative(),
  runId: z.string().min(1),
  jobName: z.string().min(1),
  backend: z.enum(['local', 'sagemaker']),
  baseModel: z.object({ family: z.enum(BASE_MODEL_FAMILIES), checkpoint: z.string().min(1) }),
  triggerWord: z.string().min(1).optional(),
  datasetManifestSha256: z.string().min(1),
  /** The sd-scripts options the run was trained with. */
  kohyaConfig: z.record(z.string(), z.json()),
  metrics: z.object({
    steps: z.number().int().nonnegative().optional(),
    epochs: z.number().int().nonnegative().optional(),
    finalLoss: z.number().optional(),
  }),
  /** The LoRA's rank (network_dim) as verified from its tensors. */
  rank: z.number().int().positive(),
  /** Per-epoch files the job also wrote (listed, not registered). */
  epochFiles: z.array(z.string()),
  /** The file's `__metadata__` (ss_*, modelspec.*, sshs_*). */
  metadata: z.record(z.string(), z.string()),
  /** The SageMaker Model Registry version, when the worker registers there too. */
  modelPackageArn: z.string().min(1).optional(),
  createdAt: z.iso.datetime(),
});
export type RegistryRecord = z.infer<typeof RegistryRecord>;

/** A record as stored (JSON text), validated; the error names the record and the bad field. */
export function parseRegistryRecord(text: string, uri: string): RegistryRecord {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`registry record ${uri} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = RegistryRecord.safeParse(json);
  if (!parsed.success) throw new Error(`registry record ${uri} is invalid: ${formatZodError(parsed.error, 'record')}`);
  return parsed.data;
}
