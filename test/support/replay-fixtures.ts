/**
 * Replay fixtures: histories of representative runs, saved by the end-to-end tests when
 * LORA_RECORD_REPLAY_DIR is set (`npm run replay:record`) and replayed by test/integration/replay.test.ts,
 * so a change that makes the workflow non-deterministic for runs already in flight fails CI.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { PROJECT_ROOT } from '../../adapters/project-paths';

export const REPLAY_FIXTURES_DIR = path.join(PROJECT_ROOT, 'test', 'replay');

export async function recordHistory(handle: WorkflowHandle, name: string): Promise<void> {
  const dir = process.env.LORA_RECORD_REPLAY_DIR;
  if (!dir) return;
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, `${name}.json`), historyToJSON(await handle.fetchHistory()) + '\n');
}
