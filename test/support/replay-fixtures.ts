/**
 * Replay fixtures: histories of representative runs, saved by the end-to-end tests when
 * LORA_RECORD_REPLAY_DIR is set (`npm run replay:record`) and replayed by test/integration/replay.test.ts,
 * so a change that makes the workflow non-deterministic for runs already in flight fails CI.
 * They are exported by the Temporal CLI (`workflow show -o json`), the format the SDK's replayer reads.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import { PROJECT_ROOT } from '../../adapters/project-paths';
import { installedTools } from '../../scripts/tools';

export const REPLAY_FIXTURES_DIR = path.join(PROJECT_ROOT, 'test', 'replay');

export async function recordHistory(handle: WorkflowHandle, name: string, address: string): Promise<void> {
  const dir = process.env.LORA_RECORD_REPLAY_DIR;
  if (!dir) return;
  await fs.mkdir(dir, { recursive: true });
  const { stdout } = await promisify(execFile)(
    installedTools().temporal,
    ['workflow', 'show', '--workflow-id', handle.workflowId, '--address', address, '--output', 'json'],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  await fs.writeFile(path.join(dir, `${name}.json`), stdout);
}
