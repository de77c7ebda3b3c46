/**
 * Step 1 of the real workflow on a real Temporal dev server: the dataset is planned, its batches
 * run as separate activities side by side, and history carries keys and counts only.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import sharp from 'sharp';
import { FileStore } from '../../adapters/store/file';
import { DatasetManifest } from '../../lib/pipeline/manifest';
import { startRun } from '../../client/runs';
import type { TrainingRunInput } from '../../lib/pipeline/input';
import { createLoraWorker, type LoraWorker } from '../../worker/create';
import { statusQuery } from '../../workflows/messages';
import { startTemporal } from '../support/temporal';

const TASK_QUEUE = 'preprocess-workflow-test';

let env: TestWorkflowEnvironment;
let worker: LoraWorker;
let workerRun: Promise<void>;
let tmp: string;
let workStore: FileStore;

beforeAll(async () => {
  env = await startTemporal();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'preprocess-workflow-'));
  workStore = new FileStore(path.join(tmp, 'work'));
  const deps = { workStore, openStore: () => new FileStore(path.join(tmp, 'store')), trainers: {} as never };
  worker = await createLoraWorker({ connection: env.nativeConnection, taskQueue: TASK_QUEUE, deps });
  workerRun = worker.run();
});

afterAll(async () => {
  if (worker) {
    worker.shutdown();
    await workerRun;
  }
  await env?.teardown();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** The history with every payload decoded (they come base64-encoded): what it shows anyone. */
function historyText(history: unknown): string {
  return JSON.stringify(history, (key, value: unknown) => (key === 'data' && typeof value === 'string' ? Buffer.from(value, 'base64').toString('utf8') : value));
}

test('the workflow fans preprocessing out in batches and keeps only keys and counts in history', async () => {
  const dataset = path.join(tmp, 'dataset');
  await fs.mkdir(dataset);
  for (let i = 0; i < 5; i++) {
    const picture = sharp({ create: { width: 640 + i * 64, height: 480, channels: 3, background: `hsl(${i * 60}, 60%, 50%)` } })
      .composite([{ input: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><circle cx="${40 + i * 30}" cy="100" r="60" fill="#fff"/></svg>`), left: 100, top: 100 }]);
    await fs.writeFile(path.join(dataset, `picture-${i}.jpg`), await picture.jpeg().toBuffer());
    await fs.writeFile(path.join(dataset, `picture-${i}.txt`), `sks, picture ${i}`);
  }
  await fs.writeFile(path.join(dataset, 'broken-file.jpg'), 'not a jpeg');

  const input: TrainingRunInput = {
    runName: 'fan-out',
    dataset,
    review: { policy: 'always' },
    preprocess: { strategy: 'bucket', batchSize: 2 },
  };
  const handle = await startRun(env.client, input, { taskQueue: TASK_QUEUE, workflowId: `fan-out-${Date.now()}` });
  try {
    let status = await handle.query(statusQuery);
    for (const deadline = Date.now() + 60_000; status.stage === 'preprocessing' && Date.now() < deadline; status = await handle.query(statusQuery)) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(status.stage).not.toBe('preprocessing');
    expect(status.images).toEqual({ found: 6, kept: 5, skipped: 1 });

    const events = (await handle.fetchHistory()).events ?? [];
    const scheduled = events.flatMap((event, index) => {
      const name = event.activityTaskScheduledEventAttributes?.activityType?.name;
      return name ? [{ name, index }] : [];
    });
    expect(scheduled.filter((s) => s.name.includes('reprocess')).map((s) => s.name)).toEqual([
      'planPreprocess',
      'preprocessBatch',
      'preprocessBatch',
      'preprocessBatch',
      'finishPreprocess',
    ]);
    // All three batches were scheduled together, before any of them completed.
    const batches = scheduled.filter((s) => s.name === 'preprocessBatch').map((s) => s.index);
    const firstCompletion = events.findIndex((event, index) => index > batches[0] && event.activityTaskCompletedEventAttributes);
    expect(Math.max(...batches)).toBeLessThan(firstCompletion);

    const text = historyText(events);
    expect(text.includes(`runs/${handle.workflowId}/preprocess/plan.json`)).toBe(true);
    const imageNames = ['broken-file', ...Array.from({ length: 5 }, (_, i) => `picture-${i}`)];
    expect(imageNames.filter((name) => text.includes(name))).toEqual([]);

    const manifest = DatasetManifest.parse(JSON.parse((await workStore.get(`runs/${handle.workflowId}/manifest.json`)).toString('utf8')));
    expect(manifest.images).toHaveLength(5);
    expect(manifest.preprocess).toMatchObject({ strategy: 'bucket', batchSize: 2 });
    expect(manifest.contactSheets).toEqual([`runs/${handle.workflowId}/contact-sheet-0001.png`]);
  } finally {
    await handle.terminate('test over');
  }
});
