/**
 * Duplicate detection over a whole dataset, in manifest order (the first image of a group is the
 * one kept): identical pixels are exact duplicates; perceptual hashes within a few bits and a
 * similar mean colour are near-duplicates. Pure.
 */
import { hammingDistance, type Fingerprint } from './phash';

/** Hashes at most this many bits apart look alike (re-encoded, resized, slightly edited). */
export const NEAR_DUPLICATE_BITS = 6;
/** ...and their mean colours differ by at most this much per channel (the hash is greyscale). */
export const NEAR_DUPLICATE_COLOUR = 16;

export interface DuplicateCandidate extends Fingerprint {
  /** SHA-256 of the processed image: the encoder is deterministic, so equal pixels give equal bytes. */
  outputSha256: string;
}

export interface Duplicates {
  /** Index → index of the earlier image with identical pixels. */
  exact: Map<number, number>;
  /** Index → the earliest similar image among the kept ones, and how many hash bits differ. */
  near: Map<number, { of: number; distance: number }>;
}

/**
 * The 64-bit hash is split into 8 bytes: two hashes at most 7 bits apart agree in at least one
 * byte (pigeonhole), so only images sharing a byte at the same position are compared.
 */
const CHUNKS = 8;

export function findDuplicates(items: readonly DuplicateCandidate[]): Duplicates {
  const exact = new Map<number, number>();
  const near = new Map<number, { of: number; distance: number }>();
  const firstWithPixels = new Map<string, number>();
  const byChunk = new Map<string, number[]>();

  items.forEach((item, index) => {
    const first = firstWithPixels.get(item.outputSha256);
    if (first !== undefined) {
      exact.set(index, first);
      return;
    }
    firstWithPixels.set(item.outputSha256, index);

    const chunkKeys = Array.from({ length: CHUNKS }, (_, c) => `${c}:${item.phash.slice(c * 2, c * 2 + 2)}`);
    let best: { of: number; distance: number } | undefined;
    const seen = new Set<number>();
    for (const key of chunkKeys) {
      for (const other of byChunk.get(key) ?? []) {
        if (seen.has(other)) continue;
        seen.add(other);
        const distance = hammingDistance(item.phash, items[other].phash);
        if (distance > NEAR_DUPLICATE_BITS || !similarColour(item.colour, items[other].colour)) continue;
        if (best === undefined || other < best.of) best = { of: other, distance };
      }
    }
    if (best !== undefined) near.set(index, best);
    for (const key of chunkKeys) {
      const list = byChunk.get(key);
      if (list) list.push(index);
      else byChunk.set(key, [index]);
    }
  });
  return { exact, near };
}

function similarColour(a: readonly number[], b: readonly number[]): boolean {
  return a.every((value, channel) => Math.abs(value - b[channel]) <= NEAR_DUPLICATE_COLOUR);
}
