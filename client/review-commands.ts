/**
 * The review commands: `lora approve` / `lora reject` and the `lora review` group (show, edit,
 * approve, reject, serve). Top-level approve/reject and their `review` twins are built by the same
 * functions, so both send the same validated update.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { isCaptionFile } from '../lib/kohya/layout';
import { parseOrThrow } from '../lib/pipeline/input';
import { ApprovePayload, CaptionEdits, EditCaptionsPayload, imageRefOf, RejectPayload } from '../lib/pipeline/review';
import { flagName, formatIssuesNamingFlags, parseFlags, positiveInteger } from './flags';
import { approveRun, editCaptions, imageOfCaption, openWorkStore, readReviewDetails, rejectRun } from './review';
import { startReviewServer } from './review-page/server';
import { decisionLines, editResultLines, pageOf, pageOfIssues, reviewLines, SKIPPED_PREVIEW } from './review-render';

/** What the commands borrow from cli.ts: one connection per command, and --json aware output. */
export interface CliContext {
  withClient<T>(use: (client: Client) => Promise<T>): Promise<T>;
  report(command: Command, value: unknown, lines: string[]): void;
}

export const DEFAULT_REVIEW_PORT = 8765;

/** Adds `approve`, `reject` and the `review` group to the program. */
export function addReviewCommands(program: Command, cli: CliContext): void {
  // Built with .command() so that each inherits the program's settings (one-line errors, help).
  addApproveCommand(program, cli);
  addRejectCommand(program, cli);

  const review = program.command('review').description('review a run\'s captions: show issues, edit captions, approve, reject, or serve a review page');
  review
    .command('show <id>')
    .description('review state, caption issue counts and one page of issues, or of the files preprocessing skipped (read from the worker\'s work store)')
    .option('--page <n>', 'page of issues (or skipped files) to show', positiveInteger, 1)
    .option('--page-size <n>', 'issues (or skipped files) per page', positiveInteger, 20)
    .addOption(new Option('--severity <level>', 'only issues of this severity').choices(['error', 'warning', 'info']))
    .option('--skipped', 'list the files preprocessing left out, with why, instead of the issues')
    .action(async (workflowId: string, options: ShowFlags, command: Command) => {
      const store = openWorkStore();
      const details = await cli.withClient((client) => readReviewDetails(client, store, workflowId));
      const { issues: _issues, skipped: _skipped, imageWarnings, ...summary } = details;
      if (options.skipped) {
        const skipped = pageOf(details.skipped, options);
        cli.report(command, { ...summary, skipped }, reviewLines(details, { skipped }));
      } else {
        const issues = pageOfIssues(details.issues, options);
        const skipped = pageOf(details.skipped, { page: 1, pageSize: SKIPPED_PREVIEW });
        cli.report(command, { ...summary, issues, skipped, imageWarnings }, reviewLines(details, { issues }));
      }
    });

  review
    .command('edit <id>')
    .description('rewrite captions (one with --image and --caption, or many from --file), re-check them, print the new counts')
    .requiredOption('--reviewer <name>', 'who edits (kept with the review)')
    .option('--image <name>', 'the image as "lora review show" names it: a.jpg (or its caption, a.txt), or 10_dog/a.jpg in a kohya-layout dataset')
    .option('--caption <text>', 'its new caption: one line of text')
    .option('--file <edits.json>', 'a JSON array of { "image": …, "caption": … } (plus "folder": "10_dog" in kohya layout)')
    .action(async (workflowId: string, options: EditFlags, command: Command) => {
      // A caption file's name (as "show" lists caption issues) is looked up in the run; anything else is checked before connecting.
      const byCaption = options.image !== undefined && isCaptionFile(options.image);
      if (!byCaption) editPayloadOf(options);
      const result = await cli.withClient(async (client) => {
        const image = byCaption ? await imageOfCaption(client, openWorkStore(), workflowId, options.image as string) : options.image;
        return editCaptions(client, workflowId, editPayloadOf({ ...options, image }));
      });
      cli.report(command, { workflowId, ...result }, editResultLines(workflowId, result));
    });

  addApproveCommand(review, cli);
  addRejectCommand(review, cli);

  review
    .command('serve <id>')
    .description('serve a review page on this machine: images, editable captions, issues, approve / reject')
    .option('--port <n>', `loopback port (default ${DEFAULT_REVIEW_PORT}; 0 picks a free one)`, portNumber, DEFAULT_REVIEW_PORT)
    .action(async (workflowId: string, options: { port: number }, command: Command) => {
      const store = openWorkStore();
      await cli.withClient(async (client) => {
        await readReviewDetails(client, store, workflowId); // fails now, not in the browser, when the run cannot be read
        const server = await startReviewServer({ client, store, workflowId, port: options.port });
        cli.report(command, { workflowId, url: server.url }, [`review page for ${workflowId}: ${server.url}`, 'stop it with Ctrl-C']);
        await untilInterrupted();
        await server.close();
      });
    });
}

function addApproveCommand(parent: Command, cli: CliContext): void {
  parent
    .command('approve <id>')
    .description('approve the captions of a run awaiting review; training goes on (refused while caption errors remain, unless --force)')
    .requiredOption('--reviewer <name>', 'who approves')
    .option('--comment <text>', 'note kept with the decision')
    .option('--force', 'approve although caption errors remain (recorded with the decision)')
    .action(async (workflowId: string, options: { reviewer: string; comment?: string; force?: boolean }, command: Command) => {
      const payload = parseFlags(ApprovePayload, { reviewer: options.reviewer, comment: options.comment, force: options.force });
      const decision = await cli.withClient((client) => approveRun(client, workflowId, payload));
      cli.report(command, { workflowId, ...decision }, decisionLines(workflowId, decision));
    });
}

function addRejectCommand(parent: Command, cli: CliContext): void {
  parent
    .command('reject <id>')
    .description('reject the captions of a run awaiting review; the run ends without training')
    .requiredOption('--reviewer <name>', 'who rejects')
    .requiredOption('--reason <text>', 'why: kept with the decision')
    .action(async (workflowId: string, options: { reviewer: string; reason: string }, command: Command) => {
      const payload = parseFlags(RejectPayload, { reviewer: options.reviewer, reason: options.reason });
      const decision = await cli.withClient((client) => rejectRun(client, workflowId, payload));
      cli.report(command, { workflowId, ...decision }, decisionLines(workflowId, decision));
    });
}

interface ShowFlags {
  page: number;
  pageSize: number;
  severity?: 'error' | 'warning' | 'info';
  skipped?: boolean;
}

interface EditFlags {
  reviewer: string;
  image?: string;
  caption?: string;
  file?: string;
}

/** One edit from --image/--caption or many from --file; checked here, before connecting. */
export function editPayloadOf(options: EditFlags): EditCaptionsPayload {
  const single = options.image !== undefined || options.caption !== undefined;
  if (single === (options.file !== undefined)) {
    throw new Error('give either --image and --caption (one caption) or --file (a JSON array of edits)');
  }
  if (options.file !== undefined) {
    const file = path.resolve(options.file);
    const edits = parseOrThrow(CaptionEdits, readJsonFile(file), file);
    return parseFlags(EditCaptionsPayload, { reviewer: options.reviewer, edits });
  }
  if (options.image === undefined || options.caption === undefined) {
    throw new Error(`${options.image === undefined ? '--image' : '--caption'} is required with ${options.image === undefined ? '--caption' : '--image'}`);
  }
  // `10_dog/a.jpg` (an image in a kohya-layout dataset) is sent as { folder, image }, each a plain name.
  const edit = { ...imageRefOf(options.image), caption: options.caption };
  const parsed = EditCaptionsPayload.safeParse({ reviewer: options.reviewer, edits: [edit] });
  if (parsed.success) return parsed.data;
  // Name the flag the user typed (--reviewer, --image, --caption), not the payload's field path.
  throw new Error(
    formatIssuesNamingFlags(parsed.error, (issue) => {
      const field = String(issue.path[issue.path.length - 1]);
      return field === 'folder' ? '--image (folder part)' : flagName(field);
    }),
  );
}

function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

function portNumber(raw: string): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new InvalidArgumentError('Expected a port number from 0 to 65535.');
  return value;
}

function untilInterrupted(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
