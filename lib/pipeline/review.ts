/** Review decisions as they arrive from clients: validated before they change anything. */
import { z } from 'zod';

const REVIEWER = z.string().trim().min(1, 'is required: who made the decision').max(200);

export const ApprovePayload = z
  .object({ reviewer: REVIEWER, comment: z.string().max(2000).optional() })
  .strict();
export type ApprovePayload = z.input<typeof ApprovePayload>;

export const RejectPayload = z
  .object({ reviewer: REVIEWER, reason: z.string().trim().min(1, 'is required: why the run is rejected').max(2000) })
  .strict();
export type RejectPayload = z.input<typeof RejectPayload>;
