/** "Did you mean …?" for mistyped names. Pure, so every boundary that rejects a name can offer one. */

/**
 * The candidate closest to `word`, or undefined when none is close enough to be a plausible typo.
 * Case, `_` and `-` are ignored first (`networkDim` → `network_dim`); otherwise the edit distance
 * may be at most a third of the word's length (at least 1, at most 3).
 */
export function closestName(word: string, candidates: readonly string[]): string | undefined {
  const folded = fold(word);
  const exact = candidates.find((candidate) => fold(candidate) === folded);
  if (exact !== undefined) return exact;
  const limit = Math.min(3, Math.max(1, Math.floor(folded.length / 3)));
  let best: { name: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(folded, fold(candidate));
    if (distance <= limit && (best === undefined || distance < best.distance)) best = { name: candidate, distance };
  }
  return best?.name;
}

function fold(name: string): string {
  return name.toLowerCase().replace(/[-_]/g, '');
}

/** Levenshtein distance with adjacent transpositions counted as one edit (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}
