/**
 * `lora models list` / `lora models show <name>`: the LoRA registry the worker writes
 * (`registry/<name>.json` in a store), read straight from the store, without Temporal. Every record
 * is validated on read; a bad one is named, never shown half-parsed.
 */
import { z } from 'zod';
import { awsConfigFromEnv, s3Client } from '../adapters/aws';
import { openStore } from '../adapters/store';
import { type ObjectStore, ObjectNotFoundError } from '../adapters/store/types';
import { nameOfRecordKey, parseRegistryRecord, recordKey, REGISTRY_DIR, type RegistryRecord } from '../lib/lora/registry';
import { parseOrThrow } from '../lib/pipeline/input';
import { WorkerEnv } from '../worker/config';
import { parseFlags } from './flags';
import { formatBytes, formatLoss } from './render';

const StoreFlag = z.object({ store: WorkerEnv.shape.LORA_STORE.unwrap() });
const LoraName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be a registered LoRA name such as my-style or my-style-v2');

/** `--store`, else the worker's default store (LORA_STORE or its built-in default). */
export function registryStoreUri(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  if (flag !== undefined) return parseFlags(StoreFlag, { store: flag }).store;
  return parseOrThrow(WorkerEnv.pick({ LORA_STORE: true }), env, 'env').LORA_STORE;
}

export function openRegistryStore(flag: string | undefined, env: NodeJS.ProcessEnv): ObjectStore {
  return openStore(registryStoreUri(flag, env), { s3: s3Client(awsConfigFromEnv(env)) });
}

export interface RegistryListing {
  storeUri: string;
  records: RegistryRecord[];
  /** One line per record that could not be read: listed as warnings, never silently dropped. */
  problems: string[];
}

export async function listRegistered(store: ObjectStore): Promise<RegistryListing> {
  const listing: RegistryListing = { storeUri: store.uri, records: [], problems: [] };
  for (const object of await store.list(REGISTRY_DIR)) {
    if (nameOfRecordKey(object.key) === undefined) continue;
    try {
      listing.records.push(parseRegistryRecord((await store.get(object.key)).toString('utf8'), store.uriOf(object.key)));
    } catch (err) {
      listing.problems.push((err as Error).message);
    }
  }
  return listing;
}

export async function readRegistered(store: ObjectStore, name: string): Promise<RegistryRecord> {
  const key = recordKey(parseOrThrow(LoraName, name, 'name'));
  let bytes: Buffer;
  try {
    bytes = await store.get(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) {
      throw new Error(`no LoRA named "${name}" in the registry at ${store.uri} ("lora models list" shows what is there)`);
    }
    throw err;
  }
  return parseRegistryRecord(bytes.toString('utf8'), store.uriOf(key));
}

export function modelListLines(listing: RegistryListing): string[] {
  if (!listing.records.length) return [`no LoRAs registered in ${listing.storeUri}`];
  const header = ['NAME', 'BASE', 'TRIGGER', 'AUTOV2', 'SIZE', 'CREATED (UTC)'];
  const rows = listing.records.map((record) => [
    record.name,
    record.baseModel.family,
    record.triggerWord ?? '-',
    record.autoV2,
    formatBytes(record.sizeBytes),
    record.createdAt.replace('T', ' ').replace(/\.\d+Z$|Z$/, ''),
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)));
  return [header, ...rows].map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd());
}

/** Everything a user needs to use or trace the LoRA; `--json` prints the whole record instead. */
export function modelShowLines(record: RegistryRecord): string[] {
  const { metrics } = record;
  const trained = [
    metrics.steps !== undefined && `${metrics.steps} steps`,
    metrics.epochs !== undefined && `${metrics.epochs} epochs`,
    metrics.finalLoss !== undefined && `final loss ${formatLoss(metrics.finalLoss)}`,
  ].filter((part): part is string => Boolean(part));
  const lines = [
    `LoRA ${record.name}`,
    `  file:          ${record.uri}`,
    `  record:        ${record.recordUri}`,
    `  base model:    ${record.baseModel.family} (${record.baseModel.checkpoint})`,
    `  trigger word:  ${record.triggerWord ?? '(none)'}`,
    `  rank:          ${record.rank}`,
    `  size:          ${formatBytes(record.sizeBytes)} (${record.sizeBytes} bytes)`,
    `  sha256:        ${record.sha256}`,
    `  AutoV2:        ${record.autoV2}`,
    `  data sha256:   ${record.sha256AfterHeader} (bytes after the header; sshs_model_hash)`,
    `  training:      ${trained.join(', ') || 'no metrics recorded'}`,
    `  run:           ${record.runId} (${record.backend} job ${record.jobName})`,
    `  dataset:       manifest sha256 ${record.datasetManifestSha256}`,
    `  created:       ${record.createdAt}`,
  ];
  if (record.modelPackageArn) lines.push(`  model package: ${record.modelPackageArn}`);
  lines.push(`  epoch files:   ${record.epochFiles.join(', ') || '(none)'}`);
  const metadata = Object.entries(record.metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  lines.push(`  metadata (${metadata.length} keys):`);
  // Tag frequencies and similar JSON blobs can be long: one line each here, whole in --json.
  for (const [key, raw] of metadata) {
    const value = raw.replace(/\s+/g, ' ');
    lines.push(`    ${key}: ${value.length > 100 ? `${value.slice(0, 99)}…` : value}`);
  }
  return lines;
}
