/** What the Web UI shows of a run: the start summary and the workflow's current details. */
import { runDetails, runSummary } from '../../lib/pipeline/details';
import type { RunStatus } from '../../lib/pipeline/status';

describe('runSummary', () => {
  it('names the run, the base model, the trainer and the dataset on one line', () => {
    expect(runSummary({ runName: 'cat', dataset: '/data/cat', baseModel: { family: 'sdxl' }, trainer: { kind: 'sagemaker' } })).toBe(
      'LoRA "cat" · sdxl · sagemaker trainer · from /data/cat',
    );
  });

  it('fills in the defaults the workflow would apply and labels a dry run', () => {
    expect(runSummary({ runName: 'demo', dataset: 's3://b/demo' })).toBe('LoRA "demo" · sd15 · local trainer · from s3://b/demo');
    expect(runSummary({ runName: 'demo', dataset: 'd', trainer: { kind: 'local', dryRun: true } })).toContain('local trainer (dry run)');
  });

  it('keeps a dataset path with line breaks on one line', () => {
    expect(runSummary({ runName: 'x', dataset: '/data/odd\nname' })).toBe('LoRA "x" · sd15 · local trainer · from /data/odd name');
  });
});

describe('runDetails', () => {
  const started: RunStatus = { runName: 'cat', stage: 'preprocessing', baseModel: 'sd15' };

  it('shows only the stage before anything is known', () => {
    expect(runDetails(started)).toBe('**Stage:** preprocessing');
  });

  it('adds a line per stage reached, as markdown line breaks', () => {
    const details = runDetails({
      ...started,
      stage: 'awaiting_review',
      images: { found: 25, kept: 24, skipped: 1 },
      captions: { error: 1, warning: 2, info: 0, reportKey: 'runs/x/report.json' },
    });
    expect(details.split('  \n')).toEqual([
      '**Stage:** awaiting review',
      '**Images:** 24 kept, 1 skipped of 25 found',
      '**Captions:** 1 error, 2 warnings, 0 info',
    ]);
  });

  it('describes a completed run from review to LoRA', () => {
    const details = runDetails({
      ...started,
      stage: 'completed',
      review: { decision: 'approved', reviewer: 'ada', at: '2026-11-25T00:00:00Z', force: true, edits: { batches: 1, captions: 3, editors: ['ada'] }, comment: 'fine\nby me' },
      dataset: { uri: 's3://b/datasets/cat/abc', files: 48, bytes: 12_345_678, manifestSha256: 'f'.repeat(64) },
      job: { backend: 'sagemaker', jobName: 'lora-cat-1' },
      training: { status: 'Completed', secondaryStatus: 'Completed', warnings: ['loss was NaN at step 12'] },
      lora: { name: 'cat', uri: 's3://b/models/Lora/cat.safetensors', sha256: 'abcdef0123456789'.repeat(4), autoV2: 'abcdef0123', sizeBytes: 9_500_000, recordUri: 's3://b/registry/cat.json' },
    }).split('  \n');
    expect(details).toEqual([
      '**Stage:** completed',
      '**Review:** approved by ada despite caption errors, 3 captions edited: "fine by me"',
      '**Dataset:** s3://b/datasets/cat/abc (48 files, 12.3 MB)',
      '**Training job:** lora-cat-1 on sagemaker · Completed / Completed',
      '**Training warning:** loss was NaN at step 12',
      '**LoRA:** cat at s3://b/models/Lora/cat.safetensors (sha256 abcdef012345…, 9.5 MB)',
    ]);
  });

  it('says why a run failed, and how a review ended without a decision', () => {
    const details = runDetails({ ...started, stage: 'failed', error: 'dataset not found: /nope\n(more)' });
    expect(details).toContain('**Error:** dataset not found: /nope (more)');
    expect(runDetails({ ...started, stage: 'review_timed_out', review: { decision: 'timed_out', at: 'x' } })).toContain('**Review:** timed out without a decision');
    expect(runDetails({ ...started, review: { decision: 'not_needed', at: 'x' } })).toContain('**Review:** not needed');
  });
});
