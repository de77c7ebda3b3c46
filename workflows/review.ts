/**
 * Step 3 of a run, human review: the `reviewState` query, the editCaptions / approve / reject
 * updates and the approve / reject signals. Handlers are registered when the run starts, so a
 * message that arrives too early is refused (updates) or ignored (signals), never kept for later.
 *
 * History stays small: the state below holds counts and keys; the issues themselves are in the
 * report in the work store. Image names in edits are checked for shape by the validator (no path,
 * no control characters) and against the manifest by applyCaptionEdits: knowing every name here
 * would mean carrying a per-image list through history.
 */
import { allHandlersFinished, ApplicationFailure, condition, log, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { CheckCaptionsResult } from '../activities/captions';
import { durationMs } from '../lib/pipeline/duration';
import { formatZodError, parseOrThrow } from '../lib/pipeline/input';
import {
  ApprovePayload,
  approveRefusal,
  closedRefusal,
  EditCaptionsPayload,
  rememberIgnored,
  RejectPayload,
  tallyEdits,
  type EditCaptionsResult,
  type IgnoredSignal,
  type ReviewGate,
  type ReviewState,
} from '../lib/pipeline/review';
import type { ReviewDecision } from '../lib/pipeline/status';
import { approveSignal, approveUpdate, editCaptionsUpdate, rejectSignal, rejectUpdate, reviewStateQuery } from './messages';

// Edits are small writes and a re-check: a reviewer waits for them, so they fail fast.
const { applyCaptionEdits } = proxyActivities<Activities>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
  summary: "Apply a reviewer's caption edits",
});
// Where the contact sheet is: a convenience, so the review opens without it when the lookup fails.
const { locateReviewFiles } = proxyActivities<Activities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
  summary: 'Locate the contact sheets and caption report for review',
});

export interface ReviewOpening {
  runId: string;
  manifestKey: string;
  /** The caption check that sent the run to review. */
  report: CheckCaptionsResult;
  /** How long to wait for a decision, e.g. "7d". */
  timeout: string;
  /** Runs the caption checks again over the edited captions (same rules as the first check). */
  recheck(): Promise<CheckCaptionsResult>;
}

export interface Review {
  /** Opens the review and resolves with the decision: approved, rejected or timed out. */
  decide(opening: ReviewOpening): Promise<ReviewDecision>;
  /** Records that the run needed no review. */
  skip(): ReviewDecision;
}

export function setUpReview(): Review {
  const state: ReviewState = {
    phase: 'not_started',
    editsInFlight: 0,
    edits: { batches: 0, captions: 0, editors: [] },
    ignoredSignals: [],
  };
  let opening: ReviewOpening | undefined;
  let pending: ReviewDecision | undefined;
  let editing = false;

  const now = (): string => new Date().toISOString();
  const gate = (): ReviewGate => ({
    phase: state.phase,
    decided: pending !== undefined,
    notNeeded: state.decision?.decision === 'not_needed',
    errors: state.captions?.error ?? 0,
    editsInFlight: state.editsInFlight,
  });
  const record = (decision: Pick<ReviewDecision, 'decision' | 'reviewer' | 'comment' | 'force' | 'via'>): ReviewDecision => {
    const { error, warning, info } = state.captions ?? { error: 0, warning: 0, info: 0 };
    pending ??= { ...decision, at: now(), captions: { error, warning, info }, edits: state.edits };
    return pending;
  };
  const refuse = (refusal: string | undefined): void => {
    if (refusal) throw new Error(refusal);
  };
  const ignore = (signal: IgnoredSignal['signal'], why: string, reviewer?: string): void => {
    log.warn(`${signal} signal ignored: ${why}`, { reviewer });
    state.ignoredSignals = rememberIgnored(state.ignoredSignals, { signal, reviewer, why, at: now() });
  };

  setHandler(reviewStateQuery, () => ({ ...state, decision: state.decision ?? pending }));

  setHandler(
    editCaptionsUpdate,
    async (payload): Promise<EditCaptionsResult> => {
      const { reviewer, edits } = EditCaptionsPayload.parse(payload);
      state.editsInFlight += 1;
      try {
        // One edit at a time, so each re-check sees every earlier edit.
        await condition(() => !editing);
        editing = true;
        try {
          // The review may have ended while this edit waited for the previous one.
          const closed = closedRefusal(gate());
          if (closed || !opening) throw ApplicationFailure.nonRetryable(`nothing was changed: ${closed ?? 'the review is not open'}`, 'ReviewClosed');
          const applied = await applyCaptionEdits({ runId: opening.runId, manifestKey: opening.manifestKey, edits });
          const report = await opening.recheck();
          state.captions = { ...report.counts, reportKey: report.reportKey };
          state.edits = tallyEdits(state.edits, reviewer, applied.written);
          return { captions: state.captions, written: applied.written, created: applied.created, edits: state.edits };
        } finally {
          editing = false;
        }
      } finally {
        state.editsInFlight -= 1;
      }
    },
    {
      validator: (payload) => {
        parseOrThrow(EditCaptionsPayload, payload, 'editCaptions');
        refuse(closedRefusal(gate()));
      },
      description: 'Rewrite captions ({ reviewer, edits: [{ image, caption }] }), re-check them, return the new issue counts.',
    },
  );

  setHandler(approveUpdate, (payload) => record({ decision: 'approved', ...approvalOf(ApprovePayload.parse(payload)), via: 'update' }), {
    validator: (payload) => refuse(approveRefusal(gate(), parseOrThrow(ApprovePayload, payload, 'approve'))),
    description: 'Approve the captions ({ reviewer, comment?, force? }); refused while errors remain unless force is true.',
  });
  setHandler(rejectUpdate, (payload) => record({ ...rejectionOf(RejectPayload.parse(payload)), via: 'update' }), {
    validator: (payload) => {
      parseOrThrow(RejectPayload, payload, 'reject');
      refuse(closedRefusal(gate()));
    },
    description: 'Reject the captions ({ reviewer, reason }): the run ends, nothing is uploaded or trained.',
  });

  // Signals cannot be refused: one that fails the same rules as the updates is logged and ignored.
  setHandler(approveSignal, (payload) => {
    const parsed = ApprovePayload.safeParse(payload);
    const why = parsed.success ? approveRefusal(gate(), parsed.data) : formatZodError(parsed.error, 'approve');
    if (why || !parsed.success) return ignore('approve', why ?? 'invalid payload', reviewerOf(payload));
    record({ decision: 'approved', ...approvalOf(parsed.data), via: 'signal' });
  });
  setHandler(rejectSignal, (payload) => {
    const parsed = RejectPayload.safeParse(payload);
    const why = parsed.success ? closedRefusal(gate()) : formatZodError(parsed.error, 'reject');
    if (why || !parsed.success) return ignore('reject', why ?? 'invalid payload', reviewerOf(payload));
    record({ ...rejectionOf(parsed.data), via: 'signal' });
  });

  return {
    async decide(open: ReviewOpening): Promise<ReviewDecision> {
      opening = open;
      const openedAt = Date.now();
      const timeoutMs = durationMs(open.timeout);
      state.phase = 'awaiting';
      state.captions = { ...open.report.counts, reportKey: open.report.reportKey };
      state.manifestKey = open.manifestKey;
      state.openedAt = new Date(openedAt).toISOString();
      state.deadline = new Date(openedAt + timeoutMs).toISOString();

      // Looked up while the reviewer may already read, edit and decide.
      const located = locateReviewFiles({ manifestKey: open.manifestKey }).then(
        (files) => {
          state.contactSheetKeys = files.contactSheetKeys;
          state.workStore = files.workStore;
        },
        (err: unknown) => log.warn('review files not located', { error: err instanceof Error ? err.message : String(err) }),
      );
      await condition(() => pending !== undefined, timeoutMs);
      // The decision that came, or "timed out" when none did (record keeps the first decision).
      const decided = record({ decision: 'timed_out' });
      state.phase = 'decided';
      state.decision = decided;
      // An edit still being written when a reject or the timeout came finishes (one queued behind
      // it is refused) before the run moves on; the record then counts every edit that was made.
      await Promise.all([located, condition(allHandlersFinished)]);
      state.decision = { ...decided, edits: state.edits };
      return state.decision;
    },
    skip(): ReviewDecision {
      state.phase = 'decided';
      state.decision = { decision: 'not_needed', at: now() };
      return state.decision;
    },
  };
}

function approvalOf(payload: ReturnType<typeof ApprovePayload.parse>): Pick<ReviewDecision, 'reviewer' | 'comment' | 'force'> {
  // force appears in the record only when the reviewer sent it; the counts beside it say what it overrode.
  return { reviewer: payload.reviewer, comment: payload.comment, ...(payload.force ? { force: true } : {}) };
}

function rejectionOf(payload: ReturnType<typeof RejectPayload.parse>): Pick<ReviewDecision, 'decision' | 'reviewer' | 'comment'> {
  return { decision: 'rejected', reviewer: payload.reviewer, comment: payload.reason };
}

/** Who sent an invalid signal, when it says so: kept with the ignored signal for the reviewer to see. */
function reviewerOf(payload: unknown): string | undefined {
  const reviewer = (payload as { reviewer?: unknown } | null)?.reviewer;
  return typeof reviewer === 'string' ? reviewer.slice(0, 200) : undefined;
}
