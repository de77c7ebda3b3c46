import { findDuplicates, type DuplicateCandidate } from '../../lib/image/duplicates';
import { fingerprint, hammingDistance } from '../../lib/image/phash';

/** An RGB picture drawn by a function of the relative position (0-1), at any resolution. */
function draw(width: number, height: number, paint: (x: number, y: number) => [number, number, number]): Uint8Array {
  const pixels = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) pixels.set(paint(x / width, y / height), (y * width + x) * 3);
  }
  return pixels;
}

const scene = (x: number, y: number): [number, number, number] => {
  const disc = (x - 0.3) ** 2 + (y - 0.4) ** 2 < 0.04 ? 180 : 0;
  return [Math.min(255, 40 + disc + 100 * x), 60 + 120 * y, 90];
};
const otherScene = (x: number, y: number): [number, number, number] => {
  const stripes = Math.floor(y * 6) % 2 === 0 ? 200 : 30;
  return [stripes, 100 + 80 * x, 90];
};

describe('hammingDistance', () => {
  it('counts differing bits across all 64', () => {
    expect(hammingDistance('0000000000000000', '0000000000000000')).toBe(0);
    expect(hammingDistance('ffffffffffffffff', '0000000000000000')).toBe(64);
    expect(hammingDistance('f000000000000001', '0000000000000000')).toBe(5);
  });
});

describe('fingerprint', () => {
  it('gives the same hash at another resolution and a similar one after a small change', () => {
    const a = fingerprint(draw(128, 128, scene), 128, 128, 3);
    const smaller = fingerprint(draw(96, 96, scene), 96, 96, 3);
    const brighter = fingerprint(draw(128, 128, (x, y) => scene(x, y).map((v) => Math.min(255, v + 6)) as [number, number, number]), 128, 128, 3);
    expect(a.phash).toMatch(/^[0-9a-f]{16}$/);
    expect(hammingDistance(a.phash, smaller.phash)).toBeLessThanOrEqual(4);
    expect(hammingDistance(a.phash, brighter.phash)).toBeLessThanOrEqual(4);
  });

  it('tells different pictures apart', () => {
    const a = fingerprint(draw(128, 128, scene), 128, 128, 3);
    const b = fingerprint(draw(128, 128, otherScene), 128, 128, 3);
    expect(hammingDistance(a.phash, b.phash)).toBeGreaterThan(16);
  });

  it('measures the mean colour', () => {
    expect(fingerprint(draw(10, 10, () => [10, 20, 30]), 10, 10, 3).colour).toEqual([10, 20, 30]);
  });
});

describe('findDuplicates', () => {
  const item = (outputSha256: string, phash: string, colour: [number, number, number] = [100, 100, 100]): DuplicateCandidate => ({ outputSha256, phash, colour });

  it('marks identical pixels as exact duplicates of the first', () => {
    const found = findDuplicates([item('p1', '0123456789abcdef'), item('p2', 'fedcba9876543210'), item('p1', '0123456789abcdef')]);
    expect([...found.exact]).toEqual([[2, 0]]);
    expect(found.near.size).toBe(0);
  });

  it('marks close hashes with similar colours as near-duplicates of the earliest', () => {
    const found = findDuplicates([
      item('p1', '0123456789abcdef'),
      item('p2', '0123456789abcdee'), // 1 bit from p1
      item('p3', '0123456789abcd00'), // 7 bits from p1: too far, but only 6 from p2
      item('p4', '0123456789abcdef', [200, 100, 100]), // same hash, different colour
      item('p5', 'ffffffff00000000'),
    ]);
    expect([...found.near]).toEqual([
      [1, { of: 0, distance: 1 }],
      [2, { of: 1, distance: 6 }],
    ]);
    expect(found.exact.size).toBe(0);
  });

  it('finds near-duplicates that share no hash prefix', () => {
    // One bit differs in each of the first six bytes: only the last two bytes agree.
    const found = findDuplicates([item('a', '0000000000000000'), item('b', '0101010101010000')]);
    expect(found.near.get(1)).toEqual({ of: 0, distance: 6 });
  });
});
