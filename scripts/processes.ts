/**
 * Real processes to kill: a Temporal dev server with a persistent db that can be restarted on the
 * same port, and pipeline workers run as `node dist/worker/main.js`, exactly as `npm run worker`.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { compiledScript, PROJECT_ROOT } from '../adapters/project-paths';
import { temporalIsUp } from './dev-server';
import { installedTools } from './tools';
import { SEARCH_ATTRIBUTES } from '../workflows/search-attributes';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs / 1000}s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

export class DevServerProcess {
  private child?: ChildProcess;
  readonly address: string;

  private constructor(
    private readonly port: number,
    private readonly dbFile: string,
    private readonly logFile: string,
  ) {
    this.address = `127.0.0.1:${port}`;
  }

  static async start(dir: string): Promise<DevServerProcess> {
    const server = new DevServerProcess(await freePort(), path.join(dir, 'temporal.db'), path.join(dir, 'temporal.log'));
    await server.start();
    return server;
  }

  async start(): Promise<void> {
    const args = ['server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(this.port), '--db-filename', this.dbFile, '--log-level', 'warn'];
    for (const key of SEARCH_ATTRIBUTES) args.push('--search-attribute', `${key.name}=Keyword`);
    this.child = spawn(installedTools().temporal, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const log = createWriteStream(this.logFile, { flags: 'a' });
    this.child.stdout?.pipe(log);
    this.child.stderr?.pipe(log);
    await waitFor(`the dev server answering at ${this.address}`, () => temporalIsUp(this.address), 60_000);
  }

  /** SIGTERM and wait: the db keeps every run, so a start() afterwards resumes them. */
  async stop(): Promise<void> {
    if (!this.child) return;
    const child = this.child;
    this.child = undefined;
    child.kill('SIGTERM');
    await exited(child);
  }
}

/** Starts a command with jemalloc when the system has it (see the script). */
const WITH_ALLOCATOR = path.join(PROJECT_ROOT, 'scripts', 'with-allocator.sh');

export class WorkerProcess {
  private readonly child: ChildProcess;
  private readonly exit: Promise<void>;

  /** `script` is a compiled entry point; the load benchmark runs the worker with a fake trainer. */
  constructor(env: Record<string, string>, logFile: string, script = 'worker/main') {
    // AWS credentials are dummies for moto; the rest of the environment is inherited. The memory
    // allocator is chosen as for `npm run worker` and the worker image; the shell execs node, so
    // the pid is the worker's.
    this.child = spawn('/bin/sh', [WITH_ALLOCATOR, process.execPath, compiledScript(script)], {
      env: { ...process.env, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = createWriteStream(logFile, { flags: 'a' });
    this.child.stdout?.pipe(log);
    this.child.stderr?.pipe(log);
    this.exit = exited(this.child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The crash under test: no shutdown, no heartbeat, no cleanup. */
  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exit;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    // Unreferenced: a worker that exits at once must not leave this timer holding the caller open.
    await Promise.race([this.exit, new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
    if (this.child.exitCode === null && this.child.signalCode === null) await this.kill9();
  }
}
