import { TypedSearchAttributes } from '@temporalio/common';
import { isFinished, runListQuery, statusFromSearchAttributes } from '../../client/runs';
import { LORA_BASE_MODEL, LORA_RUN_NAME, LORA_STAGE } from '../../workflows/search-attributes';

const attributes = (stage?: string) =>
  new TypedSearchAttributes([
    ...(stage ? [{ key: LORA_STAGE, value: stage }] : []),
    { key: LORA_RUN_NAME, value: 'cat' },
    { key: LORA_BASE_MODEL, value: 'sdxl' },
  ]);

describe('runListQuery', () => {
  it('selects our workflow type, and a stage when asked', () => {
    expect(runListQuery()).toBe('WorkflowType = "loraTrainingWorkflow"');
    expect(runListQuery('training')).toBe('WorkflowType = "loraTrainingWorkflow" AND LoraStage = "training"');
  });
});

describe('isFinished', () => {
  const status = { runName: 'cat', baseModel: 'sd15' };
  it('ends on a terminal stage or a closed execution', () => {
    expect(isFinished({ execution: 'RUNNING', status: { ...status, stage: 'training' } })).toBe(false);
    expect(isFinished({ execution: 'RUNNING', status: { ...status, stage: 'review_timed_out' } })).toBe(true);
    // Terminated from the Web UI: the last queried stage never becomes terminal.
    expect(isFinished({ execution: 'TERMINATED', status: { ...status, stage: 'training' } })).toBe(true);
  });
});

describe('statusFromSearchAttributes', () => {
  it('uses the stage the workflow last recorded while it runs', () => {
    expect(statusFromSearchAttributes('id', 'RUNNING', attributes('awaiting_review'))).toEqual({
      runName: 'cat',
      stage: 'awaiting_review',
      baseModel: 'sdxl',
    });
  });

  it('keeps a recorded terminal stage of a closed run', () => {
    expect(statusFromSearchAttributes('id', 'COMPLETED', attributes('rejected')).stage).toBe('rejected');
  });

  it('derives the stage from how a run ended when the record stopped midway', () => {
    expect(statusFromSearchAttributes('id', 'TERMINATED', attributes('training')).stage).toBe('failed');
    expect(statusFromSearchAttributes('id', 'CANCELLED', attributes('training')).stage).toBe('cancelled');
    expect(statusFromSearchAttributes('id', 'COMPLETED', attributes()).stage).toBe('completed');
  });

  it('falls back to the workflow id without attributes', () => {
    expect(statusFromSearchAttributes('lora-x', 'RUNNING', new TypedSearchAttributes())).toEqual({
      runName: 'lora-x',
      stage: 'preprocessing',
      baseModel: 'unknown',
    });
  });
});
