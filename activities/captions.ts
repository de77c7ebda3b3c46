/**
 * Caption checks: read the preprocess manifest and the captions it copied, run the rules in
 * lib/captions/rules.ts and store the report. A caption with a byte-order mark or CR line breaks is
 * rewritten in the work store without them (reported as info), so what trains is what was checked.
 * Reads and rewrites the same keys: safe to retry, and to run again after a reviewer's edits.
 */
import { ApplicationFailure } from '@temporalio/common';
import pLimit from 'p-limit';
import { z } from 'zod';
import { loadClipTokenizer } from '../adapters/clip';
import { CaptionRuleOptions, type CaptionRuleOptionsInput } from '../lib/captions/options';
import { CaptionedImage, CaptionIssue, CaptionRuleContext, checkCaptions } from '../lib/captions/rules';
import { decodeCaption, normaliseCaption } from '../lib/captions/text';
import { formatZodError } from '../lib/pipeline/input';
import type { DatasetManifest } from '../lib/pipeline/manifest';
import type { IssueCounts } from '../lib/pipeline/status';
import type { ActivityDeps } from './deps';
import { sha256Hex } from '../lib/hash';
import { readManifest } from './manifest';

export const CheckCaptionsInput = z
  .object({
    runId: z.string().regex(/^(?!\.\.?$)[^/\\]+$/, 'must be non-empty, without "/" or "\\", and not "." or ".."'),
    manifestKey: z.string().min(1, 'is required: the key preprocessDataset returned'),
    /** From `captionRulesFor(run)` (lib/captions/options.ts). */
    rules: CaptionRuleOptions,
  })
  .strict();
export type CheckCaptionsInput = z.input<typeof CheckCaptionsInput>;

export interface CheckCaptionsResult {
  reportKey: string;
  counts: IssueCounts;
}

export interface CaptionReport {
  version: 1;
  counts: IssueCounts;
  issues: CaptionIssue[];
}

export function captionReportKeyOf(runId: string): string {
  return `runs/${runId}/caption-report.json`;
}

/** Captions are small; this bounds open reads against the store, not CPU. */
const CAPTION_READ_CONCURRENCY = 16;

/**
 * What the rules need besides the captions: the parsed options and the CLIP tokenizer (loaded once
 * per process). Also for checking one caption with `checkCaption` (lib/captions/rules.ts) elsewhere,
 * e.g. `checkCaption(image, await captionRuleContext(captionRulesFor(run)))`.
 */
export async function captionRuleContext(rules: CaptionRuleOptionsInput): Promise<CaptionRuleContext> {
  const parsed = CaptionRuleOptions.safeParse(rules);
  if (!parsed.success) throw new Error(formatZodError(parsed.error, 'caption rules'));
  return { options: parsed.data, tokenizer: await loadClipTokenizer() };
}

/**
 * The training folders, and for a dataset in kohya layout also the top-level folders preprocessing
 * left out because sd-scripts would skip them: their images are not trained.
 */
function foldersOf(manifest: DatasetManifest): string[] {
  const training = manifest.folders?.map((folder) => folder.name) ?? [manifest.folder];
  const skipped = manifest.layout === 'kohya' ? (manifest.ignoredFolders ?? []).filter((folder) => !folder.includes('/')) : [];
  return [...training, ...skipped].filter(Boolean);
}

export function makeCaptionActivities(deps: ActivityDeps) {
  async function checkCaptionsActivity(rawInput: CheckCaptionsInput): Promise<CheckCaptionsResult> {
    const parsedInput = CheckCaptionsInput.safeParse(rawInput);
    if (!parsedInput.success) {
      throw ApplicationFailure.nonRetryable(formatZodError(parsedInput.error, 'checkCaptions input'), 'InvalidInput');
    }
    const { runId, manifestKey, rules } = parsedInput.data;
    const manifest = await readManifest(deps.workStore, manifestKey);
    const context = await captionRuleContext(rules);

    const limit = pLimit(CAPTION_READ_CONCURRENCY);
    const images = await Promise.all(
      manifest.images.map((image) => limit(() => readCaption(image.source, image.caption))),
    );
    const { issues, counts } = checkCaptions({ images, orphanCaptions: manifest.orphanCaptions, folders: foldersOf(manifest) }, context);

    const reportKey = captionReportKeyOf(runId);
    const report: CaptionReport = { version: 1, counts, issues };
    await deps.workStore.put(reportKey, `${JSON.stringify(report, null, 2)}\n`, { contentType: 'application/json' });
    return { reportKey, counts };
  }

  /** Reads a caption and, when it is valid UTF-8 with a byte-order mark or CRs, stores the normalised text. */
  async function readCaption(file: string, captionKey: string | null): Promise<CaptionedImage> {
    if (captionKey === null) return { file, caption: null };
    const { text, invalidUtf8 } = decodeCaption(await deps.workStore.get(captionKey));
    if (invalidUtf8) return { file, caption: text, invalidUtf8 };
    const normalised = normaliseCaption(text);
    if (normalised !== text) {
      await deps.workStore.put(captionKey, normalised, { contentType: 'text/plain; charset=utf-8', sha256: sha256Hex(normalised) });
    }
    return { file, caption: text };
  }

  return { checkCaptions: checkCaptionsActivity };
}
