/**
 * Reading runs from Temporal: one run's snapshot (status query + heartbeat progress) and the list
 * of runs (visibility query over our search attributes).
 */
import {
  isGrpcDeadlineError,
  type Client,
  type WorkflowExecutionDescription,
  type WorkflowExecutionStatusName,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import type { TypedSearchAttributes } from '@temporalio/common';
import { runSummary } from '../lib/pipeline/details';
import type { TrainingRunInput } from '../lib/pipeline/input';
import { WORKFLOW_TYPE } from '../lib/pipeline/names';
import { STAGES, TERMINAL_STAGES, type RunStatus, type Stage } from '../lib/pipeline/status';
import { statusQuery } from '../workflows/messages';
import { LORA_BASE_MODEL, LORA_RUN_NAME, LORA_STAGE } from '../workflows/search-attributes';
import { describeError } from './errors';
import { pendingActivitiesOf, type PendingActivity } from './heartbeat';

/** Starts a run. Every starter (CLI, demo, benchmarks, tests) comes here, so each run carries its Web UI summary. */
export function startRun(client: Client, input: TrainingRunInput, options: { taskQueue: string; workflowId: string }): Promise<WorkflowHandleWithFirstExecutionRunId> {
  return client.workflow.start(WORKFLOW_TYPE, { ...options, args: [input], staticSummary: runSummary(input) });
}

/** A query goes through a worker; without one the server would hold it ~30 s before giving up. */
const QUERY_DEADLINE_MS = 5_000;

export interface RunSnapshot {
  workflowId: string;
  /** Temporal's view of the execution: RUNNING, COMPLETED, TERMINATED, … */
  execution: WorkflowExecutionStatusName;
  status: RunStatus;
  activities: PendingActivity[];
  /** Set when the status query went unanswered and `status` comes from search attributes only. */
  statusNote?: string;
  /** The first files preprocessing skipped, read from the manifest where the work store is reachable. */
  skippedFiles?: { first: { source: string; reason: string }[]; manifestUri: string };
}

/** Describes a run, refusing workflows of other types so no command acts on them by mistake. */
export async function describeRun(handle: WorkflowHandle): Promise<WorkflowExecutionDescription> {
  const description = await handle.describe();
  if (description.type !== WORKFLOW_TYPE) {
    throw new Error(`${handle.workflowId} is a "${description.type}" workflow, not a LoRA training run`);
  }
  return description;
}

export async function readRunSnapshot(client: Client, workflowId: string): Promise<RunSnapshot> {
  const handle = client.workflow.getHandle(workflowId);
  const description = await describeRun(handle);
  const base = {
    workflowId,
    execution: description.status.name,
    activities: pendingActivitiesOf(
      description.raw.pendingActivities,
      client.options.loadedDataConverter.payloadConverter,
    ),
  };
  try {
    const status = await client.withDeadline(Date.now() + QUERY_DEADLINE_MS, () => handle.query(statusQuery));
    return { ...base, status };
  } catch (err) {
    // A worker that is down, restarting or failing its workflow task cannot answer; the run still
    // exists, so say why and show what the server itself knows rather than giving up.
    const reason = isGrpcDeadlineError(err) ? 'no worker answered it (is "npm run worker" running?)' : describeError(err);
    return {
      ...base,
      status: statusFromSearchAttributes(workflowId, base.execution, description.typedSearchAttributes),
      statusNote: `status query failed: ${reason}; showing search attributes only`,
    };
  }
}

/** A run is over when its stage says so, or when Temporal says so (e.g. it was terminated). */
export function isFinished(snapshot: Pick<RunSnapshot, 'execution' | 'status'>): boolean {
  return TERMINAL_STAGES.includes(snapshot.status.stage) || snapshot.execution !== 'RUNNING';
}

/** The little a run tells without a worker: what the workflow last upserted into its search attributes. */
export function statusFromSearchAttributes(
  workflowId: string,
  execution: WorkflowExecutionStatusName,
  attributes: TypedSearchAttributes,
): RunStatus {
  const recorded = attributes.get(LORA_STAGE);
  const recordedStage = STAGES.find((stage) => stage === recorded);
  const stage =
    execution === 'RUNNING' || (recordedStage && TERMINAL_STAGES.includes(recordedStage))
      ? (recordedStage ?? 'preprocessing')
      : stageOfClosedExecution(execution);
  return {
    runName: attributes.get(LORA_RUN_NAME) ?? workflowId,
    stage,
    baseModel: attributes.get(LORA_BASE_MODEL) ?? 'unknown',
  };
}

function stageOfClosedExecution(execution: WorkflowExecutionStatusName): Stage {
  if (execution === 'COMPLETED') return 'completed';
  if (execution === 'CANCELLED') return 'cancelled';
  return 'failed';
}

export interface RunListEntry {
  workflowId: string;
  execution: WorkflowExecutionStatusName;
  stage?: string;
  runName?: string;
  baseModel?: string;
  startTime: Date;
}

/** Visibility query for our runs; `stage` is one of STAGES (checked by the CLI), so quoting is safe. */
export function runListQuery(stage?: Stage): string {
  const clauses = [`WorkflowType = "${WORKFLOW_TYPE}"`];
  if (stage) clauses.push(`${LORA_STAGE.name} = "${stage}"`);
  return clauses.join(' AND ');
}

export async function listRuns(client: Client, options: { stage?: Stage; limit: number }): Promise<RunListEntry[]> {
  const entries: RunListEntry[] = [];
  for await (const info of client.workflow.list({ query: runListQuery(options.stage), pageSize: options.limit })) {
    const attributes = info.typedSearchAttributes;
    entries.push({
      workflowId: info.workflowId,
      execution: info.status.name,
      stage: attributes.get(LORA_STAGE),
      runName: attributes.get(LORA_RUN_NAME),
      baseModel: attributes.get(LORA_BASE_MODEL),
      startTime: info.startTime,
    });
    if (entries.length >= options.limit) break;
  }
  return entries;
}
