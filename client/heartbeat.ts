/**
 * Live progress lives in the heartbeats of the run's pending activities, not in the workflow
 * (history stays small). This turns `describe()`'s raw pending activities into typed progress.
 */
import type { Payload, PayloadConverter } from '@temporalio/common';
import type { ActivityProgress } from '../lib/pipeline/status';

/** The fields we read from `describe().raw.pendingActivities[]`. */
export interface RawPendingActivity {
  activityType?: { name?: string | null } | null;
  attempt?: number | null;
  lastFailure?: { message?: string | null } | null;
  heartbeatDetails?: { payloads?: Payload[] | null } | null;
}

export interface PendingActivity {
  type: string;
  attempt: number;
  /** Why the previous attempt failed, when this is a retry. */
  lastFailure?: string;
  /** The last heartbeat, when it was an `ActivityProgress`. */
  progress?: ActivityProgress;
}

const UNITS: readonly string[] = ['images', 'bytes', 'steps'] satisfies ActivityProgress['unit'][];

export function pendingActivitiesOf(
  raw: readonly RawPendingActivity[] | null | undefined,
  converter: PayloadConverter,
): PendingActivity[] {
  return (raw ?? []).map((activity) => ({
    type: activity.activityType?.name ?? 'unknown',
    attempt: activity.attempt ?? 1,
    lastFailure: activity.lastFailure?.message ?? undefined,
    progress: progressOf(activity.heartbeatDetails?.payloads?.[0], converter),
  }));
}

/** Heartbeats come from another process and another version, so the shape is checked, not assumed. */
export function isActivityProgress(value: unknown): value is ActivityProgress {
  if (typeof value !== 'object' || value === null) return false;
  const { done, total, unit } = value as Record<string, unknown>;
  return Number.isFinite(done) && Number.isFinite(total) && typeof unit === 'string' && UNITS.includes(unit);
}

function progressOf(payload: Payload | undefined, converter: PayloadConverter): ActivityProgress | undefined {
  if (!payload) return undefined;
  try {
    const value = converter.fromPayload<unknown>(payload);
    return isActivityProgress(value) ? value : undefined;
  } catch {
    // An undecodable heartbeat (e.g. an encoding this client lacks) only costs the progress bar.
    return undefined;
  }
}
