/**
 * Reviewing a run from a client (the CLI and the review page): the `reviewState` query, the
 * report, manifest, captions and images it points to in the worker's work store, and the
 * editCaptions / approve / reject updates. Updates, not signals: a refused message comes back as
 * an error here and never enters history.
 */
import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import pLimit from 'p-limit';
import { z } from 'zod';
import { awsConfigFromEnv, s3Client } from '../adapters/aws';
import { openStore } from '../adapters/store';
import { ObjectNotFoundError, type ObjectStore } from '../adapters/store/types';
import { captionNameFor } from '../lib/kohya/layout';
import { parseOrThrow } from '../lib/pipeline/input';
import { DatasetManifest, manifestKeyOf } from '../lib/pipeline/manifest';
import {
  ApprovePayload,
  EditCaptionsPayload,
  RejectPayload,
  type EditCaptionsResult,
  type ReviewState,
} from '../lib/pipeline/review';
import type { ReviewDecision } from '../lib/pipeline/status';
import { WorkerEnv } from '../worker/config';
import { approveUpdate, editCaptionsUpdate, rejectUpdate, reviewStateQuery } from '../workflows/messages';
import { describeRun } from './runs';

/** A query needs a worker; without one the server would hold it for ~30 s. */
const QUERY_DEADLINE_MS = 5_000;
/** An edit writes captions and re-runs the checks; a decision is answered at once. */
const EDIT_DEADLINE_MS = 120_000;
const DECISION_DEADLINE_MS = 15_000;
const CAPTION_READ_CONCURRENCY = 16;

/** The report as clients read it: extra fields (new rules add detail) pass through untouched. */
export const ReportIssue = z.looseObject({
  rule: z.string(),
  severity: z.enum(['error', 'warning', 'info']),
  file: z.string(),
  message: z.string(),
  fix: z.string().optional(),
});
export type ReportIssue = z.infer<typeof ReportIssue>;
const CaptionReportFile = z.looseObject({ issues: z.array(ReportIssue) });

export interface ReviewImage {
  /** The image's name in the dataset, as editCaptions expects it. */
  name: string;
  /** Work store key of the processed PNG. */
  output: string;
  /** The caption's text (decoded leniently), or null when the image has none. */
  caption: string | null;
  issues: ReportIssue[];
  /** What preprocessing warned about this image (upscaled, cropped hard, …). */
  warnings: string[];
}

export type SkippedFile = DatasetManifest['skipped'][number];

/** What a reviewer reads: the state, every issue, every file left out, and (for the page) every image with its caption. */
export interface ReviewDetails {
  workflowId: string;
  state: ReviewState;
  issues: ReportIssue[];
  /** Files preprocessing left out, with why, as the manifest lists them; empty until the review has opened. */
  skipped: SkippedFile[];
  /** Kept images preprocessing warned about (upscaled, cropped hard, near-duplicate, …), with the warnings. */
  imageWarnings: { image: string; warnings: string[] }[];
  /** Where the report and the contact sheet pages are, as URIs of the work store. */
  reportUri?: string;
  contactSheetUris?: string[];
}

/** The worker's work store, found the way the worker finds it (LORA_WORK_STORE, same default). */
export function openWorkStore(env: NodeJS.ProcessEnv = process.env): ObjectStore {
  const { LORA_WORK_STORE } = parseOrThrow(WorkerEnv.pick({ LORA_WORK_STORE: true }), pick(env, 'LORA_WORK_STORE'), 'env');
  return openStore(LORA_WORK_STORE, { s3: s3Client(awsConfigFromEnv(env)) });
}

export async function readReviewState(client: Client, workflowId: string): Promise<ReviewState> {
  const handle = client.workflow.getHandle(workflowId);
  await describeRun(handle);
  return client.withDeadline(Date.now() + QUERY_DEADLINE_MS, () => handle.query(reviewStateQuery));
}

/** The state, the report's issues and the files left out; empty until the review has opened. */
export async function readReviewDetails(client: Client, store: ObjectStore, workflowId: string): Promise<ReviewDetails> {
  return (await readReview(client, store, workflowId)).details;
}

/** The details and every processed image with its caption, from one read of the manifest: what the review page shows. */
export async function readReviewPage(client: Client, store: ObjectStore, workflowId: string): Promise<{ details: ReviewDetails; images: ReviewImage[] }> {
  const { details, manifest } = await readReview(client, store, workflowId);
  return { details, images: manifest ? await readReviewImages(store, manifest, details.issues) : [] };
}

async function readReview(client: Client, store: ObjectStore, workflowId: string): Promise<{ details: ReviewDetails; manifest?: DatasetManifest }> {
  const state = await readReviewState(client, workflowId);
  if (!state.captions) return { details: { workflowId, state, issues: [], skipped: [], imageWarnings: [] } };
  assertSameStore(store, state);
  const report = parseOrThrow(CaptionReportFile, await readJson(store, state.captions.reportKey), `report ${state.captions.reportKey}`);
  const manifest = state.manifestKey ? await readManifestFile(store, state.manifestKey) : undefined;
  const details = {
    workflowId,
    state,
    issues: report.issues,
    skipped: manifest?.skipped ?? [],
    imageWarnings: (manifest?.images ?? []).flatMap((image) => ((image.warnings ?? []).length > 0 ? [{ image: image.source, warnings: image.warnings ?? [] }] : [])),
    reportUri: store.uriOf(state.captions.reportKey),
    contactSheetUris: state.contactSheetKeys?.map((key) => store.uriOf(key)),
  };
  return { details, manifest };
}

/**
 * The image a caption file belongs to, as `lora review show` names caption issues (`cat.txt`,
 * `10_dog/cat.txt`): `lora review edit --image` takes either name.
 */
export async function imageOfCaption(client: Client, store: ObjectStore, workflowId: string, captionFile: string): Promise<string> {
  const { manifest } = await readReview(client, store, workflowId);
  if (!manifest) throw new Error(`run ${workflowId} is not awaiting review yet: its images are still being prepared`);
  const image = manifest.images.find((candidate) => captionNameFor(candidate.source) === captionFile);
  if (!image) throw new Error(`--image: no image in run ${workflowId} has the caption ${captionFile} ("lora review show ${workflowId}" lists them)`);
  return image.source;
}

/** How many skipped files `lora status` names. */
export const SKIPPED_IN_STATUS = 3;

/**
 * The first files a run's preprocessing skipped and where the full list is, for `lora status`;
 * undefined when the work store cannot be read from here (another machine): the count still shows.
 */
export async function readFirstSkipped(
  workflowId: string,
  openStore: () => ObjectStore = openWorkStore,
): Promise<{ first: SkippedFile[]; manifestUri: string } | undefined> {
  const manifestKey = manifestKeyOf(workflowId);
  try {
    const store = openStore();
    const manifest = await readManifestFile(store, manifestKey);
    return { first: manifest.skipped.slice(0, SKIPPED_IN_STATUS), manifestUri: store.uriOf(manifestKey) };
  } catch {
    return undefined;
  }
}

/** A run's preprocessing manifest from the work store. */
export async function readManifestFile(store: ObjectStore, manifestKey: string): Promise<DatasetManifest> {
  return parseOrThrow(DatasetManifest, await readJson(store, manifestKey), `manifest ${manifestKey}`);
}

/** Every processed image of the run with its caption and its issues, in manifest order. */
async function readReviewImages(store: ObjectStore, manifest: DatasetManifest, issues: readonly ReportIssue[]): Promise<ReviewImage[]> {
  const limit = pLimit(CAPTION_READ_CONCURRENCY);
  return Promise.all(
    manifest.images.map((image) =>
      limit(async () => ({
        name: image.source,
        output: image.output,
        caption: image.caption === null ? null : (await store.get(image.caption)).toString('utf8'),
        issues: issuesOfImage(issues, image.source),
        warnings: image.warnings ?? [],
      })),
    ),
  );
}

/** An issue is about an image when it names the image or the image's caption file. */
export function issuesOfImage(issues: readonly ReportIssue[], imageName: string): ReportIssue[] {
  const caption = captionNameFor(imageName);
  return issues.filter((issue) => issue.file === imageName || issue.file === caption);
}

/** Each payload is checked here with the workflow's own schema, so it may come straight from a request body. */
export async function editCaptions(client: Client, workflowId: string, payload: unknown): Promise<EditCaptionsResult> {
  const args: [EditCaptionsPayload] = [parseOrThrow(EditCaptionsPayload, payload, 'editCaptions')];
  return sendUpdate(client, workflowId, EDIT_DEADLINE_MS, () => client.workflow.getHandle(workflowId).executeUpdate(editCaptionsUpdate, { args }));
}

export async function approveRun(client: Client, workflowId: string, payload: unknown): Promise<ReviewDecision> {
  const args: [ApprovePayload] = [parseOrThrow(ApprovePayload, payload, 'approve')];
  return sendUpdate(client, workflowId, DECISION_DEADLINE_MS, () => client.workflow.getHandle(workflowId).executeUpdate(approveUpdate, { args }));
}

export async function rejectRun(client: Client, workflowId: string, payload: unknown): Promise<ReviewDecision> {
  const args: [RejectPayload] = [parseOrThrow(RejectPayload, payload, 'reject')];
  return sendUpdate(client, workflowId, DECISION_DEADLINE_MS, () => client.workflow.getHandle(workflowId).executeUpdate(rejectUpdate, { args }));
}

/** Runs an update against a LoRA run, turning a refusal or a failed edit into its one-line reason. */
async function sendUpdate<T>(client: Client, workflowId: string, deadlineMs: number, update: () => Promise<T>): Promise<T> {
  const description = await describeRun(client.workflow.getHandle(workflowId));
  if (description.status.name !== 'RUNNING') {
    throw new Error(`run ${workflowId} already ended (${description.status.name}); nothing to review`);
  }
  try {
    return await client.withDeadline(Date.now() + deadlineMs, update);
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) throw new Error(`${workflowId}: ${innermostMessage(err)}`);
    throw err;
  }
}

/** The validator's or the activity's own words, not "Workflow Update failed" / "Activity task failed". */
export function innermostMessage(err: Error): string {
  let current: Error = err;
  while (current.cause instanceof Error) current = current.cause;
  return current.message;
}

function assertSameStore(store: ObjectStore, state: ReviewState): void {
  if (state.workStore !== undefined && state.workStore !== store.uri) {
    throw new Error(
      `the run's worker keeps its files in ${state.workStore}, but LORA_WORK_STORE here is ${store.uri}: set LORA_WORK_STORE=${state.workStore}`,
    );
  }
}

async function readJson(store: ObjectStore, key: string): Promise<unknown> {
  let bytes: Buffer;
  try {
    bytes = await store.get(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) {
      throw new Error(`${err.uri} does not exist: run the CLI on the worker's machine, or set LORA_WORK_STORE to the worker's work store`);
    }
    throw err;
  }
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new Error(`${store.uriOf(key)} is not valid JSON: ${(err as Error).message}`);
  }
}

function pick(env: NodeJS.ProcessEnv, key: string): Record<string, string | undefined> {
  return { [key]: env[key] };
}
