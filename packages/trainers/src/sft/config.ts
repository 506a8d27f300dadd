// The SFT-run config (cold start): a declarative schema and a validator in the style of
// train/config.ts — every problem named by its path (`optim.lr: expected a number > 0, got "x"`),
// unknown keys with the closest valid key, every default filled. Relative paths (model,
// data.train, output) resolve against `baseDir` (the config file's folder). JSON, or YAML by
// extension (train/config.ts's parseConfigText).
// `lora` present (even {}) means LoRA fine-tuning: only the adapters train and checkpoints hold
// the adapter in PEFT's layout; absent or null means full fine-tuning.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfigText } from '../train/config.js';
import { type Spec, checkSpec, showValue } from '../config/schema.js';
import { SCHEDULE_KINDS, type ScheduleKind } from '../optim/schedules.js';

export interface SftLoraConfig {
  r: number; alpha: number; dropout: number; targets: string[]; includeVision: boolean; useRslora: boolean; seed: number;
}

export interface SftConfig {
  model: string;
  /** Where the model runs: 'cpu', 'cuda' or 'cuda:N'. */
  device: string;
  /** Weights and activations (AdamW keeps f32 master weights for bf16). */
  dtype: 'f32' | 'bf16';
  data: {
    train: string; shuffle: boolean; shuffleSeed: number; allowOutside: boolean;
    /** Tokens per packed forward pass (images' tokens included); longer conversations are skipped. */
    maxTokens: number;
    /** At most this many conversations per pack (null: as many as fit in maxTokens). */
    maxRowsPerPack: number | null;
    minPixels: number | null; maxPixels: number | null;
    /** Memory for decoded, resized images kept across epochs (MiB; 0: decode every time). */
    imageCacheMB: number;
  };
  lora: SftLoraConfig | null;
  optim: {
    lr: number; weightDecay: number; betas: [number, number]; eps: number; maxGradNorm: number | null;
    schedule: { kind: ScheduleKind; warmupSteps: number; minRatio: number; floor: number; steepness: number };
    /** Packs per optimizer step; the step's loss is the token-mean over all of them. */
    gradAccumSteps: number;
    gradientCheckpointing: boolean;
  };
  steps: number;
  checkpoint: { every: number; keepLast: number };
  output: string;
}

export const DEFAULT_LORA_TARGETS: readonly string[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

const SCHEMA: Spec = {
  t: 'obj', fields: {
    model: { t: 'string', path: true },
    device: { t: 'string', def: 'cpu' },
    dtype: { t: 'enum', values: ['f32', 'bf16'], def: 'f32' },
    data: { t: 'obj', fields: {
      train: { t: 'string', path: true },
      shuffle: { t: 'bool', def: true },
      shuffleSeed: { t: 'int', min: 0, def: 0 },
      allowOutside: { t: 'bool', def: false },
      maxTokens: { t: 'int', min: 2, def: 4096 },
      maxRowsPerPack: { t: 'int', min: 1, def: null, nullable: true },
      minPixels: { t: 'int', min: 1, def: null, nullable: true },
      maxPixels: { t: 'int', min: 1, def: null, nullable: true },
      imageCacheMB: { t: 'int', min: 0, def: 1024 },
    } },
    lora: { t: 'obj', optional: true, fields: {
      r: { t: 'int', min: 1, def: 8 },
      alpha: { t: 'num', gt: 0, def: 16 },
      dropout: { t: 'num', min: 0, lt: 1, def: 0 },
      targets: { t: 'strings', def: DEFAULT_LORA_TARGETS, nonEmpty: true, expected: 'a non-empty array of non-empty strings' },
      includeVision: { t: 'bool', def: false },
      useRslora: { t: 'bool', def: false },
      seed: { t: 'int', min: 0, def: 0 },
    } },
    optim: { t: 'obj', fields: {
      lr: { t: 'num', gt: 0, def: 1e-5 },
      weightDecay: { t: 'num', min: 0, def: 0 },
      betas: { t: 'pair', def: [0.9, 0.999] },
      eps: { t: 'num', gt: 0, def: 1e-8 },
      maxGradNorm: { t: 'num', gt: 0, def: 1, nullable: true },
      schedule: { t: 'obj', fields: {
        kind: { t: 'enum', values: SCHEDULE_KINDS, def: 'constant' },
        warmupSteps: { t: 'int', min: 0, def: 0 },
        minRatio: { t: 'num', min: 0, max: 1, def: 0 },
        floor: { t: 'num', min: 0, max: 1, def: 0.9 },
        steepness: { t: 'num', gt: 0, def: 10 },
      } },
      gradAccumSteps: { t: 'int', min: 1, def: 1 },
      gradientCheckpointing: { t: 'bool', def: false },
    } },
    steps: { t: 'int', min: 1 },
    checkpoint: { t: 'obj', fields: { every: { t: 'int', min: 0, def: 50 }, keepLast: { t: 'int', min: 1, def: 3 } } },
    output: { t: 'string', path: true },
  },
};

/** Validates a parsed SFT config object; throws one Error listing every problem. */
export function validateSftConfig(raw: unknown, baseDir = process.cwd()): SftConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`sft config: expected an object at the top level, got ${showValue(raw)}`);
  const errors: string[] = [];
  const cfg = checkSpec(SCHEMA, raw, '', baseDir, errors) as SftConfig;
  if (errors.length === 0) {
    if (cfg.optim.schedule.warmupSteps > cfg.steps) errors.push(`optim.schedule.warmupSteps: expected <= steps (${cfg.steps}), got ${cfg.optim.schedule.warmupSteps}`);
    if (cfg.lora && cfg.lora.dropout > 0 && cfg.optim.gradientCheckpointing) {
      errors.push('lora.dropout: expected 0 with optim.gradientCheckpointing (the recomputed forward would draw other dropout masks), ' +
        `got ${cfg.lora.dropout}`);
    }
    if (!/^(cpu|cuda(:\d+)?)$/.test(cfg.device)) errors.push(`device: expected "cpu", "cuda" or "cuda:N", got ${showValue(cfg.device)}`);
    const { minPixels, maxPixels } = cfg.data;
    if (minPixels !== null && maxPixels !== null && minPixels > maxPixels) errors.push(`data.minPixels: expected <= data.maxPixels (${maxPixels}), got ${minPixels}`);
  }
  if (errors.length) throw new Error(`sft config has ${errors.length} problem(s):\n  ${errors.join('\n  ')}`);
  return cfg;
}

/** Reads and validates a JSON (or .yaml/.yml) SFT config; relative paths resolve against its folder. */
export function loadSftConfig(file: string): SftConfig {
  const abs = path.resolve(file);
  let text: string;
  try { text = readFileSync(abs, 'utf8'); } catch (e) {
    throw new Error(`sft config: cannot read ${abs} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return validateSftConfig(parseConfigText(text, abs), path.dirname(abs));
}
