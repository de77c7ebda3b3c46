/**
 * SageMaker training job names. The name is the launch's idempotency key (CreateTrainingJob fails
 * for an existing name), so it must be the same on every retry and replay of one workflow and
 * differ between workflows. No node imports: the workflow computes it in its sandbox.
 */

/** SageMaker's rule for training job names. */
export const TRAINING_JOB_NAME_PATTERN = /^[a-zA-Z0-9](-*[a-zA-Z0-9])*$/;
export const TRAINING_JOB_NAME_MAX_LENGTH = 63;

const PREFIX = 'lora';
const HASH_HEX_DIGITS = 12;
// "lora-" + name + "-" + hash must fit in 63 characters.
const MAX_NAME_PART = TRAINING_JOB_NAME_MAX_LENGTH - PREFIX.length - 2 - HASH_HEX_DIGITS;

/** `lora-<run name, sanitised and truncated>-<12 hex digits of FNV-1a 64 of the workflow id>`. */
export function trainingJobName(runName: string, workflowId: string): string {
  const hash = fnv1a64Hex(workflowId).slice(0, HASH_HEX_DIGITS);
  const namePart = runName
    .replace(/[^a-zA-Z0-9]+/g, '-')
    .slice(0, MAX_NAME_PART)
    .replace(/^-+|-+$/g, '');
  return namePart === '' ? `${PREFIX}-${hash}` : `${PREFIX}-${namePart}-${hash}`;
}

const FNV64_OFFSET = 0xcbf29ce484222325n;
const FNV64_PRIME = 0x100000001b3n;
const MASK64 = 0xffffffffffffffffn;

/** FNV-1a 64-bit over the UTF-8 bytes of `text`, as 16 lower-case hex digits. */
export function fnv1a64Hex(text: string): string {
  let hash = FNV64_OFFSET;
  for (const byte of utf8Bytes(text)) {
    hash = ((hash ^ BigInt(byte)) * FNV64_PRIME) & MASK64;
  }
  return hash.toString(16).padStart(16, '0');
}

/** UTF-8 encoding without TextEncoder; lone surrogates become U+FFFD as TextEncoder does. */
function* utf8Bytes(text: string): Generator<number> {
  for (const char of text) {
    let cp = char.codePointAt(0) ?? 0;
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    if (cp < 0x80) {
      yield cp;
    } else if (cp < 0x800) {
      yield 0xc0 | (cp >> 6);
      yield 0x80 | (cp & 0x3f);
    } else if (cp < 0x10000) {
      yield 0xe0 | (cp >> 12);
      yield 0x80 | ((cp >> 6) & 0x3f);
      yield 0x80 | (cp & 0x3f);
    } else {
      yield 0xf0 | (cp >> 18);
      yield 0x80 | ((cp >> 12) & 0x3f);
      yield 0x80 | ((cp >> 6) & 0x3f);
      yield 0x80 | (cp & 0x3f);
    }
  }
}
