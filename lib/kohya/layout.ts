/**
 * How Kohya-SS sd-scripts lays out a training dataset: which files it reads as images, where it
 * looks for a caption, and how a training folder is named (`<repeats>_<class tokens>`). Pure.
 */

/** The extensions sd-scripts globs for; it accepts them all-lower or all-upper case. */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.bmp'] as const;

/** sd-scripts' default caption extension is `.caption`; our kohya config sets `.txt` explicitly. */
export const CAPTION_EXTENSION = '.txt';

/** Processed images are always written as PNG: lossless, and no second JPEG generation loss. */
export const OUTPUT_IMAGE_EXTENSION = '.png';

/**
 * The extension including the dot, as written; '' when there is none. A leading dot marks a hidden
 * file (`.png` is a file named ".png"), as in Python's `os.path.splitext` and the shell's glob.
 */
function extensionOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot) : '';
}

/** The name without its extension: `a.b.jpg` → `a.b`. */
export function stemOf(name: string): string {
  const extension = extensionOf(name);
  return extension === '' ? name : name.slice(0, -extension.length);
}

/** Matched case-insensitively: a dataset from a camera (`IMG_1.JPG`) must not silently lose images. */
export function isImageFile(name: string): boolean {
  const extension = extensionOf(name).toLowerCase();
  return (IMAGE_EXTENSIONS as readonly string[]).includes(extension);
}

export function isCaptionFile(name: string): boolean {
  return extensionOf(name).toLowerCase() === CAPTION_EXTENSION;
}

/** The caption sd-scripts reads for an image: same path, extension replaced (`a.jpg` → `a.txt`). */
export function captionNameFor(imageName: string): string {
  return `${stemOf(imageName)}${CAPTION_EXTENSION}`;
}

/** The name a processed image gets in the training folder. */
export function kohyaImageName(stem: string): string {
  return `${stem}${OUTPUT_IMAGE_EXTENSION}`;
}

export interface KohyaFolder {
  repeats: number;
  concept: string;
}

/**
 * Parse a training folder name `<repeats>_<concept>`. sd-scripts splits at the first `_` and skips
 * (with only a warning) a folder whose prefix is not an integer ≥ 1; undefined mirrors that skip.
 */
export function parseKohyaFolder(name: string): KohyaFolder | undefined {
  const match = /^(\d+)_(.+)$/.exec(name);
  if (!match) return undefined;
  const repeats = Number(match[1]);
  if (!Number.isSafeInteger(repeats) || repeats < 1) return undefined;
  return { repeats, concept: match[2] };
}

/** The folder name for a concept trained `repeats` times per epoch, e.g. `10_sks dog`. */
export function kohyaFolderName(repeats: number, concept: string): string {
  if (!Number.isInteger(repeats) || repeats < 1) {
    throw new Error(`repeats must be an integer ≥ 1 (sd-scripts skips the folder otherwise), got ${repeats}`);
  }
  if (concept === '' || /[/\\]/.test(concept)) {
    throw new Error(`concept must be a non-empty folder-safe name without "/" or "\\", got "${concept}"`);
  }
  return `${repeats}_${concept}`;
}
