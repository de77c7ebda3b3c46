/**
 * `lora config`: sd-scripts options checked and normalised without a server. `format` reads a TOML
 * file (sections flattened as sd-scripts does), applies it over a family's preset and prints the
 * result with its differences from the preset; `preset` prints a preset to start a file from.
 */
import { Command, Option } from 'commander';
import { kohyaPreset } from '../lib/kohya/config';
import { BASE_MODEL_FAMILIES, type BaseModelFamily } from '../lib/pipeline/input';
import { formatKohyaConfig, formattedKohyaLines, kohyaOptionsFrom, kohyaToml } from './kohya-config';

/** What the commands borrow from cli.ts: --json aware output. */
export interface ConfigCliContext {
  report(command: Command, value: unknown, lines: string[]): void;
}

/** For repeatable options: `--kohya a=1 --kohya b=2`. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function kohyaFlagOption(): Option {
  return new Option('--kohya <key=value>', 'set an sd-scripts option, e.g. unet_lr=2e-4 (repeatable; wins over the file)').argParser(collect);
}

const baseOption = () => new Option('--base <family>', 'base model family whose preset applies').choices(BASE_MODEL_FAMILIES).default('sd15');

export function addConfigCommands(program: Command, cli: ConfigCliContext): void {
  const config = program.command('config').description('sd-scripts options: check and normalise a TOML file, or print a preset');
  config
    .command('format <file>')
    .description('check an sd-scripts TOML file, print it normalised over the preset and its differences from the preset')
    .addOption(baseOption())
    .addOption(kohyaFlagOption())
    .action((file: string, options: { base: BaseModelFamily; kohya?: string[] }, command: Command) => {
      const formatted = formatKohyaConfig(options.base, kohyaOptionsFrom(file, options.kohya ?? []), file);
      cli.report(command, formatted, formattedKohyaLines(formatted, file));
    });
  config
    .command('preset')
    .description("print a family's preset (the reference extension's defaults with preprocessing's buckets) as TOML")
    .addOption(baseOption())
    .action((options: { base: BaseModelFamily }, command: Command) => {
      const preset = kohyaPreset(options.base);
      cli.report(command, { base: options.base, options: preset }, [`# sd-scripts LoRA preset for ${options.base}`, ...kohyaToml(preset).trimEnd().split('\n')]);
    });
}
