/** What `lora review …` prints: pure functions of what the commands read, unit-tested. */
import type { EditCaptionsResult, ReviewState } from '../lib/pipeline/review';
import type { IssueCounts, ReviewDecision } from '../lib/pipeline/status';
import type { ReportIssue, ReviewDetails, SkippedFile } from './review';
import { decisionText, plural, skippedFileLines } from './render';

export interface Page<T> {
  page: number;
  pages: number;
  pageSize: number;
  /** Items on all pages (after any filter). */
  total: number;
  items: T[];
}
export type IssuePage = Page<ReportIssue>;
export type SkippedPage = Page<SkippedFile>;

/** One page (1-based); a page past the end is empty, not an error. */
export function pageOf<T>(items: readonly T[], options: { page: number; pageSize: number }): Page<T> {
  const start = (options.page - 1) * options.pageSize;
  return {
    page: options.page,
    pages: Math.max(1, Math.ceil(items.length / options.pageSize)),
    pageSize: options.pageSize,
    total: items.length,
    items: items.slice(start, start + options.pageSize),
  };
}

/** One page of issues, optionally of one severity only. */
export function pageOfIssues(
  issues: readonly ReportIssue[],
  options: { page: number; pageSize: number; severity?: ReportIssue['severity'] },
): IssuePage {
  return pageOf(options.severity ? issues.filter((issue) => issue.severity === options.severity) : issues, options);
}

/** How many skipped files the issue listing shows before pointing at `--skipped`. */
export const SKIPPED_PREVIEW = 5;

export function countsText(counts: IssueCounts): string {
  return `${plural(counts.error, 'error')} · ${plural(counts.warning, 'warning')} · ${counts.info} info`;
}

function phaseText(state: ReviewState): string {
  if (state.phase === 'not_started') return 'not open yet: the run has not reached review';
  if (state.phase === 'awaiting') return `awaiting a decision since ${state.openedAt}, times out at ${state.deadline}`;
  return state.decision ? decisionText(state.decision) : 'decided';
}

function editsText(state: ReviewState): string | undefined {
  const { batches, captions, editors } = state.edits;
  if (batches === 0) return state.editsInFlight > 0 ? `${state.editsInFlight} in progress` : undefined;
  const inFlight = state.editsInFlight > 0 ? `, ${state.editsInFlight} in progress` : '';
  return `${plural(captions, 'caption')} rewritten in ${plural(batches, 'edit')} by ${editors.join(', ')}${inFlight}`;
}

/**
 * `lora review show`: the summary, one page of issues (or, with `--skipped`, of the files left out)
 * and what to do next. Without `--skipped` the first few skipped files follow the issues.
 */
export function reviewLines(details: ReviewDetails, listing: { issues: IssuePage } | { skipped: SkippedPage }): string[] {
  const { state } = details;
  const rows: [string, string | undefined][] = [
    ['run', details.workflowId],
    ['review', phaseText(state)],
    ['captions', state.captions && countsText(state.captions)],
    ['skipped', state.captions && `${plural(details.skipped.length, 'file')} left out by preprocessing`],
    ['edits', editsText(state)],
    ['report', details.reportUri],
    ['contact sheet', contactSheetText(details.contactSheetUris)],
  ];
  const shown = rows.filter(([, value]) => value !== undefined);
  const width = Math.max(...shown.map(([label]) => label.length)) + 2;
  const lines = shown.map(([label, value]) => `${`${label}:`.padEnd(width)}${value}`);
  for (const ignored of state.ignoredSignals) {
    lines.push(`ignored ${ignored.signal} signal${ignored.reviewer ? ` from ${ignored.reviewer}` : ''} at ${ignored.at}: ${ignored.why}`);
  }
  if (state.captions && 'issues' in listing) {
    const page = listing.issues;
    lines.push('', page.total === 0 ? 'no issues' : `issues ${rangeText(page)} (page ${page.page}/${page.pages}):`);
    for (const issue of page.items) {
      lines.push(`  ${issue.severity.toUpperCase().padEnd(7)} ${issue.rule}  ${issue.file}`, `          ${issue.message}`);
      if (issue.fix) lines.push(`          fix: ${issue.fix}`);
    }
    if (page.page < page.pages) lines.push(`  more: lora review show ${details.workflowId} --page ${page.page + 1}`);
    if (details.imageWarnings.length > 0) {
      lines.push('', `preprocessing warnings (${plural(details.imageWarnings.length, 'image')}):`);
      for (const { image, warnings } of details.imageWarnings.slice(0, SKIPPED_PREVIEW)) lines.push(`  ${image}: ${warnings.join('; ')}`);
      if (details.imageWarnings.length > SKIPPED_PREVIEW) lines.push(`  … ${details.imageWarnings.length - SKIPPED_PREVIEW} more on the review page (lora review serve ${details.workflowId}) and the contact sheet`);
    }
    const preview = pageOf(details.skipped, { page: 1, pageSize: SKIPPED_PREVIEW });
    if (preview.total > 0) {
      lines.push('', `skipped files ${rangeText(preview)}:`, ...skippedFileLines(preview.items));
      if (preview.pages > 1) lines.push(`  all: lora review show ${details.workflowId} --skipped`);
    }
  }
  if (state.captions && 'skipped' in listing) {
    const page = listing.skipped;
    lines.push('', page.total === 0 ? 'no files were skipped' : `skipped files ${rangeText(page)} (page ${page.page}/${page.pages}):`);
    lines.push(...skippedFileLines(page.items));
    if (page.page < page.pages) lines.push(`  more: lora review show ${details.workflowId} --skipped --page ${page.page + 1}`);
  }
  if (state.phase === 'awaiting') lines.push('', ...nextStepLines(details.workflowId));
  return lines;
}

export function nextStepLines(workflowId: string): string[] {
  return [
    `edit:    lora review edit ${workflowId} --reviewer <name> --image <name.jpg> --caption <text>   (or --file edits.json)`,
    `approve: lora review approve ${workflowId} --reviewer <name> [--comment <text>] [--force]`,
    `reject:  lora review reject ${workflowId} --reviewer <name> --reason <text>`,
    `page:    lora review serve ${workflowId}`,
  ];
}

export function editResultLines(workflowId: string, result: EditCaptionsResult): string[] {
  const created = result.created > 0 ? ` (${result.created} new caption file${result.created === 1 ? '' : 's'})` : '';
  return [
    `rewrote ${plural(result.written, 'caption')}${created} in ${workflowId}`,
    `captions now: ${countsText(result.captions)}`,
    ...(result.captions.error > 0
      ? [`errors remain: lora review show ${workflowId} lists them`]
      : [`no caption errors left: lora review approve ${workflowId} --reviewer <name>`]),
  ];
}

export function decisionLines(workflowId: string, decision: ReviewDecision): string[] {
  const next = decision.decision === 'approved' ? 'the run goes on to upload and training' : 'the run ends without training';
  return [`${workflowId}: ${decisionText(decision)}; ${next}`];
}

function contactSheetText(uris: readonly string[] | undefined): string | undefined {
  if (!uris?.length) return undefined;
  return uris.length === 1 ? uris[0] : `${uris[0]} (page 1 of ${uris.length}; the others beside it)`;
}

function rangeText(page: Page<unknown>): string {
  if (page.items.length === 0) return `(none on this page of ${page.total})`;
  const first = (page.page - 1) * page.pageSize + 1;
  return `${first}-${first + page.items.length - 1} of ${page.total}`;
}

