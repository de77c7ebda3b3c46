import { cropInSource, orientedSize, planImage, type ImagePlan, type TargetOptions } from '../../lib/image/inspect';
import { bucketSettings } from '../../lib/kohya/buckets';

const square: TargetOptions = { strategy: 'center', size: 512, minSide: 256, buckets: bucketSettings('sd15') };
const bucket: TargetOptions = { ...square, strategy: 'bucket' };

function plan(header: Parameters<typeof planImage>[0], options = square): ImagePlan {
  const planned = planImage(header, options);
  if ('skip' in planned) throw new Error(`unexpectedly skipped: ${planned.skip}`);
  return planned;
}

describe('planImage', () => {
  it('crops a landscape photo to the centre square, without warnings', () => {
    const p = plan({ format: 'jpeg', width: 4000, height: 3000 });
    expect(p).toEqual({
      oriented: { width: 4000, height: 3000 },
      output: { width: 512, height: 512 },
      resized: { width: 683, height: 512 },
      crop: { left: 85, top: 0, width: 512, height: 512 },
      scale: 512 / 3000,
      warnings: [],
    });
  });

  it('swaps width and height for EXIF orientations 5-8', () => {
    expect(orientedSize(400, 300, 6)).toEqual({ width: 300, height: 400 });
    expect(orientedSize(400, 300, 8)).toEqual({ width: 300, height: 400 });
    expect(orientedSize(400, 300, 3)).toEqual({ width: 400, height: 300 });
    expect(plan({ format: 'jpeg', width: 4000, height: 3000, orientation: 6 }, bucket).output).toEqual({ width: 448, height: 576 });
  });

  it('writes the bucket size for the bucket strategy', () => {
    expect(plan({ format: 'jpeg', width: 4000, height: 3000 }, bucket).output).toEqual({ width: 576, height: 448 });
    expect(plan({ format: 'png', width: 512, height: 768 }, bucket).output).toEqual({ width: 384, height: 640 });
    const exact = plan({ format: 'png', width: 576, height: 448 }, bucket);
    expect(exact).toMatchObject({ resized: { width: 576, height: 448 }, scale: 1, warnings: [] });
  });

  it('leaves the crop to sharp for attention and entropy', () => {
    expect(plan({ format: 'png', width: 800, height: 600 }, { ...square, strategy: 'attention' }).crop).toBeUndefined();
    expect(plan({ format: 'png', width: 800, height: 600 }, { ...square, strategy: 'entropy' }).crop).toBeUndefined();
  });

  it('warns about upscaling, with the factor', () => {
    expect(plan({ format: 'png', width: 320, height: 400 }).warnings).toEqual([
      'upscaled 1.60×: 320×400 is smaller than the 512×512 target',
    ]);
  });

  it('warns about aspect ratios beyond 1:4, saying how much the crop keeps', () => {
    expect(plan({ format: 'png', width: 3000, height: 600 }).warnings).toEqual(['aspect 5.0:1: beyond 1:4, the crop keeps 20% of the picture']);
    // Exactly 4:1 is within the aspect limit, but a square crop still cuts away three quarters of it.
    expect(plan({ format: 'png', width: 2400, height: 600 }).warnings).toEqual(['cropped: 75% of the picture is cut away (2048×512 cropped to 512×512); try the bucket strategy']);
  });

  it('warns that only the first frame of an animation is used', () => {
    expect(plan({ format: 'gif', width: 600, height: 600, pages: 12 }).warnings).toEqual(['first frame only: the file has 12 frames or pages']);
  });

  it.each([
    [{ format: 'svg', width: 600, height: 600 }, 'unsupported format: the file holds svg data; convert it to PNG or JPEG'],
    [{ format: 'heif', width: 600, height: 600, compression: 'hevc' }, 'unsupported format: the file holds HEIC (hevc-compressed HEIF); convert it to PNG or JPEG'],
    [{ format: 'png', width: 1, height: 1 }, 'a 1×1 image (a placeholder or tracking pixel), not a picture'],
    [{ format: 'png', width: 255, height: 1000 }, 'too small: 255×1000, the shorter side is below the minimum of 256 px (preprocess.minSide)'],
    [{ format: 'png', width: 20000, height: 20000 }, 'too large: 20000×20000 is 400000000 pixels, more than the 268402689 decoded at most (decompression bomb guard)'],
  ])('skips %j', (header, reason) => {
    expect(planImage(header, square)).toEqual({ skip: reason });
  });

  it('reads AVIF (AV1-compressed HEIF)', () => {
    expect(plan({ format: 'heif', width: 600, height: 600, compression: 'av1' }).output).toEqual({ width: 512, height: 512 });
  });

  it('honours a lower minimum side', () => {
    expect(planImage({ format: 'png', width: 64, height: 64 }, { ...square, minSide: 64 })).toMatchObject({ scale: 8 });
  });
});

describe('planImage: how much a crop cuts away', () => {
  it('warns when a square crop cuts away more than a third of the picture, naming the share', () => {
    expect(plan({ format: 'jpeg', width: 1920, height: 1080 }).warnings).toEqual(['cropped: 44% of the picture is cut away (910×512 cropped to 512×512); try the bucket strategy']);
    // 2:3 keeps exactly two thirds: no warning; the bucket strategy keeps (nearly) all of it.
    expect(plan({ format: 'jpeg', width: 600, height: 900 }).warnings).toEqual([]);
    expect(plan({ format: 'jpeg', width: 1920, height: 1080 }, bucket).warnings).toEqual([]);
  });
});

describe('planImage with bucket_no_upscale', () => {
  const noUpscale = { ...bucket.buckets, noUpscale: true };

  it('writes a small image at its no-upscale bucket, never enlarged, and a large one scaled down', () => {
    const small = plan({ format: 'jpeg', width: 300, height: 400 }, { ...bucket, buckets: noUpscale });
    expect(small).toMatchObject({ output: { width: 256, height: 384 }, resized: { width: 300, height: 400 }, crop: { left: 22, top: 8 }, warnings: [] });
    expect(small.scale).toBeLessThanOrEqual(1);
    expect(plan({ format: 'jpeg', width: 4000, height: 3000 }, { ...bucket, buckets: noUpscale }).output).toEqual({ width: 512, height: 384 });
    // Without it, the same small image is enlarged to a normal bucket, with a warning.
    expect(plan({ format: 'jpeg', width: 300, height: 400 }, bucket).warnings[0]).toMatch(/^upscaled /);
  });

  it('keeps a square crop no larger than the shorter side allows, down to the step', () => {
    const small = plan({ format: 'png', width: 300, height: 350 }, { ...square, buckets: noUpscale });
    expect(small).toMatchObject({ output: { width: 256, height: 256 }, warnings: [] });
    expect(plan({ format: 'png', width: 900, height: 700 }, { ...square, buckets: noUpscale }).output).toEqual({ width: 512, height: 512 });
  });
});

describe('cropInSource', () => {
  it('maps the crop back to source pixels', () => {
    const p = plan({ format: 'jpeg', width: 4000, height: 3000 });
    expect(cropInSource(p.crop!, p.scale, p.oriented)).toEqual({ left: 498, top: 0, width: 3000, height: 3000 });
  });

  it('stays inside the source', () => {
    expect(cropInSource({ left: 171, top: 0, width: 512, height: 512 }, 0.5, { width: 1366, height: 1024 })).toEqual({
      left: 342,
      top: 0,
      width: 1024,
      height: 1024,
    });
    const box = cropInSource({ left: 10, top: 10, width: 512, height: 512 }, 0.25, { width: 2000, height: 2000 });
    expect(box.left + box.width).toBeLessThanOrEqual(2000);
    expect(box.top + box.height).toBeLessThanOrEqual(2000);
  });
});
