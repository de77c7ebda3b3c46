import { NamespaceNotFoundError, ServiceError, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { describeError, exitCodeOf, FollowInterrupted } from '../../client/errors';

describe('describeError', () => {
  it('tells Temporal errors in the run\'s terms', () => {
    expect(describeError(new WorkflowNotFoundError('workflow not found for ID: x', 'x', undefined))).toBe('no run with id x (lora list shows the runs)');
    expect(describeError(new WorkflowExecutionAlreadyStartedError('started', 'lora-cat', 'loraTrainingWorkflow'))).toBe(
      'a run with id lora-cat already exists; choose another --id',
    );
    expect(describeError(new NamespaceNotFoundError('prod'))).toBe(
      'namespace "prod" does not exist on this Temporal server (check TEMPORAL_NAMESPACE)',
    );
  });

  it('recognises a lost connection by its gRPC code', () => {
    const unavailable = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14, details: '', metadata: {} });
    expect(describeError(new ServiceError('Failed to describe', { cause: unavailable }))).toBe(
      'lost the connection to Temporal (is "npm run stack" running?)',
    );
  });

  it('keeps only the first line of anything else', () => {
    expect(describeError(new Error('first\n    at stack (x.js:1:1)'))).toBe('first');
    expect(describeError('plain')).toBe('plain');
  });
});

describe('exitCodeOf', () => {
  it('is 130 for Ctrl-C while following, 1 otherwise', () => {
    expect(exitCodeOf(new FollowInterrupted('x'))).toBe(130);
    expect(exitCodeOf(new Error('x'))).toBe(1);
  });
});
