import { fnv1a64Hex, TRAINING_JOB_NAME_MAX_LENGTH, TRAINING_JOB_NAME_PATTERN, trainingJobName } from '../../lib/job-name';
import { readFileSync } from 'node:fs';

describe('fnv1a64Hex', () => {
  // Reference vectors of the FNV-1a 64-bit hash.
  it.each([
    ['', 'cbf29ce484222325'],
    ['a', 'af63dc4c8601ec8c'],
    ['foobar', '85944171f73967e8'],
  ])('%j', (text, expected) => {
    expect(fnv1a64Hex(text)).toBe(expected);
  });

  it('hashes UTF-8 bytes like TextEncoder', () => {
    for (const text of ['é€😀', 'run/\u0000', 'lone \ud800 surrogate']) {
      expect(fnv1a64Hex(text)).toBe(fnv1a64OfBytes(new TextEncoder().encode(text)));
    }
  });
});

describe('trainingJobName', () => {
  it('reads as lora-<run name>-<12 hex digits>', () => {
    expect(trainingJobName('demo', 'lora-demo-20250101-120000')).toMatch(/^lora-demo-[0-9a-f]{12}$/);
  });

  it('is deterministic and depends on the workflow id', () => {
    expect(trainingJobName('demo', 'wf-1')).toBe(trainingJobName('demo', 'wf-1'));
    expect(trainingJobName('demo', 'wf-1')).not.toBe(trainingJobName('demo', 'wf-2'));
  });

  it('is a valid SageMaker name for many inputs, long and odd ones included', () => {
    const runNames = ['demo', 'a', '-', '', '---x---', 'x'.repeat(200), 'Ünïcödé name/with spaces', 'a_b.c', '9lives', 'my-run-'.repeat(10)];
    const seen = new Set<string>();
    for (const runName of runNames) {
      for (let i = 0; i < 200; i++) {
        const workflowId = `${runName}-${i}-${'z'.repeat(i)}`;
        const name = trainingJobName(runName, workflowId);
        expect(name.length).toBeLessThanOrEqual(TRAINING_JOB_NAME_MAX_LENGTH);
        expect(name).toMatch(TRAINING_JOB_NAME_PATTERN);
        seen.add(name);
      }
    }
    // Distinct workflow ids gave distinct names.
    expect(seen.size).toBe(runNames.length * 200);
  });

  it('truncates long run names to fit 63 characters', () => {
    const name = trainingJobName('x'.repeat(100), 'wf');
    expect(name).toHaveLength(63);
    expect(name).toMatch(/^lora-x+-[0-9a-f]{12}$/);
  });

  it('keeps the hash when the run name has nothing usable', () => {
    expect(trainingJobName('___', 'wf')).toMatch(/^lora-[0-9a-f]{12}$/);
  });

  it('imports nothing, so the workflow sandbox can compute it', () => {
    const source = readFileSync(require.resolve('../../lib/job-name'), 'utf8');
    expect(source).not.toMatch(/^\s*import\s|\brequire\(/m);
  });
});

function fnv1a64OfBytes(bytes: Uint8Array): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of bytes) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return hash.toString(16).padStart(16, '0');
}
