/**
 * End to end on a real Temporal dev server with S3 and SageMaker served by moto: the dataset is
 * uploaded to S3, the job created through the real SageMaker API, and the LoRA registered in S3.
 * moto creates jobs already Completed and writes no artifact, so the test puts model.tar.gz at the
 * job's output path itself; the job name is deterministic, which is what lets it know where.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { ListTrainingJobsCommand } from '@aws-sdk/client-sagemaker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import * as tar from 'tar';
import { trainingJobName } from '../../lib/job-name';
import { buildLora } from '../../lib/lora/build';
import { startRun } from '../../client/runs';
import type { TrainingRunInput } from '../../lib/pipeline/input';
import type { RunOutcome } from '../../lib/pipeline/status';
import { writeExampleDataset } from '../../scripts/example-dataset';
import { WorkerEnv } from '../../worker/config';
import { createDeps, createLoraWorker, type LoraWorker } from '../../worker/create';
import { motoAwsClients, startMoto, type MotoServer } from '../support/moto';
import { recordHistory } from '../support/replay-fixtures';
import { startTemporal } from '../support/temporal';

const TASK_QUEUE = 'pipeline-sagemaker-test';
const BUCKET = 'lora-e2e';

let env: TestWorkflowEnvironment;
let moto: MotoServer;
let aws: ReturnType<typeof motoAwsClients>;
let worker: LoraWorker;
let workerRun: Promise<void>;
let tmp: string;

beforeAll(async () => {
  [env, moto] = await Promise.all([startTemporal(), startMoto()]);
  console.log(`moto server at ${moto.endpoint}`);
  aws = motoAwsClients(moto.endpoint);
  await aws.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'lora-e2e-sm-'));
  const config = WorkerEnv.parse({
    LORA_WORK_STORE: pathToFileURL(path.join(tmp, 'work')).href,
    LORA_STORE: `s3://${BUCKET}/default`,
    LORA_JOBS_DIR: path.join(tmp, 'jobs'),
  });
  worker = await createLoraWorker({ connection: env.nativeConnection, taskQueue: TASK_QUEUE, deps: createDeps(config, aws) });
  workerRun = worker.run();
});

afterAll(async () => {
  if (worker) {
    worker.shutdown();
    await workerRun;
  }
  await Promise.all([env?.teardown(), moto?.stop()]);
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function keysUnder(prefix: string): Promise<string[]> {
  const listed = await aws.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (listed.Contents ?? []).map((o) => o.Key!).sort();
}

test('S3 store + SageMaker trainer: upload, one training job, LoRA registered in S3', async () => {
  const dataset = path.join(tmp, 'ds');
  await writeExampleDataset(dataset, { count: 3 });
  const workflowId = `sm-run-${Date.now()}`;
  const runName = 'sm-style';
  const input: TrainingRunInput = {
    runName,
    dataset,
    store: `s3://${BUCKET}/lora`,
    baseModel: { family: 'sdxl', checkpoint: 's3://lora-e2e/models/sdxl_base.safetensors' },
    trainer: {
      kind: 'sagemaker',
      imageUri: '123456789012.dkr.ecr.us-east-1.amazonaws.com/kohya:test',
      roleArn: 'arn:aws:iam::123456789012:role/SageMakerLoraTraining',
    },
    training: { epochs: 1, networkDim: 1, networkAlpha: 1 },
    pollInterval: '200ms',
  };

  // What the Kohya container would have written: the final LoRA and an epoch file in model.tar.gz.
  const jobName = trainingJobName(runName, workflowId);
  const outDir = path.join(tmp, 'artifact');
  await fs.mkdir(outDir, { recursive: true });
  const lora = buildLora({ family: 'sdxl', networkDim: 1, networkAlpha: 1, outputName: runName, epochs: 2, steps: 20, seed: 7, dryRun: true });
  await fs.writeFile(path.join(outDir, `${runName}.safetensors`), lora);
  await fs.writeFile(path.join(outDir, `${runName}-000001.safetensors`), lora);
  const tarball = path.join(tmp, 'model.tar.gz');
  await tar.c({ gzip: true, file: tarball, cwd: outDir }, [`${runName}.safetensors`, `${runName}-000001.safetensors`]);
  await aws.s3.send(
    new PutObjectCommand({ Bucket: BUCKET, Key: `lora/training/${jobName}/output/model.tar.gz`, Body: await fs.readFile(tarball) }),
  );

  const handle = await startRun(env.client, input, { taskQueue: TASK_QUEUE, workflowId });
  const outcome: RunOutcome = await handle.result();
  await recordHistory(handle, 's3-sagemaker-completed', env.address);

  expect(outcome.stage).toBe('completed');
  expect(outcome.job).toEqual({ backend: 'sagemaker', jobName });
  const jobs = await aws.sagemaker.send(new ListTrainingJobsCommand({}));
  expect(jobs.TrainingJobSummaries?.filter((j) => j.TrainingJobName === jobName)).toHaveLength(1);

  // The dataset is in S3 in kohya layout, manifest included.
  expect(outcome.dataset?.uri).toMatch(new RegExp(`^s3://${BUCKET}/lora/datasets/${runName}/[0-9a-f]{16}$`));
  const datasetPrefix = outcome.dataset!.uri.replace(`s3://${BUCKET}/`, '');
  const datasetKeys = await keysUnder(`${datasetPrefix}/`);
  expect(datasetKeys.filter((k) => k.includes(`/10_${runName}/`) && k.endsWith('.png'))).toHaveLength(3);
  expect(datasetKeys.filter((k) => k.includes(`/10_${runName}/`) && k.endsWith('.txt'))).toHaveLength(3);
  expect(datasetKeys).toContain(`${datasetPrefix}/manifest.json`);

  // The LoRA is byte-identical to what the job produced, and the registry names the epoch file.
  expect(outcome.lora?.uri).toBe(`s3://${BUCKET}/lora/models/Lora/${runName}.safetensors`);
  const registered = await aws.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `lora/models/Lora/${runName}.safetensors` }));
  expect(Buffer.from(await registered.Body!.transformToByteArray()).equals(lora)).toBe(true);
  const recordObject = await aws.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `lora/registry/${runName}.json` }));
  const record = JSON.parse(await recordObject.Body!.transformToString());
  expect(record).toMatchObject({ name: runName, jobName, backend: 'sagemaker', epochFiles: [`${runName}-000001.safetensors`] });
  expect(record.metadata.ss_base_model_version).toBe('sdxl_base_v1-0');
});
