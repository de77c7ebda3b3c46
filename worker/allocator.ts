/**
 * Which malloc a worker process runs with. scripts/with-allocator.sh preloads jemalloc where the
 * system has it: glibc's malloc keeps the memory preprocessing frees, so a worker would stay at its
 * preprocessing peak.
 */
import * as fs from 'node:fs/promises';

export async function allocatorOf(pid: number | 'self' = 'self'): Promise<'jemalloc' | 'glibc' | 'unknown'> {
  try {
    return /libjemalloc/.test(await fs.readFile(`/proc/${pid}/maps`, 'utf8')) ? 'jemalloc' : 'glibc';
  } catch {
    return 'unknown'; // no procfs (macOS): its allocator returns memory anyway
  }
}
