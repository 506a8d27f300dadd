// The training-run config (`fovea train --config run.json`): a small declarative schema, a
// validator that names every problem by its path (`optim.lr: expected a number > 0, got "x"`),
// suggests the closest valid key for an unknown one, and returns the config with every default
// filled. JSON only for now (YAML is not supported yet). Relative paths (model, data.train,
// output) are resolved against `baseDir` (the config file's folder) so a run is reproducible
// from wherever it is started.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { GrpoConfig } from '@fovea/core';
import { SCHEDULE_KINDS, type ScheduleKind } from '../optim/schedules.js';
import { ADVANTAGE_ESTIMATORS, type AdvantageEstimator } from '../algorithms/advantages.js';

export interface TrainConfig {
  algorithm: 'grpo' | 'mgpo';
  model: string;
  data: { train: string; shuffle: boolean; shuffleSeed: number; allowOutside: boolean };
  rollout: {
    G: number; maxNewTokens: number; maxTotalTokens: number | null; minPixels: number | null; maxPixels: number | null;
    sampling: { temperature: number; topK: number; topP: number; seed: number };
    /** MGPO crop tool: clamp out-of-image boxes and grow small ones instead of rejecting them. */
    clampBoxes: boolean; cropMinPixels: number | null; cropMaxPixels: number | null;
  };
  reward: { accuracy: number; custom: { module: string; export: string; weight: number } | null };
  advantage: { estimator: AdvantageEstimator };
  optim: {
    lr: number; weightDecay: number; betas: [number, number]; eps: number; maxGradNorm: number | null;
    schedule: { kind: ScheduleKind; warmupSteps: number; minRatio: number; floor: number; steepness: number };
    ppoEpochs: number; miniBatchSize: number | null; gradientCheckpointing: boolean;
  };
  steps: number;
  promptsPerStep: number;
  loss: Omit<GrpoConfig, 'beta' | 'kl' | 'chunkTokens'>;
  checkpoint: { every: number; keepLast: number };
  output: string;
  /** Rollout samples shown in the report per step (0: none). */
  reportSamples: number;
}

// ---- schema ----
type Spec =
  | { t: 'string'; def?: string; path?: boolean }
  | { t: 'int'; min: number; def?: number | null; nullable?: boolean }
  | { t: 'num'; min?: number; max?: number; gt?: number; def?: number | null; nullable?: boolean }
  | { t: 'bool'; def: boolean }
  | { t: 'enum'; values: readonly string[]; def?: string }
  | { t: 'pair'; def: [number, number] }
  | { t: 'obj'; fields: Record<string, Spec>; optional?: boolean };

const opt = <T extends Spec>(s: T) => s;
const SCHEMA: Spec = {
  t: 'obj', fields: {
    algorithm: { t: 'enum', values: ['grpo', 'mgpo'], def: 'grpo' },
    model: { t: 'string', path: true },
    data: { t: 'obj', fields: {
      train: { t: 'string', path: true },
      shuffle: { t: 'bool', def: true },
      shuffleSeed: { t: 'int', min: 0, def: 0 },
      allowOutside: { t: 'bool', def: false },
    } },
    rollout: { t: 'obj', fields: {
      G: { t: 'int', min: 1, def: 8 },
      maxNewTokens: { t: 'int', min: 1, def: 256 },
      maxTotalTokens: opt({ t: 'int', min: 1, def: null, nullable: true }),
      minPixels: opt({ t: 'int', min: 1, def: null, nullable: true }),
      maxPixels: opt({ t: 'int', min: 1, def: null, nullable: true }),
      sampling: { t: 'obj', fields: {
        temperature: { t: 'num', min: 0, def: 1 },
        topK: { t: 'int', min: 0, def: 0 },
        topP: { t: 'num', gt: 0, max: 1, def: 1 },
        seed: { t: 'int', min: 0, def: 0 },
      } },
      clampBoxes: { t: 'bool', def: true },
      cropMinPixels: opt({ t: 'int', min: 1, def: null, nullable: true }),
      cropMaxPixels: opt({ t: 'int', min: 1, def: null, nullable: true }),
    } },
    reward: { t: 'obj', fields: {
      accuracy: { t: 'num', min: 0, def: 1 },
      // A reward function from a module (loadCustomReward), added with its weight.
      custom: { t: 'obj', optional: true, fields: {
        module: { t: 'string', path: true }, export: { t: 'string', def: 'default' }, weight: { t: 'num', def: 1 },
      } },
    } },
    advantage: { t: 'obj', fields: { estimator: { t: 'enum', values: ADVANTAGE_ESTIMATORS, def: 'grpo' } } },
    optim: { t: 'obj', fields: {
      lr: { t: 'num', gt: 0, def: 1e-6 },
      weightDecay: { t: 'num', min: 0, def: 0.01 },
      betas: { t: 'pair', def: [0.9, 0.999] },
      eps: { t: 'num', gt: 0, def: 1e-8 },
      maxGradNorm: opt({ t: 'num', gt: 0, def: 1, nullable: true }),
      schedule: { t: 'obj', fields: {
        kind: { t: 'enum', values: SCHEDULE_KINDS, def: 'constant' },
        warmupSteps: { t: 'int', min: 0, def: 0 },
        minRatio: { t: 'num', min: 0, max: 1, def: 0 },
        floor: { t: 'num', min: 0, max: 1, def: 0.9 },
        steepness: { t: 'num', gt: 0, def: 10 },
      } },
      ppoEpochs: { t: 'int', min: 1, def: 1 },
      miniBatchSize: opt({ t: 'int', min: 1, def: null, nullable: true }),
      gradientCheckpointing: { t: 'bool', def: false },
    } },
    steps: { t: 'int', min: 1 },
    promptsPerStep: { t: 'int', min: 1, def: 1 },
    loss: { t: 'obj', fields: {
      epsLow: { t: 'num', min: 0, def: 0.2 },
      epsHigh: { t: 'num', min: 0, def: 0.2 },
      dualClip: opt({ t: 'num', gt: 1, def: null, nullable: true }),
      temperature: { t: 'num', gt: 0, def: 1 },
      aggregation: { t: 'enum', values: ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'], def: 'token-mean' },
      normLength: opt({ t: 'int', min: 1, def: null, nullable: true }),
      computeEntropy: { t: 'bool', def: false },
    } },
    checkpoint: { t: 'obj', fields: { every: { t: 'int', min: 0, def: 50 }, keepLast: { t: 'int', min: 1, def: 3 } } },
    output: { t: 'string', path: true },
    reportSamples: { t: 'int', min: 0, def: 2 },
  },
};

/** Edit distance (for "did you mean"). */
function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]; d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length];
}

export function closestKey(key: string, valid: readonly string[]): string | null {
  let best: string | null = null, bestD = Infinity;
  for (const v of valid) { const dd = levenshtein(key, v); if (dd < bestD) { bestD = dd; best = v; } }
  return best !== null && bestD <= Math.max(2, Math.floor(best.length / 2)) ? best : null;
}

const show = (v: unknown) => (v === undefined ? 'nothing' : typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) ? JSON.stringify(v) : v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v));

function check(spec: Spec, v: unknown, at: string, baseDir: string, errors: string[]): unknown {
  const bad = (want: string) => { errors.push(`${at}: expected ${want}, got ${show(v)}`); return undefined; };
  if (spec.t === 'obj') {
    if (v === undefined || (v === null && spec.optional)) { if (spec.optional) return null; v = {}; }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return bad('an object');
    const out: Record<string, unknown> = {};
    const keys = Object.keys(spec.fields);
    for (const k of Object.keys(v as object)) {
      if (!(k in spec.fields)) {
        const near = closestKey(k, keys);
        errors.push(`${at ? at + '.' : ''}${k}: unknown key${near ? ` (did you mean "${near}"?)` : ''}; valid keys here: ${keys.join(', ')}`);
      }
    }
    for (const k of keys) out[k] = check(spec.fields[k], (v as Record<string, unknown>)[k], at ? `${at}.${k}` : k, baseDir, errors);
    return out;
  }
  if (v === undefined && 'def' in spec && spec.def !== undefined) return spec.def;
  if (v === undefined) { errors.push(`${at}: required, expected ${describe(spec)}`); return undefined; }
  switch (spec.t) {
    case 'string':
      if (typeof v !== 'string' || v === '') return bad('a non-empty string');
      return spec.path ? path.resolve(baseDir, v) : v;
    case 'bool': return typeof v === 'boolean' ? v : bad('true or false');
    case 'enum': return typeof v === 'string' && spec.values.includes(v) ? v : bad(`one of ${spec.values.map((s) => JSON.stringify(s)).join(', ')}`);
    case 'pair':
      return Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && x >= 0 && x < 1) ? v : bad('[beta1, beta2] with both in [0, 1)');
    case 'int': case 'num':
      if (v === null && spec.nullable) return null;
      if (typeof v !== 'number' || !Number.isFinite(v) || (spec.t === 'int' && !Number.isSafeInteger(v))) return bad(describe(spec));
      if ((spec.min !== undefined && v < spec.min) || (spec.t === 'num' && ((spec.gt !== undefined && v <= spec.gt) || (spec.max !== undefined && v > spec.max)))) return bad(describe(spec));
      return v;
  }
}

function describe(spec: Spec): string {
  if (spec.t === 'int') return `an integer >= ${spec.min}${spec.nullable ? ' or null' : ''}`;
  if (spec.t === 'num') {
    const parts = [spec.gt !== undefined ? `> ${spec.gt}` : '', spec.min !== undefined ? `>= ${spec.min}` : '', spec.max !== undefined ? `<= ${spec.max}` : ''].filter(Boolean);
    return `a number${parts.length ? ' ' + parts.join(' and ') : ''}${spec.nullable ? ' or null' : ''}`;
  }
  if (spec.t === 'string') return spec.path ? 'a path (string)' : 'a string';
  if (spec.t === 'enum') return `one of ${spec.values.join(', ')}`;
  return spec.t;
}

/** Validates a parsed config object; throws one Error listing every problem. */
export function validateTrainConfig(raw: unknown, baseDir = process.cwd()): TrainConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`train config: expected a JSON object at the top level, got ${show(raw)}`);
  const errors: string[] = [];
  const cfg = check(SCHEMA, raw, '', baseDir, errors) as TrainConfig;
  if (errors.length === 0) {
    if (cfg.loss.aggregation === 'seq-mean-token-sum-norm' && cfg.loss.normLength == null) errors.push('loss.normLength: required when loss.aggregation is "seq-mean-token-sum-norm"');
    if (cfg.optim.schedule.warmupSteps > cfg.steps) errors.push(`optim.schedule.warmupSteps: expected <= steps (${cfg.steps}), got ${cfg.optim.schedule.warmupSteps}`);
  }
  if (errors.length) throw new Error(`train config has ${errors.length} problem(s):\n  ${errors.join('\n  ')}`);
  return cfg;
}

/** Reads and validates a JSON config file; relative paths resolve against the file's folder. */
export function loadTrainConfig(file: string): TrainConfig {
  const abs = path.resolve(file);
  if (/\.ya?ml$/i.test(abs)) throw new Error(`train config: ${abs}: YAML configs are not supported yet; write the config as JSON`);
  let text: string;
  try { text = readFileSync(abs, 'utf8'); } catch (e) {
    throw new Error(`train config: cannot read ${abs} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (e) { throw new Error(`train config: ${abs} is not valid JSON (${(e as Error).message})`); }
  return validateTrainConfig(raw, path.dirname(abs));
}
