/**
 * uploadDataset from a file work store to a file store and to S3 on moto: idempotent by content
 * hash (a second upload of unchanged files sends nothing, a changed caption is sent again whatever
 * its size), a HEAD only for objects that might already hold the content and whose S3 entity tag
 * does not prove it, and files above the in-memory limit streamed.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { ActivityDeps } from '../../activities/deps';
import { makeUploadActivities, type UploadInput, type UploadResult } from '../../activities/upload';
import { FileStore } from '../../adapters/store/file';
import { S3Store } from '../../adapters/store/s3';
import type { ObjectStore } from '../../adapters/store/types';
import { manifestKeyOf, trainDataDirOf, type DatasetManifest } from '../../lib/pipeline/manifest';
import { motoWithFreshBucket } from '../support/moto';

const RUN_ID = 'run-1';
const FOLDER = `${trainDataDirOf(RUN_ID)}/10_sks`;

let tmp: string;
let workStore: FileStore;
let destination: ObjectStore;
let input: UploadInput;

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'upload-test-'));
  workStore = new FileStore(path.join(tmp, 'work'));
  destination = new FileStore(path.join(tmp, 'store'));
  // Two small images and one of 6 MB, above the limit for sending from memory.
  const images = [
    { name: 'a', bytes: randomBytes(1000), caption: 'sks, a red circle' },
    { name: 'b', bytes: randomBytes(2000), caption: 'sks, a blue square' },
    { name: 'big', bytes: randomBytes(6 * 1024 * 1024), caption: 'sks, a large picture' },
  ];
  const entries: DatasetManifest['images'] = [];
  for (const image of images) {
    const output = `${FOLDER}/${image.name}.png`;
    const caption = `${FOLDER}/${image.name}.txt`;
    await workStore.put(output, image.bytes);
    await workStore.put(caption, image.caption);
    entries.push({ source: `${image.name}.jpg`, sourceSha256: 'unused', output, width: 512, height: 512, caption });
  }
  const manifest: DatasetManifest = {
    version: 1,
    runId: RUN_ID,
    dataset: '/data/sks',
    family: 'sd15',
    target: 512,
    folder: '10_sks',
    images: entries,
    skipped: [],
    orphanCaptions: [],
    counts: { found: 3, kept: 3, skipped: 0 },
  };
  await workStore.put(manifestKeyOf(RUN_ID), JSON.stringify(manifest));
  input = { runId: RUN_ID, runName: 'sks', manifestKey: manifestKeyOf(RUN_ID) };
});

afterEach(async () => {
  jest.restoreAllMocks();
  await fs.rm(tmp, { recursive: true, force: true });
});

function upload(): Promise<UploadResult> {
  const deps = { workStore, openStore: () => destination, trainers: {} as never } satisfies ActivityDeps;
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  return env.run(makeUploadActivities(deps).uploadDataset, input) as Promise<UploadResult>;
}

async function sizeOf(key: string): Promise<number> {
  return (await workStore.head(key))!.size;
}

test('sends every file once, with the manifest, and nothing the second time', async () => {
  const heads = jest.spyOn(destination, 'head');
  const first = await upload();
  const keys = ['a.png', 'a.txt', 'b.png', 'b.txt', 'big.png', 'big.txt'];
  const total = (await Promise.all(keys.map((key) => sizeOf(`${FOLDER}/${key}`)))).reduce((sum, size) => sum + size, 0);
  expect(first).toMatchObject({ files: 6, bytes: total, uploadedBytes: total });
  // The destination was empty: its listing said so, no object needed a HEAD.
  expect(heads).not.toHaveBeenCalled();
  const prefix = `datasets/sks/${first.manifestSha256.slice(0, 16)}`;
  expect(first.uri).toBe(destination.uriOf(prefix));
  const uploaded = (await destination.list(prefix)).map((object) => object.key.slice(prefix.length + 1));
  expect(uploaded).toEqual([...keys.map((key) => `10_sks/${key}`), 'manifest.json']);
  // Buffer.equals: Jest's deep equality takes seconds over 6 MB.
  expect((await destination.get(`${prefix}/10_sks/big.png`)).equals(await workStore.get(`${FOLDER}/big.png`))).toBe(true);

  const second = await upload();
  expect(second).toMatchObject({ files: 6, bytes: total, uploadedBytes: 0, uri: first.uri });
  expect(heads).toHaveBeenCalledTimes(6);
});

test('sends a caption edited after the first upload again, at the same size or another', async () => {
  const first = await upload();
  const prefix = `datasets/sks/${first.manifestSha256.slice(0, 16)}/10_sks`;
  // Review edits rewrite captions in the work store and leave the manifest (and so the prefix) as it was.
  await workStore.put(`${FOLDER}/a.txt`, 'sks, a RED circle');
  await workStore.put(`${FOLDER}/b.txt`, 'sks, a blue square, slightly rotated');

  const second = await upload();
  expect(second.uploadedBytes).toBe((await sizeOf(`${FOLDER}/a.txt`)) + (await sizeOf(`${FOLDER}/b.txt`)));
  expect((await destination.get(`${prefix}/a.txt`)).toString()).toBe('sks, a RED circle');
  expect((await destination.get(`${prefix}/b.txt`)).toString()).toBe('sks, a blue square, slightly rotated');
});

describe('to S3', () => {
  const BUCKET = 'upload-test';
  const aws = motoWithFreshBucket(BUCKET);

  beforeEach(() => {
    destination = new S3Store(`s3://${BUCKET}/store`, aws.s3);
  });

  test("a second upload trusts entity tags equal to the files' MD5 and HEADs only the multipart one", async () => {
    const first = await upload();
    const heads = jest.spyOn(destination, 'head');
    const second = await upload();
    expect(second).toMatchObject({ files: 6, bytes: first.bytes, uploadedBytes: 0 });
    // big.png (6 MB) went up in parts: its entity tag is not an MD5, so its SHA-256 is compared.
    expect(heads.mock.calls.map(([key]) => key.split('/').pop())).toEqual(['big.png']);
  });

  test('a caption edited to the same size has another entity tag and is sent again', async () => {
    const first = await upload();
    await workStore.put(`${FOLDER}/a.txt`, 'sks, a RED circle');
    const second = await upload();
    expect(second.uploadedBytes).toBe(await sizeOf(`${FOLDER}/a.txt`));
    const prefix = `datasets/sks/${first.manifestSha256.slice(0, 16)}/10_sks`;
    expect((await destination.get(`${prefix}/a.txt`)).toString()).toBe('sks, a RED circle');
  });
});
