/**
 * A moto server for integration tests and benchmarks: one loopback endpoint serving S3 and
 * SageMaker. Each test file (or benchmark) starts its own on a free port, so they can run in
 * parallel without sharing state.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './processes';
import { installedTools } from './tools';

export interface MotoServer {
  endpoint: string;
  /** Kills the server; safe to call more than once. */
  stop(): Promise<void>;
  /** Clears every bucket, object and training job (`POST /moto-api/reset`). */
  reset(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;
// Enough of moto's stderr to show why it died, without holding its whole request log.
const STDERR_TAIL_CHARS = 8_000;

export async function startMoto(): Promise<MotoServer> {
  const executable = installedTools().motoServer;
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn(executable, ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });

  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS);
  });
  let exit: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = signal ? `signal ${signal}` : `exit code ${code}`;
      resolve();
    });
    child.once('error', (err) => {
      exit = `spawn error: ${err.message}`;
      resolve();
    });
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exit !== undefined) return;
      child.kill('SIGTERM');
      // An unref'd grace timer: it must not keep Jest alive once the server has gone.
      const killed = await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS, false, { ref: false })]);
      if (!killed) {
        child.kill('SIGKILL');
        await exited;
      }
    })();
    return stopping;
  };

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (exit !== undefined) {
      throw new Error(`moto server ${executable} on port ${port} exited during startup (${exit}); stderr:\n${stderr}`);
    }
    if (await answersHttp(endpoint)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`moto server ${executable} did not answer at ${endpoint} within ${STARTUP_TIMEOUT_MS} ms; stderr:\n${stderr}`);
    }
    await sleep(100);
  }

  const reset = async (): Promise<void> => {
    const response = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' });
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`moto reset at ${endpoint} failed: HTTP ${response.status}`);
  };
  return { endpoint, stop, reset };
}

/** S3 and SageMaker clients for a moto endpoint: path-style, a fixed region, dummy credentials. */
export function motoAwsClients(endpoint: string): { s3: S3Client; sagemaker: SageMakerClient } {
  const common = {
    region: 'us-east-1',
    endpoint,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  return { s3: new S3Client({ ...common, forcePathStyle: true }), sagemaker: new SageMakerClient(common) };
}

async function answersHttp(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(1_000) });
    await response.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}
