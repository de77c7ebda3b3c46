import { PreprocessOptions } from '../../lib/image/options';
import { formatZodError, TrainingRunInput } from '../../lib/pipeline/input';

describe('preprocess options', () => {
  it('fill every default, so inputs written before the options existed stay valid', () => {
    const run = TrainingRunInput.parse({ runName: 'old-run', dataset: '/data/photos' });
    expect(run.preprocess).toEqual({
      strategy: 'center',
      format: 'png',
      quality: 95,
      background: '#ffffff',
      minSide: 256,
      strict: false,
      batchSize: 200,
    });
  });

  it('take partial settings', () => {
    const run = TrainingRunInput.parse({ runName: 'r', dataset: '/d', preprocess: { strategy: 'bucket', size: 768 } });
    expect(run.preprocess).toMatchObject({ strategy: 'bucket', size: 768, format: 'png', minSide: 256 });
  });

  it.each([
    [{ size: 500 }, 'input.preprocess.size: must be a multiple of 64 (the kohya bucket step)'],
    [{ size: 128 }, 'input.preprocess.size: must be at least 256'],
    [{ strategy: 'smart' }, 'input.preprocess.strategy: '],
    [{ background: 'white' }, 'input.preprocess.background: must be a colour like #ffffff'],
    [{ batchSize: 0 }, 'input.preprocess.batchSize: '],
    [{ cropping: 'center' }, 'input.preprocess: '],
  ])('reject %j naming the field', (preprocess, message) => {
    const parsed = TrainingRunInput.safeParse({ runName: 'r', dataset: '/d', preprocess });
    expect(parsed.success).toBe(false);
    expect(formatZodError(parsed.error!)).toContain(message);
  });

  it('accept every strategy and format', () => {
    for (const strategy of ['center', 'attention', 'entropy', 'bucket']) {
      for (const format of ['png', 'jpeg', 'webp']) expect(PreprocessOptions.safeParse({ strategy, format }).success).toBe(true);
    }
  });
});
