/**
 * Fingerprints for spotting near-duplicate images: a DCT perceptual hash (64 bits, robust to
 * rescaling, recompression and small edits) plus the mean colour, which the greyscale hash cannot
 * see. Pure: computed from a small thumbnail's raw pixels.
 */

/** The hash is taken from a HASH_INPUT × HASH_INPUT greyscale image. */
const HASH_INPUT = 32;
/** The top-left LOW × LOW DCT coefficients (the lowest frequencies) make the 64 bits. */
const LOW = 8;

export interface Fingerprint {
  /** 16 hex digits. */
  phash: string;
  /** Mean red, green, blue (0-255). */
  colour: [number, number, number];
}

/**
 * Area-averaged greyscale (Rec. 601 luma) at HASH_INPUT², stretching the image to a square as
 * perceptual hashes do, plus the mean colour, from interleaved 8-bit pixels.
 */
export function fingerprint(pixels: Uint8Array, width: number, height: number, channels: number): Fingerprint {
  const grey = new Float64Array(HASH_INPUT * HASH_INPUT);
  const counts = new Float64Array(HASH_INPUT * HASH_INPUT);
  const sums = [0, 0, 0];
  for (let y = 0; y < height; y++) {
    const cellRow = Math.floor((y * HASH_INPUT) / height) * HASH_INPUT;
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * channels;
      const r = pixels[i];
      const g = channels >= 3 ? pixels[i + 1] : r;
      const b = channels >= 3 ? pixels[i + 2] : r;
      sums[0] += r;
      sums[1] += g;
      sums[2] += b;
      const cell = cellRow + Math.floor((x * HASH_INPUT) / width);
      grey[cell] += 0.299 * r + 0.587 * g + 0.114 * b;
      counts[cell] += 1;
    }
  }
  for (let i = 0; i < grey.length; i++) grey[i] = counts[i] > 0 ? grey[i] / counts[i] : 0;
  const n = width * height;
  const colour = sums.map((s) => Math.round(s / n)) as [number, number, number];
  return { phash: hashOf(grey), colour };
}

const COSINES = (() => {
  // COSINES[u * HASH_INPUT + x] = cos((2x + 1) u π / 2N), the DCT-II basis.
  const table = new Float64Array(LOW * HASH_INPUT);
  for (let u = 0; u < LOW; u++) {
    for (let x = 0; x < HASH_INPUT; x++) table[u * HASH_INPUT + x] = Math.cos(((2 * x + 1) * u * Math.PI) / (2 * HASH_INPUT));
  }
  return table;
})();

/** Bits set where a low-frequency coefficient exceeds the median of the 63 non-DC ones. */
function hashOf(grey: Float64Array): string {
  // Separable DCT, only the LOW × LOW corner: rows first, then columns.
  const rows = new Float64Array(HASH_INPUT * LOW);
  for (let y = 0; y < HASH_INPUT; y++) {
    for (let u = 0; u < LOW; u++) {
      let sum = 0;
      for (let x = 0; x < HASH_INPUT; x++) sum += grey[y * HASH_INPUT + x] * COSINES[u * HASH_INPUT + x];
      rows[y * LOW + u] = sum;
    }
  }
  const coefficients: number[] = [];
  for (let v = 0; v < LOW; v++) {
    for (let u = 0; u < LOW; u++) {
      let sum = 0;
      for (let y = 0; y < HASH_INPUT; y++) sum += rows[y * LOW + u] * COSINES[v * HASH_INPUT + y];
      coefficients.push(sum);
    }
  }
  const ac = coefficients.slice(1).sort((a, b) => a - b);
  const median = (ac[31] + ac[32]) / 2;
  let hex = '';
  for (let nibble = 0; nibble < 16; nibble++) {
    let value = 0;
    for (let bit = 0; bit < 4; bit++) value = (value << 1) | (coefficients[nibble * 4 + bit] > median ? 1 : 0);
    hex += value.toString(16);
  }
  return hex;
}

/** Bits that differ between two hashes (0-64). */
export function hammingDistance(a: string, b: string): number {
  let distance = 0;
  for (let i = 0; i < 16; i += 8) {
    let x = (parseInt(a.slice(i, i + 8), 16) ^ parseInt(b.slice(i, i + 8), 16)) >>> 0;
    while (x !== 0) {
      x &= x - 1;
      distance += 1;
    }
  }
  return distance;
}
