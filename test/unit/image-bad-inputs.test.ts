/** Every kind of bad input is reported with its own fixed reason, and none of them throws. */
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { renderImage } from '../../activities/preprocess-image';
import { planDataset } from '../../lib/image/dataset';
import { MAX_INPUT_PIXELS } from '../../lib/image/inspect';
import { SD15_RENDER_OPTIONS } from '../support/render-options';

const options = SD15_RENDER_OPTIONS;

/** A PNG chunk with its CRC, to build headers no encoder would write. */
function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A valid PNG header claiming `width`×`height` RGB pixels, with almost no pixel data behind it. */
function pngClaiming(width: number, height: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, pngChunk('IHDR', header), pngChunk('IDAT', deflateSync(Buffer.alloc(64))), pngChunk('IEND', Buffer.alloc(0))]);
}

/** A minimal 8-bit BMP whose header says RLE8. */
function rleBmp(): Buffer {
  const bmp = Buffer.alloc(14 + 40 + 256 * 4 + 16);
  bmp.write('BM', 0, 'latin1');
  bmp.writeUInt32LE(bmp.length, 2);
  bmp.writeUInt32LE(14 + 40 + 256 * 4, 10);
  bmp.writeUInt32LE(40, 14);
  bmp.writeInt32LE(300, 18);
  bmp.writeInt32LE(300, 22);
  bmp.writeUInt16LE(1, 26);
  bmp.writeUInt16LE(8, 28);
  bmp.writeUInt32LE(1, 30); // BI_RLE8
  return bmp;
}

async function noisy(width: number, height: number, format: 'jpeg' | 'png'): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7919) % 251;
  const image = sharp(pixels, { raw: { width, height, channels: 3 } });
  return (format === 'jpeg' ? image.jpeg() : image.png()).toBuffer();
}

async function reasonOf(bytes: Buffer): Promise<string> {
  const outcome = await renderImage(bytes, options);
  if (!('reason' in outcome)) throw new Error('expected the image to be skipped');
  return outcome.reason;
}

let jpeg: Buffer;
let png: Buffer;

beforeAll(async () => {
  jpeg = await noisy(640, 480, 'jpeg');
  png = await noisy(640, 480, 'png');
});

describe('bad inputs are skipped with a fixed reason', () => {
  it('zero-byte file', async () => {
    expect(await reasonOf(Buffer.alloc(0))).toBe('empty file (0 bytes)');
  });

  it('truncated JPEG and PNG', async () => {
    expect(await reasonOf(jpeg.subarray(0, Math.floor(jpeg.length / 2)))).toBe('not a readable image: truncated or corrupt jpeg data');
    expect(await reasonOf(png.subarray(0, Math.floor(png.length / 2)))).toBe('not a readable image: truncated or corrupt png data');
  });

  it('not an image despite its extension', async () => {
    expect(await reasonOf(Buffer.from('this is text, not a PNG'))).toBe('not a readable image: unknown format or corrupt header');
    expect(await reasonOf(Buffer.from([0xff, 0xd8, 0xff, 0x00, 0x01]))).toBe('not a readable image: unknown format or corrupt header');
  });

  it('unsupported format: content sharp knows but sd-scripts training data should not be', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="600" height="600"><rect width="600" height="600"/></svg>');
    expect(await reasonOf(svg)).toBe('unsupported format: the file holds svg data; convert it to PNG or JPEG');
    expect(await reasonOf(rleBmp())).toBe('unsupported format: the file holds a RLE-compressed BMP; convert it to PNG or JPEG');
  });

  it('unsupported format: by extension, before anything is read', () => {
    const plan = planDataset(
      { files: ['a.heic', 'b.psd', 'c.jpg'], folders: [] },
      { repeats: 1, concept: 'x', trainDataDir: 'runs/r/dataset', outputExtension: '.png' },
    );
    expect(plan.images.map((i) => i.source)).toEqual(['c.jpg']);
    expect(plan.skipped).toEqual([
      { source: 'a.heic', reason: expect.stringMatching(/^unsupported format: \.heic files are not read \(convert to one of \.png \.jpg .* \.gif\)$/) },
      { source: 'b.psd', reason: expect.stringMatching(/^unsupported format: \.psd files are not read/) },
    ]);
  });

  it('decompression bomb: refused from the header, never decoded', async () => {
    const side = 50_000;
    expect(side * side).toBeGreaterThan(MAX_INPUT_PIXELS);
    expect(await reasonOf(pngClaiming(side, side))).toBe(
      `too large: 50000×50000 is 2500000000 pixels, more than the ${MAX_INPUT_PIXELS} decoded at most (decompression bomb guard)`,
    );
  });

  it('1×1 image', async () => {
    const dot = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#000' } }).png().toBuffer();
    expect(await reasonOf(dot)).toBe('a 1×1 image (a placeholder or tracking pixel), not a picture');
  });

  it('below the minimum side', async () => {
    const small = await noisy(200, 300, 'png');
    expect(await reasonOf(small)).toBe('too small: 200×300, the shorter side is below the minimum of 256 px (preprocess.minSide)');
  });

  it('truncated BMP', async () => {
    const bmp = rleBmp();
    bmp.writeUInt32LE(0, 30); // BI_RGB: now the 300×300 pixels are simply missing
    expect(await reasonOf(bmp)).toBe('not a readable image: truncated or corrupt bmp data');
  });

  it('keeps every image its own reason while many are processed at once', async () => {
    // libvips' error buffer is process-wide: decoder messages leak between concurrent images.
    const cases: [Buffer, string][] = [
      [jpeg.subarray(0, 4000), 'not a readable image: truncated or corrupt jpeg data'],
      [png.subarray(0, 4000), 'not a readable image: truncated or corrupt png data'],
      [Buffer.from('nope'), 'not a readable image: unknown format or corrupt header'],
      [Buffer.alloc(0), 'empty file (0 bytes)'],
    ];
    const many = Array.from({ length: 24 }, (_, i) => cases[i % cases.length]);
    const [reasons, good] = await Promise.all([Promise.all(many.map(([bytes]) => reasonOf(bytes))), renderImage(jpeg, options)]);
    expect(reasons).toEqual(many.map(([, reason]) => reason));
    expect('reason' in good).toBe(false);
  });
});
