/**
 * Which files of a dataset become which training images, decided from names alone and
 * deterministically: the layout (kohya `<repeats>_<name>/` folders, or a flat folder given repeats
 * and a name), the caption of each image, and the files skipped before anything is read. Pure.
 */
import { CAPTION_EXTENSION, IMAGE_EXTENSIONS, isCaptionFile, kohyaFolderName, parseKohyaFolder, stemOf } from '../kohya/layout';
import { forbiddenCharacterProblem, utf8Length } from '../pipeline/review';

/** Read and converted: sd-scripts cannot read these, so they are written in the output format. */
export const CONVERTED_EXTENSIONS = ['.tif', '.tiff', '.avif', '.gif'] as const;
export const INPUT_EXTENSIONS: readonly string[] = [...IMAGE_EXTENSIONS, ...CONVERTED_EXTENSIONS];

/** The longest file name (one path segment) the common file systems hold, in bytes. */
export const MAX_FILE_NAME_BYTES = 255;
/** The longest object key S3 accepts, in bytes. */
export const MAX_KEY_BYTES = 1024;
/**
 * Files larger than these are not read (one could otherwise take the worker's memory): an image
 * at sharp's 268 M pixel limit stays well below 1 GiB; a caption is one line of a few hundred bytes.
 */
export const MAX_IMAGE_FILE_BYTES = 1024 ** 3;
export const MAX_CAPTION_FILE_BYTES = 1024 ** 2;

/** Picture formats people put in datasets that we do not decode: reported, not silently ignored. */
const UNSUPPORTED_EXTENSIONS = new Set([
  '.heic', '.heif', '.jxl', '.jp2', '.j2k', '.svg', '.psd', '.xcf', '.ico', '.pdf', '.eps',
  '.raw', '.dng', '.cr2', '.cr3', '.nef', '.arw', '.orf', '.rw2',
]);

export interface DatasetListing {
  /** Paths relative to the dataset root, `/`-separated: root files and files one folder down. */
  files: readonly string[];
  /** Folders relative to the root: the top-level ones and those one level further down. */
  folders: readonly string[];
  /** Entries refused while listing (links leading outside, pipes, unusable names), never read. */
  refused?: readonly SkippedFile[];
}

export interface PlannedImage {
  /** Path in the dataset, e.g. `10_dog/a.jpg` (kohya layout) or `a.jpg` (flat). */
  source: string;
  /** The kohya training folder it goes to. */
  folder: string;
  /** Path of its caption in the dataset, when it has one. */
  caption?: string;
  /** Store keys of the processed image and of the caption copied beside it. */
  output: string;
  captionKey: string;
}

export interface KohyaFolderPlan {
  name: string;
  repeats: number;
  concept: string;
}

export interface SkippedFile {
  source: string;
  reason: string;
}

export interface DatasetPlan {
  layout: 'flat' | 'kohya';
  folders: KohyaFolderPlan[];
  /** Sorted by source. */
  images: PlannedImage[];
  skipped: SkippedFile[];
  orphanCaptions: string[];
  /** Folders sd-scripts would not read either. */
  ignoredFolders: string[];
}

export interface DatasetPlanOptions {
  /** Used for a flat dataset: its folder becomes `<repeats>_<concept>`. */
  repeats: number;
  concept: string;
  /** Where training folders go in the work store (kohya's train_data_dir). */
  trainDataDir: string;
  /** Extension of the processed images, with the dot. */
  outputExtension: string;
}

/**
 * Why a store key cannot name a dataset file, or undefined: an empty, "." or ".." segment would
 * name another object, or none, once the key is joined to a path.
 */
export function keyProblem(key: string): string | undefined {
  const bad = key.split('/').find((segment) => segment === '' || segment === '.' || segment === '..');
  return bad === undefined ? undefined : `the key has ${bad === '' ? 'an empty' : `a "${bad}"`} path segment: never read`;
}

function extensionOf(name: string): string {
  return name.slice(stemOf(name).length).toLowerCase();
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function planDataset(listing: DatasetListing, options: DatasetPlanOptions): DatasetPlan {
  // A folder whose name cannot be a store key or be named in a review is left out with its files.
  const unusable = listing.folders.flatMap((folder) => {
    const problem = folder.includes('/') ? undefined : folderNameProblem(folder);
    return problem === undefined ? [] : [{ source: folder, reason: problem }];
  });
  const inUnusable = (file: string) => unusable.some(({ source }) => file.startsWith(`${source}/`));
  listing = {
    ...listing,
    folders: listing.folders.filter((f) => !unusable.some(({ source }) => f === source) && !inUnusable(f)),
    files: listing.files.filter((f) => !inUnusable(f)),
  };
  const topFolders = listing.folders.filter((f) => !f.includes('/'));
  const kohyaFolders = topFolders
    .flatMap((name) => {
      const parsed = parseKohyaFolder(name);
      return parsed ? [{ name, ...parsed }] : [];
    })
    .sort((a, b) => byName(a.name, b.name));
  const layout = kohyaFolders.length > 0 ? 'kohya' : 'flat';
  const plan: DatasetPlan = { layout, folders: [], images: [], skipped: [...(listing.refused ?? []), ...unusable], orphanCaptions: [], ignoredFolders: [] };

  const filesIn = (folder: string | undefined): string[] =>
    listing.files
      .filter((file) => (folder === undefined ? !file.includes('/') : file.startsWith(`${folder}/`) && !file.slice(folder.length + 1).includes('/')))
      .sort(byName);

  if (layout === 'flat') {
    const folder = kohyaFolderName(options.repeats, options.concept);
    plan.folders.push({ name: folder, repeats: options.repeats, concept: options.concept });
    planFolder(plan, filesIn(undefined), '', folder, options);
    plan.ignoredFolders = [...listing.folders].sort(byName);
  } else {
    const kohyaNames = new Set(kohyaFolders.map((f) => f.name));
    for (const { name, repeats, concept } of kohyaFolders) {
      plan.folders.push({ name, repeats, concept });
      planFolder(plan, filesIn(name), `${name}/`, name, options);
    }
    const where = kohyaFolders.map((f) => `${f.name}/`).join(', ');
    for (const file of filesIn(undefined)) {
      if (isInputImage(file) || isUnsupportedImage(file)) {
        plan.skipped.push({ source: file, reason: `in the dataset root, outside the training folders (${where}): sd-scripts does not read it; move it into one` });
      }
    }
    plan.ignoredFolders = listing.folders.filter((f) => !kohyaNames.has(f)).sort(byName);
  }
  plan.images.sort((a, b) => byName(a.source, b.source));
  plan.skipped.sort((a, b) => byName(a.source, b.source));
  plan.orphanCaptions.sort(byName);
  return plan;
}

function isInputImage(name: string): boolean {
  return INPUT_EXTENSIONS.includes(extensionOf(name));
}

function isUnsupportedImage(name: string): boolean {
  return UNSUPPORTED_EXTENSIONS.has(extensionOf(name));
}

/** Pair images with captions in one folder and drop what cannot be written. */
function planFolder(plan: DatasetPlan, files: string[], prefix: string, folder: string, options: DatasetPlanOptions): void {
  const names = files.map((file) => file.slice(prefix.length));
  const captions = names.filter(isCaptionFile);
  // sd-scripts wants exactly `<stem>.txt`; we write that name ourselves, so `<stem>.TXT` also counts.
  const captionByStem = new Map<string, string>();
  for (const caption of captions) {
    const stem = stemOf(caption);
    if (!captionByStem.has(stem) || caption === `${stem}${CAPTION_EXTENSION}`) captionByStem.set(stem, caption);
  }

  const keptByStem = new Map<string, string>();
  for (const name of names) {
    const source = `${prefix}${name}`;
    if (isUnsupportedImage(name)) {
      plan.skipped.push({ source, reason: `unsupported format: ${extensionOf(name)} files are not read (convert to one of ${INPUT_EXTENSIONS.join(' ')})` });
      continue;
    }
    if (!isInputImage(name)) continue;
    const stem = stemOf(name);
    const outputName = `${stem}${options.outputExtension}`;
    const output = `${options.trainDataDir}/${folder}/${outputName}`;
    const nameProblem = outputNameProblem(name, outputName, output);
    if (nameProblem !== undefined) {
      plan.skipped.push({ source, reason: nameProblem });
      continue;
    }
    const first = keptByStem.get(stem);
    if (first !== undefined) {
      plan.skipped.push({ source, reason: `same name as ${prefix}${first}: both would be written as ${outputName}; rename one of them` });
      continue;
    }
    keptByStem.set(stem, name);
    const caption = captionByStem.get(stem);
    plan.images.push({
      source,
      folder,
      ...(caption !== undefined && { caption: `${prefix}${caption}` }),
      output,
      captionKey: `${options.trainDataDir}/${folder}/${stem}${CAPTION_EXTENSION}`,
    });
  }
  const imageStems = new Set(names.filter(isInputImage).map(stemOf));
  for (const caption of captions) {
    if (!imageStems.has(stemOf(caption))) plan.orphanCaptions.push(`${prefix}${caption}`);
  }
}

function folderNameProblem(name: string): string | undefined {
  if (name.includes('\\')) return 'the folder name cannot be used as a store key (it contains "\\"); rename the folder';
  const characters = forbiddenCharacterProblem(name);
  return characters === undefined ? undefined : `the folder name ${characters}: rename the folder`;
}

/** Why an image's name cannot become the names it is written under, or undefined. */
function outputNameProblem(name: string, outputName: string, output: string): string | undefined {
  if (name.includes('\\')) return 'the name cannot be used as a store key (it contains "\\"); rename the file';
  const characters = forbiddenCharacterProblem(name);
  if (characters !== undefined) return `the name ${characters}: rename the file`;
  const longest = Math.max(utf8Length(outputName), utf8Length(`${stemOf(outputName)}${CAPTION_EXTENSION}`));
  if (longest > MAX_FILE_NAME_BYTES) {
    return `the processed name ${outputName} would be ${longest} bytes, over the ${MAX_FILE_NAME_BYTES}-byte limit on a file name; shorten the name`;
  }
  const keyBytes = Math.max(utf8Length(output), utf8Length(`${stemOf(output)}${CAPTION_EXTENSION}`));
  if (keyBytes > MAX_KEY_BYTES) return `its store key would be ${keyBytes} bytes, over the ${MAX_KEY_BYTES}-byte limit on an S3 key; shorten the name`;
  return undefined;
}
