import { defaultPayloadConverter } from '@temporalio/common';
import { isActivityProgress, pendingActivitiesOf, type RawPendingActivity } from '../../client/heartbeat';
import type { ActivityProgress } from '../../lib/pipeline/status';

function pending(details: unknown[], extra: Partial<RawPendingActivity> = {}): RawPendingActivity {
  return {
    activityType: { name: 'preprocess' },
    attempt: 1,
    heartbeatDetails: { payloads: details.map((detail) => defaultPayloadConverter.toPayload(detail)) },
    ...extra,
  };
}

describe('pendingActivitiesOf', () => {
  it('decodes the last heartbeat into typed progress', () => {
    const progress: ActivityProgress = {
      done: 240,
      total: 2000,
      unit: 'steps',
      training: { status: 'InProgress', progress: { step: 240, totalSteps: 2000, loss: 0.0871 } },
    };
    expect(pendingActivitiesOf([pending([progress], { activityType: { name: 'pollTraining' } })], defaultPayloadConverter)).toEqual([
      { type: 'pollTraining', attempt: 1, lastFailure: undefined, progress },
    ]);
  });

  it('keeps the attempt and the last failure of a retried activity', () => {
    const [activity] = pendingActivitiesOf(
      [pending([{ done: 1, total: 5, unit: 'bytes' }], { attempt: 3, lastFailure: { message: 'SlowDown' } })],
      defaultPayloadConverter,
    );
    expect(activity).toMatchObject({ type: 'preprocess', attempt: 3, lastFailure: 'SlowDown' });
  });

  it('ignores heartbeats that are not progress, or cannot be decoded', () => {
    const garbage = { metadata: { encoding: Buffer.from('binary/encrypted') }, data: Buffer.from('xx') };
    const activities = pendingActivitiesOf(
      [
        pending([]),
        pending(['resume token']),
        pending([{ done: 'many', total: 5, unit: 'images' }]),
        { activityType: { name: 'upload' }, heartbeatDetails: { payloads: [garbage] } },
      ],
      defaultPayloadConverter,
    );
    expect(activities.map((activity) => activity.progress)).toEqual([undefined, undefined, undefined, undefined]);
  });

  it('copes with a run that has no pending activities', () => {
    expect(pendingActivitiesOf(undefined, defaultPayloadConverter)).toEqual([]);
    expect(pendingActivitiesOf(null, defaultPayloadConverter)).toEqual([]);
  });
});

describe('isActivityProgress', () => {
  it('accepts the three units only', () => {
    expect(isActivityProgress({ done: 0, total: 0, unit: 'images' })).toBe(true);
    expect(isActivityProgress({ done: 0, total: 0, unit: 'epochs' })).toBe(false);
    expect(isActivityProgress({ done: Number.NaN, total: 0, unit: 'steps' })).toBe(false);
    expect(isActivityProgress(null)).toBe(false);
  });
});
