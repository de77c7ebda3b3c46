/**
 * Large generated datasets for the scale benchmark: every picture a different field of smooth
 * colour blotches (a small grid of seeded random colours, upscaled with a cubic kernel), so no two
 * are duplicates or near-duplicates for preprocessing, each with a caption naming the trigger word.
 * Seeded: the same seed gives the same files.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import pLimit from 'p-limit';
import sharp from 'sharp';
import { mulberry32 } from '../lib/random';

export interface NoiseDatasetOptions {
  count: number;
  seed?: number;
  width?: number;
  height?: number;
  triggerWord?: string;
}

/** Random colours across and down: fine enough for distinct perceptual hashes, smooth enough for small JPEGs. */
const GRID = { width: 32, height: 24 };

/** Writes `noise-00001.jpg` + `noise-00001.txt`, …; returns the image file names. */
export async function writeNoiseDataset(dir: string, options: NoiseDatasetOptions): Promise<string[]> {
  const { count, seed = 1, width = 640, height = 480, triggerWord = 'scaletest' } = options;
  await fs.mkdir(dir, { recursive: true });
  // libvips runs each picture on its own threads; a few pictures at a time keep every core busy.
  const limit = pLimit(2 * availableParallelism());
  const names = Array.from({ length: count }, (_, i) => `noise-${String(i + 1).padStart(5, '0')}`);
  await Promise.all(
    names.map((name, i) =>
      limit(async () => {
        const grid = seededBytes(seed, i, GRID.width * GRID.height * 3);
        await sharp(grid, { raw: { ...GRID, channels: 3 } })
          .resize(width, height, { kernel: 'cubic' })
          .jpeg({ quality: 90 })
          .toFile(path.join(dir, `${name}.jpg`));
        const tone = ['warm', 'cool', 'muted', 'bright'][grid[0] % 4];
        await fs.writeFile(path.join(dir, `${name}.txt`), `${triggerWord}, ${tone} colour field number ${i + 1}, soft blotches\n`);
      }),
    ),
  );
  return names.map((name) => `${name}.jpg`);
}

/** `length` pseudo-random bytes for picture `index`, from its own generator (pictures are drawn concurrently). */
function seededBytes(seed: number, index: number, length: number): Buffer {
  const random = mulberry32(createHash('sha256').update(`noise-dataset:${seed}:${index}`).digest().readUInt32LE(0));
  return Buffer.from(Array.from({ length }, () => Math.floor(random() * 256)));
}
