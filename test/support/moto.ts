/** The moto server lives in scripts/ so the compiled benchmarks can start one too. */
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { motoAwsClients, startMoto, type MotoServer } from '../../scripts/moto';

export { motoAwsClients, startMoto, type MotoServer };

/**
 * Moto for the enclosing test file or describe block, started before its first test and stopped
 * after its last, with `bucket` created empty for every test. Read the fields inside tests and hooks.
 */
export function motoWithFreshBucket(bucket: string): { moto: MotoServer; s3: S3Client } {
  const state = {} as { moto: MotoServer; s3: S3Client };
  beforeAll(async () => {
    state.moto = await startMoto();
    state.s3 = motoAwsClients(state.moto.endpoint).s3;
  });
  afterAll(async () => {
    state.s3?.destroy();
    await state.moto?.stop();
  });
  beforeEach(async () => {
    await state.moto.reset();
    await state.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  });
  return state;
}
