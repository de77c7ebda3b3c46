import { failureLineOf, KohyaOutputParser } from '../../lib/kohya/progress';

describe('KohyaOutputParser', () => {
  it('reads step, total and loss from tqdm redraws split across chunks', () => {
    const parser = new KohyaOutputParser();
    parser.feed('steps:   0%|          | 0/2000 [00:00<?, ?it/s]', 'stderr');
    // A redraw arrives in two chunks: nothing is read until the line is complete.
    let state = parser.feed('\rsteps:  12%|█▏        | 240/20', 'stderr');
    expect(state.progress).toEqual({ step: 0, totalSteps: 2000 });
    state = parser.feed('00 [00:10<01:10, 3.2it/s, avr_loss=0.0871]\rsteps:  12%|█▏        | 241/2000 [00:10<01:10, 3.2it/s, avr_loss=0.087]', 'stderr');
    expect(state.progress).toEqual({ step: 240, totalSteps: 2000, loss: 0.0871, etaSeconds: 70 });
    // The last redraw has no terminator yet; end() reads it.
    state = parser.end();
    expect(state.progress).toEqual({ step: 241, totalSteps: 2000, loss: 0.087, etaSeconds: 70 });
  });

  it('reads epochs from stdout, also inside a log line', () => {
    const parser = new KohyaOutputParser();
    parser.feed('\nepoch 1/10\n');
    expect(parser.state.progress).toEqual({ epoch: 1, totalEpochs: 10 });
    parser.feed('2024-05-01 12:00:00 INFO     epoch 2/10                      train_network.py:1021\n');
    expect(parser.state.progress).toEqual({ epoch: 2, totalEpochs: 10 });
  });

  it('keeps partial lines of stdout and stderr apart', () => {
    const parser = new KohyaOutputParser();
    parser.feed('epo', 'stdout');
    parser.feed('steps:  50%|█████     | 5/10 [00:01<00:01, 5.0it/s, avr_loss=0.1]\r', 'stderr');
    parser.feed('ch 3/4\n', 'stdout');
    expect(parser.state.progress).toEqual({ step: 5, totalSteps: 10, loss: 0.1, etaSeconds: 1, epoch: 3, totalEpochs: 4 });
  });

  it('reads the totals sd-scripts prints before training', () => {
    const parser = new KohyaOutputParser();
    parser.feed('num epochs / epoch数: 10\r\ntotal optimization steps / 学習ステップ数: 500\r\n');
    expect(parser.state.progress).toEqual({ totalEpochs: 10, totalSteps: 500 });
  });

  it('flags avr_loss=nan and keeps the flag', () => {
    const parser = new KohyaOutputParser();
    parser.feed('steps:  10%|█         | 10/100 [00:01<00:09, 10it/s, avr_loss=0.12]\r', 'stderr');
    expect(parser.state.progress.lossIsNaN).toBeUndefined();
    parser.feed('steps:  11%|█         | 11/100 [00:01<00:09, 10it/s, avr_loss=nan]\r', 'stderr');
    expect(parser.state.progress).toEqual({ step: 11, totalSteps: 100, lossIsNaN: true, etaSeconds: 9 });
    // Once NaN, the weights are NaN: a finite average later does not make the loss worth showing.
    parser.feed('steps:  12%|█▏        | 12/100 [00:01<00:09, 10it/s, avr_loss=0.11]\r', 'stderr');
    expect(parser.state.progress).toEqual({ step: 12, totalSteps: 100, lossIsNaN: true, etaSeconds: 9 });
  });

  it("reads tqdm's remaining time as the ETA, hours included, and drops it while unknown", () => {
    const parser = new KohyaOutputParser();
    parser.feed('steps:  40%|████      | 400/1000 [1:02:03<1:05:07, 0.11it/s, avr_loss=0.09]\r', 'stderr');
    expect(parser.state.progress.etaSeconds).toBe(3907);
    parser.feed('steps:  40%|████      | 400/1000 [1:02:03<?, ?it/s]\r', 'stderr');
    expect(parser.state.progress).not.toHaveProperty('etaSeconds');
  });

  it('flags "No data found" and "model saved." and remembers the last line', () => {
    const parser = new KohyaOutputParser();
    let state = parser.feed(
      'No data found. Please verify arguments (train_data_dir must be the parent of folders with images) / 画像がありません。\n',
    );
    expect(state).toMatchObject({ noDataFound: true, modelSaved: false });
    state = parser.feed('saving checkpoint: /out/demo.safetensors\nmodel saved.\n\n   \n');
    expect(state).toMatchObject({ modelSaved: true, lastLine: 'model saved.' });
    parser.feed('Traceback (most recent call last):\n  ...\ntorch.OutOfMemoryError: CUDA out of memory.\n', 'stderr');
    expect(parser.state.lastLine).toBe('torch.OutOfMemoryError: CUDA out of memory.');
  });

  it('sees "model saved." on the line of the last progress bar redraw', () => {
    const parser = new KohyaOutputParser();
    const state = parser.feed('steps: 100%|██████████| 4/4 [01:02<00:00, 15.5s/it, avr_loss=0.12]INFO     model saved.                       train_network.py:1290\n', 'stderr');
    expect(state).toMatchObject({ modelSaved: true, progress: { step: 4, totalSteps: 4, loss: 0.12 } });
  });

  it('names the trainer\'s own exception, not accelerate\'s wrapper around it', () => {
    const parser = new KohyaOutputParser();
    parser.feed(
      [
        'Traceback (most recent call last):',
        '  File "/opt/sd-scripts/library/train_util.py", line 4471, in replace_unet_modules',
        '    raise ImportError("No xformers / xformersがインストールされていないようです")',
        'ImportError: No xformers / xformersがインストールされていないようです',
        'Traceback (most recent call last):',
        '  File "/venv/bin/accelerate", line 8, in <module>',
        "subprocess.CalledProcessError: Command '['/venv/bin/python', 'train_network.py']' returned non-zero exit status 1.",
        '',
      ].join('\n'),
      'stderr',
    );
    expect(failureLineOf(parser.state)).toBe('ImportError: No xformers / xformersがインストールされていないようです');
    expect(parser.state.lastLine).toMatch(/^subprocess\.CalledProcessError/);
    // Alone, accelerate's error is still a reason; a line without an exception falls back to the last line.
    const alone = new KohyaOutputParser();
    alone.feed("subprocess.CalledProcessError: Command '[...]' returned non-zero exit status 1.\n", 'stderr');
    expect(failureLineOf(alone.state)).toMatch(/^subprocess\.CalledProcessError/);
    const plain = new KohyaOutputParser();
    plain.feed('Killed\n', 'stderr');
    expect(failureLineOf(plain.state)).toBe('Killed');
  });

  it('returns snapshots the caller cannot use to change its state', () => {
    const parser = new KohyaOutputParser();
    const state = parser.feed('epoch 1/2\n');
    state.progress.epoch = 99;
    expect(parser.state.progress.epoch).toBe(1);
  });
});
