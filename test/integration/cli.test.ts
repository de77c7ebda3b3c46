/**
 * The compiled `lora` binary as a user meets it, without a Temporal server: help, bad flags and an
 * unreachable server all end in one `lora: …` line and a non-zero exit. (Runs against a server
 * are in the end-to-end pipeline tests.)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

const CLI = path.resolve(__dirname, '../../dist/client/cli.js');

function lora(...args: string[]) {
  // Port 9 (discard) has no listener: the connection fails, quickly.
  const env = { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:9' };
  const result = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function expectOneErrorLine(result: ReturnType<typeof lora>, message: string | RegExp) {
  expect(result.status).toBe(1);
  expect(result.stdout).toBe('');
  expect(result.stderr.endsWith('\n')).toBe(true);
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(result.stderr).toMatch(typeof message === 'string' ? `lora: ${message}` : message);
}

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
});

describe('lora CLI without a server', () => {
  it('prints help listing every command', () => {
    const result = lora('--help');
    expect(result.status).toBe(0);
    for (const command of ['start', 'status', 'approve', 'reject', 'cancel', 'list']) {
      expect(result.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    }
  });

  it('names the bad flag before trying to connect', () => {
    expectOneErrorLine(lora('start', '--dataset', 'd', '--name', 'Not Tame'), '--name: must be 1-40 characters');
    expectOneErrorLine(lora('start', '--dataset', 'd', '--name', 'cat', '--repeats', 'ten'), '--repeats: must be a number, got "ten"');
    expectOneErrorLine(lora('start', '--name', 'cat'), '--dataset is required');
  });

  it('looks at a local dataset before it connects, naming the path and the problem', () => {
    const missing = '/nonexistent/photos';
    expectOneErrorLine(lora('start', '--dataset', missing, '--name', 'cat'), `dataset ${missing} does not exist: give a folder of images`);
    const empty = mkdtempSync(path.join(tmpdir(), 'cli-empty-'));
    try {
      expectOneErrorLine(lora('start', '--dataset', empty, '--name', 'cat'), `dataset ${empty} holds no image files (.png .jpg`);
      writeFileSync(path.join(empty, 'photo.heic'), 'x');
      symlinkSync('/etc/hostname', path.join(empty, 'link.png'));
      expectOneErrorLine(
        lora('start', '--dataset', empty, '--name', 'cat'),
        /^lora: dataset \S+ holds no usable image: link\.png: symbolic link leads outside the dataset: never opened; photo\.heic: unsupported format/,
      );
      expectOneErrorLine(lora('start', '--dataset', path.join(empty, 'photo.heic'), '--name', 'cat'), /is not a folder/);
      // With an image it gets as far as connecting.
      writeFileSync(path.join(empty, 'a.png'), 'x');
      expectOneErrorLine(lora('start', '--dataset', empty, '--name', 'cat'), 'cannot reach Temporal at 127.0.0.1:9');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('reports commander\'s own errors in the same form', () => {
    expectOneErrorLine(lora('start', '--base', 'sd3'), /^lora: option '--base <family>' argument 'sd3' is invalid\. Allowed choices are sd15, sdxl\./);
    expectOneErrorLine(lora('list', '--limit', '0'), /^lora: option '--limit <n>' argument '0' is invalid/);
    expectOneErrorLine(lora('approve', 'x'), "required option '--reviewer <name>' not specified");
    expectOneErrorLine(lora('frobnicate'), "unknown command 'frobnicate'");
  });

  it('says the server is unreachable in one line, within seconds', () => {
    const started = Date.now();
    expectOneErrorLine(lora('status', 'x'), 'cannot reach Temporal at 127.0.0.1:9 (is "npm run stack" running?)');
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('names a bad environment variable', () => {
    const result = spawnSync(process.execPath, [CLI, 'list'], {
      env: { ...process.env, TEMPORAL_ADDRESS: 'http://x' },
      encoding: 'utf8',
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^lora: env\.TEMPORAL_ADDRESS: must be host:port/);
  });
});
