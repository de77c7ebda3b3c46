/**
 * Caption checks: what sd-scripts will do with each caption file, found before a GPU hour is spent.
 * Each rule is a function of the whole dataset returning its issues; adding a rule (CLIP token
 * limit, trigger word, ...) means adding a function to CAPTION_RULES, nothing else. Pure.
 */
import type { IssueCounts } from '../pipeline/status';
import { captionNameFor, stemOf } from '../kohya/layout';

export type Severity = keyof IssueCounts;

export type CaptionRuleName = 'missing-caption' | 'empty-caption' | 'invalid-utf8' | 'orphan-caption';

export interface CaptionIssue {
  rule: CaptionRuleName;
  severity: Severity;
  /** The dataset file the user has to act on (an image or a caption file), as named in the dataset. */
  file: string;
  /** What is wrong and why it matters for training. */
  message: string;
  /** What to do about it. */
  fix: string;
}

export interface CaptionedImage {
  /** The image's name in the dataset, e.g. `a.jpg`. */
  file: string;
  /** The caption file's text, or null when the image has none. */
  caption: string | null;
  /** False when the caption file is not valid UTF-8 (then `caption` is a lossy decoding). */
  validUtf8?: boolean;
}

export interface CaptionCheckInput {
  images: CaptionedImage[];
  /** Caption files with no image of the same name. */
  orphanCaptions: string[];
}

export interface CaptionCheckResult {
  issues: CaptionIssue[];
  counts: IssueCounts;
}

export type CaptionRule = (input: CaptionCheckInput) => CaptionIssue[];

export const missingCaption: CaptionRule = ({ images }) =>
  images
    .filter((image) => image.caption === null)
    .map((image) => ({
      rule: 'missing-caption',
      severity: 'error',
      file: image.file,
      message:
        `${image.file} has no caption file ${captionNameFor(image.file)}: kohya trains it with only the ` +
        'folder\'s class tokens, so the LoRA learns nothing specific from it',
      fix: `Write a caption for ${image.file} in ${captionNameFor(image.file)} beside it, or remove the image.`,
    }));

/**
 * sd-scripts uses only the first line, stripped. A file with no line at all aborts training; a
 * blank first line trains the image with an empty caption, ignoring any text below it.
 */
export const emptyCaption: CaptionRule = ({ images }) =>
  images.flatMap((image): CaptionIssue[] => {
    if (image.caption === null || image.validUtf8 === false) return [];
    const file = captionNameFor(image.file);
    const [firstLine] = image.caption.split(/\r\n|\r|\n/);
    if (firstLine.trim() !== '') return [];
    const why =
      image.caption === ''
        ? 'is empty: sd-scripts aborts training on an empty caption file'
        : image.caption.trim() === ''
          ? 'contains only whitespace: the image would be trained with an empty caption'
          : 'has a blank first line: sd-scripts reads only the first line, so the text below it is ignored';
    return [
      {
        rule: 'empty-caption',
        severity: 'error',
        file,
        message: `${file} (caption of ${image.file}) ${why}`,
        fix: `Describe ${image.file} on the first line of ${file}, or remove the image and its caption.`,
      },
    ];
  });

export const invalidUtf8: CaptionRule = ({ images }) =>
  images
    .filter((image) => image.caption !== null && image.validUtf8 === false)
    .map((image) => {
      const file = captionNameFor(image.file);
      return {
        rule: 'invalid-utf8',
        severity: 'error',
        file,
        message: `${file} (caption of ${image.file}) is not valid UTF-8: sd-scripts stops training when it reads it`,
        fix: `Save ${file} with UTF-8 encoding.`,
      };
    });

export const orphanCaption: CaptionRule = ({ orphanCaptions }) =>
  orphanCaptions.map((file) => ({
    rule: 'orphan-caption',
    severity: 'warning',
    file,
    message: `${file} has no image with the same name, so it is not used for training`,
    fix:
      `Add the image it describes as ${stemOf(file)}.png (or .jpg, .jpeg, .webp, .bmp), ` +
      `rename ${file} to match its image, or delete it.`,
  }));

/** Every rule, in report order. */
export const CAPTION_RULES: readonly CaptionRule[] = [missingCaption, emptyCaption, invalidUtf8, orphanCaption];

const SEVERITY_ORDER: readonly Severity[] = ['error', 'warning', 'info'];

/** Issues come out errors first, then by file, so a report reads from what blocks training down. */
export function checkCaptions(input: CaptionCheckInput, rules: readonly CaptionRule[] = CAPTION_RULES): CaptionCheckResult {
  const issues = rules
    .flatMap((rule) => rule(input))
    .sort(
      (a, b) =>
        SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity) ||
        (a.file < b.file ? -1 : a.file > b.file ? 1 : 0),
    );
  return { issues, counts: countBySeverity(issues) };
}

export function countBySeverity(issues: readonly CaptionIssue[]): IssueCounts {
  const counts: IssueCounts = { error: 0, warning: 0, info: 0 };
  for (const issue of issues) counts[issue.severity] += 1;
  return counts;
}
