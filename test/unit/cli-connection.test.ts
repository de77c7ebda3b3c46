import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { taskQueueFromEnv, temporalConfigFromEnv, tlsOf, unreachableMessage } from '../../client/connection';

describe('temporalConfigFromEnv', () => {
  it('defaults to the local dev server', () => {
    expect(temporalConfigFromEnv({})).toEqual({
      address: '127.0.0.1:7233',
      namespace: 'default',
      apiKey: undefined,
      clientCert: undefined,
      webUi: 'http://localhost:8233',
    });
  });

  it('treats empty variables as unset', () => {
    expect(temporalConfigFromEnv({ TEMPORAL_ADDRESS: '', TEMPORAL_API_KEY: '' }).address).toBe('127.0.0.1:7233');
  });

  it('names the variable that is wrong', () => {
    expect(() => temporalConfigFromEnv({ TEMPORAL_ADDRESS: 'http://temporal:7233' })).toThrow(/^env\.TEMPORAL_ADDRESS: must be host:port/);
    expect(() => temporalConfigFromEnv({ LORA_WEB_UI: 'localhost:8233' })).toThrow(/^env\.LORA_WEB_UI: must be an http\(s\) URL/);
    expect(() => temporalConfigFromEnv({ TEMPORAL_TLS_CERT: '/c.pem' })).toThrow(
      'env.TEMPORAL_TLS_KEY: is required when TEMPORAL_TLS_CERT is set (mTLS needs both)',
    );
  });

  it('turns TLS on for an API key, mTLS for a certificate pair', () => {
    expect(tlsOf(temporalConfigFromEnv({ TEMPORAL_API_KEY: 'k' }))).toEqual({});
    expect(tlsOf(temporalConfigFromEnv({}))).toBeUndefined();

    const dir = mkdtempSync(path.join(tmpdir(), 'lora-cli-tls-'));
    writeFileSync(path.join(dir, 'c.pem'), 'CERT');
    writeFileSync(path.join(dir, 'k.pem'), 'KEY');
    const tls = tlsOf(temporalConfigFromEnv({ TEMPORAL_TLS_CERT: path.join(dir, 'c.pem'), TEMPORAL_TLS_KEY: path.join(dir, 'k.pem') }));
    expect(Buffer.from(tls?.clientCertPair?.crt ?? []).toString()).toBe('CERT');
    expect(() => tlsOf(temporalConfigFromEnv({ TEMPORAL_TLS_CERT: path.join(dir, 'no.pem'), TEMPORAL_TLS_KEY: 'k' }))).toThrow(
      /^env\.TEMPORAL_TLS_CERT: cannot read .*no\.pem \(ENOENT\)$/,
    );
  });
});

describe('taskQueueFromEnv', () => {
  it('starts runs on the queue the worker polls: LORA_TASK_QUEUE, else the default', () => {
    expect(taskQueueFromEnv({ LORA_TASK_QUEUE: 'gpu-box' })).toBe('gpu-box');
    expect(taskQueueFromEnv({})).toBe('lora-training');
    expect(taskQueueFromEnv({ LORA_TASK_QUEUE: '' })).toBe('lora-training');
  });
});

describe('unreachableMessage', () => {
  it('points at the local stack for a plain connection', () => {
    expect(unreachableMessage({ address: '127.0.0.1:7233' })).toBe('cannot reach Temporal at 127.0.0.1:7233 (is "npm run stack" running?)');
  });

  it('hints at credentials for a remote, authenticated server', () => {
    expect(unreachableMessage({ address: 'ns.tmprl.cloud:7233', apiKey: 'k' })).toBe(
      'cannot reach Temporal at ns.tmprl.cloud:7233 (check TEMPORAL_ADDRESS and the credentials in TEMPORAL_API_KEY / TEMPORAL_TLS_CERT)',
    );
  });
});
