import { createHash } from 'node:crypto';
import {
  findNonFinite,
  floatToBfloat16Bits,
  floatToHalfBits,
  halfBitsToFloat,
  headerLengthOf,
  parseSafetensorsHeader,
  readSafetensorsHeader,
  sha256AfterHeader,
  tensorValues,
  writeSafetensors,
} from '../../lib/safetensors';

/** A file from a hand-written header, to produce exactly the defects the reader must catch. */
function rawFile(header: unknown, data: Buffer, headerText = JSON.stringify(header)): Buffer {
  const json = Buffer.from(headerText);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

describe('writeSafetensors / readSafetensorsHeader', () => {
  const tensors = [
    { name: 'b.weight', dtype: 'F32' as const, shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 0, 1e-3, -7) },
    { name: 'a.alpha', dtype: 'F16' as const, shape: [], data: Float32Array.of(16) },
    { name: 'c.half', dtype: 'F16' as const, shape: [4], data: Float32Array.of(0.5, -1.25, 65504, 0.1) },
  ];
  const file = writeSafetensors(tensors, { ss_network_dim: '8', note: 'hello' });

  it('round-trips tensors and metadata with sorted names and contiguous offsets', () => {
    const header = readSafetensorsHeader(file);
    expect(Object.keys(header.tensors)).toEqual(['a.alpha', 'b.weight', 'c.half']);
    expect(header.tensors['a.alpha']).toEqual({ dtype: 'F16', shape: [], data_offsets: [0, 2] });
    expect(header.tensors['b.weight']).toEqual({ dtype: 'F32', shape: [2, 3], data_offsets: [2, 26] });
    expect(header.tensors['c.half']).toEqual({ dtype: 'F16', shape: [4], data_offsets: [26, 34] });
    expect(header.metadata).toEqual({ ss_network_dim: '8', note: 'hello' });
    expect(file.length).toBe(8 + header.headerLength + 34);
    expect(Array.from(tensorValues(file, header, 'b.weight'))).toEqual(Array.from(tensors[0].data));
    expect(Array.from(tensorValues(file, header, 'a.alpha'))).toEqual([16]);
    // 0.1 is not representable in F16: the nearest half is 0.0999755859375.
    expect(Array.from(tensorValues(file, header, 'c.half'))).toEqual([0.5, -1.25, 65504, 0.0999755859375]);
  });

  it('pads the header with spaces so the data starts 8-byte aligned', () => {
    const header = readSafetensorsHeader(file);
    expect(header.headerLength % 8).toBe(0);
    const text = file.toString('utf8', 8, 8 + header.headerLength);
    expect(text).toMatch(/^\{.*\} *$/);
  });

  it('rejects tensors whose data does not fit the shape, and duplicate names', () => {
    expect(() => writeSafetensors([{ name: 'x', dtype: 'F32', shape: [2, 2], data: new Float32Array(3) }], {})).toThrow(
      'tensor "x": shape [2, 2] needs 4 values, got 3',
    );
    const one = { name: 'x', dtype: 'F32' as const, shape: [1], data: new Float32Array(1) };
    expect(() => writeSafetensors([one, one], {})).toThrow('tensor "x" is given twice');
  });

  it('decodes BF16', () => {
    // bfloat16 is the upper half of a float32: 1.5 = 0x3fc00000, -2 = 0xc0000000.
    const data = Buffer.alloc(4);
    data.writeUInt16LE(0x3fc0, 0);
    data.writeUInt16LE(0xc000, 2);
    const buf = rawFile({ t: { dtype: 'BF16', shape: [2], data_offsets: [0, 4] } }, data);
    expect(Array.from(tensorValues(buf, readSafetensorsHeader(buf), 't'))).toEqual([1.5, -2]);
  });

  it('refuses to decode integer tensors and unknown names', () => {
    const buf = rawFile({ t: { dtype: 'I32', shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(4));
    const header = readSafetensorsHeader(buf);
    expect(() => tensorValues(buf, header, 't')).toThrow('tensor "t": cannot decode dtype I32 (only F16, BF16 and F32)');
    expect(() => tensorValues(buf, header, 'missing')).toThrow('tensor "missing" is not in the file');
  });

  it('hashes exactly the bytes after the header', () => {
    const header = readSafetensorsHeader(file);
    const expected = createHash('sha256').update(file.subarray(8 + header.headerLength)).digest('hex');
    expect(sha256AfterHeader(file)).toBe(expected);
    // The metadata lives in the header, so it does not change the hash.
    expect(sha256AfterHeader(writeSafetensors(tensors, { other: 'metadata' }))).toBe(expected);
  });
});

describe('readSafetensorsHeader errors', () => {
  const tensor = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };

  it('names a file shorter than the length prefix', () => {
    expect(() => readSafetensorsHeader(Buffer.alloc(5))).toThrow('file is 5 bytes, shorter than the 8-byte header length prefix');
  });

  it('names an insane header length', () => {
    const buf = Buffer.alloc(16);
    buf.writeBigUInt64LE(200_000_000n);
    expect(() => readSafetensorsHeader(buf)).toThrow('header length 200000000 exceeds the 100000000-byte limit');
    buf.writeBigUInt64LE(0xffffffffffffffffn);
    expect(() => readSafetensorsHeader(buf)).toThrow('exceeds the 100000000-byte limit');
  });

  it('names a header that runs past the end of the file', () => {
    const good = rawFile({ t: tensor }, Buffer.alloc(8));
    const truncated = good.subarray(0, 20);
    expect(() => readSafetensorsHeader(truncated)).toThrow(/^header length \d+ runs past the end of the file \(20 bytes\)$/);
  });

  it('names invalid JSON', () => {
    expect(() => readSafetensorsHeader(rawFile(null, Buffer.alloc(0), '{"t": {'))).toThrow(/^header is not valid JSON: /);
    expect(() => readSafetensorsHeader(rawFile(null, Buffer.alloc(0), '[1, 2]'))).toThrow('header JSON is not an object');
  });

  it('names offsets outside the data section', () => {
    const buf = rawFile({ t: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(8));
    expect(() => readSafetensorsHeader(buf)).toThrow('tensor "t": data_offsets [0, 16] lie outside the 8-byte data section');
  });

  it('names offsets that leave a gap', () => {
    const buf = rawFile(
      {
        a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
        b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
      },
      Buffer.alloc(12),
    );
    expect(() => readSafetensorsHeader(buf)).toThrow('tensor "b": data_offsets start at 8, expected 4 (offsets must be contiguous)');
  });

  it('names trailing bytes that no tensor covers', () => {
    const buf = rawFile({ t: tensor }, Buffer.alloc(12));
    expect(() => readSafetensorsHeader(buf)).toThrow('tensors cover 8 bytes but the data section holds 12 (offsets must be contiguous)');
  });

  it('names a tensor given twice as such, however its offsets look', () => {
    const entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    const twice = rawFile(undefined, Buffer.alloc(4), `{"a \\"quoted\\" {name}":${entry}, "b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"a \\"quoted\\" {name}" :${entry}}`);
    expect(() => readSafetensorsHeader(twice)).toThrow('header names tensor "a \\"quoted\\" {name}" twice');
    const metadataTwice = rawFile(undefined, Buffer.alloc(4), `{"__metadata__":{"x":"1"},"t":${entry},"__metadata__":{"x":"2"}}`);
    expect(() => readSafetensorsHeader(metadataTwice)).toThrow('header names __metadata__ twice');
    // The same key in different nested objects is no duplicate.
    const nested = rawFile(undefined, Buffer.alloc(4), `{"__metadata__":{"dtype":"x","shape":"y"},"t":${entry}}`);
    expect(Object.keys(readSafetensorsHeader(nested).tensors)).toEqual(['t']);
  });

  it('refuses a header that is not valid UTF-8, as the safetensors library does', () => {
    const text = Buffer.from('{"__metadata__":{"ss_output_name":"caf\xe9"},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 'latin1');
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(text.length));
    expect(() => readSafetensorsHeader(Buffer.concat([prefix, text, Buffer.alloc(4)]))).toThrow('header is not valid UTF-8 from byte 46 (0xE9)');
  });

  it('names an unknown dtype', () => {
    const buf = rawFile({ t: { dtype: 'F17', shape: [2], data_offsets: [0, 8] } }, Buffer.alloc(8));
    expect(() => readSafetensorsHeader(buf)).toThrow('tensor "t": unknown dtype "F17"');
  });

  it('names a shape that does not match the byte size', () => {
    const buf = rawFile({ t: { dtype: 'F16', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8));
    expect(() => readSafetensorsHeader(buf)).toThrow('tensor "t": shape [3] of F16 needs 6 bytes but data_offsets span 8');
  });

  it('names a malformed shape or metadata value', () => {
    const badShape = rawFile({ t: { dtype: 'F32', shape: [-1], data_offsets: [0, 8] } }, Buffer.alloc(8));
    expect(() => readSafetensorsHeader(badShape)).toThrow('tensor "t": shape [-1] is not a list of non-negative integers');
    const badMetadata = rawFile({ __metadata__: { ss_steps: 12 }, t: tensor }, Buffer.alloc(8));
    expect(() => readSafetensorsHeader(badMetadata)).toThrow('__metadata__.ss_steps is not a string');
  });
});

describe('float32 → float16 conversion', () => {
  it.each([
    [1, '3c00'],
    [-2, 'c000'],
    [65504, '7bff'],
    [65520, '7c00'], // rounds up past the largest half: +Inf
    [Infinity, '7c00'],
    [-Infinity, 'fc00'],
    [2 ** -24, '0001'], // smallest subnormal
    [2 ** -14, '0400'], // smallest normal
    [1e-8, '0000'], // below half the smallest subnormal
    [2 ** -25, '0000'], // subnormal halfway: ties to even (zero)
    [3 * 2 ** -25, '0002'], // subnormal halfway: ties to even (up)
    [-0, '8000'],
    [1 + 2 ** -11, '3c00'], // halfway: ties to even (down)
    [1 + 3 * 2 ** -11, '3c02'], // halfway: ties to even (up)
    [0.1, '2e66'],
  ])('%p → 0x%s', (value, hexBits) => {
    expect(floatToHalfBits(value).toString(16).padStart(4, '0')).toBe(hexBits);
  });

  it('keeps NaN a NaN', () => {
    expect(Number.isNaN(halfBitsToFloat(floatToHalfBits(NaN)))).toBe(true);
  });

  it('decodes every finite half back to the value it encodes', () => {
    const mismatches: string[] = [];
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = halfBitsToFloat(bits);
      if (!Number.isNaN(value) && floatToHalfBits(value) !== bits) mismatches.push(bits.toString(16));
    }
    expect(mismatches).toEqual([]);
  });
});

describe('reading the header alone', () => {
  const file = writeSafetensors([{ name: 'w', dtype: 'F32', shape: [4], data: Float32Array.of(1, 2, 3, 4) }], { k: 'v' });

  it('parses from the first 8 + N bytes and the file size', () => {
    const headerEnd = 8 + headerLengthOf(file, file.length);
    const header = parseSafetensorsHeader(file.subarray(0, headerEnd), file.length);
    expect(header).toEqual(readSafetensorsHeader(file));
  });

  it('checks offsets against the file size, not against the bytes it was given', () => {
    const headerEnd = 8 + headerLengthOf(file, file.length);
    expect(() => parseSafetensorsHeader(file.subarray(0, headerEnd), file.length - 4)).toThrow(
      'tensor "w": data_offsets [0, 16] lie outside the 12-byte data section',
    );
    expect(() => parseSafetensorsHeader(file.subarray(0, headerEnd - 1), file.length)).toThrow(`got ${headerEnd - 1} bytes of a ${headerEnd}-byte header`);
  });

  it('names a dtype that only exists on Object.prototype as unknown', () => {
    const buf = rawFile({ t: { dtype: 'constructor', shape: [2], data_offsets: [0, 8] } }, Buffer.alloc(8));
    expect(() => readSafetensorsHeader(buf)).toThrow('tensor "t": unknown dtype "constructor"');
  });
});

describe('findNonFinite', () => {
  function single(dtype: 'F16' | 'BF16' | 'F32', values: number[]) {
    const buf = writeSafetensors([{ name: 't', dtype, shape: [values.length], data: Float32Array.from(values) }], {});
    return findNonFinite(buf, readSafetensorsHeader(buf), 't');
  }

  it.each(['F16', 'BF16', 'F32'] as const)('finds the first NaN or Inf in %s and nothing in finite data', (dtype) => {
    expect(single(dtype, [0, -1.5, 3e-5, 100])).toBeUndefined();
    expect(single(dtype, [0, 1, NaN, Infinity])).toEqual({ index: 2, kind: 'NaN' });
    expect(single(dtype, [0, -Infinity, NaN])).toEqual({ index: 1, kind: 'Inf' });
  });

  it('sees values that overflow the narrower format as Inf', () => {
    expect(single('F16', [1, 70000])).toEqual({ index: 1, kind: 'Inf' });
    expect(single('BF16', [1, 3e38])).toBeUndefined(); // BF16 has float32's range
  });

  it('refuses dtypes that are not floats', () => {
    const buf = rawFile({ t: { dtype: 'I32', shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(4));
    expect(() => findNonFinite(buf, readSafetensorsHeader(buf), 't')).toThrow('tensor "t": cannot check dtype I32 for NaN/Inf (only F16, BF16 and F32)');
  });
});

describe('float32 → bfloat16 conversion', () => {
  it.each([
    [1, '3f80'],
    [-2, 'c000'],
    [1 + 2 ** -8, '3f80'], // halfway: ties to even (down)
    [1 + 3 * 2 ** -8, '3f82'], // halfway: ties to even (up)
    [3.4028234663852886e38, '7f80'], // rounds up to +Inf
    [Infinity, '7f80'],
  ])('%p → 0x%s', (value, hexBits) => {
    expect(floatToBfloat16Bits(value).toString(16).padStart(4, '0')).toBe(hexBits);
  });

  it('keeps NaN a NaN and round-trips through the writer', () => {
    expect(floatToBfloat16Bits(NaN) & 0x7f80).toBe(0x7f80);
    expect(floatToBfloat16Bits(NaN) & 0x007f).not.toBe(0);
    const buf = writeSafetensors([{ name: 't', dtype: 'BF16', shape: [3], data: Float32Array.of(1.5, -2, 0.1) }], {});
    expect(Array.from(tensorValues(buf, readSafetensorsHeader(buf), 't'))).toEqual([1.5, -2, 0.10009765625]);
  });
});
