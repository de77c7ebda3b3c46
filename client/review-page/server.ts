/**
 * `lora review serve`: a small HTTP server on the loopback interface for one run. It serves the
 * page (index.html beside this module's source), the run's review data and processed images from
 * the work store, and forwards Save / Approve / Reject to the same updates the CLI sends.
 *
 * Only this machine can reach it, and requests that change something must be same-origin JSON:
 * a web page elsewhere can neither read the captions nor send a decision in the reviewer's name.
 */
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { PROJECT_ROOT } from '../../adapters/project-paths';
import type { ObjectStore } from '../../adapters/store/types';
import { describeError } from '../errors';
import { imageRefOf } from '../../lib/pipeline/review';
import { approveRun, editCaptions, issuesOfImage, readReviewPage, rejectRun } from '../review';

export interface ReviewServerOptions {
  client: Client;
  store: ObjectStore;
  workflowId: string;
  /** 0 picks a free port. */
  port: number;
}

export interface ReviewServer {
  url: string;
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const MAX_BODY_BYTES = 512 * 1024;
const PAGE_FILE = path.join(PROJECT_ROOT, 'client', 'review-page', 'index.html');
/** Processed images and contact sheets are written in one of these formats. */
const IMAGE_TYPES: Record<string, string> = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp' };

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startReviewServer(options: ReviewServerOptions): Promise<ReviewServer> {
  const { client, store, workflowId } = options;
  const page = readFileSync(PAGE_FILE);
  /** Image name → work store key, from the latest manifest read: requests name images, never keys. */
  let imageKeys = new Map<string, string>();
  let contactSheetKeys: string[] = [];

  async function reviewData(): Promise<unknown> {
    const { details, images } = await readReviewPage(client, store, workflowId);
    imageKeys = new Map(images.map((image) => [image.name, image.output]));
    contactSheetKeys = details.state.contactSheetKeys ?? [];
    const aboutImages = new Set(images.flatMap((image) => issuesOfImage(details.issues, image.name)));
    return {
      workflowId,
      state: details.state,
      contactSheets: contactSheetKeys.map((_, index) => `/contact-sheet/${index + 1}`),
      // Issues about no particular image (orphan captions, the folder name, …).
      datasetIssues: details.issues.filter((issue) => !aboutImages.has(issue)),
      // Files left out by preprocessing, with why: the reviewer decides knowing what will not train.
      skipped: details.skipped,
      // `ref` is what an edit names: { image } or, in kohya layout, { folder, image }.
      images: images.map(({ name, caption, issues, warnings }) => ({ name, ref: imageRefOf(name), caption, issues, warnings, url: `/images/${encodeURIComponent(name)}` })),
    };
  }

  async function sendImage(response: http.ServerResponse, key: string | undefined): Promise<void> {
    if (key === undefined) throw new HttpError(404, 'no such image in this run');
    const type = IMAGE_TYPES[path.posix.extname(key).toLowerCase()] ?? 'application/octet-stream';
    response.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache' });
    response.end(await store.get(key));
  }

  async function route(request: http.IncomingMessage, response: http.ServerResponse, port: number): Promise<void> {
    checkHost(request, port);
    const url = new URL(request.url ?? '/', `http://${HOST}:${port}`);
    if (request.method === 'GET') {
      if (url.pathname === '/') {
        response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': CSP });
        response.end(page);
        return;
      }
      if (url.pathname === '/api/review') return sendJson(response, 200, await reviewData());
      const sheet = /^\/contact-sheet\/(\d+)$/.exec(url.pathname);
      if (sheet) return sendImage(response, contactSheetKeys[Number(sheet[1]) - 1]);
      if (url.pathname.startsWith('/images/')) return sendImage(response, imageKeys.get(decodeURIComponent(url.pathname.slice('/images/'.length))));
      throw new HttpError(404, `no page at ${url.pathname}`);
    }
    if (request.method === 'POST') {
      const body = await readJsonBody(request, port);
      if (url.pathname === '/api/edit') return sendJson(response, 200, await editCaptions(client, workflowId, body));
      if (url.pathname === '/api/approve') return sendJson(response, 200, await approveRun(client, workflowId, body));
      if (url.pathname === '/api/reject') return sendJson(response, 200, await rejectRun(client, workflowId, body));
      throw new HttpError(404, `no action at ${url.pathname}`);
    }
    throw new HttpError(405, `${request.method} is not supported`);
  }

  const server = http.createServer((request, response) => {
    const port = (server.address() as AddressInfo).port;
    route(request, response, port).catch((err: unknown) => {
      // A refused edit or decision is the reviewer's to fix: the page shows the reason.
      const status = err instanceof HttpError ? err.status : 400;
      if (!response.headersSent) sendJson(response, status, { error: describeError(err) });
      else response.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, HOST, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${HOST}:${port}/`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** Scripts and styles only from the page itself; images from this server. */
const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'; connect-src 'self'";

/** A name other than our loopback address means DNS rebinding: another site reaching this port. */
function checkHost(request: http.IncomingMessage, port: number): void {
  const allowed = [`${HOST}:${port}`, `localhost:${port}`];
  if (!allowed.includes(request.headers.host ?? '')) throw new HttpError(403, `requests must be addressed to ${allowed[0]}`);
}

async function readJsonBody(request: http.IncomingMessage, port: number): Promise<unknown> {
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== `http://${HOST}:${port}` && origin !== `http://localhost:${port}`) {
    throw new HttpError(403, 'cross-origin requests are refused');
  }
  if (!/^application\/json\b/.test(request.headers['content-type'] ?? '')) throw new HttpError(415, 'send JSON (content-type: application/json)');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}

function sendJson(response: http.ServerResponse, status: number, value: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  response.end(JSON.stringify(value));
}
