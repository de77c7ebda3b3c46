/**
 * How the CLI (and any other client) reaches Temporal: configuration comes from the environment,
 * checked with zod on entry so a typo names the variable instead of surfacing as a gRPC error.
 */
import { readFileSync } from 'node:fs';
import { Client, Connection, type TLSConfig } from '@temporalio/client';
import { z } from 'zod';
import { parseOrThrow } from '../lib/pipeline/input';
import { WorkerEnv } from '../worker/config';

/** An empty variable (`FOO= lora …`) means "unset", as shells and compose files intend it. */
const optionalSetting = <S extends z.ZodType>(schema: S) =>
  z.preprocess((v) => (v === '' ? undefined : v), schema.optional());

export const TemporalEnv = z
  .object({
    TEMPORAL_ADDRESS: optionalSetting(z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^\s:/]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:7233')),
    TEMPORAL_NAMESPACE: optionalSetting(z.string().regex(/^\S+$/, 'must be a namespace name without spaces')),
    /** Temporal Cloud style API key; its presence turns TLS on. */
    TEMPORAL_API_KEY: optionalSetting(z.string()),
    /** mTLS client certificate and key (PEM files); both or neither. */
    TEMPORAL_TLS_CERT: optionalSetting(z.string()),
    TEMPORAL_TLS_KEY: optionalSetting(z.string()),
    /** Where the Temporal Web UI is served; links printed by the CLI point there. */
    LORA_WEB_UI: optionalSetting(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL, e.g. http://localhost:8233' })),
  })
  .superRefine((env, ctx) => {
    for (const [given, missing] of [
      ['TEMPORAL_TLS_CERT', 'TEMPORAL_TLS_KEY'],
      ['TEMPORAL_TLS_KEY', 'TEMPORAL_TLS_CERT'],
    ] as const) {
      if (env[given] && !env[missing]) {
        ctx.addIssue({ code: 'custom', path: [missing], message: `is required when ${given} is set (mTLS needs both)` });
      }
    }
  });

export interface TemporalConfig {
  address: string;
  namespace: string;
  apiKey?: string;
  clientCert?: { certPath: string; keyPath: string };
  webUi: string;
}

export const DEFAULT_ADDRESS = '127.0.0.1:7233';
export const DEFAULT_WEB_UI = 'http://localhost:8233';

/** The task queue runs are started on: the worker's (LORA_TASK_QUEUE), so that a worker picks them up. */
export function taskQueueFromEnv(env: NodeJS.ProcessEnv): string {
  return parseOrThrow(WorkerEnv.pick({ LORA_TASK_QUEUE: true }), { LORA_TASK_QUEUE: env.LORA_TASK_QUEUE === '' ? undefined : env.LORA_TASK_QUEUE }, 'env').LORA_TASK_QUEUE;
}

export function temporalConfigFromEnv(env: NodeJS.ProcessEnv): TemporalConfig {
  // Only our variables: the rest of the environment is none of the schema's business.
  const settings = parseOrThrow(TemporalEnv, pickKeys(env, Object.keys(TemporalEnv.shape)), 'env');
  return {
    address: settings.TEMPORAL_ADDRESS ?? DEFAULT_ADDRESS,
    namespace: settings.TEMPORAL_NAMESPACE ?? 'default',
    apiKey: settings.TEMPORAL_API_KEY,
    clientCert:
      settings.TEMPORAL_TLS_CERT && settings.TEMPORAL_TLS_KEY
        ? { certPath: settings.TEMPORAL_TLS_CERT, keyPath: settings.TEMPORAL_TLS_KEY }
        : undefined,
    webUi: (settings.LORA_WEB_UI ?? DEFAULT_WEB_UI).replace(/\/+$/, ''),
  };
}

/** Connects (eagerly, so an unreachable server fails here in seconds, not on the first call). */
export async function connectClient(env: NodeJS.ProcessEnv = process.env): Promise<Client> {
  const config = temporalConfigFromEnv(env);
  const tls = tlsOf(config);
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: config.address, tls, apiKey: config.apiKey, connectTimeout: '3s' });
  } catch {
    throw new Error(unreachableMessage(config));
  }
  return new Client({ connection, namespace: config.namespace });
}

export function unreachableMessage(config: Pick<TemporalConfig, 'address' | 'apiKey' | 'clientCert'>): string {
  const hint =
    config.apiKey || config.clientCert
      ? 'check TEMPORAL_ADDRESS and the credentials in TEMPORAL_API_KEY / TEMPORAL_TLS_CERT'
      : 'is "npm run stack" running?';
  return `cannot reach Temporal at ${config.address} (${hint})`;
}

/** TLS for the SDK: mTLS when a client certificate is configured, plain TLS for an API key, else none. */
export function tlsOf(config: TemporalConfig): TLSConfig | undefined {
  if (config.clientCert) {
    return {
      clientCertPair: {
        crt: readSetting('TEMPORAL_TLS_CERT', config.clientCert.certPath),
        key: readSetting('TEMPORAL_TLS_KEY', config.clientCert.keyPath),
      },
    };
  }
  return config.apiKey ? {} : undefined;
}

function readSetting(variable: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`env.${variable}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}

function pickKeys(env: NodeJS.ProcessEnv, keys: string[]): Record<string, string | undefined> {
  return Object.fromEntries(keys.map((key) => [key, env[key]]));
}
