/**
 * Colour spaces and file formats, checked against an independent decoder: Pillow (the project venv)
 * writes the BMPs and converts the CMYK JPEG with LittleCMS; our output must match.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { renderImage, type RenderedImage } from '../../activities/preprocess-image';
import { installedTools } from '../../scripts/tools';
import { SD15_RENDER_OPTIONS } from '../support/render-options';

const options = SD15_RENDER_OPTIONS;

let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'preprocess-formats-'));
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

function python(script: string, ...args: string[]): string {
  return execFileSync(installedTools().python, ['-c', script, ...args], { encoding: 'utf8' });
}

async function rendered(bytes: Buffer, renderOptions = options): Promise<RenderedImage> {
  const outcome = await renderImage(bytes, renderOptions);
  if ('reason' in outcome) throw new Error(`skipped: ${outcome.reason}`);
  return outcome;
}

async function rawOf(image: RenderedImage): Promise<{ data: Buffer; width: number; channels: number }> {
  const { data, info } = await sharp(image.data).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, channels: info.channels };
}

async function pixelAt(image: RenderedImage, x: number, y: number): Promise<number[]> {
  const { data, width, channels } = await rawOf(image);
  const at = (y * width + x) * channels;
  return [...data.subarray(at, at + channels)];
}

function expectNear(actual: number[], expected: number[], tolerance: number) {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((value, i) => expect(Math.abs(value - expected[i])).toBeLessThanOrEqual(tolerance));
}

describe('BMP, which libvips cannot read, decoded like Pillow decodes it', () => {
  const modes = ['RGB', 'RGBA', 'P', 'L', '1'];

  beforeAll(() => {
    // A 512×512 picture (no resampling at 512: the pixels must come through exactly), saved as BMP
    // in each mode, plus Pillow's own decoding of that BMP as raw RGB.
    python(
      `
import sys
from PIL import Image
out = sys.argv[1]
base = Image.new('RGB', (512, 512))
base.putdata([((x * 7 + y) % 256, (y * 3) % 256, (x ^ y) % 256) for y in range(512) for x in range(512)])
for mode in sys.argv[2:]:
    image = base.convert(mode) if mode != 'P' else base.quantize(256)
    image.save(f'{out}/{mode}.bmp')
    with open(f'{out}/{mode}.rgb', 'wb') as f:
        f.write(Image.open(f'{out}/{mode}.bmp').convert('RGB').tobytes())
`,
      tmp,
      ...modes,
    );
  });

  it.each(modes)('mode %s: identical pixels', async (mode) => {
    const image = await rendered(await fs.readFile(path.join(tmp, `${mode}.bmp`)));
    expect(image.sourceFormat).toBe('bmp');
    expect(image.plan.output).toEqual({ width: 512, height: 512 });
    const { data, channels } = await rawOf(image);
    expect(channels).toBe(3);
    expect(data.equals(await fs.readFile(path.join(tmp, `${mode}.rgb`)))).toBe(true);
  });
});

describe('colour spaces', () => {
  it('converts a CMYK JPEG to sRGB with the colours a colour-managed decoder gives', async () => {
    const colours = ['#c04020', '#2060a0', '#808080', '#40a040'];
    const blocks = await Promise.all(colours.map((c) => sharp({ create: { width: 256, height: 256, channels: 3, background: c } }).png().toBuffer()));
    const cmyk = await sharp({ create: { width: 512, height: 512, channels: 3, background: '#000' } })
      .composite(blocks.map((input, i) => ({ input, left: (i % 2) * 256, top: Math.floor(i / 2) * 256 })))
      .toColourspace('cmyk')
      .withIccProfile('cmyk')
      .jpeg({ quality: 95 })
      .toBuffer();
    expect(await sharp(cmyk).metadata()).toMatchObject({ space: 'cmyk', channels: 4 });
    const file = path.join(tmp, 'cmyk.jpg');
    await fs.writeFile(file, cmyk);
    // LittleCMS through Pillow, with the JPEG's own profile (perceptual intent, like libvips).
    const reference = JSON.parse(
      python(
        `
import io, json, sys
from PIL import Image, ImageCms
image = Image.open(sys.argv[1])
profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info['icc_profile']))
rgb = ImageCms.profileToProfile(image, profile, ImageCms.createProfile('sRGB'), outputMode='RGB')
print(json.dumps([list(rgb.getpixel((x, y))) for x, y in [(128, 128), (384, 128), (128, 384), (384, 384)]]))
`,
        file,
      ),
    ) as number[][];

    const image = await rendered(cmyk);
    const metadata = await sharp(image.data).metadata();
    expect(metadata).toMatchObject({ space: 'srgb', channels: 3, depth: 'uchar' });
    expect(metadata.icc).toBeUndefined();
    const centres = [[128, 128], [384, 128], [128, 384], [384, 384]];
    for (const [i, [x, y]] of centres.entries()) {
      const actual = await pixelAt(image, x, y);
      expectNear(actual, reference[i], 3);
      // And still the colour it was before the trip through CMYK, give or take the CMYK gamut.
      expectNear(actual, [1, 3, 5].map((at) => parseInt(colours[i].slice(at, at + 2), 16)), 40);
    }
  });

  it('converts an ICC-tagged (Display P3) image to sRGB', async () => {
    const p3 = await sharp({ create: { width: 300, height: 300, channels: 3, background: '#ff0000' } }).withIccProfile('p3').png().toBuffer();
    expect((await sharp(p3).metadata()).icc).toBeDefined();
    expectNear(await pixelAt(await rendered(p3), 256, 256), [255, 0, 0], 2);
  });

  it('turns 16-bit, greyscale and palette PNGs into 8-bit RGB', async () => {
    const colour = sharp({ create: { width: 300, height: 300, channels: 3, background: '#c04020' } });
    const sixteen = await colour.clone().toColourspace('rgb16').png().toBuffer();
    expect((await sharp(sixteen).metadata()).depth).toBe('ushort');
    const grey = await colour.clone().greyscale().png().toBuffer();
    const palette = await colour.clone().png({ palette: true }).toBuffer();
    for (const [bytes, expected] of [[sixteen, [192, 64, 32]], [palette, [192, 64, 32]], [grey, null]] as const) {
      const image = await rendered(bytes);
      const metadata = await sharp(image.data).metadata();
      expect(metadata).toMatchObject({ channels: 3, depth: 'uchar', space: 'srgb' });
      const [r, g, b] = await pixelAt(image, 10, 10);
      if (expected) expectNear([r, g, b], [...expected], 2);
      else expect(r === g && g === b).toBe(true);
    }
  });
});

describe('formats sd-scripts cannot read, converted', () => {
  const red = () => sharp({ create: { width: 300, height: 300, channels: 3, background: '#ff0000' } });

  it('reads TIFF and AVIF', async () => {
    for (const bytes of [await red().tiff().toBuffer(), await red().avif({ quality: 90 }).toBuffer()]) {
      const image = await rendered(bytes);
      expect(['tiff', 'heif']).toContain(image.sourceFormat);
      expect((await sharp(image.data).metadata()).format).toBe('png');
      expectNear(await pixelAt(image, 256, 256), [255, 0, 0], 12);
    }
  });

  it('takes the first frame of an animated GIF, with a warning', async () => {
    const frames = await Promise.all(['#ff0000', '#00ff00', '#0000ff'].map((c) => sharp({ create: { width: 300, height: 300, channels: 3, background: c } }).png().toBuffer()));
    const gif = await sharp(frames, { join: { animated: true } }).gif().toBuffer();
    const image = await rendered(gif);
    expect(image.plan.warnings).toEqual(['upscaled 1.71×: 300×300 is smaller than the 512×512 target', 'first frame only: the file has 3 frames or pages']);
    expectNear(await pixelAt(image, 256, 256), [255, 0, 0], 4);
  });
});
