import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import sharp from 'sharp';
import { CaptionReport, makeCaptionActivities } from '../../activities/captions';
import type { ActivityDeps } from '../../activities/deps';
import { makePreprocessActivities } from '../../activities/preprocess';
import { FileStore } from '../../adapters/store/file';

let tmp: string;
let workStore: FileStore;
let deps: ActivityDeps;
let manifestKey: string;

/** Runs one activity inside a mock activity context. */
function runActivity<A, R>(activity: (arg: A) => Promise<R>, arg: A): Promise<R> {
  // Expected failures are logged as warnings by the activity runtime: keep test output readable.
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  return env.run<[A], R, typeof activity>(activity, arg);
}

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(ApplicationFailure);
  return error as ApplicationFailure;
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'captions-'));
  const datasetDir = path.join(tmp, 'dataset');
  await fs.mkdir(datasetDir);
  workStore = new FileStore(path.join(tmp, 'work'));
  deps = { workStore, openStore: () => workStore, trainers: {} as never };

  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#336699' } }).png().toBuffer();
  const files: Record<string, Buffer | string> = {
    'good.png': png,
    'good.txt': 'sks dog, on a sofa',
    'uncaptioned.png': png,
    'blank.png': png,
    'blank.txt': '   \n',
    'zero.png': png,
    'zero.txt': '',
    'latin1.png': png,
    'latin1.txt': Buffer.from([0x63, 0x61, 0x66, 0xe9]), // "café" in Latin-1
    'orphan.txt': 'no image for me',
  };
  for (const [name, content] of Object.entries(files)) await fs.writeFile(path.join(datasetDir, name), content);

  const preprocessed = await runActivity(makePreprocessActivities(deps).preprocessDataset, {
    runId: 'run-c',
    dataset: datasetDir,
    family: 'sd15',
    repeats: 5,
    concept: 'sks dog',
  });
  manifestKey = preprocessed.manifestKey;
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('checkCaptions activity', () => {
  it('writes the report and returns only its key and the counts', async () => {
    const result = await runActivity(makeCaptionActivities(deps).checkCaptions, { runId: 'run-c', manifestKey });
    expect(result).toEqual({ reportKey: 'runs/run-c/caption-report.json', counts: { error: 4, warning: 1, info: 0 } });

    const report = JSON.parse((await workStore.get(result.reportKey)).toString('utf8')) as CaptionReport;
    expect(report.version).toBe(1);
    expect(report.counts).toEqual(result.counts);
    expect(report.issues.map((i) => [i.severity, i.rule, i.file])).toEqual([
      ['error', 'empty-caption', 'blank.txt'],
      ['error', 'invalid-utf8', 'latin1.txt'],
      ['error', 'missing-caption', 'uncaptioned.png'],
      ['error', 'empty-caption', 'zero.txt'],
      ['warning', 'orphan-caption', 'orphan.txt'],
    ]);
    for (const issue of report.issues) expect(issue.message).toContain(issue.file);
  });

  it('fails non-retryably, naming the key, when the manifest does not exist', async () => {
    const failure = await failureOf(
      runActivity(makeCaptionActivities(deps).checkCaptions, { runId: 'run-c', manifestKey: 'runs/nope/manifest.json' }),
    );
    expect(failure.type).toBe('ManifestNotFound');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain('runs/nope/manifest.json');
  });

  it('fails non-retryably, naming the field, when the manifest has the wrong shape', async () => {
    await workStore.put('runs/broken/manifest.json', JSON.stringify({ version: 1, images: 'not a list' }));
    const failure = await failureOf(
      runActivity(makeCaptionActivities(deps).checkCaptions, { runId: 'broken', manifestKey: 'runs/broken/manifest.json' }),
    );
    expect(failure.type).toBe('InvalidManifest');
    expect(failure.message).toContain('manifest runs/broken/manifest.json.images');
  });
});
