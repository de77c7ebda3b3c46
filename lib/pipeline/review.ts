/**
 * Human review: the messages clients send (approve, reject, editCaptions), the state the
 * `reviewState` query answers, and the rules that decide whether a message is accepted. Pure and
 * synchronous, so the workflow's update validators can run them before anything enters history.
 */
import { z } from 'zod';
import { IMAGE_EXTENSIONS, isImageFile, parseKohyaFolder } from '../kohya/layout';
import type { IssueCounts, ReviewDecision } from './status';

/** At most this many captions per editCaptions update: each one is recorded in history. */
export const MAX_EDITS_PER_UPDATE = 100;
/** 1 KiB of UTF-8 holds far more than the 225 CLIP tokens sd-scripts can read. */
export const MAX_CAPTION_BYTES = 1024;
/** Longest image or folder name accepted (a file name on every common file system is at most 255 bytes). */
export const MAX_NAME_LENGTH = 255;
/** How many ignored signals the review state remembers (the latest ones). */
export const IGNORED_SIGNALS_KEPT = 5;

/**
 * Characters that have no place in a one-line caption or a name: C0 and C1 controls (newlines and
 * tabs included: sd-scripts reads only the first line), DEL, the Unicode line and paragraph
 * separators, and the byte-order mark, which sd-scripts would keep as part of the caption.
 */
const FORBIDDEN_CHARACTER = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]/;
/** A UTF-16 surrogate without its partner cannot be written as UTF-8. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function codePointLabel(char: string): string {
  return `U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/** What makes a caption or name unusable in a message or a file name, or undefined. */
export function forbiddenCharacterProblem(value: string): string | undefined {
  const match = FORBIDDEN_CHARACTER.exec(value);
  if (match) return `contains the control character ${codePointLabel(match[0])} at position ${match.index}`;
  const surrogate = LONE_SURROGATE.exec(value);
  if (surrogate) return `contains a lone UTF-16 surrogate at position ${surrogate.index}: not valid Unicode`;
  return undefined;
}

/** UTF-8 length without TextEncoder, so the same code runs in the workflow sandbox and anywhere else. */
export function utf8Length(value: string): number {
  let bytes = 0;
  for (const char of value) {
    const codePoint = char.codePointAt(0) ?? 0;
    bytes += codePoint < 0x80 ? 1 : codePoint < 0x800 ? 2 : codePoint < 0x10000 ? 3 : 4;
  }
  return bytes;
}

const REVIEWER = z
  .string()
  .trim()
  .min(1, 'is required: who made the decision')
  .max(200)
  .superRefine((value, ctx) => {
    const problem = forbiddenCharacterProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/** What is wrong with a name that must be one plain path segment, or undefined. */
function plainNameProblem(value: string, example: string): string | undefined {
  if (value === '') return `is required, e.g. "${example}"`;
  if (value.length > MAX_NAME_LENGTH) return `is ${value.length} characters long; names have at most ${MAX_NAME_LENGTH}`;
  if (/[/\\]/.test(value)) return 'must be a file name, not a path: no "/" or "\\"';
  // "a..b.jpg" is an ordinary name (it is looked up in the manifest, never joined to a path).
  if (value === '.' || value === '..') return 'must not be "." or ".."';
  return forbiddenCharacterProblem(value);
}

/**
 * An image's file name as the dataset names it (`a.jpg`), never a path: names are looked up in
 * the run's manifest, and refusing anything path-like means no payload can even suggest a file.
 */
export const ImageName = z.string().superRefine((value, ctx) => {
  const problem =
    plainNameProblem(value, 'a.jpg') ??
    (isImageFile(value) ? undefined : `must name an image (${IMAGE_EXTENSIONS.join(' ')}) as "lora review show" lists it`);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** The `<repeats>_<name>` folder of an image, for a dataset that came in kohya's folder layout. */
export const FolderName = z.string().superRefine((value, ctx) => {
  const problem =
    plainNameProblem(value, '10_dog') ??
    (parseKohyaFolder(value) ? undefined : 'must be a kohya training folder name, "<repeats>_<name>" such as "10_dog"');
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** A caption as it will be written: one line of UTF-8 text, neither empty nor larger than the limit. */
export const CaptionText = z
  .string()
  .trim()
  .superRefine((value, ctx) => {
    const bytes = utf8Length(value);
    const forbidden = forbiddenCharacterProblem(value);
    const problem =
      value === ''
        ? 'must not be empty: sd-scripts aborts training on an empty caption file'
        : bytes > MAX_CAPTION_BYTES
          ? `is ${bytes} bytes of UTF-8; captions have at most ${MAX_CAPTION_BYTES} (sd-scripts reads at most 225 CLIP tokens)`
          : forbidden && `${forbidden}: a caption is one line of plain text`;
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/** One caption to write. `folder` names the training folder when the dataset came in kohya layout. */
export const CaptionEdit = z.object({ image: ImageName, folder: FolderName.optional(), caption: CaptionText }).strict();
export type CaptionEdit = z.output<typeof CaptionEdit>;

/** Which image an edit is for, as the manifest names it: `a.jpg`, or `10_dog/a.jpg` in kohya layout. */
export function datasetNameOf(edit: Pick<CaptionEdit, 'image' | 'folder'>): string {
  return edit.folder === undefined ? edit.image : `${edit.folder}/${edit.image}`;
}

/** The other way round: the image and folder fields for a name as the manifest and reports give it. */
export function imageRefOf(datasetName: string): Pick<CaptionEdit, 'image' | 'folder'> {
  const slash = datasetName.indexOf('/');
  return slash < 0 ? { image: datasetName } : { folder: datasetName.slice(0, slash), image: datasetName.slice(slash + 1) };
}

export const CaptionEdits = z
  .array(CaptionEdit)
  .min(1, 'must hold at least one { image, caption } edit')
  .max(MAX_EDITS_PER_UPDATE, `must hold at most ${MAX_EDITS_PER_UPDATE} edits per request; send the rest in another`)
  .superRefine((edits, ctx) => {
    const seen = new Set<string>();
    edits.forEach((edit, index) => {
      const name = datasetNameOf(edit);
      if (seen.has(name)) {
        ctx.addIssue({ code: 'custom', path: [index, 'image'], message: `edits ${JSON.stringify(name)} a second time in the same request` });
      }
      seen.add(name);
    });
  });

export const EditCaptionsPayload = z.object({ reviewer: REVIEWER, edits: CaptionEdits }).strict();
export type EditCaptionsPayload = z.input<typeof EditCaptionsPayload>;

export const ApprovePayload = z
  .object({
    reviewer: REVIEWER,
    comment: z.string().max(2000).optional(),
    /** Approve although caption errors remain; recorded with the decision. */
    force: z.boolean().optional(),
  })
  .strict();
export type ApprovePayload = z.input<typeof ApprovePayload>;

export const RejectPayload = z
  .object({ reviewer: REVIEWER, reason: z.string().trim().min(1, 'is required: why the run is rejected').max(2000) })
  .strict();
export type RejectPayload = z.input<typeof RejectPayload>;

// ---- state ----------------------------------------------------------------------------------------

/** not_started: checks still running; awaiting: a reviewer may edit and decide; decided: over. */
export type ReviewPhase = 'not_started' | 'awaiting' | 'decided';

/** editCaptions updates applied, caption files written (an image edited twice counts twice), who edited. */
export type EditTally = NonNullable<ReviewDecision['edits']>;

export interface IgnoredSignal {
  signal: 'approve' | 'reject';
  reviewer?: string;
  why: string;
  at: string;
}

/**
 * The `reviewState` query's answer. It holds counts and store keys only: the issues themselves
 * (one per file) live in the report at `captions.reportKey`, which clients read from the work
 * store, so neither history nor this answer grows with the dataset.
 */
export interface ReviewState {
  phase: ReviewPhase;
  captions?: IssueCounts & { reportKey: string };
  manifestKey?: string;
  /** The pages of the contact sheet preprocessing drew (PNG grids of the processed images). */
  contactSheetKeys?: string[];
  /** The worker's work store URI: where the keys above are. */
  workStore?: string;
  openedAt?: string;
  /** When the review times out (workflow time). */
  deadline?: string;
  /** editCaptions updates running or queued; a decision waits until they are done. */
  editsInFlight: number;
  edits: EditTally;
  decision?: ReviewDecision;
  /** Signals that could not be refused but were not acted on, latest last. */
  ignoredSignals: IgnoredSignal[];
}

/** The editCaptions update's answer: the counts after the re-check. */
export interface EditCaptionsResult {
  captions: IssueCounts & { reportKey: string };
  /** Captions written by this update; `created` of them are new files for images that had none. */
  written: number;
  created: number;
  edits: EditTally;
}

/** What the gate rules look at: a few fields of ReviewState, and whether a decision is pending. */
export interface ReviewGate {
  phase: ReviewPhase;
  decided: boolean;
  /** The run went on without review: its captions passed the checks. */
  notNeeded?: boolean;
  errors: number;
  editsInFlight: number;
}

/** Why the review takes no edit or decision now (not open yet, or over), or undefined when it does. */
export function closedRefusal(gate: ReviewGate): string | undefined {
  if (gate.phase === 'not_started') return 'the run is not awaiting review yet (its captions are still being checked)';
  if (gate.notNeeded) return 'this run needed no review: its captions passed the checks, and it went on without one';
  if (gate.phase === 'decided' || gate.decided) return 'the review is over: a decision was already made';
  return undefined;
}

export function approveRefusal(gate: ReviewGate, payload: Pick<z.output<typeof ApprovePayload>, 'force'>): string | undefined {
  const closed = closedRefusal(gate);
  if (closed) return closed;
  if (gate.editsInFlight > 0) return 'caption edits are still being applied; approve again when they are done';
  if (gate.errors > 0 && !payload.force) {
    const errors = gate.errors === 1 ? '1 caption error remains' : `${gate.errors} caption errors remain`;
    return `${errors}: fix them (lora review edit) or approve with force (--force, or "force": true), which is recorded with the decision`;
  }
  return undefined;
}

/** Adds who edited how much, keeping the first-edit order of editors. */
export function tallyEdits(tally: EditTally, reviewer: string, captions: number): EditTally {
  return {
    batches: tally.batches + 1,
    captions: tally.captions + captions,
    editors: tally.editors.includes(reviewer) ? tally.editors : [...tally.editors, reviewer],
  };
}

/** The latest ignored signals, oldest dropped first. */
export function rememberIgnored(kept: readonly IgnoredSignal[], ignored: IgnoredSignal): IgnoredSignal[] {
  return [...kept, ignored].slice(-IGNORED_SIGNALS_KEPT);
}

/** The run's stage after a review: approved runs go on, everything else ends here. */
export function stageAfterReview(decision: ReviewDecision['decision']): 'rejected' | 'review_timed_out' | undefined {
  if (decision === 'rejected') return 'rejected';
  if (decision === 'timed_out') return 'review_timed_out';
  return undefined;
}
