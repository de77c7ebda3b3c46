import type { PendingActivity } from '../../client/heartbeat';
import {
  barStateOf,
  etaSeconds,
  FollowTracker,
  formatBytes,
  formatDuration,
  formatLoss,
  listLines,
  progressLine,
  stageChangeLines,
  statusLines,
  summaryLines,
  webUiUrl,
} from '../../client/render';
import type { RunSnapshot } from '../../client/runs';
import type { ActivityProgress, RunStatus } from '../../lib/pipeline/status';

const ID = 'lora-cat-20250101-120000';

function snapshot(status: Partial<RunStatus>, activities: PendingActivity[] = [], execution: RunSnapshot['execution'] = 'RUNNING'): RunSnapshot {
  return { workflowId: ID, execution, status: { runName: 'cat', stage: 'training', baseModel: 'sd15', ...status }, activities };
}

function training(step: number, totalSteps: number, extra: Partial<NonNullable<ActivityProgress['training']>['progress']> = {}): ActivityProgress {
  return {
    done: step,
    total: totalSteps,
    unit: 'steps',
    training: { status: 'InProgress', progress: { step, totalSteps, ...extra } },
  };
}

const activity = (progress: ActivityProgress, type = 'pollTraining'): PendingActivity => ({ type, attempt: 1, progress });

describe('formatting', () => {
  it('formats durations with at most two units', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(42.4)).toBe('42s');
    expect(formatDuration(185)).toBe('3m 05s');
    expect(formatDuration(3720)).toBe('1h 02m');
    expect(formatDuration(2 * 86400 + 3 * 3600 + 59)).toBe('2d 03h');
  });

  it('formats bytes in binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(45 * 1024 * 1024)).toBe('45.0 MiB');
  });

  it('formats the loss to four significant digits, and NaN as NaN', () => {
    expect(formatLoss(0.0871234)).toBe('0.08712');
    expect(formatLoss(0.0871)).toBe('0.0871');
    expect(formatLoss(1.23456)).toBe('1.235');
    expect(formatLoss(undefined)).toBeUndefined();
    // JSON turns NaN into null: the flag is what says so.
    expect(formatLoss(null, true)).toBe('NaN');
    expect(formatLoss(Number.NaN)).toBe('NaN');
  });

  it('builds Web UI links with escaped parts', () => {
    expect(webUiUrl('http://localhost:8233/', 'default', ID)).toBe(`http://localhost:8233/namespaces/default/workflows/${ID}`);
    expect(webUiUrl('https://ui', 'my ns', 'a/b')).toBe('https://ui/namespaces/my%20ns/workflows/a%2Fb');
  });
});

describe('etaSeconds', () => {
  it('extrapolates the average rate between two samples', () => {
    // 100 steps in 50 s → 2 steps/s; 1800 steps left → 900 s
    expect(etaSeconds({ at: 0, done: 100 }, { at: 50_000, done: 200 }, 2000)).toBe(900);
  });

  it('has no estimate without progress or time', () => {
    expect(etaSeconds({ at: 0, done: 100 }, { at: 0, done: 100 }, 2000)).toBeUndefined();
    expect(etaSeconds({ at: 0, done: 100 }, { at: 10_000, done: 100 }, 2000)).toBeUndefined();
    expect(etaSeconds({ at: 0, done: 0 }, { at: 10_000, done: 5 }, 0)).toBeUndefined();
  });
});

describe('bars', () => {
  it('shows training steps with loss and epoch', () => {
    const state = barStateOf(training(240, 2000, { loss: 0.0871, epoch: 1, totalEpochs: 10 }));
    expect(state).toMatchObject({ label: 'training', value: 240, total: 2000, counts: 'step 240/2000', detail: 'loss 0.0871 · epoch 1/10', lossIsNaN: false });
    expect(progressLine(state, 750)).toBe('training       12% · step 240/2000 · loss 0.0871 · epoch 1/10 · ETA 12m 30s');
  });

  it('flags a NaN loss', () => {
    const state = barStateOf(training(300, 2000, { loss: undefined, lossIsNaN: true }));
    expect(state.lossIsNaN).toBe(true);
    expect(state.detail).toBe('loss NaN');
  });

  it('shows the backend status until the first step', () => {
    const progress: ActivityProgress = { done: 0, total: 0, unit: 'steps', training: { status: 'InProgress', secondaryStatus: 'Downloading' } };
    expect(progressLine(barStateOf(progress))).toBe('training        0% · waiting for the first step · Downloading');
  });

  it('shows images and bytes', () => {
    expect(progressLine(barStateOf({ done: 120, total: 300, unit: 'images' }))).toBe('preprocessing  40% · 120/300 images');
    expect(progressLine(barStateOf({ done: 3 * 1024 * 1024, total: 12 * 1024 * 1024, unit: 'bytes' }))).toBe(
      'uploading      25% · 3.0 MiB/12.0 MiB',
    );
  });
});

describe('status output', () => {
  it('summarises what the run knows', () => {
    const lines = summaryLines(
      snapshot(
        {
          stage: 'completed',
          images: { found: 12, kept: 10, skipped: 2 },
          captions: { error: 0, warning: 1, info: 0, reportKey: 'runs/cat/captions.json' },
          review: { decision: 'approved', reviewer: 'ana', comment: 'fine', at: '2025-01-01T12:05:00Z' },
          job: { backend: 'local', jobName: 'lora-cat-1a2b' },
          training: { status: 'Completed' },
          lora: {
            name: 'cat-v1',
            uri: 'file:///srv/lora/Lora/cat-v1.safetensors',
            sha256: 'abcdef0123456789abcdef',
            autoV2: 'ABCDEF0123',
            sizeBytes: 2 * 1024 * 1024,
            recordUri: 'file:///srv/lora/registry/cat-v1.json',
          },
        },
        [],
        'COMPLETED',
      ),
    );
    expect(lines).toEqual([
      `run:        cat (${ID}, COMPLETED)`,
      'stage:      completed',
      'base model: sd15',
      'images:     12 found · 10 kept · 2 skipped',
      'captions:   0 errors · 1 warning · 0 info (report runs/cat/captions.json)',
      'review:     approved by ana at 2025-01-01T12:05:00Z: fine',
      'job:        local lora-cat-1a2b (Completed)',
      'lora:       cat-v1 at file:///srv/lora/Lora/cat-v1.safetensors · 2.0 MiB · sha256 abcdef012345 · AutoV2 ABCDEF0123',
    ]);
  });

  it('names the first skipped files under the counts, and where the rest are', () => {
    const first = [
      { source: '10_acme/linkcap.txt', reason: 'symbolic link leads outside the dataset: never opened' },
      { source: '10_acme/fifo.png', reason: 'not a regular file (a named pipe): never opened' },
      { source: 'new\nline.png', reason: 'the name contains the control character U+000A at position 3: rename the file' },
    ];
    const base = snapshot({ stage: 'awaiting_review', images: { found: 9, kept: 4, skipped: 5 } });
    const lines = summaryLines({ ...base, skippedFiles: { first, manifestUri: 'file:///w/runs/r/manifest.json' } });
    expect(lines.slice(3, 8)).toEqual([
      'images:     9 found · 4 kept · 5 skipped',
      '            10_acme/linkcap.txt: symbolic link leads outside the dataset: never opened',
      '            10_acme/fifo.png: not a regular file (a named pipe): never opened',
      '            "new\\nline.png": the name contains the control character U+000A at position 3: rename the file',
      '            … 2 more in file:///w/runs/r/manifest.json',
    ]);
    // Where the work store cannot be read from here, the count alone.
    expect(summaryLines(base)[4]).toMatch(/^review:/);
  });

  it('says a forced approval was forced', () => {
    const forced = summaryLines(snapshot({ stage: 'uploading', review: { decision: 'approved', reviewer: 'ana', force: true, at: '2025-01-01T12:05:00Z' } }));
    expect(forced).toContain('review:     approved by ana (forced past caption errors) at 2025-01-01T12:05:00Z');
  });

  it('tells a waiting reviewer what to type', () => {
    const lines = summaryLines(snapshot({ stage: 'awaiting_review' }));
    expect(lines.join('\n')).toContain(`lora review show ${ID} (the issues) or lora review serve ${ID} (the review page)`);
    expect(lines).toContain('review:     waiting for a reviewer');
    expect(lines.join('\n')).toContain(`lora approve ${ID} --reviewer <name>`);
    expect(lines.join('\n')).toContain(`lora reject ${ID} --reviewer <name> --reason <text>`);
  });

  it('shows the error and a fallback note', () => {
    const lines = summaryLines({ ...snapshot({ stage: 'failed', error: 'dataset not found' }, [], 'FAILED'), statusNote: 'no worker answered' });
    expect(lines).toContain('error:      dataset not found');
    expect(lines).toContain('note:       no worker answered');
  });

  it('adds live progress, a NaN warning and retries', () => {
    const lines = statusLines(
      snapshot({}, [{ type: 'pollTraining', attempt: 3, lastFailure: 'ThrottlingException', progress: training(300, 2000, { lossIsNaN: true }) }]),
    );
    expect(lines).toContain('training       15% · step 300/2000 · loss NaN');
    expect(lines.some((line) => line.startsWith('warning: training loss is NaN') && line.includes(`lora cancel ${ID}`))).toBe(true);
    expect(lines).toContain('pollTraining: attempt 3 after: ThrottlingException');
  });

  it('shows no NaN warning for a finite loss', () => {
    const lines = statusLines(snapshot({}, [activity(training(300, 2000, { loss: 0.1 }))]));
    expect(lines.some((line) => line.includes('NaN'))).toBe(false);
  });
});

describe('stageChangeLines', () => {
  it('adds what the stage works on', () => {
    expect(stageChangeLines({ runName: 'cat', stage: 'training', baseModel: 'sd15', job: { backend: 'sagemaker', jobName: 'lora-cat-1a2b' } }, ID)).toEqual([
      'stage: training (lora-cat-1a2b)',
    ]);
    expect(stageChangeLines({ runName: 'cat', stage: 'failed', baseModel: 'sd15', error: 'boom' }, ID)).toEqual(['stage: failed (boom)']);
  });
});

describe('FollowTracker', () => {
  it('logs a stage change once, with the review hint', () => {
    const tracker = new FollowTracker(ID);
    const first = tracker.update(snapshot({ stage: 'awaiting_review', captions: { error: 2, warning: 0, info: 0, reportKey: 'r' } }), 0);
    expect(first.log[0]).toBe('stage: awaiting review (2 caption errors, 0 warnings)');
    expect(first.log.join('\n')).toContain(`lora approve ${ID}`);
    expect(tracker.update(snapshot({ stage: 'awaiting_review' }), 1000).log).toEqual([]);
  });

  it('warns about a NaN loss once', () => {
    const tracker = new FollowTracker(ID);
    const nan = snapshot({}, [activity(training(300, 2000, { lossIsNaN: true }))]);
    expect(tracker.update(nan, 0).log.filter((line) => line.startsWith('warning: training loss is NaN'))).toHaveLength(1);
    expect(tracker.update(nan, 1000).log).toEqual([]);
  });

  it('estimates the ETA from the rate since following began', () => {
    const tracker = new FollowTracker(ID);
    expect(tracker.update(snapshot({}, [activity(training(100, 2000))]), 0).bars[0].eta).toBeUndefined();
    const frame = tracker.update(snapshot({}, [activity(training(200, 2000))]), 50_000);
    expect(frame.bars[0].eta).toBe(900);
    // Polls without a new heartbeat do not dilute the rate.
    expect(tracker.update(snapshot({}, [activity(training(200, 2000))]), 80_000).bars[0].eta).toBe(900);
  });

  it('restarts the rate when a retried activity starts over', () => {
    const tracker = new FollowTracker(ID);
    tracker.update(snapshot({ stage: 'preprocessing' }, [activity({ done: 50, total: 100, unit: 'images' }, 'preprocess')]), 0);
    const frame = tracker.update(snapshot({ stage: 'preprocessing' }, [activity({ done: 5, total: 100, unit: 'images' }, 'preprocess')]), 10_000);
    expect(frame.bars[0].state.value).toBe(5);
    expect(frame.bars[0].eta).toBeUndefined();
  });

  it('fills a finished stage\'s bar when the run moves on, but not when it fails', () => {
    const images = activity({ done: 280, total: 300, unit: 'images' }, 'preprocess');
    const moved = new FollowTracker(ID);
    moved.update(snapshot({ stage: 'preprocessing' }, [images]), 0);
    expect(moved.update(snapshot({ stage: 'checking_captions' }), 1000).bars[0].state).toMatchObject({ value: 300, counts: '300/300 images' });

    const failed = new FollowTracker(ID);
    failed.update(snapshot({ stage: 'preprocessing' }, [images]), 0);
    expect(failed.update(snapshot({ stage: 'failed' }), 1000).bars[0].state.value).toBe(280);
  });

  it('logs each retry attempt once', () => {
    const tracker = new FollowTracker(ID);
    const retrying = snapshot({ stage: 'uploading' }, [{ type: 'upload', attempt: 2, lastFailure: 'SlowDown' }]);
    expect(tracker.update(retrying, 0).log).toContain('upload: attempt 2 after: SlowDown');
    expect(tracker.update(retrying, 1000).log).toEqual([]);
  });
});

describe('listLines', () => {
  it('aligns columns and shows missing attributes as "-"', () => {
    const lines = listLines([
      { workflowId: ID, execution: 'RUNNING', stage: 'training', runName: 'cat', baseModel: 'sdxl', startTime: new Date('2025-01-01T12:00:00.123Z') },
      { workflowId: 'lora-x', execution: 'FAILED', startTime: new Date('2025-01-02T08:30:00Z') },
    ]);
    expect(lines).toEqual([
      'WORKFLOW ID               STATUS   STAGE     RUN  BASE  STARTED (UTC)',
      `${ID}  RUNNING  training  cat  sdxl  2025-01-01 12:00:00`,
      'lora-x                    FAILED   -         -    -     2025-01-02 08:30:00',
    ]);
  });

  it('says when there is nothing', () => {
    expect(listLines([])).toEqual(['no runs found']);
  });
});
