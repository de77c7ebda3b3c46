/**
 * Checks that a file is a kohya LoRA for the expected run before anything registers it: the
 * reference extension registered whatever landed in the output prefix. Pure: bytes in, a summary
 * out, or an InvalidLoraError naming the first problem found.
 *
 * Two entry points: `verifyLoraHeader` judges the structure from the header alone (so a multi-GB
 * checkpoint is turned away before its data is read), `verifyLora` also reads every value (no
 * NaN/Inf, alphas as configured) and checks `sshs_model_hash`.
 */
import type { BaseModelFamily } from '../pipeline/input';
import { findNonFinite, headerLengthOf, parseSafetensorsHeader, SafetensorsHeader, sha256AfterHeader, tensorValues } from '../safetensors';

export interface LoraExpectation {
  family: BaseModelFamily;
  /** When given, every linear (and 1×1 conv) module must have exactly this rank. */
  networkDim?: number;
  /** When given, every `.alpha` and a numeric `ss_network_alpha` must equal it. */
  networkAlpha?: number;
  /** When given, `ss_network_module` (if the file records it) must equal it, e.g. "networks.lora". */
  networkModule?: string;
}

export interface LoraSummary {
  tensorCount: number;
  /** Number of LoRA modules (complete down/up/alpha triples). */
  modules: number;
  /** The rank of the linear modules (network_dim). */
  rank: number;
  metadata: Record<string, string>;
}

export interface VerifiedLora extends LoraSummary {
  /** SHA-256 of the bytes after the header: what sd-scripts records as `sshs_model_hash`. */
  sha256AfterHeader: string;
}

/** A name code can branch on: a bad LoRA will not get better by retrying. */
export class InvalidLoraError extends Error {
  override name = 'InvalidLoraError';
}

const PART_SUFFIXES = ['lora_down.weight', 'lora_up.weight', 'alpha'] as const;
type Part = (typeof PART_SUFFIXES)[number];
const TENSOR_NAME = /^(lora_[A-Za-z0-9_]+)\.(lora_down\.weight|lora_up\.weight|alpha)$/;
const FLOAT_DTYPES = ['F16', 'BF16', 'F32'];
/** Rounding error bound per dtype (2^-significand bits): a saved alpha is this close to the configured one. */
const RELATIVE_PRECISION: Record<string, number> = { F16: 2 ** -11, BF16: 2 ** -8, F32: 2 ** -24 };

interface FamilyRules {
  prefixes: string[];
  /** The U-Net naming of the other family: diffusers names for SD 1.x, SGM names for SDXL. */
  foreignUnet: RegExp;
  baseModelVersion: RegExp;
  architecture: RegExp;
  label: string;
}

const FAMILY_RULES: Record<BaseModelFamily, FamilyRules> = {
  sd15: {
    prefixes: ['lora_unet_', 'lora_te_'],
    foreignUnet: /^lora_unet_(input_blocks|output_blocks|middle_block)_/,
    baseModelVersion: /^sd_v1/,
    architecture: /^stable-diffusion-v1\b/,
    label: 'SD 1.x',
  },
  sdxl: {
    prefixes: ['lora_unet_', 'lora_te1_', 'lora_te2_'],
    foreignUnet: /^lora_unet_(down_blocks|up_blocks|mid_block)_/,
    baseModelVersion: /^sdxl_/,
    architecture: /^stable-diffusion-xl-v1-base\b/,
    label: 'SDXL',
  },
};
const KNOWN_PREFIXES = ['lora_unet_', 'lora_te_', 'lora_te1_', 'lora_te2_'];

/**
 * What a run's LoRA must look like, from the sd-scripts options it was trained with (the values
 * sd-scripts actually received, whatever defaults filled them in).
 */
export function expectationFor(family: BaseModelFamily, kohyaOptions: Readonly<Record<string, unknown>>): LoraExpectation {
  const { network_dim: dim, network_alpha: alpha, network_module: module } = kohyaOptions;
  return {
    family,
    networkDim: typeof dim === 'number' ? dim : undefined,
    networkAlpha: typeof alpha === 'number' ? alpha : undefined,
    networkModule: typeof module === 'string' ? module : undefined,
  };
}

/** N from the file's first 8 bytes, so a caller reads exactly the 8 + N header bytes and no more. */
export function loraHeaderLength(prefix: Buffer, fileSize: number): number {
  try {
    return headerLengthOf(prefix, fileSize);
  } catch (err) {
    throw new InvalidLoraError(`not a valid safetensors file: ${(err as Error).message}`);
  }
}

/** The structure checks, from the header bytes (the file's first 8 + N bytes) and the file size. */
export function verifyLoraHeader(start: Buffer, fileSize: number, expect: LoraExpectation): LoraSummary {
  return checkStructure(parseHeader(start, fileSize), expect);
}

/** Every check: structure, then the values of every tensor, then `sshs_model_hash`. */
export function verifyLora(buf: Buffer, expect: LoraExpectation): VerifiedLora {
  const header = parseHeader(buf, buf.length);
  const summary = checkStructure(header, expect);
  for (const name of Object.keys(header.tensors)) {
    const bad = findNonFinite(buf, header, name);
    if (bad) throw new InvalidLoraError(`tensor "${name}" contains ${bad.kind} (element ${bad.index})`);
  }
  if (expect.networkAlpha !== undefined) {
    for (const name of Object.keys(header.tensors).filter((n) => n.endsWith('.alpha'))) {
      const [alpha] = tensorValues(buf, header, name);
      if (Math.abs(alpha - expect.networkAlpha) > RELATIVE_PRECISION[header.tensors[name].dtype] * expect.networkAlpha) {
        throw new InvalidLoraError(`tensor "${name}" is ${alpha} but network_alpha is ${expect.networkAlpha}`);
      }
    }
  }
  const hash = sha256AfterHeader(buf);
  const recorded = header.metadata.sshs_model_hash;
  if (recorded !== undefined && recorded.toLowerCase() !== hash) {
    throw new InvalidLoraError(
      `metadata sshs_model_hash is ${recorded} but the bytes after the header hash to ${hash}: the tensors changed after sd-scripts saved the file`,
    );
  }
  return { ...summary, sha256AfterHeader: hash };
}

function parseHeader(start: Buffer, fileSize: number): SafetensorsHeader {
  try {
    return parseSafetensorsHeader(start, fileSize);
  } catch (err) {
    throw new InvalidLoraError(`not a valid safetensors file: ${(err as Error).message}`);
  }
}

function checkStructure(header: SafetensorsHeader, expect: LoraExpectation): LoraSummary {
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

  checkRunMetadata(header.metadata, expect, rules);

  // network_dim applies to Linear and 1×1 Conv2d modules; 3×3 convs (LoCon) use conv_dim.
  const networkRanks = new Map<string, number>();
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
    // Linear modules are [rank, in] / [out, rank]; conv modules are [rank, in, kh, kw] / [out, rank, 1, 1].
    const linear = down.length === 2 && up.length === 2;
    const conv = down.length === 4 && up.length === 4 && up[2] === 1 && up[3] === 1;
    if (!linear && !conv) {
      throw new InvalidLoraError(`module "${module}": lora_down shape [${down}] and lora_up shape [${up}] are neither a linear nor a conv pair`);
    }
    if (down[0] !== up[1]) {
      throw new InvalidLoraError(`module "${module}": lora_down rank ${down[0]} does not match lora_up rank ${up[1]}`);
    }
    if (down[0] < 1) throw new InvalidLoraError(`module "${module}" has rank 0`);
    if (alpha.reduce((count, dim) => count * dim, 1) !== 1) throw new InvalidLoraError(`module "${module}": alpha has shape [${alpha}], expected a scalar`);
    (linear || (down[2] === 1 && down[3] === 1) ? networkRanks : convRanks).set(module, down[0]);
  }

  if (networkRanks.size === 0) throw new InvalidLoraError('no linear or 1x1 conv modules: not a networks.lora LoRA');
  const rank = sameRank(networkRanks, 'module')!;
  sameRank(convRanks, 'conv module');
  if (expect.networkDim !== undefined && rank !== expect.networkDim) {
    throw new InvalidLoraError(`rank mismatch: the LoRA has rank ${rank} but network_dim is ${expect.networkDim}`);
  }
  const declaredDim = header.metadata.ss_network_dim;
  // "Dynamic" (resized LoRAs) and absent values are legitimate; a different number is not.
  if (declaredDim !== undefined && /^\d+$/.test(declaredDim) && Number(declaredDim) !== rank) {
    throw new InvalidLoraError(`rank mismatch: metadata ss_network_dim is ${declaredDim} but the tensors have rank ${rank}`);
  }
  return { tensorCount: names.length, modules: modules.size, rank, metadata: { ...header.metadata } };
}

/** The rank all these modules share, or an error naming two that differ. */
function sameRank(ranks: Map<string, number>, what: string): number | undefined {
  const [first] = ranks;
  for (const [module, rank] of ranks) {
    if (rank !== first[1]) {
      throw new InvalidLoraError(`rank mismatch: ${what} "${module}" has rank ${rank} but "${first[0]}" has rank ${first[1]}`);
    }
  }
  return first?.[1];
}

/** What sd-scripts recorded about the training must describe this run. */
function checkRunMetadata(metadata: Record<string, string>, expect: LoraExpectation, rules: FamilyRules): void {
  const notThisFamily = `which is not ${rules.label} (family ${expect.family})`;
  const baseModelVersion = metadata.ss_base_model_version;
  if (baseModelVersion !== undefined && !rules.baseModelVersion.test(baseModelVersion)) {
    throw new InvalidLoraError(`metadata ss_base_model_version is "${baseModelVersion}", ${notThisFamily}`);
  }
  const architecture = metadata['modelspec.architecture'];
  if (architecture !== undefined && !rules.architecture.test(architecture)) {
    throw new InvalidLoraError(`metadata modelspec.architecture is "${architecture}", ${notThisFamily}`);
  }
  const networkModule = metadata.ss_network_module;
  if (networkModule !== undefined && expect.networkModule !== undefined && networkModule !== expect.networkModule) {
    throw new InvalidLoraError(`metadata ss_network_module is "${networkModule}" but the run trains ${expect.networkModule}`);
  }
  const alpha = metadata.ss_network_alpha;
  // sd-scripts writes the float it parsed ("16.0"); "Dynamic" marks resized LoRAs.
  if (alpha !== undefined && expect.networkAlpha !== undefined && alpha.trim() !== '' && Number.isFinite(Number(alpha)) && Number(alpha) !== expect.networkAlpha) {
    throw new InvalidLoraError(`metadata ss_network_alpha is ${alpha} but the run's network_alpha is ${expect.networkAlpha}`);
  }
}

function checkFamily(module: string, family: BaseModelFamily, rules: FamilyRules): void {
  if (!KNOWN_PREFIXES.some((prefix) => module.startsWith(prefix))) {
    throw new InvalidLoraError(`module "${module}" patches neither the U-Net (lora_unet_) nor a text encoder (lora_te_, lora_te1_, lora_te2_)`);
  }
  if (!rules.prefixes.some((prefix) => module.startsWith(prefix)) || rules.foreignUnet.test(module)) {
    const other = family === 'sd15' ? 'SDXL' : 'SD 1.x';
    throw new InvalidLoraError(`module "${module}" uses ${other} key names, but the base model family is ${family} (${rules.label})`);
  }
}
