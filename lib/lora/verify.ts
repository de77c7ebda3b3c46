/**
 * Checks that a file is a kohya LoRA for the expected base model before anything registers it:
 * the reference extension registered whatever landed in the output prefix. Pure: bytes in,
 * a summary out, or an InvalidLoraError naming the first problem found.
 */
import type { BaseModelFamily } from '../pipeline/input';
import { readSafetensorsHeader, SafetensorsHeader, tensorValues } from '../safetensors';

export interface LoraExpectation {
  family: BaseModelFamily;
  /** When given, every linear module must have exactly this rank. */
  networkDim?: number;
}

export interface LoraSummary {
  tensorCount: number;
  /** Number of LoRA modules (complete down/up/alpha triples). */
  modules: number;
  /** The rank of the linear modules (network_dim). */
  rank: number;
  metadata: Record<string, string>;
}

/** A name code can branch on: a bad LoRA will not get better by retrying. */
export class InvalidLoraError extends Error {
  override name = 'InvalidLoraError';
}

const PART_SUFFIXES = ['lora_down.weight', 'lora_up.weight', 'alpha'] as const;
type Part = (typeof PART_SUFFIXES)[number];
const TENSOR_NAME = /^(lora_[A-Za-z0-9_]+)\.(lora_down\.weight|lora_up\.weight|alpha)$/;
const FLOAT_DTYPES = ['F16', 'BF16', 'F32'];

/** Which module prefixes each family's LoRA may use, and the U-Net naming of the other family. */
const FAMILY_RULES: Record<BaseModelFamily, { prefixes: string[]; foreignUnet: RegExp; baseModelVersion: RegExp; label: string }> = {
  sd15: {
    prefixes: ['lora_unet_', 'lora_te_'],
    foreignUnet: /^lora_unet_(input_blocks|output_blocks|middle_block)_/,
    baseModelVersion: /^sd_v1/,
    label: 'SD 1.x',
  },
  sdxl: {
    prefixes: ['lora_unet_', 'lora_te1_', 'lora_te2_'],
    foreignUnet: /^lora_unet_(down_blocks|up_blocks|mid_block)_/,
    baseModelVersion: /^sdxl_/,
    label: 'SDXL',
  },
};
const KNOWN_PREFIXES = ['lora_unet_', 'lora_te_', 'lora_te1_', 'lora_te2_'];

export function verifyLora(buf: Buffer, expect: LoraExpectation): LoraSummary {
  let header: SafetensorsHeader;
  try {
    header = readSafetensorsHeader(buf);
  } catch (err) {
    throw new InvalidLoraError(`not a valid safetensors file: ${(err as Error).message}`);
  }
  const rules = FAMILY_RULES[expect.family];
  if (!rules) throw new Error(`family: must be sd15 or sdxl, got "${expect.family}"`);
  const names = Object.keys(header.tensors);
  if (names.length === 0) throw new InvalidLoraError('the file holds no tensors');
  if (!names.some((name) => name.startsWith('lora_'))) {
    throw new InvalidLoraError(
      `no LoRA tensors (lora_unet_*, lora_te*_*) found; the file starts with ${names.slice(0, 3).join(', ')}: ` +
        'a full checkpoint or another network type, not a kohya LoRA',
    );
  }

  const modules = new Map<string, Partial<Record<Part, string>>>();
  for (const name of names) {
    const match = TENSOR_NAME.exec(name);
    if (!match) {
      throw new InvalidLoraError(`tensor "${name}" is not part of a LoRA module (expected <module>.lora_down.weight, .lora_up.weight or .alpha)`);
    }
    const [, module, part] = match;
    const parts = modules.get(module) ?? {};
    parts[part as Part] = name;
    modules.set(module, parts);
  }

  const baseModelVersion = header.metadata.ss_base_model_version;
  if (baseModelVersion !== undefined && !rules.baseModelVersion.test(baseModelVersion)) {
    throw new InvalidLoraError(`metadata ss_base_model_version is "${baseModelVersion}", which is not ${rules.label} (family ${expect.family})`);
  }

  const linearRanks = new Map<string, number>();
  const convRanks = new Map<string, number>();
  for (const [module, parts] of modules) {
    checkFamily(module, expect.family, rules);
    const missing = PART_SUFFIXES.filter((part) => !parts[part]);
    if (missing.length) throw new InvalidLoraError(`module "${module}" is incomplete: missing .${missing.join(', .')}`);
    for (const part of PART_SUFFIXES) {
      const dtype = header.tensors[parts[part]!].dtype;
      if (!FLOAT_DTYPES.includes(dtype)) throw new InvalidLoraError(`tensor "${parts[part]}" has dtype ${dtype}; LoRA weights must be F16, BF16 or F32`);
    }
    const down = header.tensors[parts['lora_down.weight']!].shape;
    const up = header.tensors[parts['lora_up.weight']!].shape;
    const alpha = header.tensors[parts.alpha!].shape;
    // Linear modules are [rank, in] / [out, rank]; conv modules (LoCon) add kernel dimensions.
    if (down.length !== up.length || (down.length !== 2 && down.length !== 4)) {
      throw new InvalidLoraError(`module "${module}": lora_down shape [${down}] and lora_up shape [${up}] are not a 2-D or 4-D pair`);
    }
    if (down[0] !== up[1]) {
      throw new InvalidLoraError(`module "${module}": lora_down rank ${down[0]} does not match lora_up rank ${up[1]}`);
    }
    if (alpha.reduce((count, dim) => count * dim, 1) !== 1) throw new InvalidLoraError(`module "${module}": alpha has shape [${alpha}], expected a scalar`);
    (down.length === 2 ? linearRanks : convRanks).set(module, down[0]);
  }

  const [[firstModule, rank]] = linearRanks.size ? [...linearRanks] : [...convRanks];
  for (const [module, moduleRank] of linearRanks) {
    if (moduleRank !== rank) {
      throw new InvalidLoraError(`rank mismatch: module "${module}" has rank ${moduleRank} but "${firstModule}" has rank ${rank}`);
    }
  }
  if (expect.networkDim !== undefined && rank !== expect.networkDim) {
    throw new InvalidLoraError(`rank mismatch: the LoRA has rank ${rank} but network_dim is ${expect.networkDim}`);
  }
  const declaredDim = header.metadata.ss_network_dim;
  // "Dynamic" (resized LoRAs) and absent values are legitimate; a different number is not.
  if (declaredDim !== undefined && /^\d+$/.test(declaredDim) && Number(declaredDim) !== rank) {
    throw new InvalidLoraError(`rank mismatch: metadata ss_network_dim is ${declaredDim} but the tensors have rank ${rank}`);
  }

  for (const name of names) {
    const values = tensorValues(buf, header, name);
    const bad = values.find((value) => !Number.isFinite(value));
    if (bad !== undefined) throw new InvalidLoraError(`tensor "${name}" contains ${Number.isNaN(bad) ? 'NaN' : 'Inf'}`);
  }

  return { tensorCount: names.length, modules: modules.size, rank, metadata: { ...header.metadata } };
}

function checkFamily(module: string, family: BaseModelFamily, rules: (typeof FAMILY_RULES)[BaseModelFamily]): void {
  if (!KNOWN_PREFIXES.some((prefix) => module.startsWith(prefix))) {
    throw new InvalidLoraError(`module "${module}" patches neither the U-Net (lora_unet_) nor a text encoder (lora_te_, lora_te1_, lora_te2_)`);
  }
  if (!rules.prefixes.some((prefix) => module.startsWith(prefix)) || rules.foreignUnet.test(module)) {
    const other = family === 'sd15' ? 'SDXL' : 'SD 1.x';
    throw new InvalidLoraError(`module "${module}" uses ${other} key names, but the base model family is ${family} (${rules.label})`);
  }
}
