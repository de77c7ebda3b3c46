/**
 * `npm run bench:upload`: the same processed dataset sent to one moto S3 server
 *   (a) by this project's uploadDataset activity, and
 *   (b) by `aws s3 sync` (the awscli in the venv, default settings, process start included),
 * each R times in alternating order on an emptied bucket, median wall time reported; then
 *   (c) the unchanged dataset again: uploadDataset must send 0 bytes (exit code 1 otherwise),
 *       shown beside awscli's re-sync of its copy.
 * The dataset is N generated photo-like pictures (grain keeps them photo-sized) run through the real
 * preprocessing activity, so the work store holds what a run uploads: kohya folder, captions, manifest.
 *
 * Flags (or environment): --images (BENCH_UPLOAD_IMAGES, default 300), --rounds (BENCH_UPLOAD_ROUNDS, default 3).
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { z } from 'zod';
import { makePreprocessActivities, type PreprocessInput, type PreprocessResult } from '../activities/preprocess';
import { makeUploadActivities, type UploadInput, type UploadResult } from '../activities/upload';
import { awsClients, awsConfigFromEnv } from '../adapters/aws';
import { S3Store } from '../adapters/store/s3';
import { parseOrThrow } from '../lib/pipeline/input';
import { trainDataDirOf } from '../lib/pipeline/manifest';
import { writeExampleDataset } from '../scripts/example-dataset';
import { startMoto } from '../scripts/moto';
import { installedTools } from '../scripts/tools';
import { createDeps } from '../worker/create';
import { WorkerEnv } from '../worker/config';

const Flags = z.object({
  images: z.coerce.number().int().min(1).max(20_000).default(300),
  rounds: z.coerce.number().int().min(1).max(20).default(3),
});

const BUCKET = 'bench-upload';
const RUN_ID = 'bench';
/** Grain that makes a 512-pixel PNG about as large as one cut from a photo (~400 KB). */
const PHOTO_GRAIN = 8;
const MB = 1e6;

interface Timing {
  seconds: number;
  sentBytes: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { images: { type: 'string' }, rounds: { type: 'string' } } });
  const flags = parseOrThrow(
    Flags,
    { images: values.images ?? process.env.BENCH_UPLOAD_IMAGES, rounds: values.rounds ?? process.env.BENCH_UPLOAD_ROUNDS },
    'bench:upload flags',
  );
  const root = await fs.mkdtemp(path.join(tmpdir(), 'bench-upload-'));
  try {
    await benchmark(flags, root);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

async function benchmark(flags: z.infer<typeof Flags>, root: string): Promise<void> {
  const moto = await startMoto();
  // Dummy credentials for both clients, and no user config files that could change awscli's defaults.
  const awsEnv = {
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_REGION: 'us-east-1',
    AWS_CONFIG_FILE: path.join(root, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(root, 'no-aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  Object.assign(process.env, awsEnv);
  // The worker's own client factory, pointed at moto the way a deployment points it at MinIO.
  const aws = awsClients(awsConfigFromEnv({ ...process.env, AWS_ENDPOINT_URL: moto.endpoint }));
  try {
    const config = WorkerEnv.parse({
      LORA_WORK_STORE: pathToFileURL(path.join(root, 'work')).href,
      LORA_STORE: `s3://${BUCKET}/ours`,
      LORA_JOBS_DIR: path.join(root, 'jobs'),
    });
    const deps = createDeps(config, aws);
    const activityEnv = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });

    console.log(`upload benchmark: ${flags.images} generated images, ${flags.rounds} rounds in alternating order, medians`);
    console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, node ${process.version}, moto at ${moto.endpoint}`);
    const source = path.join(root, 'source');
    await writeExampleDataset(source, { count: flags.images, grain: PHOTO_GRAIN });
    const { preprocessDataset } = makePreprocessActivities(deps);
    const input: PreprocessInput = { runId: RUN_ID, dataset: source, family: 'sd15', repeats: 10, concept: 'bench' };
    const preprocessed = await activityEnv.run<[PreprocessInput], PreprocessResult, typeof preprocessDataset>(preprocessDataset, input);
    const datasetDir = path.join(root, 'work', ...trainDataDirOf(RUN_ID).split('/'));
    const { files, bytes } = await folderSize(datasetDir);
    console.log(
      `dataset: ${preprocessed.counts.kept} of ${preprocessed.counts.found} images kept by preprocessing → ${files} files (images + captions), ${(bytes / MB).toFixed(1)} MB\n`,
    );

    const { uploadDataset } = makeUploadActivities(deps);
    const ours = async (): Promise<Timing> => {
      const input: UploadInput = { runId: RUN_ID, runName: 'bench', manifestKey: preprocessed.manifestKey };
      const started = performance.now();
      const result = await activityEnv.run<[UploadInput], UploadResult, typeof uploadDataset>(uploadDataset, input);
      return { seconds: (performance.now() - started) / 1000, sentBytes: result.uploadedBytes };
    };
    const awsExecutable = installedTools().aws;
    const awscli = async (folder: string): Promise<Timing> => {
      const args = ['s3', 'sync', folder, `s3://${BUCKET}/awscli/`, '--endpoint-url', moto.endpoint, '--no-progress'];
      const started = performance.now();
      const { stdout } = await promisify(execFile)(awsExecutable, args, { env: process.env, maxBuffer: 64 << 20 });
      const seconds = (performance.now() - started) / 1000;
      // awscli prints "upload: <file> to s3://…" for each file it sent.
      const sent = [...stdout.matchAll(/^upload: (.+) to s3:\/\//gm)].map((match) => match[1]);
      const sizes = await Promise.all(sent.map(async (file) => (await fs.stat(file)).size));
      return { seconds, sentBytes: sizes.reduce((sum, size) => sum + size, 0) };
    };
    /** R rounds of both, alternating which goes first, so a busy machine hurts both alike. */
    const rounds = async (before: () => Promise<void>): Promise<Record<'ours' | 'awscli', Timing[]>> => {
      const timings = { ours: [] as Timing[], awscli: [] as Timing[] };
      for (let round = 0; round < flags.rounds; round++) {
        await before();
        const runOurs = async () => timings.ours.push(await ours());
        const runAwscli = async () => timings.awscli.push(await awscli(datasetDir));
        for (const run of round % 2 === 0 ? [runOurs, runAwscli] : [runAwscli, runOurs]) await run();
      }
      return timings;
    };

    const first = await rounds(async () => {
      await moto.reset();
      await aws.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    });
    // The bucket keeps both copies from the last round: now send the unchanged dataset again.
    const again = await rounds(async () => undefined);
    // What awscli costs before it sends anything: interpreter start and one listing.
    const emptyDir = path.join(root, 'empty');
    await fs.mkdir(emptyDir);
    const startup: Timing[] = [];
    for (let round = 0; round < flags.rounds; round++) startup.push(await awscli(emptyDir));
    const store = new S3Store(`s3://${BUCKET}`, aws.s3);
    const [oursListed, awscliListed] = await Promise.all([store.list('ours'), store.list('awscli')]);

    console.log(`${''.padEnd(32)} ${'median s'.padStart(8)} ${'range s'.padStart(11)} ${'MB/s'.padStart(6)} ${'files/s'.padStart(7)} ${'sent'.padStart(9)}`);
    const row = (label: string, timings: Timing[]) => {
      const seconds = median(timings.map((t) => t.seconds));
      const range = `${Math.min(...timings.map((t) => t.seconds)).toFixed(2)}–${Math.max(...timings.map((t) => t.seconds)).toFixed(2)}`;
      const sent = Math.max(...timings.map((t) => t.sentBytes));
      const rate = sent === 0 ? '–' : (sent / MB / seconds).toFixed(1);
      console.log(`  ${label.padEnd(30)} ${seconds.toFixed(2).padStart(8)} ${range.padStart(11)} ${rate.padStart(6)} ${(files / seconds).toFixed(0).padStart(7)} ${`${(sent / MB).toFixed(1)} MB`.padStart(9)}`);
      return seconds;
    };
    console.log('first upload, to an emptied bucket');
    const firstRatio = row('(a) uploadDataset', first.ours) / row('(b) aws s3 sync', first.awscli);
    console.log(`  ratio (a)/(b) of median wall time: ${firstRatio.toFixed(2)}× (below 1: ours is faster)`);
    console.log('the unchanged dataset again');
    const againRatio = row('(c) uploadDataset re-upload', again.ours) / row('(c) aws s3 sync re-sync', again.awscli);
    console.log(`  ratio of median wall time: ${againRatio.toFixed(2)}× (both from one listing: ours matches entity tags against MD5s, with a HEAD only where a tag cannot match; awscli size and mtime)`);
    console.log(`\nawscli start-up (sync of an empty folder): median ${median(startup.map((t) => t.seconds)).toFixed(2)} s, included in its times above`);
    console.log(`objects in the bucket: ours ${oursListed.length} (the files + manifest.json), awscli ${awscliListed.length}`);

    const problems: string[] = [];
    const sentAgain = again.ours.map((t) => t.sentBytes);
    if (sentAgain.some((sent) => sent !== 0)) problems.push(`re-uploads of the unchanged dataset sent ${sentAgain.join(', ')} bytes, expected 0`);
    const sentFirst = [...first.ours, ...first.awscli].map((t) => t.sentBytes);
    if (sentFirst.some((sent) => sent !== bytes)) problems.push(`first uploads sent ${sentFirst.join(', ')} bytes, expected ${bytes} each`);
    if (oursListed.length !== files + 1 || awscliListed.length !== files) problems.push(`expected ${files + 1} objects from ours and ${files} from awscli`);
    for (const problem of problems) console.error(`FAILED: ${problem}`);
    if (problems.length > 0) process.exitCode = 1;
    else console.log('re-upload of the unchanged dataset by uploadDataset sent 0 bytes: ok');
  } finally {
    aws.s3.destroy();
    aws.sagemaker.destroy();
    await moto.stop();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function folderSize(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    files += 1;
    bytes += (await fs.stat(path.join(entry.parentPath, entry.name))).size;
  }
  return { files, bytes };
}

main().catch((err: unknown) => {
  console.error(`bench:upload: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
