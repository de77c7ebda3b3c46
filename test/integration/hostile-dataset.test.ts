/**
 * A hostile dataset through the real pipeline on the dev server: links to /etc/passwd,
 * /proc/self/environ, an outside image, caption and folder, a hard link to an outside caption, a FIFO, a socket, a broken link, names
 * that are not UTF-8 or hold a newline, a 250-byte name, a caption with a NUL. The run must reach
 * review with every such file named and its reason, links that stay inside must still work, not one
 * byte from outside may reach the work store, the store, the history, the review data or the page,
 * and, approved, the run must train and register.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { chromium, type Browser } from 'playwright-core';
import sharp from 'sharp';
import { REFUSALS } from '../../adapters/dataset/confined-folder';
import { FileStore } from '../../adapters/store/file';
import { startReviewServer } from '../../client/review-page/server';
import { readReviewDetails } from '../../client/review';
import { startRun } from '../../client/runs';
import { sha256Hex } from '../../lib/hash';
import { DatasetManifest } from '../../lib/pipeline/manifest';
import type { RunOutcome } from '../../lib/pipeline/status';
import { writeExampleDataset } from '../../scripts/example-dataset';
import { approveUpdate } from '../../workflows/messages';
import { runLora } from '../support/cli';
import { historyText, startReviewRig, waitForReview, type ReviewRig } from '../support/review';
import { startTemporal } from '../support/temporal';

const CHROMIUM = '/usr/bin/chromium';
const OUTSIDE_CAPTION = 'OUTSIDE-CAPTION-MARKER acme, this caption lives outside the dataset';
const ELSEWHERE_CAPTION = 'ELSEWHERE-CAPTION-MARKER acme, a folder outside the dataset';
const LONG_NAME = `${'n'.repeat(246)}.jpg`; // 250 bytes, and its caption too

let env: TestWorkflowEnvironment;
let rig: ReviewRig;
let browser: Browser;
let socketServer: net.Server;
let dataset: string;
/** Byte strings that must never appear anywhere the pipeline writes or shows. */
let secrets: { what: string; bytes: Buffer }[];
let outsideImageSha256: string;

beforeAll(async () => {
  env = await startTemporal();
  rig = await startReviewRig(env, 'hostile-dataset-test');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
  ({ dataset, socketServer } = await writeHostileDataset(rig.tmp));
  const passwd = (await fs.readFile('/etc/passwd', 'utf8')).split('\n')[0];
  // The worker runs in this process: its /proc/self/environ is ours.
  const environ = (await fs.readFile('/proc/self/environ', 'utf8')).split('\0').filter((entry) => entry.length >= 20 && entry.includes('='));
  expect(environ.length).toBeGreaterThan(0);
  secrets = [
    { what: 'the first line of /etc/passwd', bytes: Buffer.from(passwd) },
    ...environ.map((entry) => ({ what: `the environment entry ${entry.split('=')[0]}`, bytes: Buffer.from(entry) })),
    { what: 'the outside caption', bytes: Buffer.from('OUTSIDE-CAPTION-MARKER') },
    { what: 'the outside folder\'s caption', bytes: Buffer.from('ELSEWHERE-CAPTION-MARKER') },
  ];
  outsideImageSha256 = sha256Hex(await fs.readFile(path.join(rig.tmp, 'outside', 'secret.jpg')));
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => socketServer?.close(resolve));
  await rig?.stop();
  await env?.teardown();
});

/** The dataset, in kohya layout, with every hostile entry beside ordinary images and links that stay inside. */
async function writeHostileDataset(tmp: string): Promise<{ dataset: string; socketServer: net.Server }> {
  const pictures = path.join(tmp, 'pictures');
  await writeExampleDataset(pictures, { count: 12, triggerWord: 'acme' });
  const picture = (n: number) => path.join(pictures, `example-${String(n).padStart(2, '0')}.jpg`);
  const root = path.join(tmp, 'hostile');
  const acme = path.join(root, '10_acme');
  const outside = path.join(tmp, 'outside');
  const elsewhere = path.join(tmp, 'elsewhere');
  for (const dir of [acme, path.join(root, 'library'), path.join(root, 'originals'), outside, elsewhere]) await fs.mkdir(dir, { recursive: true });

  await fs.copyFile(picture(1), path.join(acme, 'a.jpg'));
  await fs.writeFile(path.join(acme, 'a.txt'), 'acme, an ordinary picture');
  await fs.copyFile(picture(2), path.join(acme, 'linkcap.jpg'));
  await fs.symlink('/etc/passwd', path.join(acme, 'linkcap.txt'));
  await fs.copyFile(picture(3), path.join(acme, 'envleak.jpg'));
  await fs.symlink('/proc/self/environ', path.join(acme, 'envleak.txt'));
  await fs.copyFile(picture(4), path.join(outside, 'secret.jpg'));
  await fs.writeFile(path.join(outside, 'secret.txt'), OUTSIDE_CAPTION);
  await fs.symlink(path.join(outside, 'secret.jpg'), path.join(acme, 'outside.jpg'));
  await fs.symlink('../../outside/secret.txt', path.join(acme, 'outside.txt'));
  await fs.symlink('/dev/null', path.join(acme, 'devnull.jpg'));
  // A hard link is not a symbolic link, but its other name is outside all the same.
  await fs.copyFile(picture(12), path.join(acme, 'hardcap.jpg'));
  await fs.link(path.join(outside, 'secret.txt'), path.join(acme, 'hardcap.txt'));
  await fs.symlink('/nonexistent/picture.jpg', path.join(acme, 'gone.jpg'));
  // Links that stay inside: an image from the library folder, and a whole folder as a training folder.
  await fs.copyFile(picture(5), path.join(root, 'library', 'b.jpg'));
  await fs.symlink('../library/b.jpg', path.join(acme, 'inside.jpg'));
  await fs.writeFile(path.join(acme, 'inside.txt'), 'acme, reached through a link inside the dataset');
  await fs.copyFile(picture(6), path.join(root, 'originals', 'c.jpg'));
  await fs.writeFile(path.join(root, 'originals', 'c.txt'), 'acme, in a folder linked inside the dataset');
  await fs.symlink('originals', path.join(root, '2_linked'));
  // Special files and names.
  execFileSync('mkfifo', [path.join(acme, 'fifo.jpg')]);
  const socketServer = net.createServer();
  await new Promise<void>((resolve) => socketServer.listen(path.join(acme, 'sock.jpg'), resolve));
  await fs.copyFile(picture(7), path.join(acme, LONG_NAME));
  await fs.writeFile(path.join(acme, `${'n'.repeat(246)}.txt`), 'acme, a picture with a 250-byte name');
  // An ordinary but wide picture: kept, with a preprocessing warning the reviewer must see.
  await sharp({ create: { width: 1400, height: 600, channels: 3, background: '#3366aa' } }).jpeg().toFile(path.join(acme, 'wide.jpg'));
  await fs.writeFile(path.join(acme, 'wide.txt'), 'acme, a wide picture');
  await fs.copyFile(picture(8), path.join(acme, 'nul.jpg'));
  await fs.writeFile(path.join(acme, 'nul.txt'), 'acme, a caption with a \0 in it');
  await fs.copyFile(picture(9), Buffer.concat([Buffer.from(`${acme}/bad`), Buffer.from([0xff]), Buffer.from('.jpg')]));
  await fs.copyFile(picture(10), path.join(acme, 'new\nline.jpg'));
  // In the root: a link to a secret, and a training folder that leads outside.
  await fs.symlink('/etc/passwd', path.join(root, 'README.md'));
  await fs.copyFile(picture(11), path.join(elsewhere, 'e.jpg'));
  await fs.writeFile(path.join(elsewhere, 'e.txt'), ELSEWHERE_CAPTION);
  await fs.symlink(elsewhere, path.join(root, '5_outside'));
  return { dataset: root, socketServer };
}

/** Every regular file below a folder with the first secret it holds, if any. */
async function leaksIn(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const bytes = await fs.readFile(file);
    for (const secret of secrets) if (bytes.includes(secret.bytes)) found.push(`${file}: ${secret.what}`);
    if (sha256Hex(bytes) === outsideImageSha256) found.push(`${file}: the outside image`);
  }
  return found;
}

function leaksInText(text: string): string[] {
  return [...secrets.filter((secret) => text.includes(secret.bytes.toString())).map((secret) => secret.what), ...(text.includes(outsideImageSha256) ? ['the outside image\'s hash'] : [])];
}

const EXPECTED_SKIPPED: Record<string, string> = {
  '10_acme/linkcap.txt': REFUSALS.linkOutside,
  '10_acme/envleak.txt': REFUSALS.linkOutside,
  '10_acme/outside.jpg': REFUSALS.linkOutside,
  '10_acme/outside.txt': REFUSALS.linkOutside,
  '10_acme/devnull.jpg': REFUSALS.linkOutside,
  '10_acme/hardcap.txt': REFUSALS.hardLinkOutside,
  '10_acme/gone.jpg': REFUSALS.brokenLink,
  '10_acme/fifo.jpg': REFUSALS.notRegular('a named pipe'),
  '10_acme/sock.jpg': REFUSALS.notRegular('a socket'),
  '10_acme/bad\ufffd.jpg': REFUSALS.nameNotUtf8,
  '10_acme/new\nline.jpg': 'the name contains the control character U+000A at position 3: rename the file',
  'README.md': REFUSALS.linkOutside,
  '5_outside': REFUSALS.linkOutside,
};
const EXPECTED_KEPT = ['10_acme/a.jpg', '10_acme/envleak.jpg', '10_acme/hardcap.jpg', '10_acme/inside.jpg', '10_acme/linkcap.jpg', `10_acme/${LONG_NAME}`, '10_acme/nul.jpg', '10_acme/wide.jpg', '2_linked/c.jpg'];

test('a hostile dataset reaches review with every file named, leaks nothing, and trains once approved', async () => {
  const handle: WorkflowHandle = await startRun(
    env.client,
    {
      runName: 'hostile',
      dataset,
      triggerWord: 'acme',
      trainer: { kind: 'local', dryRun: true },
      training: { epochs: 1, networkDim: 4, networkAlpha: 2 },
      pollInterval: '200ms',
    },
    { taskQueue: 'hostile-dataset-test', workflowId: `hostile-${Date.now()}` },
  );
  const state = await waitForReview(handle);
  const workDir = fileURLToPath(rig.workStoreUri);
  const workStore = new FileStore(workDir);

  // Every hostile entry is named with its reason; the rest, links inside included, is kept.
  const manifest = DatasetManifest.parse(JSON.parse((await workStore.get(state.manifestKey ?? '')).toString('utf8')));
  expect(Object.fromEntries(manifest.skipped.map((file) => [file.source, file.reason]))).toEqual(EXPECTED_SKIPPED);
  expect(manifest.images.map((image) => image.source)).toEqual(EXPECTED_KEPT);
  expect(manifest.images.find((image) => image.source === '10_acme/linkcap.jpg')?.caption).toBeNull();
  expect(manifest.images.find((image) => image.source === '10_acme/inside.jpg')?.caption).not.toBeNull();

  // The caption checks see the NUL, and the captions that were refused are missing.
  const details = await readReviewDetails(env.client, workStore, handle.workflowId);
  const issues = details.issues.map((issue) => `${issue.rule} ${issue.file}`);
  expect(issues).toEqual(expect.arrayContaining(['control-character 10_acme/nul.txt', 'missing-caption 10_acme/linkcap.jpg', 'missing-caption 10_acme/envleak.jpg']));
  expect(details.issues.find((issue) => issue.rule === 'control-character')?.message).toContain('U+0000 (NUL) at byte offset 23');
  expect(details.skipped).toEqual(manifest.skipped);

  // The CLI names them where a reviewer looks: status (the first reasons), review show (a preview, then every one with --skipped).
  const cli = { temporalAddress: env.address, workStoreUri: rig.workStoreUri };
  const skippedCount = Object.keys(EXPECTED_SKIPPED).length;
  const status = await runLora(cli, 'status', handle.workflowId);
  expect(status.stderr).toBe('');
  expect(status.stdout).toContain(`${EXPECTED_KEPT.length + skippedCount} found · ${EXPECTED_KEPT.length} kept · ${skippedCount} skipped\n`);
  expect(status.stdout).toMatch(new RegExp(`^ +${manifest.skipped[0].source}: ${manifest.skipped[0].reason}$`, 'm'));
  expect(status.stdout).toContain(`… ${skippedCount - 3} more in ${rig.workStoreUri}/runs/${handle.workflowId}/manifest.json`);
  const shown = await runLora(cli, 'review', 'show', handle.workflowId, '--skipped', '--page-size', '50', '--json');
  expect(shown.stderr).toBe('');
  expect(JSON.parse(shown.stdout).skipped).toEqual({ page: 1, pages: 1, pageSize: 50, total: skippedCount, items: manifest.skipped });
  const preview = await runLora(cli, 'review', 'show', handle.workflowId);
  expect(preview.stdout).toMatch(new RegExp(`^skipped: +${skippedCount} files left out by preprocessing$`, 'm'));
  expect(preview.stdout).toContain(`  all: lora review show ${handle.workflowId} --skipped`);
  expect(preview.stdout).toMatch(/^ {2}10_acme\/wide\.jpg: cropped: 57% of the picture is cut away/m);
  for (const output of [status.stdout, shown.stdout, preview.stdout]) expect(leaksInText(output)).toEqual([]);

  // Not one byte from outside in the work store, the history, the review data or the page.
  expect(await leaksIn(workDir)).toEqual([]);
  expect(leaksInText(historyText(await handle.fetchHistory()))).toEqual([]);
  const server = await startReviewServer({ client: env.client, store: workStore, workflowId: handle.workflowId, port: 0 });
  try {
    const review = await (await fetch(`${server.url}api/review`)).text();
    expect(leaksInText(review)).toEqual([]);
    const page = await browser.newPage();
    await page.goto(server.url);
    await page.locator('#skipped-table tbody tr').first().waitFor();
    expect(await page.locator('#skipped-title').innerText()).toBe(`Skipped files (${Object.keys(EXPECTED_SKIPPED).length})`);
    const rows = await page.locator('#skipped-table tbody tr').allInnerTexts();
    expect(rows).toHaveLength(Object.keys(EXPECTED_SKIPPED).length);
    expect(rows).toEqual(expect.arrayContaining([`10_acme/linkcap.txt\t${REFUSALS.linkOutside}`, `"10_acme/new\\nline.jpg"\t${EXPECTED_SKIPPED['10_acme/new\nline.jpg']}`]));
    expect(await page.locator(`section.card[data-image="10_acme/inside.jpg"]`).count()).toBe(1);
    // Preprocessing's warnings are on the card of their image.
    expect(await page.locator('section.card[data-image="10_acme/wide.jpg"] ul.preprocessing').innerText()).toMatch(/cropped: 57% of the picture is cut away/);
    expect(leaksInText(await page.locator('body').innerText())).toEqual([]);
    await page.close();
  } finally {
    await server.close();
  }

  // No single file fails the run: approved past its caption errors, it trains and registers.
  await handle.executeUpdate(approveUpdate, { args: [{ reviewer: 'ada', force: true, comment: 'hostile files left out' }] });
  const outcome: RunOutcome = await handle.result();
  expect(outcome).toMatchObject({ stage: 'completed', images: { kept: EXPECTED_KEPT.length, skipped: Object.keys(EXPECTED_SKIPPED).length } });
  expect(outcome.lora?.name).toBe('hostile');
  expect(await leaksIn(workDir)).toEqual([]);
  expect(await leaksIn(path.join(rig.tmp, 'store'))).toEqual([]);
  expect(leaksInText(historyText(await handle.fetchHistory()))).toEqual([]);
}, 120_000);
