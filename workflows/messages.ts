/**
 * The run's messages, shared by the workflow and every client (CLI, review page, tests).
 * Payloads are validated with zod in the workflow; the schemas live in lib/pipeline/review.ts.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { RunStatus } from '../lib/pipeline/status';
import type { ApprovePayload, RejectPayload } from '../lib/pipeline/review';

export const statusQuery = defineQuery<RunStatus>('status');
export const approveSignal = defineSignal<[ApprovePayload]>('approve');
export const rejectSignal = defineSignal<[RejectPayload]>('reject');
