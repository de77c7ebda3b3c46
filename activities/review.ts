/**
 * Review activities: write a reviewer's caption edits through the work store (the manifest keeps
 * pointing at every caption), and tell the review where its files are.
 */
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { captionNameFor } from '../lib/kohya/layout';
import { formatZodError } from '../lib/pipeline/input';
import { CaptionEdits, datasetNameOf } from '../lib/pipeline/review';
import type { ActivityDeps } from './deps';
import { sha256Hex } from '../lib/hash';
import { readManifest, writeManifest } from './manifest';

const RUN_ID = z.string().regex(/^(?!\.\.?$)[^/\\]+$/, 'must be non-empty, without "/" or "\\", and not "." or ".."');
const MANIFEST_KEY = z.string().min(1, 'is required: the key preprocessing returned');

export const ApplyCaptionEditsInput = z.object({ runId: RUN_ID, manifestKey: MANIFEST_KEY, edits: CaptionEdits }).strict();
export type ApplyCaptionEditsInput = z.input<typeof ApplyCaptionEditsInput>;

export interface ApplyCaptionEditsResult {
  written: number;
  /** Caption files created for images that had none (the manifest now lists them). */
  created: number;
}

export const LocateReviewFilesInput = z.object({ manifestKey: MANIFEST_KEY }).strict();
export type LocateReviewFilesInput = z.input<typeof LocateReviewFilesInput>;

export interface ReviewFiles {
  /** The contact sheet pages preprocessing drew (a few keys: one page holds many images). */
  contactSheetKeys: string[];
  /** The work store's URI, so clients can tell whether they read the same store. */
  workStore: string;
}

export function makeReviewActivities(deps: ActivityDeps) {
  async function applyCaptionEdits(rawInput: ApplyCaptionEditsInput): Promise<ApplyCaptionEditsResult> {
    const { runId, manifestKey, edits } = parseInput(ApplyCaptionEditsInput, rawInput, 'applyCaptionEdits input');
    const manifest = await readManifest(deps.workStore, manifestKey);
    if (manifest.runId !== runId) {
      throw ApplicationFailure.nonRetryable(`manifest ${manifestKey} belongs to run ${manifest.runId}, not ${runId}`, 'InvalidManifest');
    }
    const bySource = new Map(manifest.images.map((image) => [image.source, image]));
    const unknown = edits.map(datasetNameOf).filter((name) => !bySource.has(name));
    if (unknown.length > 0) {
      // Checked before anything is written: a request naming one wrong image changes nothing.
      throw ApplicationFailure.nonRetryable(
        `no processed image named ${unknown.map((name) => JSON.stringify(name)).join(', ')} in this run ` +
          '(names as in the dataset, e.g. "a.jpg"; "lora review show" lists them); nothing was changed',
        'UnknownImage',
      );
    }

    let created = 0;
    for (const edit of edits) {
      const image = bySource.get(datasetNameOf(edit))!;
      // An image without a caption gets one beside its processed file, where sd-scripts looks.
      const captionKey = image.caption ?? captionNameFor(image.output);
      if (image.caption === null) created += 1;
      image.caption = captionKey;
      await deps.workStore.put(captionKey, edit.caption, { contentType: 'text/plain; charset=utf-8', sha256: sha256Hex(edit.caption) });
    }
    // Written after the captions: a retry after a crash in between rewrites the same files.
    if (created > 0) await writeManifest(deps.workStore, manifestKey, manifest);
    return { written: edits.length, created };
  }

  async function locateReviewFiles(rawInput: LocateReviewFilesInput): Promise<ReviewFiles> {
    const { manifestKey } = parseInput(LocateReviewFilesInput, rawInput, 'locateReviewFiles input');
    const manifest = await readManifest(deps.workStore, manifestKey);
    return { contactSheetKeys: manifest.contactSheets ?? [], workStore: deps.workStore.uri };
  }

  return { applyCaptionEdits, locateReviewFiles };
}

function parseInput<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(formatZodError(parsed.error, what), 'InvalidInput');
  return parsed.data;
}
