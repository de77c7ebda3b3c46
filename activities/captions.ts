/**
 * Caption checks: read the preprocess manifest and the captions it copied, run the rules in
 * lib/captions/rules.ts and store the report. Reads and rewrites the same keys: safe to retry.
 */
import { ApplicationFailure } from '@temporalio/common';
import pLimit from 'p-limit';
import { z } from 'zod';
import { ObjectNotFoundError } from '../adapters/store/types';
import { CaptionedImage, CaptionIssue, checkCaptions } from '../lib/captions/rules';
import { formatZodError } from '../lib/pipeline/input';
import type { IssueCounts } from '../lib/pipeline/status';
import type { ActivityDeps } from './deps';
import { DatasetManifest } from '../lib/pipeline/manifest';

export const CheckCaptionsInput = z
  .object({
    runId: z.string().regex(/^(?!\.\.?$)[^/\\]+$/, 'must be non-empty, without "/" or "\\", and not "." or ".."'),
    manifestKey: z.string().min(1, 'is required: the key preprocessDataset returned'),
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

export function makeCaptionActivities(deps: ActivityDeps) {
  async function checkCaptionsActivity(rawInput: CheckCaptionsInput): Promise<CheckCaptionsResult> {
    const parsedInput = CheckCaptionsInput.safeParse(rawInput);
    if (!parsedInput.success) {
      throw ApplicationFailure.nonRetryable(formatZodError(parsedInput.error, 'checkCaptions input'), 'InvalidInput');
    }
    const { runId, manifestKey } = parsedInput.data;
    const manifest = await readManifest(manifestKey);

    const limit = pLimit(CAPTION_READ_CONCURRENCY);
    const images = await Promise.all(
      manifest.images.map((image) => limit(() => readCaption(image.source, image.caption))),
    );
    const { issues, counts } = checkCaptions({ images, orphanCaptions: manifest.orphanCaptions });

    const reportKey = captionReportKeyOf(runId);
    const report: CaptionReport = { version: 1, counts, issues };
    await deps.workStore.put(reportKey, `${JSON.stringify(report, null, 2)}\n`, { contentType: 'application/json' });
    return { reportKey, counts };
  }

  async function readManifest(manifestKey: string): Promise<DatasetManifest> {
    let bytes: Buffer;
    try {
      bytes = await deps.workStore.get(manifestKey);
    } catch (err) {
      if (err instanceof ObjectNotFoundError) {
        throw ApplicationFailure.nonRetryable(`manifest not found: ${err.uri} (run preprocessDataset first)`, 'ManifestNotFound');
      }
      throw err;
    }
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw ApplicationFailure.nonRetryable(
        `manifest ${manifestKey} is not valid JSON: ${(err as Error).message}`,
        'InvalidManifest',
      );
    }
    const parsed = DatasetManifest.safeParse(json);
    if (!parsed.success) {
      throw ApplicationFailure.nonRetryable(formatZodError(parsed.error, `manifest ${manifestKey}`), 'InvalidManifest');
    }
    return parsed.data;
  }

  async function readCaption(file: string, captionKey: string | null): Promise<CaptionedImage> {
    if (captionKey === null) return { file, caption: null };
    const bytes = await deps.workStore.get(captionKey);
    // ignoreBOM keeps a byte-order mark in the text, as sd-scripts' "utf-8" (not "utf-8-sig") does.
    try {
      return { file, caption: new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes) };
    } catch {
      // sd-scripts opens captions as strict UTF-8 and stops on bad bytes; rules see a lossy decoding.
      return { file, caption: new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes), validUtf8: false };
    }
  }

  return { checkCaptions: checkCaptionsActivity };
}
