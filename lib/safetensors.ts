/**
 * The safetensors container: u64 little-endian header length N, N bytes of JSON (space-padded),
 * then one data section that the header's `data_offsets` index without gaps. Pure: buffers in,
 * buffers out, so the LoRA writer, the dry-run trainer and the verifier share one implementation.
 */
import { createHash } from 'node:crypto';
import { firstInvalidUtf8 } from './utf8';

/** Bytes per element of every dtype the format defines; anything else is rejected on read. */
const DTYPE_SIZES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

/** The upstream parser refuses headers above 100 MB; so do we, before allocating anything. */
export const MAX_HEADER_BYTES = 100_000_000;

export type WritableDtype = 'F32' | 'F16' | 'BF16';

export interface TensorToWrite {
  name: string;
  dtype: WritableDtype;
  /** `[]` is a scalar (one element). */
  shape: number[];
  data: Float32Array;
}

export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** [begin, end) relative to the start of the data section. */
  data_offsets: [number, number];
}

export interface SafetensorsHeader {
  /** N, the JSON length; the data section starts at byte 8 + N. */
  headerLength: number;
  tensors: Record<string, TensorInfo>;
  metadata: Record<string, string>;
}

const METADATA_KEY = '__metadata__';

function elementCount(shape: readonly number[]): number {
  return shape.reduce((count, dim) => count * dim, 1);
}

export function writeSafetensors(tensors: readonly TensorToWrite[], metadata: Record<string, string>): Buffer {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = { [METADATA_KEY]: { ...metadata } };
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [index, tensor] of sorted.entries()) {
    if (tensor.name === '' || tensor.name === METADATA_KEY) throw new Error(`tensor name "${tensor.name}" is reserved or empty`);
    if (index > 0 && sorted[index - 1].name === tensor.name) throw new Error(`tensor "${tensor.name}" is given twice`);
    if (!tensor.shape.every((dim) => Number.isInteger(dim) && dim >= 0)) {
      throw new Error(`tensor "${tensor.name}": shape [${tensor.shape.join(', ')}] must hold non-negative integers`);
    }
    const count = elementCount(tensor.shape);
    if (tensor.data.length !== count) {
      throw new Error(`tensor "${tensor.name}": shape [${tensor.shape.join(', ')}] needs ${count} values, got ${tensor.data.length}`);
    }
    const bytes = ENCODERS[tensor.dtype](tensor.data);
    header[tensor.name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  return Buffer.concat([...framedHeader(header), ...chunks]);
}

/** The 8-byte length and the header JSON, padded with spaces so the data starts 8-byte aligned, as the reference writer does. */
function framedHeader(header: Record<string, unknown>): [Buffer, Buffer] {
  const json = JSON.stringify(header);
  const headerBytes = Buffer.alloc(Math.ceil(Buffer.byteLength(json) / 8) * 8, ' ');
  headerBytes.write(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  return [prefix, headerBytes];
}

/**
 * The same file with other metadata: the header is rewritten, the data section kept byte for byte
 * (so hashes of the bytes after the header do not change).
 */
export function withMetadata(file: Buffer, metadata: Record<string, string>): Buffer {
  const headerLength = headerLengthOf(file, file.length);
  const header = JSON.parse(file.toString('utf8', 8, 8 + headerLength)) as Record<string, unknown>;
  return Buffer.concat([...framedHeader({ ...header, [METADATA_KEY]: { ...metadata } }), file.subarray(8 + headerLength)]);
}

/** Parses and checks the header against the file: every error says what is wrong and where. */
export function readSafetensorsHeader(buf: Buffer): SafetensorsHeader {
  return parseSafetensorsHeader(buf, buf.length);
}

/**
 * N, the header length, from a file's first 8 bytes, checked against the size limit and the file
 * size before anything is allocated: a caller can then read just the 8 + N header bytes.
 */
export function headerLengthOf(prefix: Buffer, fileSize: number): number {
  if (fileSize < 8) throw new Error(`file is ${fileSize} bytes, shorter than the 8-byte header length prefix`);
  if (prefix.length < 8) throw new Error(`got ${prefix.length} of the 8 header length bytes`);
  const declared = prefix.readBigUInt64LE(0);
  if (declared < 2n) throw new Error(`header length ${declared} is too small to hold a JSON object`);
  if (declared > BigInt(MAX_HEADER_BYTES)) throw new Error(`header length ${declared} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLength = Number(declared);
  if (8 + headerLength > fileSize) throw new Error(`header length ${headerLength} runs past the end of the file (${fileSize} bytes)`);
  return headerLength;
}

/**
 * Parses the header from the file's first 8 + N bytes (more may follow) and the file's total size,
 * so a large file's header can be checked without reading its data section.
 */
export function parseSafetensorsHeader(start: Buffer, fileSize: number): SafetensorsHeader {
  const headerLength = headerLengthOf(start, fileSize);
  if (start.length < 8 + headerLength) throw new Error(`got ${start.length} bytes of a ${8 + headerLength}-byte header`);
  const headerBytes = start.subarray(8, 8 + headerLength);
  // The safetensors library refuses such a header: a file that passed here would then not load.
  const invalid = firstInvalidUtf8(headerBytes);
  if (invalid) throw new Error(`header is not valid UTF-8 from byte ${8 + invalid.offset} (0x${invalid.byte.toString(16).toUpperCase().padStart(2, '0')})`);
  const json = headerBytes.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw new Error(`header is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('header JSON is not an object');
  // JSON.parse keeps the last of two equal keys; say so rather than report the lost tensor's offsets.
  const duplicate = firstDuplicateKey(json);
  if (duplicate !== undefined) throw new Error(`header names ${duplicate === METADATA_KEY ? '__metadata__' : `tensor ${JSON.stringify(duplicate)}`} twice`);

  const dataLength = fileSize - 8 - headerLength;
  // Null-prototype maps: a tensor named "__proto__" must stay a plain entry.
  const metadata: Record<string, string> = Object.create(null);
  const tensors: Record<string, TensorInfo> = Object.create(null);
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === METADATA_KEY) {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new Error('__metadata__ is not an object');
      for (const [key, value] of Object.entries(entry)) {
        if (typeof value !== 'string') throw new Error(`__metadata__.${key} is not a string`);
        metadata[key] = value;
      }
      continue;
    }
    tensors[name] = checkTensorEntry(name, entry, dataLength);
  }

  // The data section must be indexed completely, in order, without gaps or overlaps.
  let expectedBegin = 0;
  const byOffset = Object.entries(tensors).sort(([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0]);
  for (const [name, info] of byOffset) {
    if (info.data_offsets[0] !== expectedBegin) {
      throw new Error(
        `tensor "${name}": data_offsets start at ${info.data_offsets[0]}, expected ${expectedBegin} (offsets must be contiguous)`,
      );
    }
    expectedBegin = info.data_offsets[1];
  }
  if (expectedBegin !== dataLength) {
    throw new Error(`tensors cover ${expectedBegin} bytes but the data section holds ${dataLength} (offsets must be contiguous)`);
  }
  return { headerLength, tensors, metadata };
}

/** The first key that occurs twice in the top-level object of valid JSON text, if any. */
function firstDuplicateKey(json: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const char = json[i];
    if (char === '{' || char === '[') depth += 1;
    else if (char === '}' || char === ']') depth -= 1;
    else if (char === '"') {
      let end = i + 1;
      while (json[end] !== '"') end += json[end] === '\\' ? 2 : 1;
      const isKey = depth === 1 && /^\s*:/.test(json.slice(end + 1, end + 64));
      if (isKey) {
        const key = JSON.parse(json.slice(i, end + 1)) as string;
        if (seen.has(key)) return key;
        seen.add(key);
      }
      i = end;
    }
  }
  return undefined;
}

function checkTensorEntry(name: string, entry: unknown, dataLength: number): TensorInfo {
  if (typeof entry !== 'object' || entry === null) throw new Error(`tensor "${name}": entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_SIZES, dtype)) throw new Error(`tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
    throw new Error(`tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new Error(`tensor "${name}": data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin || end > dataLength) {
    throw new Error(`tensor "${name}": data_offsets [${begin}, ${end}] lie outside the ${dataLength}-byte data section`);
  }
  const expectedBytes = elementCount(shape) * DTYPE_SIZES[dtype];
  if (end - begin !== expectedBytes) {
    throw new Error(
      `tensor "${name}": shape [${shape.join(', ')}] of ${dtype} needs ${expectedBytes} bytes but data_offsets span ${end - begin}`,
    );
  }
  return { dtype, shape: shape as number[], data_offsets: [begin, end] };
}

/** Decodes one floating-point tensor (F16, BF16, F32) to float32 values. */
export function tensorValues(buf: Buffer, header: SafetensorsHeader, name: string): Float32Array {
  const info = Object.hasOwn(header.tensors, name) ? header.tensors[name] : undefined;
  if (!info) throw new Error(`tensor "${name}" is not in the file`);
  const start = 8 + header.headerLength + info.data_offsets[0];
  const count = elementCount(info.shape);
  const values = new Float32Array(count);
  switch (info.dtype) {
    case 'F32':
      for (let i = 0; i < count; i++) values[i] = buf.readFloatLE(start + 4 * i);
      break;
    case 'F16':
      for (let i = 0; i < count; i++) values[i] = halfBitsToFloat(buf.readUInt16LE(start + 2 * i));
      break;
    case 'BF16':
      for (let i = 0; i < count; i++) values[i] = bfloat16BitsToFloat(buf.readUInt16LE(start + 2 * i));
      break;
    default:
      throw new Error(`tensor "${name}": cannot decode dtype ${info.dtype} (only F16, BF16 and F32)`);
  }
  return values;
}

/** SHA-256 (hex) of everything after the header: what sd-scripts stores as `sshs_model_hash`. */
export function sha256AfterHeader(buf: Buffer): string {
  return createHash('sha256')
    .update(buf.subarray(8 + headerLengthOf(buf, buf.length)))
    .digest('hex');
}

/** Where a floating-point tensor first holds a NaN or an infinity, or undefined when it has none. */
export interface NonFinite {
  index: number;
  kind: 'NaN' | 'Inf';
}

/**
 * The bit patterns with an all-ones exponent (NaN and ±Inf) per float dtype: the check reads the
 * raw bits in place, so a large tensor is neither decoded nor copied.
 */
const NON_FINITE_BITS: Record<string, { bytes: 2 | 4; exponent: number; mantissa: number }> = {
  F16: { bytes: 2, exponent: 0x7c00, mantissa: 0x03ff },
  BF16: { bytes: 2, exponent: 0x7f80, mantissa: 0x007f },
  F32: { bytes: 4, exponent: 0x7f800000, mantissa: 0x007fffff },
};

export function findNonFinite(buf: Buffer, header: SafetensorsHeader, name: string): NonFinite | undefined {
  const info = Object.hasOwn(header.tensors, name) ? header.tensors[name] : undefined;
  if (!info) throw new Error(`tensor "${name}" is not in the file`);
  const layout = Object.hasOwn(NON_FINITE_BITS, info.dtype) ? NON_FINITE_BITS[info.dtype] : undefined;
  if (!layout) throw new Error(`tensor "${name}": cannot check dtype ${info.dtype} for NaN/Inf (only F16, BF16 and F32)`);
  const start = 8 + header.headerLength + info.data_offsets[0];
  const count = (info.data_offsets[1] - info.data_offsets[0]) / layout.bytes;
  for (let i = 0; i < count; i++) {
    const bits = layout.bytes === 2 ? buf.readUInt16LE(start + 2 * i) : buf.readUInt32LE(start + 4 * i);
    if ((bits & layout.exponent) === layout.exponent) return { index: i, kind: bits & layout.mantissa ? 'NaN' : 'Inf' };
  }
  return undefined;
}

const ENCODERS: Record<WritableDtype, (values: Float32Array) => Buffer> = { F32: encodeF32, F16: encodeF16, BF16: encodeBF16 };

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

function encodeF32(values: Float32Array): Buffer {
  // A Float32Array already holds little-endian binary32 on every platform Node runs on but a few.
  if (LITTLE_ENDIAN) return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  const out = Buffer.alloc(values.length * 4);
  for (let i = 0; i < values.length; i++) out.writeFloatLE(values[i], i * 4);
  return out;
}

function encodeF16(values: Float32Array): Buffer {
  const out = Buffer.alloc(values.length * 2);
  for (let i = 0; i < values.length; i++) out.writeUInt16LE(floatToHalfBits(values[i]), i * 2);
  return out;
}

function encodeBF16(values: Float32Array): Buffer {
  const out = Buffer.alloc(values.length * 2);
  for (let i = 0; i < values.length; i++) out.writeUInt16LE(floatToBfloat16Bits(values[i]), i * 2);
  return out;
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/** binary32 → bfloat16 (its upper half) with round-to-nearest-even; NaN stays a (quiet) NaN. */
export function floatToBfloat16Bits(value: number): number {
  f32[0] = value;
  const bits = f32Bits[0];
  if ((bits & 0x7f800000) === 0x7f800000 && bits & 0x007fffff) return (bits >>> 16) | 0x0040;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** IEEE 754 binary32 → binary16 with round-to-nearest-even, subnormals, overflow to ±Inf and NaN. */
export function floatToHalfBits(value: number): number {
  f32[0] = value;
  const bits = f32Bits[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | (mantissa ? 0x7e00 : 0x7c00);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Subnormal half: shift the implicit-one mantissa right; below 2^-25 everything rounds to zero.
    if (halfExponent < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - halfExponent;
    let half = full >>> shift;
    const remainder = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (remainder > halfway || (remainder === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Inf).
  if (remainder > 0x1000 || (remainder === 0x1000 && half & 1)) half++;
  return sign | half;
}

export function halfBitsToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function bfloat16BitsToFloat(bits: number): number {
  f32Bits[0] = bits << 16;
  return f32[0];
}
