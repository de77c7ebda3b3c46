/**
 * What the Temporal Web UI shows about a run besides its history: a one-line summary fixed when the
 * run starts, and "current details" (Temporal's markdown) that the workflow rewrites as it goes.
 * Pure, so the workflow, the CLI and the demo share it.
 */
import type { RunStatus } from './status';

/** The parts of a run's input (as given, before defaults) that its summary names. */
export interface SummarizedInput {
  runName: string;
  dataset: string;
  baseModel?: { family?: string };
  trainer?: { kind?: string; dryRun?: boolean };
}

/** One line: Web UI lists and `temporal workflow describe` show it beside the workflow id. */
export function runSummary(input: SummarizedInput): string {
  const family = input.baseModel?.family ?? 'sd15';
  const trainer = input.trainer?.kind ?? 'local';
  const dryRun = input.trainer?.dryRun ? ' (dry run)' : '';
  return oneLine(`LoRA "${input.runName}" · ${family} · ${trainer} trainer${dryRun} · from ${input.dataset}`);
}

/** The run as it stands, a line per stage reached; the Web UI renders it on the run's page. */
export function runDetails(status: RunStatus): string {
  const lines = [`**Stage:** ${status.stage.replace(/_/g, ' ')}`];
  const { images, captions, review, dataset, job, training, lora, error } = status;
  if (images) lines.push(`**Images:** ${images.kept} kept, ${images.skipped} skipped of ${images.found} found`);
  if (captions) lines.push(`**Captions:** ${plural(captions.error, 'error')}, ${plural(captions.warning, 'warning')}, ${captions.info} info`);
  if (review) lines.push(`**Review:** ${reviewLine(review)}`);
  if (dataset) lines.push(`**Dataset:** ${dataset.uri} (${plural(dataset.files, 'file')}, ${megabytes(dataset.bytes)})`);
  if (job) {
    const state = training ? ` · ${[training.status, training.secondaryStatus].filter(Boolean).join(' / ')}` : '';
    lines.push(`**Training job:** ${job.jobName} on ${job.backend}${state}`);
  }
  for (const warning of training?.warnings ?? []) lines.push(`**Training warning:** ${oneLine(warning)}`);
  if (lora) lines.push(`**LoRA:** ${lora.name} at ${lora.uri} (sha256 ${lora.sha256.slice(0, 12)}…, ${megabytes(lora.sizeBytes)})`);
  if (error) lines.push(`**Error:** ${oneLine(error)}`);
  // Two trailing spaces: a markdown line break, so each fact keeps its own line.
  return lines.join('  \n');
}

function reviewLine(review: NonNullable<RunStatus['review']>): string {
  if (review.decision === 'not_needed') return 'not needed';
  if (review.decision === 'timed_out') return 'timed out without a decision';
  const who = review.reviewer ? ` by ${review.reviewer}` : '';
  const forced = review.force ? ' despite caption errors' : '';
  const edits = review.edits?.captions ? `, ${plural(review.edits.captions, 'caption')} edited` : '';
  const comment = review.comment ? `: "${oneLine(review.comment)}"` : '';
  return `${review.decision}${who}${forced}${edits}${comment}`;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** Free text (paths, messages, comments) must not break the one-fact-per-line layout. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}
