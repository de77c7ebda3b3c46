import { bucketName, bucketResolutions, bucketSettings, coverCrop, runBucketSettings, selectBucket, selectBucketNoUpscale } from '../../lib/kohya/buckets';

const names = (sizes: { width: number; height: number }[]) => sizes.map(bucketName);

describe('bucketSettings', () => {
  it('gives the reference defaults per family', () => {
    expect(bucketSettings('sd15')).toEqual({ resolution: 512, minBucketReso: 256, maxBucketReso: 1024, step: 64 });
    expect(bucketSettings('sdxl')).toEqual({ resolution: 1024, minBucketReso: 512, maxBucketReso: 2048, step: 64 });
  });

  it('takes a run-specific resolution and widens the range to include it, as sd-scripts requires', () => {
    expect(bucketSettings('sd15', 768)).toMatchObject({ resolution: 768, minBucketReso: 256, maxBucketReso: 1024 });
    expect(bucketSettings('sd15', 1280)).toMatchObject({ resolution: 1280, maxBucketReso: 1280 });
    expect(bucketSettings('sdxl', 384)).toMatchObject({ resolution: 384, minBucketReso: 384 });
  });

  it('reads a run: its family, at its preprocess size when set', () => {
    expect(runBucketSettings({ baseModel: { family: 'sdxl' } })).toEqual(bucketSettings('sdxl'));
    expect(runBucketSettings({ baseModel: { family: 'sd15' }, preprocess: { size: 640 } })).toEqual(bucketSettings('sd15', 640));
  });
});

describe('bucketResolutions', () => {
  it('gives the 17 SD 1.5 buckets for 512 / 256-1024 / step 64, sorted', () => {
    // Worked out by hand from sd-scripts' make_bucket_resolutions (DESIGN.md §3).
    expect(names(bucketResolutions(bucketSettings('sd15')))).toEqual([
      '256x832', '256x896', '256x960', '256x1024',
      '320x704', '320x768',
      '384x640',
      '448x576',
      '512x512',
      '576x448',
      '640x384',
      '704x320', '768x320',
      '832x256', '896x256', '960x256', '1024x256',
    ]);
  });

  it('keeps every SDXL bucket within 512-2048, on the step, at most 1024² pixels', () => {
    const buckets = bucketResolutions(bucketSettings('sdxl'));
    expect(buckets).toContainEqual({ width: 1024, height: 1024 });
    expect(buckets).toContainEqual({ width: 2048, height: 512 });
    expect(buckets).toContainEqual({ width: 1216, height: 832 });
    for (const { width, height } of buckets) {
      expect(width % 64 === 0 && height % 64 === 0).toBe(true);
      expect(Math.min(width, height)).toBeGreaterThanOrEqual(512);
      expect(Math.max(width, height)).toBeLessThanOrEqual(2048);
      expect(width * height).toBeLessThanOrEqual(1024 * 1024);
      expect(buckets).toContainEqual({ width: height, height: width });
    }
    expect(buckets.length).toBe(new Set(names(buckets)).size);
  });

  it('rounds min down and max up to the step first', () => {
    const rounded = bucketResolutions({ resolution: 512, minBucketReso: 300, maxBucketReso: 1000, step: 64 });
    expect(rounded).toEqual(bucketResolutions({ resolution: 512, minBucketReso: 256, maxBucketReso: 1024, step: 64 }));
  });
});

describe('selectBucket', () => {
  const sd15 = bucketResolutions(bucketSettings('sd15'));

  it('puts a 4000×3000 photo in 576×448: scaled to 448 high, centre-cropped', () => {
    expect(selectBucket(sd15, 4000, 3000)).toEqual({
      bucket: { width: 576, height: 448 },
      resized: { width: 597, height: 448 },
      crop: { left: 10, top: 0, width: 576, height: 448 },
    });
  });

  it('puts a 512×768 portrait in 384×640', () => {
    const fit = selectBucket(sd15, 512, 768);
    expect(fit.bucket).toEqual({ width: 384, height: 640 });
    expect(fit.resized).toEqual({ width: 427, height: 640 });
    expect(fit.crop).toEqual({ left: 21, top: 0, width: 384, height: 640 });
  });

  it('leaves an image already at a bucket size untouched', () => {
    for (const bucket of sd15) {
      const fit = selectBucket(sd15, bucket.width, bucket.height);
      expect(fit).toEqual({ bucket, resized: bucket, crop: { left: 0, top: 0, ...bucket } });
    }
  });

  it('picks the nearest aspect ratio even when another bucket has the same area', () => {
    // 1000×999 is nearly square: 512×512, not 576×448.
    expect(selectBucket(sd15, 1000, 999).bucket).toEqual({ width: 512, height: 512 });
    // 2:1 sits between 704×320 (2.2) and 640×384 (1.67): 2.2 is nearer.
    expect(selectBucket(sd15, 2000, 1000).bucket).toEqual({ width: 704, height: 320 });
  });

  it('upscales small images to cover their bucket', () => {
    const fit = selectBucket(sd15, 300, 200);
    expect(fit.bucket).toEqual({ width: 640, height: 384 });
    expect(fit.resized.width).toBeGreaterThanOrEqual(640);
    expect(fit.resized.height).toBeGreaterThanOrEqual(384);
  });

  it('always returns a crop inside the resized image at exactly the bucket size', () => {
    for (const [w, h] of [[4000, 3000], [3000, 4000], [1234, 567], [257, 1999], [6000, 100], [333, 333]]) {
      const { bucket, resized, crop } = selectBucket(sd15, w, h);
      expect([crop.width, crop.height]).toEqual([bucket.width, bucket.height]);
      expect(crop.left + crop.width).toBeLessThanOrEqual(resized.width);
      expect(crop.top + crop.height).toBeLessThanOrEqual(resized.height);
    }
  });

  it('makes every square size a multiple of 64 land in its own square bucket, untouched', () => {
    for (const size of [256, 512, 768, 1024]) {
      const buckets = bucketResolutions(bucketSettings('sd15', size));
      expect(selectBucket(buckets, size, size).resized).toEqual({ width: size, height: size });
    }
  });
});

describe('coverCrop', () => {
  it('centres the crop, rounding the offset down', () => {
    expect(coverCrop(800, 600, { width: 512, height: 512 }).crop).toEqual({ left: 85, top: 0, width: 512, height: 512 });
    expect(coverCrop(600, 800, { width: 512, height: 512 }).crop).toEqual({ left: 0, top: 85, width: 512, height: 512 });
  });
});

describe('selectBucketNoUpscale (sd-scripts bucket_no_upscale)', () => {
  const sd15 = bucketSettings('sd15');

  it('scales a large image down to about resolution² and crops to the step, keeping the better aspect', () => {
    // 4000×3000 → 591×443 at the area; by width 576×384 (1.5), by height 512×384 (4:3 exactly): height wins.
    expect(selectBucketNoUpscale(sd15, 4000, 3000)).toEqual({
      bucket: { width: 512, height: 384 },
      resized: { width: 512, height: 384 },
      crop: { left: 0, top: 0, width: 512, height: 384 },
    });
  });

  it('keeps a small image at its size and crops it down to the step, centred: nothing is enlarged', () => {
    expect(selectBucketNoUpscale(sd15, 300, 200)).toEqual({
      bucket: { width: 256, height: 192 },
      resized: { width: 300, height: 200 },
      crop: { left: 22, top: 4, width: 256, height: 192 },
    });
    // A size already on the step is its own bucket.
    expect(selectBucketNoUpscale(sd15, 448, 320).bucket).toEqual({ width: 448, height: 320 });
  });
});
