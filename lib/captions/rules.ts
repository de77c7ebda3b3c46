/**
 * Caption checks: what sd-scripts will do with each caption file, found before a GPU hour is spent.
 * Most rules look at one caption at a time (CAPTION_FILE_RULES, also run alone by `checkCaption`
 * after a reviewer's edit); a few compare the whole dataset. Adding a rule means adding a function
 * to one of the lists and its severity to RULE_SEVERITY, nothing else. Pure.
 */
import type { IssueCounts } from '../pipeline/status';
import { captionNameFor, parseKohyaFolder, stemOf } from '../kohya/layout';
import type { ClipTokenizer } from '../clip/tokenizer';
import { fixMojibake } from '../clip/ftfy';
import { cleanText, pythonStrip } from '../clip/text';
import { type CaptionRuleOptions, tokenLimitOf } from './options';
import { utf8Length } from '../pipeline/review';
import { captionLines, type InvalidUtf8, layoutOf, normaliseCaption, trainedText } from './text';

export type Severity = keyof IssueCounts;

/** Every rule and how much it matters: errors stop the run for review, the rest inform it. */
export const RULE_SEVERITY = {
  'missing-caption': 'error',
  'empty-caption': 'error',
  'invalid-utf8': 'error',
  'control-character': 'error',
  'trigger-word-missing': 'error',
  'banned-term': 'error',
  'folder-name': 'error',
  'token-limit': 'warning',
  'mojibake': 'warning',
  'multiple-lines': 'warning',
  'duplicate-caption': 'warning',
  'repeated-tag': 'warning',
  'orphan-caption': 'warning',
  'byte-order-mark': 'info',
  'crlf-line-endings': 'info',
} as const satisfies Record<string, Severity>;

export type CaptionRuleName = keyof typeof RULE_SEVERITY;

export interface CaptionIssue {
  rule: CaptionRuleName;
  severity: Severity;
  /** The dataset file (or folder) the user has to act on, as named in the dataset. */
  file: string;
  /** What is wrong and why it matters for training. */
  message: string;
  /** What to do about it. */
  fix: string;
}

export interface CaptionedImage {
  /** The image's name in the dataset, e.g. `a.jpg`. */
  file: string;
  /** The caption file's text as stored (byte-order mark and line breaks included), or null when there is none. */
  caption: string | null;
  /** Set when the caption file is not valid UTF-8 (then `caption` is a lossy decoding). */
  invalidUtf8?: InvalidUtf8;
}

export interface CaptionCheckInput {
  images: CaptionedImage[];
  /** Caption files with no image of the same name. */
  orphanCaptions: string[];
  /** The dataset's training folders, e.g. `10_sks dog`, and any folder sd-scripts would skip. */
  folders?: string[];
}

export interface CaptionRuleContext {
  options: CaptionRuleOptions;
  tokenizer: Pick<ClipTokenizer, 'tokenize'>;
}

export interface CaptionCheckResult {
  issues: CaptionIssue[];
  counts: IssueCounts;
}

export type CaptionRule = (input: CaptionCheckInput, context: CaptionRuleContext) => CaptionIssue[];
export type CaptionFileRule = (image: CaptionedImage, context: CaptionRuleContext) => CaptionIssue[];

function issue(rule: CaptionRuleName, file: string, message: string, fix: string): CaptionIssue {
  return { rule, severity: RULE_SEVERITY[rule], file, message, fix };
}

/** Long quotes are cut for the report; the caption file itself has the full text. */
function quote(text: string, max = 160): string {
  const chars = Array.from(text);
  return JSON.stringify(chars.length > max ? `${chars.slice(0, max).join('')}…` : text);
}

function listNames(names: readonly string[], max = 5): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The caption's text when there is one to read (present and valid UTF-8). */
function readableCaption(image: CaptionedImage): string | undefined {
  return image.caption === null || image.invalidUtf8 ? undefined : image.caption;
}

/** What sd-scripts trains on, when that is something: content rules leave empty captions to empty-caption. */
function trainedCaption(image: CaptionedImage): string | undefined {
  const caption = readableCaption(image);
  if (caption === undefined) return undefined;
  const text = trainedText(caption);
  return text === '' ? undefined : text;
}

const WORD_CHARACTER = /[\p{L}\p{N}_]/u;
const escapeRegExp = (text: string) => text.replace(/[\^$\\.*+?()[\]{}|/]/g, '\\$&');

/**
 * A whole-word, case-insensitive matcher for a word or phrase: "sks" matches "a sks dog" but not
 * "sksdog"; whitespace inside a phrase matches any whitespace. Undefined for a blank term.
 */
function wholeWordMatcher(term: string): RegExp | undefined {
  const words = pythonStrip(term).split(/\s+/).filter(Boolean);
  if (words.length === 0) return undefined;
  const phrase = words.map(escapeRegExp).join('\\s+');
  const before = WORD_CHARACTER.test(words[0][0]) ? '(?<![\\p{L}\\p{N}_])' : '';
  const after = WORD_CHARACTER.test(words[words.length - 1].slice(-1)) ? '(?![\\p{L}\\p{N}_])' : '';
  return new RegExp(`${before}${phrase}${after}`, 'iu');
}

interface Matchers {
  trigger?: RegExp;
  banned: { term: string; matcher: RegExp }[];
}

/** Compiled once per options object, not once per caption. */
const matcherCache = new WeakMap<CaptionRuleOptions, Matchers>();

function matchersOf(options: CaptionRuleOptions): Matchers {
  let matchers = matcherCache.get(options);
  if (!matchers) {
    matchers = {
      trigger: options.triggerWord === undefined ? undefined : wholeWordMatcher(options.triggerWord),
      banned: options.bannedTerms.flatMap((term) => {
        const matcher = wholeWordMatcher(term);
        return matcher ? [{ term, matcher }] : [];
      }),
    };
    matcherCache.set(options, matchers);
  }
  return matchers;
}

// ---- rules about one caption file ----------------------------------------------------------------

export const missingCaption: CaptionFileRule = (image) =>
  image.caption !== null
    ? []
    : [
        issue(
          'missing-caption',
          image.file,
          `${image.file} has no caption file ${captionNameFor(image.file)}: kohya trains it with only the ` +
            "folder's class tokens, so the LoRA learns nothing specific from it",
          `Write a caption for ${image.file} in ${captionNameFor(image.file)} beside it, or remove the image.`,
        ),
      ];

export const invalidUtf8: CaptionFileRule = (image) => {
  if (image.caption === null || !image.invalidUtf8) return [];
  const file = captionNameFor(image.file);
  const { offset, byte } = image.invalidUtf8;
  const hex = `0x${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return [
    issue(
      'invalid-utf8',
      file,
      `${file} (caption of ${image.file}) is not valid UTF-8 from byte offset ${offset} (${hex}): ` +
        'sd-scripts stops training when it reads the file',
      `Save ${file} with UTF-8 encoding (the byte at offset ${offset} suggests another encoding, such as Latin-1 or Windows-1252).`,
    ),
  ];
};

/**
 * C0 and C1 controls and DEL, except the tab and the line breaks other rules look at (LF, CR). Such
 * a character is invisible, passes through to the text encoder, and cannot be shown or kept by review.
 */
const CONTROL_CHARACTER = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;
const CONTROL_NAMES: Record<number, string> = { 0x00: 'NUL', 0x1b: 'ESC', 0x7f: 'DEL', 0x0b: 'vertical tab', 0x0c: 'form feed', 0x85: 'NEL' };

export const controlCharacter: CaptionFileRule = (image) => {
  const caption = readableCaption(image);
  const match = caption === undefined ? null : CONTROL_CHARACTER.exec(caption);
  if (caption === undefined || match === null) return [];
  const file = captionNameFor(image.file);
  const codePoint = match[0].charCodeAt(0);
  const hex = codePoint.toString(16).toUpperCase().padStart(4, '0');
  const name = CONTROL_NAMES[codePoint] ? ` (${CONTROL_NAMES[codePoint]})` : '';
  const offset = utf8Length(caption.slice(0, match.index));
  const count = caption.match(new RegExp(CONTROL_CHARACTER.source, 'g'))?.length ?? 1;
  const more = count > 1 ? `, and ${plural(count - 1, 'more control character')}` : '';
  return [
    issue(
      'control-character',
      file,
      `${file} (caption of ${image.file}) contains the control character U+${hex}${name} at byte offset ${offset}${more}: ` +
        `${quote(caption.slice(Math.max(0, match.index - 40), match.index + 40))}; it is invisible, yet the text encoder trains on it`,
      `Remove the control character${count > 1 ? 's' : ''} from ${file}, or rewrite the caption here in the review.`,
    ),
  ];
};

/**
 * sd-scripts uses only the first line, stripped. A file with no line at all aborts training; a
 * blank first line trains the image with an empty caption, ignoring any text below it.
 */
export const emptyCaption: CaptionFileRule = (image) => {
  const caption = readableCaption(image);
  if (caption === undefined || trainedText(caption) !== '') return [];
  const file = captionNameFor(image.file);
  const normalised = normaliseCaption(caption);
  const why =
    normalised === ''
      ? 'is empty: sd-scripts aborts training on an empty caption file'
      : pythonStrip(normalised) === ''
        ? 'contains only whitespace: the image would be trained with an empty caption'
        : 'has a blank first line: sd-scripts reads only the first line, so the text below it is ignored';
  return [
    issue(
      'empty-caption',
      file,
      `${file} (caption of ${image.file}) ${why}`,
      `Describe ${image.file} on the first line of ${file}, or remove the image and its caption.`,
    ),
  ];
};

export const byteOrderMark: CaptionFileRule = (image) => {
  const caption = readableCaption(image);
  if (caption === undefined || !layoutOf(caption).byteOrderMark) return [];
  const file = captionNameFor(image.file);
  return [
    issue(
      'byte-order-mark',
      file,
      `${file} starts with a UTF-8 byte-order mark, which sd-scripts would keep glued to the first tag; ` +
        'the processed copy has it removed',
      `Nothing to do for this run; to clean the dataset too, save ${file} as "UTF-8", not "UTF-8 with BOM".`,
    ),
  ];
};

export const crlfLineEndings: CaptionFileRule = (image) => {
  const caption = readableCaption(image);
  if (caption === undefined || !layoutOf(caption).carriageReturns) return [];
  const file = captionNameFor(image.file);
  return [
    issue(
      'crlf-line-endings',
      file,
      `${file} has Windows (CR LF) or old Mac (CR) line breaks; the processed copy uses LF`,
      `Nothing to do for this run; to clean the dataset too, save ${file} with LF line breaks.`,
    ),
  ];
};

export const multipleLines: CaptionFileRule = (image) => {
  const caption = readableCaption(image);
  if (caption === undefined || trainedCaption(image) === undefined) return [];
  const ignored = captionLines(caption).slice(1).map(pythonStrip).filter(Boolean);
  if (ignored.length === 0) return [];
  const file = captionNameFor(image.file);
  return [
    issue(
      'multiple-lines',
      file,
      `${file} has ${plural(ignored.length, 'more line')} with text after the first; sd-scripts reads only ` +
        `the first line, so this is never trained: ${quote(ignored.join(' / '))}`,
      `Join the lines of ${file} into one (e.g. separated by ", "), or delete the extra lines.`,
    ),
  ];
};

/** The word a cut falls inside, if it does, so the report can name the tag that gets split. */
function wordSplitAt(text: string, offset: number): string | undefined {
  const before = /[\p{L}\p{N}_]+$/u.exec(text.slice(0, offset))?.[0];
  const after = /^[\p{L}\p{N}_]+/u.exec(text.slice(offset))?.[0];
  return before && after ? before + after : undefined;
}

/**
 * sd-scripts tokenizes the caption into max_token_length tokens (75 when unset; 150 or 225 as
 * chunks of 75) plus start and end, and cuts the rest without a word: often mid-tag.
 */
export const tokenLimit: CaptionFileRule = (image, { options, tokenizer }) => {
  const text = trainedCaption(image);
  if (text === undefined) return [];
  const limit = tokenLimitOf(options);
  const { text: cleaned, tokens } = tokenizer.tokenize(text);
  if (tokens.length <= limit) return [];
  const file = captionNameFor(image.file);
  const cutAt = tokens[limit].start;
  const splitWord = wordSplitAt(cleaned, cutAt);
  const setting = options.maxTokenLength === undefined ? 'max_token_length unset' : `max_token_length ${options.maxTokenLength}`;
  return [
    issue(
      'token-limit',
      file,
      `${file} is ${tokens.length} CLIP tokens; sd-scripts passes the first ${limit} to the text encoder ` +
        `(${setting}) and silently drops the rest${splitWord ? ` (cutting ${quote(splitWord)} in two)` : ''}: ${quote(cleaned.slice(cutAt))}`,
      `Shorten ${file} by at least ${plural(tokens.length - limit, 'token')}: drop or merge the least important tags ` +
        '(every comma is a token too).',
    ),
  ];
};

/**
 * UTF-8 text that was read as Windows-1252 or Latin-1 somewhere along the way ("cafÃ©"): the caption
 * file, its tag statistics and keep_tokens hold the garbled text, whatever the tokenizer repairs.
 */
export const mojibake: CaptionFileRule = (image) => {
  const text = trainedCaption(image);
  if (text === undefined) return [];
  const repaired = fixMojibake(text);
  if (repaired === text) return [];
  const file = captionNameFor(image.file);
  return [
    issue(
      'mojibake',
      file,
      `${file} looks like UTF-8 text that was read in another encoding (Windows-1252 or Latin-1): ${quote(text)} ` +
        `probably means ${quote(repaired)}`,
      `Rewrite ${file} with the intended text: ${quote(repaired)}.`,
    ),
  ];
};

/** When a caption exists sd-scripts does not add the class tokens: the trigger word must be in it. */
export const triggerWordMissing: CaptionFileRule = (image, { options }) => {
  const text = trainedCaption(image);
  const matcher = matchersOf(options).trigger;
  if (text === undefined || matcher === undefined || matcher.test(text)) return [];
  const file = captionNameFor(image.file);
  const trigger = JSON.stringify(options.triggerWord);
  return [
    issue(
      'trigger-word-missing',
      file,
      `${file} does not contain the trigger word ${trigger} (as a whole word, any case): ` +
        'this image does not teach the LoRA to answer to it',
      `Add ${trigger} to ${file}, usually as the first tag.`,
    ),
  ];
};

/** Tags are the comma-separated pieces (as shuffle_caption and keep_tokens see them), compared as CLIP reads them. */
export const repeatedTags: CaptionFileRule = (image) => {
  const text = trainedCaption(image);
  if (text === undefined) return [];
  const counts = new Map<string, number>();
  for (const tag of text.split(',').map(cleanText).filter(Boolean)) counts.set(tag, (counts.get(tag) ?? 0) + 1);
  const repeated = [...counts].filter(([, n]) => n > 1);
  if (repeated.length === 0) return [];
  const file = captionNameFor(image.file);
  const listed = repeated.map(([tag, n]) => `${JSON.stringify(tag)} ×${n}`).join(', ');
  return [
    issue(
      'repeated-tag',
      file,
      `${file} repeats ${repeated.length === 1 ? 'a tag' : 'tags'}: ${listed}; repeats spend CLIP tokens and over-weight the tag`,
      `Keep one of each repeated tag in ${file}.`,
    ),
  ];
};

export const bannedTerms: CaptionFileRule = (image, { options }) => {
  const text = trainedCaption(image);
  if (text === undefined) return [];
  const found = matchersOf(options)
    .banned.filter(({ matcher }) => matcher.test(text))
    .map(({ term }) => term);
  if (found.length === 0) return [];
  const file = captionNameFor(image.file);
  const listed = found.map((term) => JSON.stringify(term)).join(', ');
  return [
    issue(
      'banned-term',
      file,
      `${file} contains the banned ${found.length === 1 ? 'term' : 'terms'} ${listed}`,
      `Remove ${listed} from ${file} (the run's captions.bannedTerms lists what must not be trained).`,
    ),
  ];
};

// ---- rules about the whole dataset ---------------------------------------------------------------

export const orphanCaption: CaptionRule = ({ orphanCaptions }) =>
  orphanCaptions.map((file) =>
    issue(
      'orphan-caption',
      file,
      `${file} has no image with the same name, so it is not used for training`,
      `Add the image it describes as ${stemOf(file)}.png (or .jpg, .jpeg, .webp, .bmp), ` +
        `rename ${file} to match its image, or delete it.`,
    ),
  );

/** Identical as the text encoder sees them: the same cleaned first line. */
export const duplicateCaption: CaptionRule = ({ images }) => {
  const filesByText = new Map<string, string[]>();
  for (const image of images) {
    const text = trainedCaption(image);
    if (text === undefined) continue;
    const key = cleanText(text);
    filesByText.set(key, [...(filesByText.get(key) ?? []), captionNameFor(image.file)]);
  }
  return [...filesByText.values()]
    .filter((files) => files.length > 1)
    .flatMap((files) =>
      files.map((file) =>
        issue(
          'duplicate-caption',
          file,
          `${file} has the same caption as ${listNames(files.filter((other) => other !== file))}: ` +
            'the LoRA cannot learn what sets these images apart',
          `Describe what differs in each of these images (pose, clothing, background, framing, ...).`,
        ),
      ),
    );
};

/** sd-scripts skips (with only a warning) a folder whose name is not `<repeats>_<class tokens>`. */
export const folderName: CaptionRule = ({ folders = [] }) =>
  folders
    .filter((folder) => !parseKohyaFolder(folder))
    .map((folder) =>
      issue(
        'folder-name',
        folder,
        `The folder ${JSON.stringify(folder)} is not named <repeats>_<name> with repeats an integer ≥ 1: ` +
          'sd-scripts skips it, so none of its images are trained',
        'Name the folder like "10_sks dog": how often each image is seen per epoch, "_", then the class tokens.',
      ),
    );

/** The rules that need only one caption, in report order. */
export const CAPTION_FILE_RULES: readonly CaptionFileRule[] = [
  missingCaption,
  invalidUtf8,
  controlCharacter,
  emptyCaption,
  byteOrderMark,
  crlfLineEndings,
  multipleLines,
  mojibake,
  tokenLimit,
  triggerWordMissing,
  repeatedTags,
  bannedTerms,
];

/** A single-caption rule applied to every image. */
export function forEachImage(rule: CaptionFileRule): CaptionRule {
  return ({ images }, context) => images.flatMap((image) => rule(image, context));
}

/** Every rule, in report order. */
export const CAPTION_RULES: readonly CaptionRule[] = [
  ...CAPTION_FILE_RULES.map(forEachImage),
  orphanCaption,
  duplicateCaption,
  folderName,
];

const SEVERITY_ORDER: readonly Severity[] = ['error', 'warning', 'info'];

/** Errors first, then by file: a report reads from what blocks training down. */
function sortIssues(issues: CaptionIssue[]): CaptionIssue[] {
  return issues.sort(
    (a, b) =>
      SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity) ||
      (a.file < b.file ? -1 : a.file > b.file ? 1 : 0),
  );
}

export function checkCaptions(
  input: CaptionCheckInput,
  context: CaptionRuleContext,
  rules: readonly CaptionRule[] = CAPTION_RULES,
): CaptionCheckResult {
  const issues = sortIssues(rules.flatMap((rule) => rule(input, context)));
  return { issues, counts: countBySeverity(issues) };
}

/**
 * The issues of one caption alone, e.g. right after a reviewer edits it. Rules that compare images
 * (duplicate captions, orphans, the folder name) need the whole dataset: run checkCaptions for those.
 */
export function checkCaption(image: CaptionedImage, context: CaptionRuleContext): CaptionIssue[] {
  return sortIssues(CAPTION_FILE_RULES.flatMap((rule) => rule(image, context)));
}

export function countBySeverity(issues: readonly CaptionIssue[]): IssueCounts {
  const counts: IssueCounts = { error: 0, warning: 0, info: 0 };
  for (const found of issues) counts[found.severity] += 1;
  return counts;
}
