/**
 * Determinism guard: every saved history of a representative run must replay against today's
 * workflow code. A failure here means running workflows would break on deploy: guard the change
 * with `patched()` (or re-record the fixtures with `npm run replay:record` if no run of the old
 * shape can be in flight).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { REPLAY_FIXTURES_DIR } from '../support/replay-fixtures';

test('saved histories of representative runs replay deterministically', async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const files = (await fs.readdir(REPLAY_FIXTURES_DIR)).filter((f) => f.endsWith('.json')).sort();
  expect(files.length).toBeGreaterThanOrEqual(6);
  const histories = await Promise.all(
    files.map(async (file) => ({
      workflowId: path.basename(file, '.json'),
      history: historyFromJSON(JSON.parse(await fs.readFile(path.join(REPLAY_FIXTURES_DIR, file), 'utf8'))),
    })),
  );
  const failures: string[] = [];
  for await (const result of Worker.runReplayHistories({ workflowsPath: require.resolve('../../workflows') }, histories)) {
    if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
  }
  expect(failures).toEqual([]);
});
