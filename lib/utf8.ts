/** Strict UTF-8, as Python's codec and the safetensors library read it. Pure. */

export interface InvalidUtf8 {
  /** Offset of the first byte that does not start a valid UTF-8 sequence, as Python reports it. */
  offset: number;
  byte: number;
}

/** The first ill-formed sequence, per the Unicode standard's table of well-formed UTF-8. */
export function firstInvalidUtf8(bytes: Uint8Array): InvalidUtf8 | undefined {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i];
    if (lead < 0x80) {
      i += 1;
      continue;
    }
    // [continuation bytes, allowed range of the second byte]; the rest are always 0x80-0xBF.
    let shape: [number, number, number] | undefined;
    if (lead >= 0xc2 && lead <= 0xdf) shape = [1, 0x80, 0xbf];
    else if (lead === 0xe0) shape = [2, 0xa0, 0xbf];
    else if ((lead >= 0xe1 && lead <= 0xec) || lead === 0xee || lead === 0xef) shape = [2, 0x80, 0xbf];
    else if (lead === 0xed) shape = [2, 0x80, 0x9f];
    else if (lead === 0xf0) shape = [3, 0x90, 0xbf];
    else if (lead >= 0xf1 && lead <= 0xf3) shape = [3, 0x80, 0xbf];
    else if (lead === 0xf4) shape = [3, 0x80, 0x8f];
    if (shape === undefined) return { offset: i, byte: lead };
    const [continuations, low, high] = shape;
    for (let k = 1; k <= continuations; k += 1) {
      const b = bytes[i + k];
      const [min, max] = k === 1 ? [low, high] : [0x80, 0xbf];
      if (b === undefined || b < min || b > max) return { offset: i, byte: lead };
    }
    i += continuations + 1;
  }
  return undefined;
}

