import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalTrainer } from '../../adapters/trainer/local';
import type { TrainingJobSpec } from '../../adapters/trainer/types';

describe('LocalTrainer.launch input checks', () => {
  let jobsDir: string;
  beforeEach(async () => {
    jobsDir = await fs.mkdtemp(path.join(os.tmpdir(), 'local-trainer-unit-'));
  });
  afterEach(async () => {
    await fs.rm(jobsDir, { recursive: true, force: true });
  });

  const spec = (overrides: Partial<TrainingJobSpec> = {}): TrainingJobSpec => ({
    jobName: 'job-1',
    runId: 'run-1',
    datasetUri: 'file:///data/ds',
    family: 'sdxl',
    checkpoint: 'sdxl.safetensors',
    outputName: 'demo',
    kohyaConfig: {},
    ...overrides,
  });

  it('refuses to run sd-scripts without a configured command, naming the variable', async () => {
    const trainer = new LocalTrainer({ jobsDir, command: { sd15: ['accelerate', 'launch', 'train_network.py'] } });
    await expect(trainer.launch(spec())).rejects.toThrow(
      /^the local trainer command for sdxl is not configured: set LORA_KOHYA_COMMAND_SDXL/,
    );
    await expect(fs.readdir(jobsDir)).resolves.toEqual([]);
  });

  it('names a dataset URI it cannot read', async () => {
    const trainer = new LocalTrainer({ jobsDir });
    await expect(trainer.launch(spec({ dryRun: true, datasetUri: 's3://bucket/ds/' }))).rejects.toThrow(
      'datasetUri: the local trainer reads datasets from this host\'s disk and needs a file:// URI, got "s3://bucket/ds/"',
    );
  });

  it('names a job name that is not a safe folder name', async () => {
    const trainer = new LocalTrainer({ jobsDir });
    await expect(trainer.launch(spec({ dryRun: true, jobName: '../escape' }))).rejects.toThrow(/^jobName: "\.\.\/escape" must be/);
  });

  it('names a kohya config value TOML cannot carry faithfully', async () => {
    const trainer = new LocalTrainer({ jobsDir });
    await expect(trainer.launch(spec({ dryRun: true, kohyaConfig: { learning_rate: NaN } }))).rejects.toThrow(
      'kohyaConfig.learning_rate: must be a string, boolean or finite number, got NaN',
    );
  });

  it('describes a job whose supervisor has not written a status yet as Starting, and a long-silent one as Failed', async () => {
    const trainer = new LocalTrainer({ jobsDir });
    const writeJob = async (jobName: string, createdAt: Date) => {
      await fs.mkdir(path.join(jobsDir, jobName));
      const job = { jobName, runId: 'r', family: 'sd15', command: ['x'], env: {}, trainDataDir: '/d', outputDir: '/o', outputName: 'demo', createdAt };
      await fs.writeFile(path.join(jobsDir, jobName, 'job.json'), JSON.stringify(job));
    };
    await writeJob('fresh', new Date());
    await expect(trainer.describe({ backend: 'local', jobName: 'fresh' })).resolves.toEqual({ status: 'InProgress', secondaryStatus: 'Starting' });
    await writeJob('stale', new Date(Date.now() - 10 * 60_000));
    const stale = await trainer.describe({ backend: 'local', jobName: 'stale' });
    expect(stale).toMatchObject({ status: 'Failed', secondaryStatus: 'Failed' });
    expect(stale.failureReason).toMatch(/^the local trainer's supervisor never started: no .*\/stale\/status\.json/);
    // Nothing runs for it, so stopping returns its state at once.
    await expect(trainer.stop({ backend: 'local', jobName: 'stale' })).resolves.toMatchObject({ status: 'Failed' });
    // A launch adopts it rather than starting a second supervisor.
    await expect(trainer.launch(spec({ jobName: 'fresh', dryRun: true }))).resolves.toEqual({ backend: 'local', jobName: 'fresh', adopted: true });
  });

  it('describes an unknown job as an error and stops it as a no-op', async () => {
    const trainer = new LocalTrainer({ jobsDir });
    await expect(trainer.describe({ backend: 'local', jobName: 'nope' })).rejects.toThrow(/^no local training job "nope": .*job\.json does not exist$/);
    await expect(trainer.stop({ backend: 'local', jobName: 'nope' })).resolves.toBeUndefined();
  });
});
