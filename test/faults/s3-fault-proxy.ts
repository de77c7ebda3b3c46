/**
 * A loopback HTTP proxy in front of moto that misbehaves on purpose: it answers a share of S3
 * requests with 503 SlowDown, adds latency, or denies everything with 403 AccessDenied, so the
 * tests see how the pipeline copes with a real S3 client talking to a bad day on S3.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mulberry32 } from '../../lib/random';

export interface FaultPlan {
  /** Share of requests (0..1) answered with 503 SlowDown instead of being forwarded. */
  slowDownShare: number;
  /** Added before forwarding each request, in ms. */
  latencyMs: number;
  /** Answer every request with 403 AccessDenied. */
  denyAll: boolean;
}

export interface S3FaultProxy {
  endpoint: string;
  plan: FaultPlan;
  /** Requests answered with an injected fault, by kind. */
  injected: { slowDown: number; accessDenied: number };
  forwarded: number;
  close(): Promise<void>;
}

const s3Error = (code: string, message: string) =>
  `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId></Error>`;


export async function startS3FaultProxy(target: string, plan: Partial<FaultPlan> = {}, seed = 42): Promise<S3FaultProxy> {
  const upstream = new URL(target);
  // Seeded, so a failing run can be reproduced with the same schedule of faults.
  const random = mulberry32(seed);
  const proxy: Omit<S3FaultProxy, 'endpoint' | 'close'> = {
    plan: { slowDownShare: 0, latencyMs: 0, denyAll: false, ...plan },
    injected: { slowDown: 0, accessDenied: 0 },
    forwarded: 0,
  };
  const server = http.createServer((req, res) => {
    const fail = (status: number, code: string, message: string) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(status, { 'content-type': 'application/xml' });
        res.end(s3Error(code, message));
      });
    };
    // Only S3 traffic is sabotaged; SageMaker calls (JSON POSTs with an X-Amz-Target) pass through.
    const isS3 = !req.headers['x-amz-target'];
    if (isS3 && proxy.plan.denyAll) {
      proxy.injected.accessDenied++;
      return fail(403, 'AccessDenied', 'Access Denied');
    }
    if (isS3 && random() < proxy.plan.slowDownShare) {
      proxy.injected.slowDown++;
      return fail(503, 'SlowDown', 'Please reduce your request rate.');
    }
    setTimeout(() => {
      proxy.forwarded++;
      const forward = http.request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
        (upstreamRes) => {
          res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
          upstreamRes.pipe(res);
        },
      );
      forward.on('error', (err) => {
        res.writeHead(502);
        res.end(String(err));
      });
      req.pipe(forward);
    }, isS3 ? proxy.plan.latencyMs : 0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(proxy, {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}
