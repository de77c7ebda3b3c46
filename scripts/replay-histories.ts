/**
 * `npm run replay`: replays saved histories (test/replay/*.json, or the folder given) against the
 * compiled workflow bundle, the code workers actually run. Exits non-zero when any history no
 * longer replays: deploying that change would break runs in flight unless guarded by patched().
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { PROJECT_ROOT, WORKFLOW_BUNDLE } from '../adapters/project-paths';

async function main(dir: string): Promise<number> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  if (files.length === 0) throw new Error(`no histories (*.json) in ${dir}`);
  const histories = await Promise.all(
    files.map(async (file) => ({ workflowId: path.basename(file, '.json'), history: JSON.parse(await fs.readFile(path.join(dir, file), 'utf8')) as unknown })),
  );
  let failed = 0;
  for await (const result of Worker.runReplayHistories({ workflowBundle: { codePath: WORKFLOW_BUNDLE } }, histories)) {
    if (result.error) failed++;
    console.log(result.error ? `FAILED ${result.workflowId}: ${result.error.message}` : `replayed ${result.workflowId}: ok`);
  }
  return failed === 0 ? 0 : 1;
}

main(process.argv[2] ?? path.join(PROJECT_ROOT, 'test', 'replay')).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`replay: ${(err as Error).message}`);
    process.exit(2);
  },
);
