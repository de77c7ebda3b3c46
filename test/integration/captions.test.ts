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
import { captionRulesFor } from '../../lib/captions/options';
import { TrainingRunInput } from '../../lib/pipeline/input';

let tmp: string;
let workStore: FileStore;
let deps: ActivityDeps;
let manifestKey: string;
let datasetDir: string;

/** The rules a run with trigger word "sks" gets from the workflow: max_token_length 225 from the kohya options. */
const rules = captionRulesFor(TrainingRunInput.parse({ runName: 'run-c', dataset: '/unused', triggerWord: 'sks' }));
const longCaption = `sks dog, ${Array.from({ length: 100 }, (_, i) => `tag${i}`).join(', ')}`;

/** A distinct picture per n: preprocessing drops images whose pixels repeat an earlier one. */
function png(n: number): Promise<Buffer> {
  return sharp({ create: { width: 256, height: 256, channels: 3, background: { r: 20 * n, g: 100, b: 200 - 10 * n } } })
    .png()
    .toBuffer();
}

async function writeFiles(dir: string, files: Record<string, Buffer | string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
  }
}

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
  datasetDir = path.join(tmp, 'dataset');
  await fs.mkdir(datasetDir);
  workStore = new FileStore(path.join(tmp, 'work'));
  deps = { workStore, openStore: () => workStore, trainers: {} as never };

  const files: Record<string, Buffer | string> = {
    'good.png': await png(1),
    'good.txt': 'sks dog, on a sofa',
    'uncaptioned.png': await png(2),
    'blank.png': await png(3),
    'blank.txt': '   \n',
    'zero.png': await png(4),
    'zero.txt': '',
    'latin1.png': await png(5),
    'latin1.txt': Buffer.from([0x63, 0x61, 0x66, 0xe9]), // "café" in Latin-1
    'orphan.txt': 'no image for me',
    'bom.png': await png(6),
    'bom.txt': '\ufeffsks dog, in the snow\r\n',
    'long.png': await png(7),
    'long.txt': longCaption,
    'cat.png': await png(8),
    'cat.txt': 'a cat on a sofa',
  };
  await writeFiles(datasetDir, files);

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
    const result = await runActivity(makeCaptionActivities(deps).checkCaptions, { runId: 'run-c', manifestKey, rules });
    expect(result).toEqual({ reportKey: 'runs/run-c/caption-report.json', counts: { error: 5, warning: 2, info: 2 } });

    const report = JSON.parse((await workStore.get(result.reportKey)).toString('utf8')) as CaptionReport;
    expect(report.version).toBe(1);
    expect(report.counts).toEqual(result.counts);
    expect(report.issues.map((i) => [i.severity, i.rule, i.file])).toEqual([
      ['error', 'empty-caption', 'blank.txt'],
      ['error', 'trigger-word-missing', 'cat.txt'],
      ['error', 'invalid-utf8', 'latin1.txt'],
      ['error', 'missing-caption', 'uncaptioned.png'],
      ['error', 'empty-caption', 'zero.txt'],
      ['warning', 'token-limit', 'long.txt'],
      ['warning', 'orphan-caption', 'orphan.txt'],
      ['info', 'byte-order-mark', 'bom.txt'],
      ['info', 'crlf-line-endings', 'bom.txt'],
    ]);
    for (const issue of report.issues) expect(issue.message).toContain(issue.file);
    const byRule = new Map(report.issues.map((issue) => [issue.rule, issue]));
    expect(byRule.get('invalid-utf8')?.message).toContain('byte offset 3 (0xE9)');
    expect(byRule.get('token-limit')?.message).toMatch(/first 225 to the text encoder \(max_token_length 225\)/);
    // The quote of the dropped text is shortened for the report.
    expect(byRule.get('token-limit')?.message).toMatch(/drops the rest: "tag\d+, tag\d+, .*…"$/);
  });

  it('normalises a byte-order mark and CR LF in the work store copy only, and a re-check finds nothing more to fix', async () => {
    const manifest = JSON.parse((await workStore.get(manifestKey)).toString('utf8')) as { images: { source: string; caption: string }[] };
    const bomKey = manifest.images.find((image) => image.source === 'bom.png')?.caption ?? '';
    expect((await workStore.get(bomKey)).toString('utf8')).toBe('sks dog, in the snow\n');
    expect(await fs.readFile(path.join(datasetDir, 'bom.txt'), 'utf8')).toBe('\ufeffsks dog, in the snow\r\n');

    const again = await runActivity(makeCaptionActivities(deps).checkCaptions, { runId: 'run-c', manifestKey, rules });
    expect(again.counts).toEqual({ error: 5, warning: 2, info: 0 });
  });

  it('takes the token limit and trigger word from its input', async () => {
    const relaxed = await runActivity(makeCaptionActivities(deps).checkCaptions, {
      runId: 'run-c',
      manifestKey,
      rules: { bannedTerms: ['snow'] },
    });
    // No trigger word: cat.txt is fine; 75 tokens: long.txt is still too long; bom.txt has a banned term.
    const report = JSON.parse((await workStore.get(relaxed.reportKey)).toString('utf8')) as CaptionReport;
    expect(report.issues.filter((i) => ['trigger-word-missing', 'token-limit', 'banned-term'].includes(i.rule)).map((i) => [i.rule, i.file])).toEqual([
      ['banned-term', 'bom.txt'],
      ['token-limit', 'long.txt'],
    ]);
    expect(report.issues.find((i) => i.rule === 'token-limit')?.message).toContain('max_token_length unset');
  });

  it('refuses rule options sd-scripts could not run with, naming the field', async () => {
    const failure = await failureOf(
      runActivity(makeCaptionActivities(deps).checkCaptions, { runId: 'run-c', manifestKey, rules: { maxTokenLength: 100 } }),
    );
    expect(failure.type).toBe('InvalidInput');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain('checkCaptions input.rules.maxTokenLength: must be 150 or 225');
  });

  it('reports a dataset folder sd-scripts would skip (kohya layout) as a folder-name error', async () => {
    const kohyaDir = path.join(tmp, 'kohya-dataset');
    await writeFiles(kohyaDir, {
      '5_sks dog/a.png': await png(9),
      '5_sks dog/a.txt': 'sks dog, on grass',
      'dogs/b.png': await png(10),
      'dogs/b.txt': 'sks dog, on sand',
    });
    const prepared = await runActivity(makePreprocessActivities(deps).preprocessDataset, {
      runId: 'run-k',
      dataset: kohyaDir,
      family: 'sd15',
      repeats: 5,
      concept: 'sks dog',
    });
    const result = await runActivity(makeCaptionActivities(deps).checkCaptions, { runId: 'run-k', manifestKey: prepared.manifestKey, rules });
    const report = JSON.parse((await workStore.get(result.reportKey)).toString('utf8')) as CaptionReport;
    expect(report.issues.map((i) => [i.severity, i.rule, i.file])).toEqual([['error', 'folder-name', 'dogs']]);
  });

  it('fails non-retryably, naming the key, when the manifest does not exist', async () => {
    const failure = await failureOf(
      runActivity(makeCaptionActivities(deps).checkCaptions, { runId: 'run-c', manifestKey: 'runs/nope/manifest.json', rules }),
    );
    expect(failure.type).toBe('ManifestNotFound');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain('runs/nope/manifest.json');
  });

  it('fails non-retryably, naming the field, when the manifest has the wrong shape', async () => {
    await workStore.put('runs/broken/manifest.json', JSON.stringify({ version: 1, images: 'not a list' }));
    const failure = await failureOf(
      runActivity(makeCaptionActivities(deps).checkCaptions, { runId: 'broken', manifestKey: 'runs/broken/manifest.json', rules }),
    );
    expect(failure.type).toBe('InvalidManifest');
    expect(failure.message).toContain('manifest runs/broken/manifest.json.images');
  });
});
