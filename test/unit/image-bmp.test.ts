/** BMP variants no common encoder here writes (Pillow-written ones are checked in the formats test). */
import { BmpError, decodeBmp, readBmpHeader } from '../../lib/image/bmp';

interface BmpSpec {
  width: number;
  height: number;
  bitsPerPixel: number;
  compression?: number;
  dibSize?: number;
  masks?: number[];
  palette?: number[][];
  /** Rows as stored (bottom-up unless height < 0), without padding. */
  rows: number[][];
}

function bmp(spec: BmpSpec): Buffer {
  const dibSize = spec.dibSize ?? 40;
  const stride = Math.floor((spec.bitsPerPixel * spec.width + 31) / 32) * 4;
  const paletteBytes = (spec.palette?.length ?? 0) * 4;
  // With a 40-byte header, bit-field masks follow it; larger headers hold them.
  const maskBytes = dibSize === 40 ? (spec.masks?.length ?? 0) * 4 : 0;
  const offset = 14 + dibSize + maskBytes + paletteBytes;
  const out = Buffer.alloc(offset + stride * Math.abs(spec.height));
  out.write('BM', 0, 'latin1');
  out.writeUInt32LE(out.length, 2);
  out.writeUInt32LE(offset, 10);
  out.writeUInt32LE(dibSize, 14);
  out.writeInt32LE(spec.width, 18);
  out.writeInt32LE(spec.height, 22);
  out.writeUInt16LE(1, 26);
  out.writeUInt16LE(spec.bitsPerPixel, 28);
  out.writeUInt32LE(spec.compression ?? 0, 30);
  out.writeUInt32LE(spec.palette?.length ?? 0, 46);
  spec.masks?.forEach((mask, i) => out.writeUInt32LE(mask >>> 0, 54 + i * 4));
  spec.palette?.forEach(([r, g, b], i) => out.set([b, g, r, 0], 14 + dibSize + i * 4));
  spec.rows.forEach((row, y) => out.set(row, offset + y * stride));
  return out;
}

describe('decodeBmp', () => {
  it('reads 32-bit bit fields with alpha from a V5 header, top-down', () => {
    const pixel = (r: number, g: number, b: number, a: number) => [b, g, r, a];
    const image = decodeBmp(
      bmp({
        width: 2,
        height: -2,
        bitsPerPixel: 32,
        compression: 3,
        dibSize: 124,
        masks: [0x00ff0000, 0x0000ff00, 0x000000ff, 0xff000000],
        rows: [
          [...pixel(255, 0, 0, 255), ...pixel(0, 255, 0, 128)],
          [...pixel(0, 0, 255, 0), ...pixel(10, 20, 30, 255)],
        ],
      }),
    );
    expect(image).toMatchObject({ width: 2, height: 2, channels: 4 });
    expect([...image.data]).toEqual([255, 0, 0, 255, 0, 255, 0, 128, 0, 0, 255, 0, 10, 20, 30, 255]);
  });

  it('reads 16-bit 5-6-5 bit fields, bottom-up', () => {
    const rgb565 = (r: number, g: number, b: number) => {
      const value = (r << 11) | (g << 5) | b;
      return [value & 0xff, value >> 8];
    };
    const image = decodeBmp(
      bmp({
        width: 1,
        height: 2,
        bitsPerPixel: 16,
        compression: 3,
        masks: [0xf800, 0x07e0, 0x001f],
        rows: [rgb565(31, 0, 0), rgb565(0, 63, 31)], // stored bottom row first
      }),
    );
    expect(image.channels).toBe(3);
    expect([...image.data]).toEqual([0, 255, 255, 255, 0, 0]);
  });

  it('reads a 4-bit palette with padded rows', () => {
    const image = decodeBmp(
      bmp({
        width: 3,
        height: 1,
        bitsPerPixel: 4,
        palette: [[0, 0, 0], [255, 128, 0], [0, 0, 255]],
        rows: [[0x12, 0x00]],
      }),
    );
    expect([...image.data]).toEqual([255, 128, 0, 0, 0, 255, 0, 0, 0]);
  });

  it('reads the size from the header alone', () => {
    expect(readBmpHeader(bmp({ width: 7, height: -5, bitsPerPixel: 24, rows: [] }))).toEqual({ width: 7, height: 5, bitsPerPixel: 24 });
  });

  it('refuses what it cannot read, saying whether the file is broken or merely unsupported', () => {
    const kind = (bytes: Buffer) => {
      try {
        decodeBmp(bytes);
        return 'decoded';
      } catch (err) {
        return err instanceof BmpError ? err.kind : 'other error';
      }
    };
    expect(kind(bmp({ width: 2, height: 2, bitsPerPixel: 8, compression: 1, palette: [[0, 0, 0]], rows: [] }))).toBe('unsupported');
    expect(kind(bmp({ width: 2, height: 2, bitsPerPixel: 24, rows: [] }).subarray(0, 60))).toBe('corrupt');
    expect(kind(bmp({ width: 2, height: 2, bitsPerPixel: 7, rows: [] }))).toBe('corrupt');
    expect(kind(Buffer.from('BM'))).toBe('corrupt');
  });
});
