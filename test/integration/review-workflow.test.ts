/**
 * Human review on a real Temporal dev server with a real worker (file:// stores, dry-run trainer):
 * hostile editCaptions / approve payloads are refused by the validators and leave no trace in
 * history; edits are written through the work store and re-checked; decisions are recorded in
 * the result and the memo; the `lora review` commands and the plain `temporal` CLI do the same.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { FileStore } from '../../adapters/store/file';
import { DatasetManifest } from '../../lib/pipeline/manifest';
import { MAX_CAPTION_BYTES, MAX_EDITS_PER_UPDATE, type ReviewState } from '../../lib/pipeline/review';
import type { RunOutcome } from '../../lib/pipeline/status';
import { installedTools } from '../../scripts/tools';
import { approveRun, innermostMessage } from '../../client/review';
import { approveSignal, approveUpdate, editCaptionsUpdate, rejectUpdate, reviewStateQuery } from '../../workflows/messages';
import { cancelAfterUpload, historyText, startReviewRig, waitForReview, type ReviewRig } from '../support/review';
import { recordHistory } from '../support/replay-fixtures';
import { startTemporal } from '../support/temporal';
import { CLI, run, runLora, type Ran } from '../support/cli';

/** Put into every hostile payload: it must never show up in history. */
const SENTINEL = 'HOSTILE-7f3a';
const MISSING = 'example-03.jpg';
const FIXED_CAPTION = 'lrdemo, a teal triangle drawn on a plain background';

let env: TestWorkflowEnvironment;
let rig: ReviewRig;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npx tsc -p tsconfig.build.json" first`);
  env = await startTemporal();
  rig = await startReviewRig(env, 'review-workflow-test');
});

afterAll(async () => {
  await rig?.stop();
  await env?.teardown();
});

/** The reason an update was refused or failed with, as the workflow or the activity put it. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error('expected the update to be refused, but it was accepted');
  return innermostMessage(err);
}

function updateEvents(history: Awaited<ReturnType<WorkflowHandle['fetchHistory']>>) {
  return (history.events ?? []).filter(
    (event) =>
      event.workflowExecutionUpdateAdmittedEventAttributes ||
      event.workflowExecutionUpdateAcceptedEventAttributes ||
      event.workflowExecutionUpdateCompletedEventAttributes,
  );
}

async function manifestOf(state: ReviewState): Promise<DatasetManifest> {
  const store = new FileStore(fileURLToPath(rig.workStoreUri));
  return DatasetManifest.parse(JSON.parse((await store.get(state.manifestKey!)).toString('utf8')));
}

const edit = (image: string, caption: string) => ({ reviewer: `mallory ${SENTINEL}`, edits: [{ image, caption }] });

const HOSTILE_EDITS: [string, unknown, RegExp][] = [
  ['a path up the tree', edit(`../../${SENTINEL}.jpg`, 'x'), /edits\.0\.image: must be a file name, not a path/],
  ['a sub-folder', edit(`sub/${SENTINEL}.jpg`, 'x'), /not a path/],
  ['a backslash path', edit(`..\\${SENTINEL}.jpg`, 'x'), /not a path/],
  ['".." as a name', { reviewer: `mallory ${SENTINEL}`, edits: [{ image: '..', caption: 'x' }] }, /edits\.0\.image: must not be "\." or "\.\."/],
  ['a control character in a name', edit(`${SENTINEL}\u0007.jpg`, 'x'), /image: contains the control character U\+0007/],
  ['a file that is not an image', edit(`${SENTINEL}.txt`, 'x'), /image: must name an image/],
  ['a path as folder', { reviewer: 'mallory', edits: [{ image: 'a.jpg', folder: `../${SENTINEL}`, caption: 'x' }] }, /edits\.0\.folder: must be a file name, not a path/],
  ['a folder not in kohya form', { reviewer: 'mallory', edits: [{ image: 'a.jpg', folder: SENTINEL, caption: 'x' }] }, /edits\.0\.folder: must be a kohya training folder name/],
  ['a newline in a caption', edit(MISSING, `one\ntwo ${SENTINEL}`), /edits\.0\.caption: contains the control character U\+000A/],
  ['a NUL in a caption', edit(MISSING, `a\u0000${SENTINEL}`), /U\+0000/],
  ['a byte-order mark in a caption', edit(MISSING, `a\ufeff${SENTINEL}`), /U\+FEFF/],
  ['a lone surrogate in a caption', edit(MISSING, `a\ud800${SENTINEL}`), /lone UTF-16 surrogate/],
  ['a caption over the size limit', edit(MISSING, `${SENTINEL} ${'x'.repeat(MAX_CAPTION_BYTES)}`), /caption: is \d+ bytes of UTF-8; captions have at most 1024/],
  ['an empty caption', edit(MISSING, '   '), /caption: must not be empty/],
  [
    'too many edits at once',
    { reviewer: SENTINEL, edits: Array.from({ length: MAX_EDITS_PER_UPDATE + 1 }, (_, i) => ({ image: `${SENTINEL}-${i}.jpg`, caption: 'x' })) },
    /editCaptions\.edits: must hold at most 100 edits/,
  ],
  [
    'the same image twice',
    { reviewer: 'mallory', edits: [{ image: MISSING, caption: SENTINEL }, { image: MISSING, caption: 'x' }] },
    /edits\.1\.image: edits "example-03\.jpg" a second time/,
  ],
  ['an unexpected field', { ...edit(MISSING, 'x'), path: `/etc/${SENTINEL}` }, /Unrecognized key: "path"/],
  ['no reviewer', { edits: [{ image: MISSING, caption: SENTINEL }] }, /editCaptions\.reviewer/],
  ['not an object', SENTINEL, /editCaptions: Invalid input: expected object/],
];

test('hostile editCaptions and approve payloads are refused by the validators and never reach history', async () => {
  const handle = await rig.start('hostile');
  const opened = await waitForReview(handle);
  expect(opened.captions).toMatchObject({ error: 1 });

  for (const [what, payload, expected] of HOSTILE_EDITS) {
    const reason = await refusal(handle.executeUpdate(editCaptionsUpdate, { args: [payload as never] }));
    expect({ what, reason }).toEqual({ what, reason: expect.stringMatching(expected) });
  }
  const hostileDecisions: [typeof approveUpdate | typeof rejectUpdate, unknown, RegExp][] = [
    [approveUpdate, { reviewer: SENTINEL }, /1 caption error remains/],
    [approveUpdate, { reviewer: SENTINEL, force: 'yes' }, /approve\.force: Invalid input: expected boolean/],
    [approveUpdate, { reviewer: `${SENTINEL}\n` + 'x'.repeat(300) }, /approve\.reviewer/],
    [rejectUpdate, { reviewer: SENTINEL }, /reject\.reason/],
  ];
  for (const [update, payload, expected] of hostileDecisions) {
    expect(await refusal(handle.executeUpdate(update, { args: [payload as never] }))).toMatch(expected);
  }

  const history = await handle.fetchHistory();
  expect(updateEvents(history)).toEqual([]);
  expect(historyText(history)).not.toContain(SENTINEL);
  const state = await handle.query(reviewStateQuery);
  expect(state).toMatchObject({ phase: 'awaiting', edits: { batches: 0 }, captions: { error: 1 } });
  await handle.terminate('test over');
});

test('a reviewer fixes a caption, the re-check clears the error, approval is recorded in the result and the memo', async () => {
  const handle = await rig.start('fixed');
  const opened = await waitForReview(handle);
  expect(opened).toMatchObject({ phase: 'awaiting', captions: { error: 1 }, workStore: rig.workStoreUri, edits: { batches: 0 } });
  expect(Date.parse(opened.deadline!) - Date.parse(opened.openedAt!)).toBe(7 * 24 * 3600 * 1000);
  const before = await manifestOf(opened);
  expect(before.images.find((image) => image.source === MISSING)?.caption).toBeNull();

  // A plain approve signal cannot be refused: it is ignored (and shown) while errors remain.
  await handle.signal(approveSignal, { reviewer: 'eve' });
  const ignored = await waitForReview(handle, (s) => s.ignoredSignals.length > 0);
  expect(ignored.ignoredSignals).toEqual([expect.objectContaining({ signal: 'approve', reviewer: 'eve', why: expect.stringMatching(/1 caption error remains/) })]);
  expect(ignored.phase).toBe('awaiting');

  // A well-formed name that is not in the run passes the validator; the activity refuses it, writing nothing.
  expect(await refusal(handle.executeUpdate(editCaptionsUpdate, { args: [{ reviewer: 'ada', edits: [{ image: 'nope.jpg', caption: 'x' }] }] }))).toMatch(
    /no processed image named "nope\.jpg" in this run.*nothing was changed/,
  );
  expect(await manifestOf(opened)).toEqual(before);

  const result = await handle.executeUpdate(editCaptionsUpdate, { args: [{ reviewer: 'ada', edits: [{ image: MISSING, caption: FIXED_CAPTION }] }] });
  expect(result).toMatchObject({ written: 1, created: 1, captions: { error: 0 }, edits: { batches: 1, captions: 1, editors: ['ada'] } });
  const after = await manifestOf(opened);
  const captionKey = after.images.find((image) => image.source === MISSING)?.caption;
  expect(captionKey).toBe(`${path.posix.dirname(after.images[2].output)}/example-03.txt`);
  const store = new FileStore(fileURLToPath(rig.workStoreUri));
  expect((await store.get(captionKey!)).toString('utf8')).toBe(FIXED_CAPTION);
  const report = JSON.parse((await store.get(opened.captions!.reportKey)).toString('utf8'));
  expect(report.counts.error).toBe(0);

  const decision = await approveRun(env.client, handle.workflowId, { reviewer: 'ada', comment: 'fixed the missing caption' });
  expect(decision).toMatchObject({ decision: 'approved', reviewer: 'ada', via: 'update', captions: { error: 0 } });
  const moved = await cancelAfterUpload(handle);
  expect(moved.review).toEqual({
    decision: 'approved',
    reviewer: 'ada',
    comment: 'fixed the missing caption',
    via: 'update',
    at: decision.at,
    captions: { error: 0, warning: expect.any(Number), info: expect.any(Number) },
    edits: { batches: 1, captions: 1, editors: ['ada'] },
  });
  expect((await handle.describe()).memo?.review).toEqual(moved.review);
  // The uploaded dataset has the new caption beside its image.
  const uploaded = await fs.readdir(path.join(fileURLToPath(moved.dataset!.uri), '10_fixed'));
  expect(uploaded.filter((file) => file.endsWith('.txt')).sort()).toEqual(['example-01.txt', 'example-02.txt', 'example-03.txt']);

  // History holds the accepted updates (unknown image, edit, approve) and nothing per image beyond the edit itself.
  const history = await handle.fetchHistory();
  expect(updateEvents(history).filter((event) => event.workflowExecutionUpdateAcceptedEventAttributes)).toHaveLength(3);
  await recordHistory(handle, 'review-edit-and-approve', env.address);
});

// ---- the lora CLI -------------------------------------------------------------------------------

function lora(...args: string[]): Promise<Ran> {
  return runLora({ temporalAddress: env.address, workStoreUri: rig.workStoreUri }, ...args);
}

test('lora review show / edit and lora approve: human-readable, --json, edits from a file', async () => {
  const handle = await rig.start('cli');
  await waitForReview(handle);
  const id = handle.workflowId;

  const shown = await lora('review', 'show', id);
  expect(shown.stderr).toBe('');
  expect(shown.status).toBe(0);
  expect(shown.stdout).toMatch(/^captions: +1 error · \d+ warnings? · \d+ info$/m);
  expect(shown.stdout).toMatch(/^ {2}ERROR +missing-caption +example-03\.jpg$/m);
  expect(shown.stdout).toContain(`contact sheet: ${rig.workStoreUri}/runs/${id}/contact-sheet-0001.png\n`);
  expect(shown.stdout).toContain(`approve: lora review approve ${id} --reviewer <name>`);

  const json = JSON.parse((await lora('--json', 'review', 'show', id, '--severity', 'error')).stdout);
  expect(json.state).toMatchObject({ phase: 'awaiting', captions: { error: 1 } });
  expect(json.issues).toMatchObject({ page: 1, total: 1, items: [{ rule: 'missing-caption', file: MISSING }] });

  // The top-level approve goes through the same update: refused while the error remains.
  const refused = await lora('approve', id, '--reviewer', 'ada');
  expect(refused.status).toBe(1);
  expect(refused.stderr).toMatch(/^lora: .*1 caption error remains: fix them \(lora review edit\) or approve with force \(--force, or "force": true\)/);
  expect(refused.stderr.trimEnd().split('\n')).toHaveLength(1);

  const pathLike = await lora('review', 'edit', id, '--reviewer', 'ada', '--image', 'a\\b.jpg', '--caption', 'y');
  expect(pathLike.status).toBe(1);
  expect(pathLike.stderr).toBe('lora: --image: must be a file name, not a path: no "/" or "\\"\n');
  const upTheTree = await lora('review', 'edit', id, '--reviewer', 'ada', '--image', '../x.jpg', '--caption', 'y');
  expect(upTheTree.stderr).toBe('lora: --image (folder part): must not be "." or ".."\n');

  const editsFile = path.join(rig.tmp, 'edits.json');
  await fs.writeFile(editsFile, JSON.stringify([{ image: MISSING, caption: FIXED_CAPTION }]));
  const edited = await lora('review', 'edit', id, '--reviewer', 'ada', '--file', editsFile);
  expect(edited.stderr).toBe('');
  expect(edited.stdout).toMatch(/^rewrote 1 caption \(1 new caption file\)/);
  expect(edited.stdout).toMatch(/^captions now: 0 errors/m);

  const one = JSON.parse((await lora('--json', 'review', 'edit', id, '--reviewer', 'bob', '--image', 'example-01.jpg', '--caption', 'lrdemo, a red circle, bold')).stdout);
  expect(one).toMatchObject({ written: 1, created: 0, captions: { error: 0 }, edits: { batches: 2, captions: 2, editors: ['ada', 'bob'] } });
  // The caption file's name, as "show" lists caption issues, names its image too.
  const byCaption = await lora('--json', 'review', 'edit', id, '--reviewer', 'bob', '--image', 'example-02.txt', '--caption', 'lrdemo, a yellow square');
  expect(byCaption.stderr).toBe('');
  expect(JSON.parse(byCaption.stdout)).toMatchObject({ written: 1, edits: { batches: 3, captions: 3 } });
  const noSuchCaption = await lora('review', 'edit', id, '--reviewer', 'bob', '--image', 'nothing.txt', '--caption', 'x');
  expect(noSuchCaption.stderr).toBe(`lora: --image: no image in run ${id} has the caption nothing.txt ("lora review show ${id}" lists them)\n`);

  // lora review serve: prints its URL, serves the run's review data, stops cleanly on Ctrl-C.
  const served = spawn(process.execPath, [CLI, '--json', 'review', 'serve', id, '--port', '0'], {
    env: { ...process.env, TEMPORAL_ADDRESS: env.address, LORA_WORK_STORE: rig.workStoreUri },
  });
  try {
    const [line] = (await once(served.stdout.setEncoding('utf8'), 'data')) as [string];
    const { url } = JSON.parse(line) as { url: string };
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const data = (await (await fetch(`${url}api/review`)).json()) as { images: { name: string; caption: string | null }[] };
    expect(data.images.map((image) => image.name)).toEqual(['example-01.jpg', 'example-02.jpg', 'example-03.jpg']);
    expect(data.images[2].caption).toBe(FIXED_CAPTION);
    served.kill('SIGINT');
    expect(await once(served, 'exit')).toEqual([0, null]);
  } finally {
    served.kill('SIGKILL');
  }

  const approved = JSON.parse((await lora('--json', 'approve', id, '--reviewer', 'ada', '--comment', 'looks right')).stdout);
  expect(approved).toMatchObject({ workflowId: id, decision: 'approved', reviewer: 'ada', comment: 'looks right', via: 'update' });
  expect(await cancelAfterUpload(handle)).toMatchObject({ review: { edits: { batches: 3, captions: 3, editors: ['ada', 'bob'] } } });
});

test('lora review approve --force passes remaining errors and records it; lora review reject ends the run with nothing uploaded', async () => {
  const forced = await rig.start('forced');
  const rejected = await rig.start('rejected');
  await waitForReview(forced);
  await waitForReview(rejected);

  const approved = await lora('review', 'approve', forced.workflowId, '--reviewer', 'ada', '--force', '--comment', 'the uncaptioned one is fine');
  expect(approved.stderr).toBe('');
  expect(approved.stdout).toContain('approved by ada (forced past caption errors)');
  expect(await cancelAfterUpload(forced)).toMatchObject({ review: { decision: 'approved', force: true, captions: { error: 1 } } });

  const rejectedOut = await lora('review', 'reject', rejected.workflowId, '--reviewer', 'ada', '--reason', 'wrong subject');
  expect(rejectedOut.stdout).toMatch(/rejected by ada at .*: wrong subject; the run ends without training/);
  const rejectedOutcome: RunOutcome = await rejected.result();
  expect(rejectedOutcome).toMatchObject({ stage: 'rejected', review: { decision: 'rejected', reviewer: 'ada', comment: 'wrong subject', via: 'update' } });
  expect(rejectedOutcome.dataset).toBeUndefined();
  expect(rejectedOutcome.job).toBeUndefined();
  await expect(fs.access(path.join(rig.tmp, 'store', 'datasets', 'rejected'))).rejects.toThrow();

  const late = await lora('review', 'edit', rejected.workflowId, '--reviewer', 'ada', '--image', MISSING, '--caption', 'too late');
  expect(late.status).toBe(1);
  expect(late.stderr).toMatch(/already ended \(COMPLETED\); nothing to review/);
});

test('an image in a kohya-layout dataset is edited by folder and name, each a plain name', async () => {
  const handle = await rig.start('kohya', {}, '5_shapes');
  const opened = await waitForReview(handle);
  const id = handle.workflowId;
  const shown = JSON.parse((await lora('--json', 'review', 'show', id)).stdout);
  expect(shown.issues.items).toEqual([expect.objectContaining({ rule: 'missing-caption', file: '5_shapes/example-03.jpg' })]);

  // Without its folder the name matches nothing: the activity refuses it, changing nothing.
  expect(await refusal(handle.executeUpdate(editCaptionsUpdate, { args: [{ reviewer: 'ada', edits: [{ image: 'example-03.jpg', caption: 'x' }] }] }))).toMatch(
    /no processed image named "example-03\.jpg"/,
  );
  // The CLI takes the name as "show" prints it and sends { folder, image }.
  const edited = await lora('--json', 'review', 'edit', id, '--reviewer', 'ada', '--image', '5_shapes/example-03.jpg', '--caption', FIXED_CAPTION);
  expect(edited.stderr).toBe('');
  expect(JSON.parse(edited.stdout)).toMatchObject({ written: 1, created: 1, captions: { error: 0 } });
  const plain = await handle.executeUpdate(editCaptionsUpdate, {
    args: [{ reviewer: 'bob', edits: [{ folder: '5_shapes', image: 'example-01.jpg', caption: 'lrdemo, a red circle, bold' }] }],
  });
  expect(plain).toMatchObject({ written: 1, created: 0, edits: { batches: 2, editors: ['ada', 'bob'] } });

  const manifest = await manifestOf(opened);
  const fixed = manifest.images.find((image) => image.source === '5_shapes/example-03.jpg');
  expect(fixed?.caption).toMatch(/\/5_shapes\/example-03\.txt$/);
  const store = new FileStore(fileURLToPath(rig.workStoreUri));
  expect((await store.get(fixed!.caption!)).toString('utf8')).toBe(FIXED_CAPTION);
  await handle.terminate('test over');
});

// ---- the plain Temporal CLI, as the README shows it -------------------------------------------------

function temporal(...args: string[]): Promise<Ran> {
  return run(installedTools().temporal, [...args, '--address', env.address]);
}

test('the README\'s temporal workflow query / update execute / signal commands review a run', async () => {
  const handle = await rig.start('plain');
  await waitForReview(handle);
  const id = handle.workflowId;

  const queried = await temporal('workflow', 'query', '--workflow-id', id, '--type', 'reviewState', '-o', 'json');
  expect(queried.stderr).toBe('');
  expect(JSON.parse(queried.stdout)).toMatchObject({ queryResult: [{ phase: 'awaiting', captions: { error: 1 } }] });

  const hostile = await temporal('workflow', 'update', 'execute', '--workflow-id', id, '--name', 'editCaptions',
    '--input', '{"reviewer":"ada","edits":[{"image":"../x.jpg","caption":"c"}]}');
  expect(hostile.status).not.toBe(0);
  expect(hostile.stderr).toContain('must be a file name, not a path');

  const refusedApproval = await temporal('workflow', 'update', 'execute', '--workflow-id', id, '--name', 'approve', '--input', '{"reviewer":"ada","comment":"ok"}');
  expect(refusedApproval.status).not.toBe(0);
  expect(refusedApproval.stderr).toContain('1 caption error remains');

  const edited = await temporal('workflow', 'update', 'execute', '--workflow-id', id, '--name', 'editCaptions', '-o', 'json',
    '--input', JSON.stringify({ reviewer: 'ada', edits: [{ image: MISSING, caption: FIXED_CAPTION }] }));
  expect(edited.stderr).toBe('');
  expect(JSON.parse(edited.stdout)).toMatchObject({ result: { written: 1, captions: { error: 0 } } });

  const signalled = await temporal('workflow', 'signal', '--workflow-id', id, '--name', 'approve', '--input', '{"reviewer":"ada","comment":"via the temporal CLI"}');
  expect(signalled.status).toBe(0);
  expect(await cancelAfterUpload(handle)).toMatchObject({ review: { decision: 'approved', reviewer: 'ada', via: 'signal', comment: 'via the temporal CLI' } });
});
