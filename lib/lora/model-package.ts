/**
 * How a registered LoRA appears in the SageMaker Model Registry: one model package group per LoRA
 * name (`<prefix>-<run name>`), one version per distinct file (the `-v2`, `-v3` … files join their
 * base name's group), pending manual approval. LoRAs are served by the WebUI, not by a SageMaker
 * endpoint, so a version carries no inference image: it points at the S3 object through its
 * customer metadata and description. Pure: the request fields, computed from the record.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { RegistryRecord } from './registry';

/** Group names are at most 63 characters of `[a-zA-Z0-9-]`; 22 + "-" + a 40-character run name fits. */
export const MODEL_PACKAGE_GROUP_PREFIX = z
  .string()
  .max(22, 'must be at most 22 characters (group names are "<prefix>-<run name>", at most 63)')
  .regex(/^[a-zA-Z0-9](-*[a-zA-Z0-9])*$/, 'must be letters, digits and "-", starting and ending with a letter or digit');

/** SageMaker's limits on CustomerMetadataProperties: keys ≤ 128, values ≤ 256 characters of this alphabet. */
const METADATA_VALUE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$/u;
const MAX_DESCRIPTION = 1024;

/** The property that holds the file's SHA-256: how a retry finds the version it already created. */
export const SHA256_PROPERTY = 'Sha256';

export interface ModelPackageVersionRequest {
  groupName: string;
  groupDescription: string;
  description: string;
  properties: Record<string, string>;
  /** Same group and bytes → same token, so SageMaker treats a repeated create as the same call. */
  clientToken: string;
}

export function modelPackageGroupName(prefix: string, baseName: string): string {
  return `${prefix}-${baseName}`;
}

export function modelPackageVersionRequest(
  prefix: string,
  baseName: string,
  record: Omit<RegistryRecord, 'modelPackageArn'>,
): ModelPackageVersionRequest {
  const groupName = modelPackageGroupName(prefix, baseName);
  const candidates: Record<string, string | undefined> = {
    LoraName: record.name,
    LoraUri: record.uri,
    [SHA256_PROPERTY]: record.sha256,
    AutoV2: record.autoV2,
    Sha256AfterHeader: record.sha256AfterHeader,
    SizeBytes: String(record.sizeBytes),
    Rank: String(record.rank),
    BaseModel: record.baseModel.family,
    Checkpoint: record.baseModel.checkpoint,
    TriggerWord: record.triggerWord,
    RunId: record.runId,
    TrainingJob: record.jobName,
    RecordUri: record.recordUri,
  };
  // A value SageMaker would refuse (a trigger word with a comma, say) stays in the description only.
  const properties = Object.fromEntries(
    Object.entries(candidates).filter((entry): entry is [string, string] => entry[1] !== undefined && METADATA_VALUE.test(entry[1])),
  );
  const trigger = record.triggerWord === undefined ? '' : `, trigger word "${record.triggerWord}"`;
  const description = `LoRA ${record.name} for ${record.baseModel.family} at ${record.uri} (sha256 ${record.sha256}${trigger}), trained by run ${record.runId}`;
  return {
    groupName,
    groupDescription: `LoRA "${baseName}": one version per distinct file registered under this name`,
    description: description.length > MAX_DESCRIPTION ? `${description.slice(0, MAX_DESCRIPTION - 1)}…` : description,
    properties,
    clientToken: createHash('sha256').update(`${groupName}/${record.sha256}`).digest('hex').slice(0, 36),
  };
}
