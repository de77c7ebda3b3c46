import { rootFileName, unsafeEntryReason } from '../../lib/lora/artifact';
import { MODEL_PACKAGE_GROUP_PREFIX, modelPackageVersionRequest } from '../../lib/lora/model-package';
import {
  epochOf,
  loraKey,
  nameOfRecordKey,
  parseRegistryRecord,
  recordKey,
  type RegistryRecord,
  trainingMetrics,
  versionedName,
} from '../../lib/lora/registry';

const RECORD: RegistryRecord = {
  name: 'cat-style',
  uri: 's3://bucket/lora/models/Lora/cat-style.safetensors',
  recordUri: 's3://bucket/lora/registry/cat-style.json',
  sha256: 'ab'.repeat(32),
  autoV2: 'ababababab',
  sha256AfterHeader: 'cd'.repeat(32),
  sizeBytes: 9_437_184,
  runId: 'lora-cat-style-20250101-120000',
  jobName: 'cat-style-1a2b3c4d',
  backend: 'sagemaker',
  baseModel: { family: 'sdxl', checkpoint: 's3://bucket/models/sdxl_base.safetensors' },
  triggerWord: 'ohwx cat',
  datasetManifestSha256: 'ef'.repeat(32),
  kohyaConfig: { network_dim: 16, network_alpha: 8, no_half_vae: true, resolution: '1024,1024' },
  metrics: { steps: 1200, epochs: 10, finalLoss: 0.0871 },
  rank: 16,
  epochFiles: ['cat-style-000001.safetensors'],
  metadata: { ss_network_dim: '16', ss_base_model_version: 'sdxl_base_v1-0' },
  createdAt: '2025-01-01T12:30:00.000Z',
};

describe('registry layout', () => {
  it('puts LoRAs where the WebUI looks and records beside them', () => {
    expect(loraKey('cat-style-v2')).toBe('models/Lora/cat-style-v2.safetensors');
    expect(recordKey('cat-style-v2')).toBe('registry/cat-style-v2.json');
    expect(nameOfRecordKey('registry/cat-style-v2.json')).toBe('cat-style-v2');
    expect(nameOfRecordKey('registry/nested/x.json')).toBeUndefined();
    expect(nameOfRecordKey('registry/notes.txt')).toBeUndefined();
  });

  it('versions a name as name, name-v2, name-v3', () => {
    expect([1, 2, 3].map((v) => versionedName('cat', v))).toEqual(['cat', 'cat-v2', 'cat-v3']);
    expect(() => versionedName('cat', 0)).toThrow('version: must be an integer >= 1, got 0');
  });

  it('recognises only this output name\'s epoch files', () => {
    expect(epochOf('cat', 'cat-000003.safetensors')).toBe(3);
    expect(epochOf('cat', 'cat.safetensors')).toBeUndefined();
    expect(epochOf('cat', 'cat-style-000003.safetensors')).toBeUndefined();
    expect(epochOf('cat', 'cat-000003.ckpt')).toBeUndefined();
    expect(epochOf('cat', 'cat-3.safetensors')).toBeUndefined();
    expect(epochOf('cat-style', 'cat-style-000010.safetensors')).toBe(10);
  });
});

describe('trainingMetrics', () => {
  it('takes steps and epochs from the metadata and the loss from the poller', () => {
    expect(trainingMetrics({ ss_steps: '120', ss_num_epochs: '3' }, { step: 119, loss: 0.0871 })).toEqual({ steps: 120, epochs: 3, finalLoss: 0.0871 });
  });

  it('counts the whole run of a resumed job, whose ss_steps holds only its own steps', () => {
    expect(trainingMetrics({ ss_steps: '1', ss_num_epochs: '2' }, { step: 2, totalSteps: 2 })).toMatchObject({ steps: 2, epochs: 2 });
  });

  it('falls back to the poller and leaves out what nobody knows', () => {
    expect(trainingMetrics({}, { step: 40, totalEpochs: 2 })).toEqual({ steps: 40, epochs: 2 });
    expect(trainingMetrics({ ss_steps: 'many' })).toEqual({});
    expect(trainingMetrics({}, { loss: 0.1, lossIsNaN: true })).toEqual({});
  });
});

describe('parseRegistryRecord', () => {
  it('accepts a record as written', () => {
    expect(parseRegistryRecord(JSON.stringify(RECORD), 'file:///r.json')).toEqual(RECORD);
  });

  it('names the record and the bad field', () => {
    expect(() => parseRegistryRecord('{"name":', 'file:///r.json')).toThrow(/^registry record file:\/\/\/r\.json is not valid JSON: /);
    expect(() => parseRegistryRecord(JSON.stringify({ ...RECORD, sha256: 'xyz' }), 'file:///r.json')).toThrow(
      'registry record file:///r.json is invalid: record.sha256: must be 64 lower-case hex digits',
    );
    const { rank: _rank, ...withoutRank } = RECORD;
    expect(() => parseRegistryRecord(JSON.stringify(withoutRank), 'file:///r.json')).toThrow(/record\.rank: /);
  });
});

describe('archive entry rules', () => {
  it.each([
    ['/etc/passwd', 'File', 'an absolute path'],
    ['C:\\Windows\\x.safetensors', 'File', 'an absolute path'],
    ['../outside.safetensors', 'File', 'a ".." path component'],
    ['a/../../outside', 'File', 'a ".." path component'],
    ['a\\..\\..\\outside', 'File', 'a ".." path component'],
    ['link.safetensors', 'SymbolicLink', 'a symbolic link'],
    ['hard.safetensors', 'Link', 'a hard link'],
    ['fifo', 'FIFO', 'a FIFO entry (only files and folders are allowed)'],
  ])('%s (%s) is refused as %s', (entryPath, type, reason) => {
    expect(unsafeEntryReason(entryPath, type)).toBe(reason);
  });

  it.each([
    ['cat.safetensors', 'File'],
    ['./cat.safetensors', 'File'],
    ['logs/', 'Directory'],
    ['a..b.safetensors', 'File'],
  ])('%s (%s) is fine', (entryPath, type) => {
    expect(unsafeEntryReason(entryPath, type)).toBeUndefined();
  });

  it('knows which entries sit at the archive root', () => {
    expect(rootFileName('cat.safetensors')).toBe('cat.safetensors');
    expect(rootFileName('./cat.safetensors')).toBe('cat.safetensors');
    expect(rootFileName('logs/cat.safetensors')).toBeUndefined();
  });
});

describe('modelPackageVersionRequest', () => {
  it('maps a record to a version in its name\'s group, pointing at the S3 object', () => {
    const request = modelPackageVersionRequest('lora', 'cat-style', { ...RECORD, name: 'cat-style-v2' });
    expect(request.groupName).toBe('lora-cat-style');
    expect(request.properties).toMatchObject({
      LoraName: 'cat-style-v2',
      LoraUri: RECORD.uri,
      Sha256: RECORD.sha256,
      AutoV2: RECORD.autoV2,
      BaseModel: 'sdxl',
      TriggerWord: 'ohwx cat',
      RunId: RECORD.runId,
      Rank: '16',
    });
    expect(request.description).toContain(RECORD.uri);
    expect(request.clientToken).toMatch(/^[0-9a-f]{36}$/);
    expect(modelPackageVersionRequest('lora', 'cat-style', RECORD).clientToken).toBe(request.clientToken);
    expect(modelPackageVersionRequest('lora', 'cat-style', { ...RECORD, sha256: '01'.repeat(32) }).clientToken).not.toBe(request.clientToken);
  });

  it('keeps a value SageMaker would refuse out of the properties but in the description', () => {
    const request = modelPackageVersionRequest('lora', 'cat-style', { ...RECORD, triggerWord: 'cat, (masterpiece)' });
    expect(request.properties.TriggerWord).toBeUndefined();
    expect(request.description).toContain('trigger word "cat, (masterpiece)"');
  });

  it('validates the group prefix', () => {
    expect(MODEL_PACKAGE_GROUP_PREFIX.safeParse('team-a-lora').success).toBe(true);
    expect(MODEL_PACKAGE_GROUP_PREFIX.safeParse('bad_prefix').error?.issues[0].message).toMatch(/letters, digits and "-"/);
    expect(MODEL_PACKAGE_GROUP_PREFIX.safeParse('x'.repeat(23)).error?.issues[0].message).toMatch(/at most 22 characters/);
  });
});
