/**
 * The developer stack's Temporal: `temporal server start-dev` with the Web UI, a persistent db
 * under .data/ and the project's search attributes. `npm run stack` runs it in the foreground;
 * the demo starts it in the background when none is running, and `npm run stack:stop` stops that one.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { PROJECT_ROOT } from '../adapters/project-paths';
import { SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import { ensureSearchAttributes } from '../worker/search-attributes';
import { installedTools } from './tools';

export const DEV_SERVER = { ip: '127.0.0.1', port: 7233, uiPort: 8233 } as const;
const dataDir = path.join(PROJECT_ROOT, '.data');
const pidFile = path.join(dataDir, 'dev-server.pid');
const logFile = path.join(dataDir, 'dev-server.log');

export const DEV_ADDRESS = `${DEV_SERVER.ip}:${DEV_SERVER.port}`;
export const WEB_UI = `http://localhost:${DEV_SERVER.uiPort}`;

function devServerArgs(): string[] {
  const args = ['server', 'start-dev', '--ip', DEV_SERVER.ip, '--port', String(DEV_SERVER.port), '--ui-port', String(DEV_SERVER.uiPort)];
  args.push('--db-filename', path.join(dataDir, 'temporal.db'), '--log-level', 'warn');
  for (const key of SEARCH_ATTRIBUTES) args.push('--search-attribute', `${key.name}=Keyword`);
  return args;
}

/** True when a Temporal frontend answers at the address. */
export async function temporalIsUp(address: string): Promise<boolean> {
  try {
    const connection = await Connection.connect({ address, connectTimeout: '1s' });
    try {
      await connection.workflowService.getSystemInfo({});
      return true;
    } finally {
      await connection.close();
    }
  } catch {
    return false;
  }
}

/**
 * Register the project's search attributes on a server that may lack them (a plain
 * `temporal server start-dev` started by hand); attributes that already exist are left alone.
 */
export async function ensureDevSearchAttributes(address: string, namespace = 'default'): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    await ensureSearchAttributes(connection.operatorService, namespace);
  } finally {
    await connection.close();
  }
}

async function waitUntilUp(address: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await temporalIsUp(address))) {
    if (Date.now() > deadline) throw new Error(`the Temporal dev server did not come up at ${address} within ${timeoutMs / 1000}s; see ${logFile}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Start the dev server detached (it outlives this process, so the Web UI link keeps working). */
export async function startDevServerInBackground(): Promise<number> {
  await fs.mkdir(dataDir, { recursive: true });
  const log = openSync(logFile, 'a');
  const child = spawn(installedTools().temporal, devServerArgs(), { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  child.unref();
  await fs.writeFile(pidFile, `${child.pid}\n`);
  await waitUntilUp(DEV_ADDRESS, 60_000);
  return child.pid!;
}

async function stopBackgroundDevServer(): Promise<void> {
  const pid = Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!pid) {
    console.log('no background dev server recorded in .data/dev-server.pid');
    return;
  }
  try {
    process.kill(pid, 'SIGTERM');
    console.log(`stopped the Temporal dev server (pid ${pid})`);
  } catch {
    console.log(`the Temporal dev server (pid ${pid}) was not running`);
  }
  await fs.rm(pidFile, { force: true });
}

async function runInForeground(): Promise<void> {
  if (await temporalIsUp(DEV_ADDRESS)) {
    console.log(`a Temporal server already answers at ${DEV_ADDRESS} (Web UI ${WEB_UI}); nothing to start`);
    return;
  }
  await fs.mkdir(dataDir, { recursive: true });
  console.log(`Temporal dev server at ${DEV_ADDRESS}, Web UI ${WEB_UI}, db ${path.join(dataDir, 'temporal.db')} (Ctrl-C stops it)`);
  const child = spawn(installedTools().temporal, devServerArgs(), { stdio: 'inherit' });
  // A terminal's Ctrl-C reaches both processes; a supervisor's SIGTERM reaches only this one.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', () => resolve());
  });
}

if (require.main === module) {
  const action = process.argv[2] === 'stop' ? stopBackgroundDevServer : runInForeground;
  action().catch((err: unknown) => {
    console.error(`stack: ${(err as Error).message}`);
    process.exit(1);
  });
}
