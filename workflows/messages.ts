/**
 * The run's messages, shared by the workflow and every client (CLI, review page, tests).
 * Payloads are validated with zod in the workflow; the schemas live in lib/pipeline/review.ts.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ReviewDecision, RunStatus } from '../lib/pipeline/status';
import type { ApprovePayload, EditCaptionsPayload, EditCaptionsResult, RejectPayload, ReviewState } from '../lib/pipeline/review';

export const statusQuery = defineQuery<RunStatus>('status');
export const approveSignal = defineSignal<[ApprovePayload]>('approve');
export const rejectSignal = defineSignal<[RejectPayload]>('reject');

// Review. The updates share their names with the signals above: clients that can wait for an answer
// use the updates, whose validators refuse a bad or premature decision before it enters history;
// the signals stay for plain `temporal workflow signal` users (an approve signal is ignored, and
// logged, while caption errors remain and it has no force: true).
export const reviewStateQuery = defineQuery<ReviewState>('reviewState');
export const editCaptionsUpdate = defineUpdate<EditCaptionsResult, [EditCaptionsPayload]>('editCaptions');
export const approveUpdate = defineUpdate<ReviewDecision, [ApprovePayload]>('approve');
export const rejectUpdate = defineUpdate<ReviewDecision, [RejectPayload]>('reject');
