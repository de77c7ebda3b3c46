#!/usr/bin/env node
/**
 * `lora`: start, watch, review, cancel and list LoRA training runs. Each command is a few lines of
 * wiring; the rules live in start-input.ts, runs.ts and render.ts. Every failure is one line on
 * stderr (`lora: …`) and a non-zero exit status.
 */
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import type { SignalDefinition } from '@temporalio/common';
import { Command, Option } from 'commander';
import { BASE_MODEL_FAMILIES, REVIEW_POLICIES, SAGEMAKER_INSTANCE_TYPES } from '../lib/pipeline/input';
import { defaultWorkflowId, TASK_QUEUE, WORKFLOW_TYPE } from '../lib/pipeline/names';
import { ApprovePayload, RejectPayload } from '../lib/pipeline/review';
import { STAGES, type Stage } from '../lib/pipeline/status';
import { approveSignal, rejectSignal } from '../workflows/messages';
import { connectClient, temporalConfigFromEnv } from './connection';
import { describeError, exitCodeOf } from './errors';
import { parseFlags, positiveInteger } from './flags';
import { followOutputFor, followRun } from './follow';
import { listLines, statusLines, summaryLines, webUiUrl } from './render';
import { describeRun, listRuns, readRunSnapshot } from './runs';
import { buildStartInput, localDatasetNote, readInputFile, type StartFlags } from './start-input';

/** A followed run that ended in any stage but "completed" (rejected, failed, cancelled, timed out). */
const EXIT_RUN_NOT_COMPLETED = 2;

interface GlobalOptions {
  json?: boolean;
}

interface StartOptions extends StartFlags {
  input?: string;
  id?: string;
  follow?: boolean;
}

export function buildProgram(): Command {
  const program = new Command('lora')
    .description('Start, follow, review and cancel durable LoRA training runs on Temporal.')
    .option('--json', 'machine-readable output: JSON (with --follow, one JSON line per change)')
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({
      // commander's own errors (unknown option, bad choice, missing argument) in our one-line form
      outputError: (message, write) => write(`lora: ${message.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')}\n`),
    })
    .addHelpText(
      'after',
      `
Environment:
  TEMPORAL_ADDRESS    host:port of the Temporal frontend (default 127.0.0.1:7233)
  TEMPORAL_NAMESPACE  namespace (default "default")
  TEMPORAL_API_KEY    API key; turns TLS on
  TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY  client certificate and key files for mTLS
  LORA_WEB_UI         Temporal Web UI base for printed links (default http://localhost:8233)

Exit status: 0 success; 1 error; ${EXIT_RUN_NOT_COMPLETED} a followed run ended without completing; 130 stopped following (Ctrl-C).`,
    );

  program
    .command('start')
    .description('validate a run and start it (flags override fields of --input)')
    .option('--dataset <path>', 'images with .txt captions: a local folder (resolved to an absolute path), file:// or s3:// URI')
    .option('--name <runName>', 'run name: lower-case letters, digits and "-" (names the LoRA file)')
    .addOption(new Option('--base <family>', 'base model family (default sd15)').choices(BASE_MODEL_FAMILIES))
    .option('--checkpoint <pathOrId>', 'base checkpoint path or model id (default runwayml/stable-diffusion-v1-5)')
    .option('--repeats <n>', 'times each image is seen per epoch (default 10)')
    .option('--concept <name>', 'class tokens of the kohya folder (default: the run name)')
    .option('--trigger-word <word>', 'word every caption must contain')
    .addOption(new Option('--review <policy>', 'when a human reviews captions (default on-error)').choices(REVIEW_POLICIES))
    .option('--review-timeout <duration>', 'how long to wait for a reviewer, e.g. 7d, 12h (default 7d)')
    .addOption(new Option('--trainer <kind>', 'where training runs (default local)').choices(['local', 'sagemaker']))
    .option('--dry-run', 'local trainer: simulate Kohya-SS (no GPU) and write a small valid LoRA')
    .option('--store <uri>', 'file:// or s3:// store for datasets and LoRAs (default: the worker\'s)')
    .option('--epochs <n>', 'training epochs (default 10)')
    .option('--dim <n>', 'LoRA network dimension (default 32)')
    .option('--alpha <n>', 'LoRA network alpha (default 16)')
    .option('--poll-interval <duration>', 'how often training status is polled, e.g. 30s (default 30s)')
    .option('--sagemaker-image <uri>', 'SageMaker: Kohya-SS training image in ECR (implies --trainer sagemaker)')
    .option('--sagemaker-role <arn>', 'SageMaker: execution role ARN (implies --trainer sagemaker)')
    .addOption(
      new Option('--instance-type <type>', 'SageMaker: instance type (default ml.g5.2xlarge)').choices(SAGEMAKER_INSTANCE_TYPES),
    )
    .option('--input <file>', 'run input as JSON, or TOML if the name ends in .toml (relative paths resolve against this directory)')
    .option('--id <workflowId>', 'workflow id (default lora-<name>-<UTC time>)')
    .option('--follow', 'after starting, follow progress like "status --follow"')
    .action(async (options: StartOptions, command: Command) => {
      const { json } = globalOptions(command);
      const fileInput = options.input === undefined ? undefined : readInputFile(path.resolve(options.input));
      // Validated before connecting: a bad flag never needs a server to be reported.
      const input = buildStartInput(options, fileInput, process.cwd());
      const workflowId = options.id ?? defaultWorkflowId(input.runName, new Date());
      const config = temporalConfigFromEnv(process.env);

      await withClient(async (client) => {
        const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue: TASK_QUEUE, workflowId, args: [input] });
        const webUi = webUiUrl(config.webUi, client.options.namespace, workflowId);
        if (json) {
          printJson({ workflowId, runId: handle.firstExecutionRunId, webUi, input });
        } else {
          const note = localDatasetNote(input.dataset);
          print([
            `started run ${input.runName}`,
            `  workflow id: ${workflowId}`,
            `  web ui:      ${webUi}`,
            ...(note ? [`  note: ${note}`] : []),
            ...(options.follow ? [] : [`follow it with: lora status ${workflowId} --follow`]),
          ]);
        }
        if (options.follow) await followToEnd(client, workflowId, Boolean(json));
      });
    });

  program
    .command('status <id>')
    .description('show a run: stage, counts, review, dataset, job, LoRA, live progress')
    .option('--follow', 'draw live progress until the run ends; exit 0 only if it completed')
    .action(async (workflowId: string, options: { follow?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      await withClient(async (client) => {
        if (options.follow) return followToEnd(client, workflowId, Boolean(json));
        const snapshot = await readRunSnapshot(client, workflowId);
        if (json) printJson(snapshot);
        else print(statusLines(snapshot));
      });
    });

  program
    .command('approve <id>')
    .description('approve the captions of a run awaiting review; training goes on')
    .requiredOption('--reviewer <name>', 'who approves')
    .option('--comment <text>', 'note kept with the decision')
    .action(async (workflowId: string, options: { reviewer: string; comment?: string }, command: Command) => {
      const payload = parseFlags(ApprovePayload, { reviewer: options.reviewer, comment: options.comment });
      await withClient((client) => sendReview(client, workflowId, approveSignal, payload));
      report(command, { workflowId, decision: 'approved', ...payload }, [
        `approved ${workflowId} as ${payload.reviewer}; the run goes on to upload and training`,
      ]);
    });

  program
    .command('reject <id>')
    .description('reject the captions of a run awaiting review; the run ends without training')
    .requiredOption('--reviewer <name>', 'who rejects')
    .requiredOption('--reason <text>', 'why: kept with the decision')
    .action(async (workflowId: string, options: { reviewer: string; reason: string }, command: Command) => {
      const payload = parseFlags(RejectPayload, { reviewer: options.reviewer, reason: options.reason });
      await withClient((client) => sendReview(client, workflowId, rejectSignal, payload));
      report(command, { workflowId, decision: 'rejected', ...payload }, [
        `rejected ${workflowId} as ${payload.reviewer}; the run ends without training`,
      ]);
    });

  program
    .command('cancel <id>')
    .description('cancel a run; the workflow stops its training job and cleans up')
    .action(async (workflowId: string, _options: unknown, command: Command) => {
      await withClient(async (client) => {
        const handle = client.workflow.getHandle(workflowId);
        const description = await describeRun(handle);
        if (description.status.name !== 'RUNNING') {
          throw new Error(`run ${workflowId} already ended (${description.status.name}); nothing to cancel`);
        }
        await handle.cancel();
      });
      report(command, { workflowId, cancelRequested: true }, [
        `cancellation requested for ${workflowId}`,
        'the workflow now stops its training job (if one was launched) and cleans up before it ends',
        `watch it with: lora status ${workflowId} --follow`,
      ]);
    });

  program
    .command('list')
    .description('list training runs with their stage, run name and base model')
    .addOption(new Option('--stage <stage>', 'only runs in this stage').choices(STAGES))
    .option('--limit <n>', 'at most this many runs', positiveInteger, 20)
    .action(async (options: { stage?: Stage; limit: number }, command: Command) => {
      const entries = await withClient((client) => listRuns(client, options));
      report(command, entries, listLines(entries));
    });

  return program;
}

/** Signals a review decision, but only to a run that is waiting for one: a signal cannot be refused later. */
async function sendReview<P>(client: Client, workflowId: string, signal: SignalDefinition<[P]>, payload: P): Promise<void> {
  const snapshot = await readRunSnapshot(client, workflowId);
  if (snapshot.execution !== 'RUNNING' || snapshot.status.stage !== 'awaiting_review') {
    throw new Error(`run ${workflowId} is in stage "${snapshot.status.stage}", not awaiting review`);
  }
  await client.workflow.getHandle(workflowId).signal(signal, payload);
}

/** The follow loop shared by `start --follow` and `status --follow`, then the verdict. */
async function followToEnd(client: Client, workflowId: string, json: boolean): Promise<void> {
  const final = await followRun(client, workflowId, followOutputFor(json, Boolean(process.stdout.isTTY)));
  if (!json) print(['', ...summaryLines(final)]);
  if (final.status.stage !== 'completed') process.exitCode = EXIT_RUN_NOT_COMPLETED;
}

async function withClient<T>(use: (client: Client) => Promise<T>): Promise<T> {
  const client = await connectClient();
  try {
    return await use(client);
  } finally {
    await client.connection.close();
  }
}

function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

function report(command: Command, value: unknown, lines: string[]): void {
  if (globalOptions(command).json) printJson(value);
  else print(lines);
}

function print(lines: string[]): void {
  process.stdout.write(`${lines.join('\n')}\n`);
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((err: unknown) => {
      process.stderr.write(`lora: ${describeError(err)}\n`);
      process.exitCode = exitCodeOf(err);
    });
}
