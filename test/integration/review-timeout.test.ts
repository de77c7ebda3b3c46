/**
 * The default 7-day review timeout, on Temporal's time-skipping test server: a week passes in
 * seconds. The worker is the real one (a three-image dataset is preprocessed and checked in
 * well under a second), so the test follows the pipeline as it is, not a copy of its activities.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import type { RunOutcome } from '../../lib/pipeline/status';
import { installedTools } from '../../scripts/tools';
import { reviewStateQuery } from '../../workflows/messages';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';
import { startReviewRig, waitForReview } from '../support/review';

const DAY_MS = 24 * 3600 * 1000;

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: installedTools().temporalTestServer } },
  });
  // The test server knows no search attributes until told (the dev server takes them as flags).
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(SEARCH_ATTRIBUTES.map((key) => [key.name, temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD])),
  });
});

afterAll(async () => {
  await env?.teardown();
});

test('a review nobody answers ends the run after the default 7 days, with a clear outcome', async () => {
  const rig = await startReviewRig(env, 'review-timeout-test');
  try {
    const handle = await rig.start('weekly');
    // Time skips only while the client waits for a result: first let the run open its review.
    const opened = await waitForReview(handle);
    expect(Date.parse(opened.deadline!) - Date.parse(opened.openedAt!)).toBe(7 * DAY_MS);

    await env.sleep(7 * DAY_MS - 60_000);
    expect(await handle.query(reviewStateQuery)).toMatchObject({ phase: 'awaiting' });

    const outcome: RunOutcome = await handle.result();
    expect(outcome.stage).toBe('review_timed_out');
    expect(outcome.review).toMatchObject({ decision: 'timed_out', captions: { error: 1 }, edits: { batches: 0, captions: 0, editors: [] } });
    // The timer fires at the deadline (give or take the workflow task that handles it), not before.
    const waited = Date.parse(outcome.review!.at) - Date.parse(opened.openedAt!);
    expect(waited).toBeGreaterThanOrEqual(7 * DAY_MS);
    expect(waited).toBeLessThan(7 * DAY_MS + 60_000);
    expect((await handle.describe()).memo?.review).toEqual(outcome.review);
    // Nothing was uploaded or launched.
    expect(outcome.dataset).toBeUndefined();
    expect(outcome.job).toBeUndefined();
    await expect(fs.access(path.join(rig.tmp, 'store', 'datasets'))).rejects.toThrow();
  } finally {
    await rig.stop();
  }
});
