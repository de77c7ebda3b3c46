/**
 * Runs test/support/kohya_lora.py: LoRA files and tar archives written by Python's `safetensors`
 * package, numpy and `tarfile`, independently of the project's own writer. One process per call.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { installedTools } from '../../scripts/tools';

export type LoraDefect = 'nan' | 'inf' | 'missing-alpha' | 'wrong-rank' | 'checkpoint' | 'sshs-mismatch';

export interface PythonLoraSpec {
  file: string;
  family: 'sd15' | 'sdxl';
  dim: number;
  alpha: number;
  dtype: 'float16' | 'float32';
  output_name: string;
  defect?: LoraDefect;
}

export interface PythonArchiveSpec {
  file: string;
  entries: { path: string; type: 'file' | 'dir' | 'symlink' | 'hardlink'; source?: string; target?: string }[];
}

export interface PythonHashes {
  sha256: string;
  sha256_after_header: string;
}

/** Writes the files into `dir`; returns the hashes Python computed for each LoRA. */
export function writeWithPython(dir: string, job: { loras?: PythonLoraSpec[]; archives?: PythonArchiveSpec[] }): Record<string, PythonHashes> {
  const script = path.join(__dirname, 'kohya_lora.py');
  const result = spawnSync(installedTools().python, [script], { input: JSON.stringify({ dir, ...job }), encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0) throw new Error(`${script} failed (${result.error?.message ?? `exit ${result.status}`}): ${result.stderr}`);
  return (JSON.parse(result.stdout) as { loras: Record<string, PythonHashes> }).loras;
}
