/**
 * Determinism guard: every saved history of a representative run must replay against today's
 * compiled workflow code. A failure means running workflows would break on deploy: guard the
 * change with `patched()`, or re-record with `npm run replay:record` if no run of the old shape
 * can be in flight. Replay runs in plain Node (scripts/replay-histories), as a worker would.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { compiledScript } from '../../adapters/project-paths';
import { REPLAY_FIXTURES_DIR } from '../support/replay-fixtures';

function replay(dir: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [compiledScript('scripts/replay-histories'), dir], (error, stdout) => {
      resolve({ code: error ? Number(error.code) : 0, stdout });
    });
  });
}

test('saved histories of representative runs replay deterministically', async () => {
  const fixtures = (await fs.readdir(REPLAY_FIXTURES_DIR)).filter((f) => f.endsWith('.json'));
  expect(fixtures.length).toBeGreaterThanOrEqual(6);
  const { code, stdout } = await replay(REPLAY_FIXTURES_DIR);
  expect(stdout.match(/^replayed .*: ok$/gm)).toHaveLength(fixtures.length);
  expect(code).toBe(0);
});

test('a history the code no longer matches fails the replay', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'replay-'));
  try {
    // As if the workflow used to schedule a different first activity.
    const history = await fs.readFile(path.join(REPLAY_FIXTURES_DIR, 'rejected.json'), 'utf8');
    await fs.writeFile(path.join(dir, 'tampered.json'), history.replace('"planPreprocess"', '"prepareImages"'));
    const { code, stdout } = await replay(dir);
    expect(code).toBe(1);
    expect(stdout).toMatch(/^FAILED tampered: /m);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
