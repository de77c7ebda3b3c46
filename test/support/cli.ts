/** Running the compiled `lora` CLI (and other commands) from tests, as a user would. */
import { execFile } from 'node:child_process';
import * as path from 'node:path';

export const CLI = path.resolve(__dirname, '../../dist/client/cli.js');

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Asynchronous on purpose: a worker answering the command's queries and updates may run in the test's process. */
export function run(file: string, args: string[], extraEnv: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, ...extraEnv }, encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}

/** `lora …` against a Temporal server and a work store. */
export function runLora(connection: { temporalAddress: string; workStoreUri: string }, ...args: string[]): Promise<Ran> {
  return run(process.execPath, [CLI, ...args], { TEMPORAL_ADDRESS: connection.temporalAddress, LORA_WORK_STORE: connection.workStoreUri });
}
