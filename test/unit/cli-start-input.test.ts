import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { TrainingRunInput } from '../../lib/pipeline/input';
import { buildStartInput, isLocalPath, localDatasetNote, readInputFile, type StartFlags } from '../../client/start-input';

const CWD = '/home/ana/loras';
const minimal: StartFlags = { dataset: 'datasets/cat', name: 'cat-v1' };

describe('buildStartInput', () => {
  it('resolves a local dataset against the working directory and fills the defaults from the run schema', () => {
    const input = buildStartInput(minimal, undefined, CWD);
    expect(input.runName).toBe('cat-v1');
    expect(input.dataset).toBe('/home/ana/loras/datasets/cat');
    // Defaults have one source, the schema: the CLI adds nothing of its own.
    expect(input).toEqual(TrainingRunInput.parse({ runName: 'cat-v1', dataset: '/home/ana/loras/datasets/cat' }));
  });

  it('leaves dataset URIs alone', () => {
    expect(buildStartInput({ ...minimal, dataset: 's3://bucket/cat' }, undefined, CWD).dataset).toBe('s3://bucket/cat');
    expect(buildStartInput({ ...minimal, dataset: 'file:///data/cat' }, undefined, CWD).dataset).toBe('file:///data/cat');
  });

  it('maps every flag to its field, numbers parsed', () => {
    const input = buildStartInput(
      {
        ...minimal,
        base: 'sdxl',
        checkpoint: '/models/sdxl.safetensors',
        repeats: '4',
        concept: 'cat',
        triggerWord: 'ohwx',
        review: 'always',
        reviewTimeout: '12h',
        dryRun: true,
        store: 'file:///srv/lora',
        epochs: '3',
        dim: '16',
        alpha: '8.5',
        pollInterval: '5s',
      },
      undefined,
      CWD,
    );
    expect(input).toMatchObject({
      baseModel: { family: 'sdxl', checkpoint: '/models/sdxl.safetensors' },
      repeats: 4,
      concept: 'cat',
      triggerWord: 'ohwx',
      review: { policy: 'always', timeout: '12h' },
      trainer: { kind: 'local', dryRun: true },
      store: 'file:///srv/lora',
      training: { epochs: 3, networkDim: 16, networkAlpha: 8.5 },
      pollInterval: '5s',
    });
  });

  it('names the flag when a number is not a number', () => {
    expect(() => buildStartInput({ ...minimal, repeats: 'ten' }, undefined, CWD)).toThrow('--repeats: must be a number, got "ten"');
    expect(() => buildStartInput({ ...minimal, dim: '' }, undefined, CWD)).toThrow('--dim: must be a number, got ""');
  });

  it('names the flag, not the field, when validation fails', () => {
    expect(() => buildStartInput({ ...minimal, repeats: '0' }, undefined, CWD)).toThrow(/^--repeats: /);
    expect(() => buildStartInput({ ...minimal, epochs: '1.5' }, undefined, CWD)).toThrow(/^--epochs: /);
    expect(() => buildStartInput({ ...minimal, name: 'Cat V1' }, undefined, CWD)).toThrow(
      '--name: must be 1-40 characters of lower-case letters, digits and "-"',
    );
    expect(() => buildStartInput({ ...minimal, reviewTimeout: 'a week' }, undefined, CWD)).toThrow(
      '--review-timeout: must look like 30s, 15m, 2h or 7d',
    );
  });

  it('reports every bad flag in one line', () => {
    let message = '';
    try {
      buildStartInput({ ...minimal, repeats: '0', pollInterval: 'often' }, undefined, CWD);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/--repeats: .*; --poll-interval: must look like/);
    expect(message).not.toContain('\n');
  });

  it('says which required flags are missing', () => {
    expect(() => buildStartInput({}, undefined, CWD)).toThrow('--dataset and --name are required (as flags or in the --input file)');
    expect(() => buildStartInput({ name: 'cat' }, undefined, CWD)).toThrow('--dataset is required');
  });

  describe('trainer', () => {
    const sagemaker: StartFlags = {
      ...minimal,
      dataset: 's3://bucket/cat',
      sagemakerImage: '123456789012.dkr.ecr.us-east-1.amazonaws.com/kohya:latest',
      sagemakerRole: 'arn:aws:iam::123456789012:role/SageMakerRole',
    };

    it('is implied by the SageMaker flags', () => {
      expect(buildStartInput(sagemaker, undefined, CWD).trainer).toEqual({
        kind: 'sagemaker',
        imageUri: sagemaker.sagemakerImage,
        roleArn: sagemaker.sagemakerRole,
        instanceType: 'ml.g5.2xlarge',
        volumeSizeGb: 100,
        maxRuntimeSeconds: 86400,
        spot: false,
      });
    });

    it('names the flag of a missing value, not the input field', () => {
      expect(() => buildStartInput({ ...sagemaker, sagemakerRole: undefined }, undefined, CWD)).toThrow(
        /^--sagemaker-role \(or trainer\.roleArn in --input\): /,
      );
    });

    it('names the SageMaker flag that is wrong', () => {
      expect(() => buildStartInput({ ...sagemaker, sagemakerRole: 'SageMakerRole' }, undefined, CWD)).toThrow(
        '--sagemaker-role: must be an IAM role ARN',
      );
      expect(() => buildStartInput({ ...sagemaker, store: 'file:///srv/lora' }, undefined, CWD)).toThrow(
        /^--store: must be an s3:\/\/ URI when trainer.kind is "sagemaker"/,
      );
    });

    it('refuses flags of the other trainer, naming them', () => {
      expect(() => buildStartInput({ ...sagemaker, trainer: 'local' }, undefined, CWD)).toThrow(
        '--sagemaker-image, --sagemaker-role: only apply with --trainer sagemaker',
      );
      expect(() => buildStartInput({ ...sagemaker, dryRun: true }, undefined, CWD)).toThrow('--dry-run: only applies with --trainer local');
    });

    it('drops the file\'s options of another trainer kind when --trainer switches it', () => {
      const file = { trainer: { kind: 'sagemaker', imageUri: 'img', roleArn: 'arn:aws:iam::123456789012:role/R' } };
      expect(buildStartInput({ ...minimal, trainer: 'local' }, file, CWD).trainer).toEqual({ kind: 'local', dryRun: false });
    });
  });

  describe('with an input file', () => {
    const file = { runName: 'from-file', dataset: 's3://bucket/x', training: { epochs: 5 }, review: { policy: 'always' } };

    it('lets flags override fields and merges nested objects', () => {
      const input = buildStartInput({ name: 'from-flag', dim: '64' }, file, CWD);
      expect(input.runName).toBe('from-flag');
      expect(input.dataset).toBe('s3://bucket/x');
      expect(input.training).toEqual({ epochs: 5, networkDim: 64, networkAlpha: 16, kohya: {}, device: 'gpu' });
      expect(input.review).toEqual({ policy: 'always', timeout: '7d' });
      expect(buildStartInput({ name: 'cpu', device: 'cpu' }, file, CWD).training.device).toBe('cpu');
      expect(() => buildStartInput({ name: 'tpu', device: 'tpu' }, file, CWD)).toThrow(/^--device: /);
    });

    it('does not modify the object it was given', () => {
      buildStartInput({ dim: '64' }, file, CWD);
      expect(file.training).toEqual({ epochs: 5 });
    });

    it('names file fields as input.<field>, flags as flags', () => {
      expect(() => buildStartInput({}, { ...file, repeats: 0 }, CWD)).toThrow(/^input\.repeats: /);
      expect(() => buildStartInput({}, { ...file, colour: 'blue' }, CWD)).toThrow(/^input: Unrecognized key: "colour"/);
    });

    it('must hold an object', () => {
      expect(() => buildStartInput(minimal, ['a'], CWD)).toThrow('--input: must hold an object of run fields, got an array');
      expect(() => buildStartInput(minimal, 'x', CWD)).toThrow('--input: must hold an object of run fields, got string');
    });
  });
});

describe('readInputFile', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lora-cli-input-'));
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it('reads JSON', () => {
    expect(readInputFile(write('run.json', '{"runName":"cat","repeats":3}'))).toEqual({ runName: 'cat', repeats: 3 });
  });

  it('reads TOML when the name ends in .toml', () => {
    const file = write('run.toml', 'runName = "cat"\nrepeats = 3\n[training]\nepochs = 4\n');
    expect(readInputFile(file)).toEqual({ runName: 'cat', repeats: 3, training: { epochs: 4 } });
  });

  it('says which file is broken and how, in one line', () => {
    const file = write('bad.json', '{"runName": ');
    expect(() => readInputFile(file)).toThrow(new RegExp(`^--input: ${file} is not valid JSON \\(`));
    expect(() => readInputFile(write('bad.toml', 'runName = '))).toThrow(/is not valid TOML \([^\n]*\)$/);
    expect(() => readInputFile(path.join(dir, 'missing.json'))).toThrow(/^--input: cannot read .*missing\.json \(ENOENT\)$/);
  });
});

describe('local datasets', () => {
  it('are paths without a URI scheme', () => {
    expect(isLocalPath('/data/cat')).toBe(true);
    expect(isLocalPath('datasets/cat')).toBe(true);
    expect(isLocalPath('s3://bucket/cat')).toBe(false);
    expect(isLocalPath('file:///data/cat')).toBe(false);
  });

  it('come with a note that the worker reads them', () => {
    expect(localDatasetNote('/data/cat')).toMatch(/^dataset \/data\/cat is a path on this machine: the worker reads it/);
    expect(localDatasetNote('s3://bucket/cat')).toBeUndefined();
  });
});
