/**
 * The review page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
 * open it, see the issue, approval refused while the error remains, edit the caption, save,
 * approve, and the run moves on. Also: captions are shown as text, never as HTML, and requests
 * from other origins or host names are refused.
 */
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { chromium, type Browser } from 'playwright-core';
import { FileStore } from '../../adapters/store/file';
import { startReviewServer, type ReviewServer } from '../../client/review-page/server';
import { editCaptionsUpdate } from '../../workflows/messages';
import { cancelAfterUpload, startReviewRig, waitForReview, type ReviewRig } from '../support/review';
import { startTemporal } from '../support/temporal';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const MARKUP_CAPTION = 'lrdemo, <b id="injected">a red circle</b> <img src=x onerror="document.title=1">';

let env: TestWorkflowEnvironment;
let rig: ReviewRig;
let browser: Browser;
let server: ReviewServer | undefined;

beforeAll(async () => {
  env = await startTemporal();
  rig = await startReviewRig(env, 'review-page-test');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

afterAll(async () => {
  await server?.close();
  await browser?.close();
  await rig?.stop();
  await env?.teardown();
});

/** A raw request, so the Host and Origin headers can be what a hostile page would send. */
function post(url: string, headers: Record<string, string>, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
    });
    request.on('error', reject);
    request.end(JSON.stringify(body));
  });
}

test('a reviewer edits a caption on the page, saves, approves, and the run moves on', async () => {
  const handle = await rig.start('page');
  await waitForReview(handle);
  await handle.executeUpdate(editCaptionsUpdate, { args: [{ reviewer: 'bob', edits: [{ image: 'example-01.jpg', caption: MARKUP_CAPTION }] }] });
  server = await startReviewServer({ client: env.client, store: new FileStore(fileURLToPath(rig.workStoreUri)), workflowId: handle.workflowId, port: 0 });

  // Another site's page, or a rebound DNS name, cannot send a decision.
  const origin = new URL(server.url);
  expect((await post(`${server.url}api/approve`, { origin: 'http://evil.example' }, { reviewer: 'x', force: true })).status).toBe(403);
  expect((await post(`${server.url}api/approve`, { host: `evil.example:${origin.port}` }, { reviewer: 'x', force: true })).status).toBe(403);

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(server.url);
  /** LORA_REVIEW_SCREENSHOTS=dir keeps pictures of the page for a human to look at. */
  const screenshot = async (name: string) => {
    const dir = process.env.LORA_REVIEW_SCREENSHOTS;
    if (dir) await page.screenshot({ path: path.resolve(dir, `review-page-${name}.png`), fullPage: true });
  };

  const missing = page.locator('section.card[data-image="example-03.jpg"]');
  await missing.locator('.badge.error', { hasText: 'missing-caption' }).waitFor();
  expect(await page.locator('#summary').innerText()).toContain('1 error');
  expect(await page.locator('section.card').count()).toBe(3);
  // Images come from the work store through the server and decode in the browser.
  // (a string: it runs in the page, whose DOM types this Node project does not load)
  await page.waitForFunction('[...document.images].every((img) => img.complete && img.naturalWidth > 0)');
  // The contact sheet preprocessing drew is linked and served.
  const sheetLinks = await page.locator('#contact-sheets a').evaluateAll((links) => links.map((link) => (link as unknown as { href: string }).href));
  expect(sheetLinks).toEqual([`${server.url}contact-sheet/1`]);
  const sheet = await fetch(sheetLinks[0]);
  expect([sheet.status, sheet.headers.get('content-type')]).toEqual([200, 'image/png']);
  expect((await fetch(`${server.url}contact-sheet/2`)).status).toBe(404);
  expect((await fetch(`${server.url}images/..%2Fmanifest.json`)).status).toBe(404);
  // A caption holding markup is text in its box, not elements in the page.
  expect(await page.locator('textarea[data-image="example-01.jpg"]').inputValue()).toBe(MARKUP_CAPTION);
  expect(await page.locator('#injected').count()).toBe(0);

  await page.fill('#reviewer', 'ada');
  await page.click('#approve');
  await page.locator('#message.failed').waitFor();
  expect(await page.locator('#message').innerText()).toMatch(/1 caption error remains/);
  await screenshot('1-approve-refused');

  await page.locator('textarea[data-image="example-03.jpg"]').fill('lrdemo, a teal triangle on a plain background');
  await page.click('#save');
  await page.locator('#message.done').waitFor();
  expect(await page.locator('#message').innerText()).toMatch(/^saved 1 caption; now 0 errors, \d+ warnings?$/);
  expect(await page.locator('#summary').innerText()).toContain('0 errors');
  expect(await missing.locator('.badge.error').count()).toBe(0);
  await screenshot('2-saved');

  await page.fill('#comment', 'fixed on the page');
  await page.click('#approve');
  await page.locator('#message.done', { hasText: 'approved by ada' }).waitFor();
  expect(await page.locator('#phase').innerText()).toMatch(/^Review approved by ada at /);
  expect(await page.locator('#approve').isDisabled()).toBe(true);
  expect(pageErrors).toEqual([]);

  const moved = await cancelAfterUpload(handle);
  expect(moved.review).toMatchObject({
    decision: 'approved',
    reviewer: 'ada',
    comment: 'fixed on the page',
    via: 'update',
    captions: { error: 0 },
    edits: { batches: 2, captions: 2, editors: ['bob', 'ada'] },
  });
  await page.close();
});
