#!/usr/bin/env node
/**
 * `lora`: start, watch, review, cancel and list LoRA training runs. Each command is a few lines of
 * wiring; the rules live in start-input.ts, runs.ts and render.ts. Every failure is one line on
 * stderr (`lora: …`) and a non-zero exit status.
 */
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { Command, Option } from 'commander';
import { BASE_MODEL_FAMILIES, REVIEW_POLICIES, SAGEMAKER_INSTANCE_TYPES } from '../lib/pipeline/input';
import { defaultWorkflowId } from '../lib/pipeline/names';
import { STAGES, type Stage } from '../lib/pipeline/status';
import { connectClient, taskQueueFromEnv, temporalConfigFromEnv } from './connection';
import { checkLocalDataset } from './dataset-check';
import { describeError, exitCodeOf } from './errors';
import { positiveInteger } from './flags';
import { followOutputFor, followRun } from './follow';
import { listRegistered, modelListLines, modelShowLines, openRegistryStore, readRegistered } from './models';
import { listLines, statusLines, summaryLines, webUiUrl } from './render';
import { readFirstSkipped } from './review';
import { addReviewCommands } from './review-commands';
import { describeRun, listRuns, readRunSnapshot, startRun } from './runs';
import { buildStartInput, localDatasetNote, readInputFile, type StartFlags } from './start-input';
import { addConfigCommands, kohyaFlagOption } from './config-commands';
import { assertKohyaOptionsUsable, kohyaOptionsFrom, withKohyaOverrides } from './kohya-config';

/** A followed run that ended in any stage but "completed" (rejected, failed, cancelled, timed out). */
const EXIT_RUN_NOT_COMPLETED = 2;

interface GlobalOptions {
  json?: boolean;
}

interface StartOptions extends StartFlags {
  input?: string;
  id?: string;
  follow?: boolean;
  kohyaConfig?: string;
  kohya?: string[];
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
    .option('--device <gpu|cpu>', 'where training runs: cpu sets what a host without CUDA needs (fp32, AdamW, no xformers); default gpu')
    .option('--poll-interval <duration>', 'how often training status is polled, e.g. 30s (default 30s)')
    .option('--sagemaker-image <uri>', 'SageMaker: Kohya-SS training image in ECR (implies --trainer sagemaker)')
    .option('--sagemaker-role <arn>', 'SageMaker: execution role ARN (implies --trainer sagemaker)')
    .addOption(
      new Option('--instance-type <type>', 'SageMaker: instance type (default ml.g5.2xlarge)').choices(SAGEMAKER_INSTANCE_TYPES),
    )
    .option('--kohya-config <file>', 'sd-scripts options over the preset, as TOML (see "lora config format")')
    .addOption(kohyaFlagOption())
    .option('--input <file>', 'run input as JSON, or TOML if the name ends in .toml (relative paths resolve against this directory)')
    .option('--id <workflowId>', 'workflow id (default lora-<name>-<UTC time>)')
    .option('--follow', 'after starting, follow progress like "status --follow"')
    .action(async (options: StartOptions, command: Command) => {
      const { json } = globalOptions(command);
      const fileInput = options.input === undefined ? undefined : readInputFile(path.resolve(options.input));
      // Validated before connecting: a bad flag never needs a server to be reported.
      const kohya = kohyaOptionsFrom(options.kohyaConfig, options.kohya ?? []);
      const input = buildStartInput(options, withKohyaOverrides(fileInput, kohya), process.cwd());
      assertKohyaOptionsUsable(input, kohya);
      // A local dataset is looked at before anything starts: a wrong path fails here, not in a run.
      await checkLocalDataset(input);
      const workflowId = options.id ?? defaultWorkflowId(input.runName, new Date());
      const config = temporalConfigFromEnv(process.env);

      await withClient(async (client) => {
        const handle = await startRun(client, input, { taskQueue: taskQueueFromEnv(process.env), workflowId });
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
        if (snapshot.status.images?.skipped) {
          const skippedFiles = await readFirstSkipped(workflowId);
          if (skippedFiles) snapshot.skippedFiles = skippedFiles;
        }
        if (json) printJson(snapshot);
        else print(statusLines(snapshot));
      });
    });

  // approve, reject and the review group (show, edit, approve, reject, serve): client/review-commands.ts
  addReviewCommands(program, { withClient, report });

  // sd-scripts option files, no server needed: client/config-commands.ts
  addConfigCommands(program, { report });

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

  // Registered LoRAs are read from the store itself: no Temporal server needed.
  const models = program.command('models').description('registered LoRAs: list them or show one (reads the registry in the store)');
  const storeOption = () => new Option('--store <uri>', 'file:// or s3:// store holding the registry (default: LORA_STORE, as the worker)');
  models
    .command('list')
    .description('list registered LoRAs with base model, trigger word, AutoV2 hash and size')
    .addOption(storeOption())
    .action(async (options: { store?: string }, command: Command) => {
      const listing = await listRegistered(openRegistryStore(options.store, process.env));
      for (const problem of listing.problems) process.stderr.write(`lora: warning: ${problem}\n`);
      report(command, listing.records, modelListLines(listing));
    });
  models
    .command('show <name>')
    .description('show one registered LoRA: file, hashes, trigger word, base model, training metrics, metadata')
    .addOption(storeOption())
    .action(async (name: string, options: { store?: string }, command: Command) => {
      const record = await readRegistered(openRegistryStore(options.store, process.env), name);
      report(command, record, modelShowLines(record));
    });

  return program;
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
