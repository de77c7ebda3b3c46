/**
 * Build step: bundle the workflow code once, so compiled workers load it instead of running
 * webpack at every start (which costs seconds and over 100 MB of resident memory per worker).
 * Skipped when the bundle is newer than every compiled file it is made from.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { PROJECT_ROOT, WORKFLOW_BUNDLE } from '../adapters/project-paths';

async function newestMtime(dir: string): Promise<number> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  const times = await Promise.all(entries.filter((e) => e.isFile()).map(async (e) => (await fs.stat(path.join(e.parentPath, e.name))).mtimeMs));
  return Math.max(0, ...times);
}

async function main(): Promise<void> {
  const sources = await Promise.all(['workflows', 'lib'].map((dir) => newestMtime(path.join(PROJECT_ROOT, 'dist', dir))));
  const bundled = await fs.stat(WORKFLOW_BUNDLE).then((s) => s.mtimeMs, () => 0);
  if (bundled > Math.max(...sources)) return;
  const { code } = await bundleWorkflowCode({ workflowsPath: path.join(PROJECT_ROOT, 'dist', 'workflows') });
  await fs.writeFile(WORKFLOW_BUNDLE, code);
  console.log(`bundled the workflow code into ${path.relative(PROJECT_ROOT, WORKFLOW_BUNDLE)}`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`bundle-workflows: ${(err as Error).message}`);
    process.exit(1);
  });
}
