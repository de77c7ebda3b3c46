/**
 * `lora start`'s look at a local dataset before it starts anything: the folder exists, is a folder,
 * and holds at least one image sd-scripts would train (directly, or in `<repeats>_<name>/` folders).
 * Read the way the worker reads it (adapters/dataset/confined-folder.ts, lib/image/dataset.ts), so
 * what passes here is what preprocessing finds; URIs of other machines' stores are left to the worker.
 */
import { fileURLToPath } from 'node:url';
import { ConfinedFolder } from '../adapters/dataset/confined-folder';
import { INPUT_EXTENSIONS, planDataset } from '../lib/image/dataset';
import { OUTPUT_EXTENSION } from '../lib/image/options';
import { conceptOf, type TrainingRun } from '../lib/pipeline/input';
import { isLocalPath } from './start-input';

/** How many skip reasons an empty-dataset error quotes. */
const REASONS_QUOTED = 3;

export async function checkLocalDataset(run: TrainingRun): Promise<void> {
  const { dataset } = run;
  if (!isLocalPath(dataset) && !dataset.startsWith('file://')) return;
  const directory = isLocalPath(dataset) ? dataset : fileURLToPath(dataset);
  let listing;
  try {
    listing = await (await ConfinedFolder.open(directory)).list(1);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a folder' : code === 'EACCES' || code === 'EPERM' ? 'is not readable (permission denied)' : (err as Error).message;
    throw new Error(`dataset ${directory} ${why}: give a folder of images with .txt captions, or of <repeats>_<name>/ folders`);
  }
  const plan = planDataset(listing, {
    repeats: run.repeats,
    concept: conceptOf(run),
    trainDataDir: 'check',
    outputExtension: OUTPUT_EXTENSION[run.preprocess.format],
  });
  if (plan.images.length > 0) return;
  const reasons = plan.skipped.slice(0, REASONS_QUOTED).map((file) => `${file.source}: ${file.reason}`);
  throw new Error(
    reasons.length > 0
      ? `dataset ${directory} holds no usable image: ${reasons.join('; ')}${plan.skipped.length > REASONS_QUOTED ? '; …' : ''}`
      : `dataset ${directory} holds no image files (${INPUT_EXTENSIONS.join(' ')}) in the folder itself or in <repeats>_<name>/ folders`,
  );
}
