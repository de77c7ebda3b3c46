/**
 * What moto does not model (it ignores ClientToken, and a duplicate CreateModelPackageGroup just
 * overwrites the group), checked against the exact requests with aws-sdk-client-mock.
 */
import {
  CreateModelPackageCommand,
  CreateModelPackageGroupCommand,
  DescribeModelPackageCommand,
  ListModelPackageGroupsCommand,
  ListModelPackagesCommand,
  type ModelPackageGroupSummary,
  SageMakerClient,
} from '@aws-sdk/client-sagemaker';
import { mockClient } from 'aws-sdk-client-mock';
import { SageMakerModelRegistry } from '../../adapters/model-registry/sagemaker';
import { modelPackageVersionRequest } from '../../lib/lora/model-package';
import type { RegistryRecord } from '../../lib/lora/registry';

const GROUP = 'lora-cat';
const VERSION_ARN = `arn:aws:sagemaker:us-east-1:123456789012:model-package/${GROUP}/1`;
const RECORD: Omit<RegistryRecord, 'modelPackageArn'> = {
  name: 'cat',
  uri: 's3://bucket/lora/models/Lora/cat.safetensors',
  recordUri: 's3://bucket/lora/registry/cat.json',
  sha256: 'ab'.repeat(32),
  autoV2: 'ababababab',
  sha256AfterHeader: 'cd'.repeat(32),
  sizeBytes: 1024,
  runId: 'lora-cat-20250101-120000',
  jobName: 'cat-1a2b',
  backend: 'sagemaker',
  baseModel: { family: 'sd15', checkpoint: 'runwayml/stable-diffusion-v1-5' },
  datasetManifestSha256: 'ef'.repeat(32),
  kohyaConfig: { network_dim: 8 },
  metrics: {},
  rank: 8,
  epochFiles: [],
  metadata: {},
  createdAt: '2025-01-01T12:00:00.000Z',
};

function serviceError(name: string, httpStatusCode: number): Error {
  return Object.assign(new Error(`${name} from the mock`), { name, $fault: 'client', $metadata: { httpStatusCode } });
}

const group = (name: string): ModelPackageGroupSummary => ({
  ModelPackageGroupName: name,
  ModelPackageGroupArn: `arn:aws:sagemaker:us-east-1:123456789012:model-package-group/${name}`,
  CreationTime: new Date('2025-01-01T12:00:00Z'),
  ModelPackageGroupStatus: 'Completed',
});

const sagemaker = mockClient(SageMakerClient);
const registry = new SageMakerModelRegistry({ client: new SageMakerClient({ region: 'us-east-1' }), groupPrefix: 'lora' });

beforeEach(() => {
  sagemaker.reset();
  sagemaker.on(ListModelPackagesCommand).resolves({ ModelPackageSummaryList: [] });
  sagemaker.on(CreateModelPackageCommand).resolves({ ModelPackageArn: VERSION_ARN });
});

it('creates the group, then a version pending manual approval with an idempotency token and no inference image', async () => {
  sagemaker.on(ListModelPackageGroupsCommand).resolves({ ModelPackageGroupSummaryList: [] });
  sagemaker.on(CreateModelPackageGroupCommand).resolves({ ModelPackageGroupArn: 'arn:group' });

  expect(await registry.registerVersion('cat', RECORD)).toBe(VERSION_ARN);

  expect(sagemaker.commandCalls(CreateModelPackageGroupCommand)[0].args[0].input.ModelPackageGroupName).toBe(GROUP);
  const create = sagemaker.commandCalls(CreateModelPackageCommand)[0].args[0].input;
  const expected = modelPackageVersionRequest('lora', 'cat', RECORD);
  expect(create).toEqual({
    ModelPackageGroupName: GROUP,
    ModelPackageDescription: expected.description,
    ModelApprovalStatus: 'PendingManualApproval',
    CustomerMetadataProperties: expected.properties,
    ClientToken: expected.clientToken,
  });
});

it('uses a group that exists and adopts the version whose Sha256 matches', async () => {
  sagemaker.on(ListModelPackageGroupsCommand).resolves({ ModelPackageGroupSummaryList: [group(GROUP)] });
  sagemaker.on(ListModelPackagesCommand).resolves({ ModelPackageSummaryList: [{ ModelPackageArn: VERSION_ARN, CreationTime: new Date('2025-01-01T12:00:00Z'), ModelPackageStatus: 'Completed' }] });
  sagemaker.on(DescribeModelPackageCommand).resolves({ CustomerMetadataProperties: { Sha256: RECORD.sha256 } });

  expect(await registry.registerVersion('cat', RECORD)).toBe(VERSION_ARN);
  expect(sagemaker.commandCalls(CreateModelPackageGroupCommand)).toHaveLength(0);
  expect(sagemaker.commandCalls(CreateModelPackageCommand)).toHaveLength(0);
});

it('accepts a group another worker created between its look and its create', async () => {
  sagemaker
    .on(ListModelPackageGroupsCommand)
    .resolvesOnce({ ModelPackageGroupSummaryList: [] })
    .resolves({ ModelPackageGroupSummaryList: [group(GROUP)] });
  sagemaker.on(CreateModelPackageGroupCommand).rejects(serviceError('ValidationException', 400));

  expect(await registry.registerVersion('cat', RECORD)).toBe(VERSION_ARN);
});

it('passes on a failed group create when the group still does not exist', async () => {
  sagemaker.on(ListModelPackageGroupsCommand).resolves({ ModelPackageGroupSummaryList: [group(`${GROUP}-other`)] });
  sagemaker.on(CreateModelPackageGroupCommand).rejects(serviceError('AccessDeniedException', 400));

  await expect(registry.registerVersion('cat', RECORD)).rejects.toMatchObject({ name: 'AccessDeniedException' });
  expect(sagemaker.commandCalls(CreateModelPackageCommand)).toHaveLength(0);
});
