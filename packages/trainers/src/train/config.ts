// The training-run config (`fovea train --config run.json`): a small declarative schema, a
// validator that names every problem by its path (`optim.lr: expected a number > 0, got "x"`),
// suggests the closest valid key for an unknown one, and returns the config with every default
// filled. JSON or YAML (by extension: .yaml/.yml). Relative paths (model, data.train, output,
// reward modules) are resolved against `baseDir` (the config file's folder) so a run is
// reproducible from wherever it is started.
// `algorithm: dapo` is GRPO with DAPO's defaults filled in UNDER what the user wrote: clip-higher
// (loss.epsHigh 0.28), token-mean aggregation, dynamic sampling on, overlong filtering off and
// the soft overlong punishment on when reward.softOverlong is given.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import path from 'node:path';
import { type Spec, checkSpec, closestKey, opt, showValue } from '../config/schema.js';

export { closestKey };
import type { GrpoConfig, GrpoKl } from '@fovea/core';
import { SEARCH_TEMPLATE, type ToolTemplate, checkToolTemplate } from '../rollout/searchTemplate.js';
import { GRPO_TEMPLATE, type GrpoTemplate, MGPO_TEMPLATE, type MgpoTemplate, checkGrpoTemplate, checkMgpoTemplate } from '../rollout/templates.js';
import { SCHEDULE_KINDS, type ScheduleKind } from '../optim/schedules.js';
import { ADVANTAGE_ESTIMATORS, type AdvantageEstimator } from '../algorithms/advantages.js';

export const TRAIN_ALGORITHMS = ['grpo', 'dapo', 'mgpo', 'search'] as const;
export type TrainAlgorithm = (typeof TRAIN_ALGORITHMS)[number];
export const FORMAT_PRESETS = ['boxed', 'answer-tag', 'think', 'think-boxed', 'think-answer', 'json-bbox', 'reason-before-action'] as const;

export interface TrainConfig {
  algorithm: TrainAlgorithm;
  model: string;
  data: { train: string; shuffle: boolean; shuffleSeed: number; allowOutside: boolean };
  rollout: {
    G: number; maxNewTokens: number; maxTotalTokens: number | null; minPixels: number | null; maxPixels: number | null;
    sampling: { temperature: number; topK: number; topP: number; seed: number };
    /** MGPO crop tool: clamp out-of-image boxes and grow small ones instead of rejecting them. */
    clampBoxes: boolean; cropMinPixels: number | null; cropMaxPixels: number | null;
  };
  reward: {
    accuracy: number;
    /** Format reward: the presets of rewards/format.ts that a response must satisfy. */
    format: { weight: number; rules: string[]; scope: 'final' | 'every-turn'; scoring: 'all' | 'fraction' } | null;
    /** IoU of the crop box (original frame) with the row's bbox; rows without bbox score 0. */
    iou: { weight: number; threshold: number | null } | null;
    /** LLM-as-judge over an OpenAI-compatible endpoint (off unless given). */
    judge: { weight: number; baseUrl: string; model: string; apiKeyEnv: string | null; timeoutMs: number; retries: number; onFailure: 'zero' | 'throw' } | null;
    /** MMSearch-R1: a correct answer that used search loses this fraction of its accuracy score. */
    searchPenalty: number | null;
    /** DAPO soft overlong punishment on the sampled response length (tokens of every turn). */
    softOverlong: { maxLength: number; cacheLength: number; factor: number } | null;
    custom: { module: string; export: string; weight: number } | null;
  };
  filters: {
    /** DAPO: drop groups whose rewards are all equal and draw more prompts, up to maxRounds rounds. */
    dynamicSampling: { enabled: boolean; maxRounds: number };
    /** DAPO overlong filtering: truncated responses get loss mask 0 (they still count in their group's advantages). */
    overlong: boolean;
    /** Offline rejection sampling before step 1: keep rows whose pass rate over `samples` is in (min, max). */
    rejectionSampling: { samples: number; min: number; max: number } | null;
  };
  /** Chat templates of the rollouts (defaults: rollout/templates.ts). */
  templates: { mgpo: MgpoTemplate; grpo: GrpoTemplate; search: ToolTemplate };
  /** algorithm "search": multi-turn <search> rollouts over a local BM25 corpus (MMSearch-R1 style). */
  search: { corpus: string; topK: number; maxTurns: number } | null;
  /** LoRA adapters: only they are trained; checkpoints hold the adapter (PEFT layout). */
  lora: { r: number; alpha: number; dropout: number; targets: string[]; seed: number } | null;
  /** Greedy validation on a held-out JSONL every `every` steps (0: only after the last step). */
  validation: { data: string; every: number; limit: number | null; maxNewTokens: number | null } | null;
  advantage: { estimator: AdvantageEstimator };
  optim: {
    lr: number; weightDecay: number; betas: [number, number]; eps: number; maxGradNorm: number | null;
    schedule: { kind: ScheduleKind; warmupSteps: number; minRatio: number; floor: number; steepness: number };
    ppoEpochs: number; miniBatchSize: number | null; gradientCheckpointing: boolean;
    /** Micro-batches per optimizer step (gradient accumulation; 1 = off). */
    gradAccumSteps: number;
  };
  steps: number;
  promptsPerStep: number;
  loss: Omit<GrpoConfig, 'beta' | 'kl' | 'chunkTokens' | 'dualClip' | 'normLength'> & {
    dualClip: number | null; normLength: number | null;
    /** KL to the frozen reference policy (the starting model): coefficient and estimator. */
    beta: number; kl: GrpoKl;
    /** Entropy bonus coefficient (0: off; entropy is still a metric with computeEntropy). */
    entropyCoef: number;
  };
  checkpoint: { every: number; keepLast: number };
  output: string;
  /** Rollout samples shown in the report per step (0: none). */
  reportSamples: number;
}

// ---- schema (config/schema.ts) ----
const SCHEMA: Spec = {
  t: 'obj', fields: {
    algorithm: { t: 'enum', values: TRAIN_ALGORITHMS, def: 'grpo' },
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
      format: { t: 'obj', optional: true, fields: {
        weight: { t: 'num', def: 0.5 }, rules: { t: 'strings', values: FORMAT_PRESETS, nonEmpty: true },
        scope: { t: 'enum', values: ['final', 'every-turn'], def: 'final' }, scoring: { t: 'enum', values: ['all', 'fraction'], def: 'all' },
      } },
      iou: { t: 'obj', optional: true, fields: { weight: { t: 'num', def: 1 }, threshold: opt({ t: 'num', min: 0, max: 1, def: null, nullable: true }) } },
      judge: { t: 'obj', optional: true, fields: {
        weight: { t: 'num', def: 1 }, baseUrl: { t: 'string' }, model: { t: 'string' },
        apiKeyEnv: opt({ t: 'string', def: null, nullable: true }), timeoutMs: { t: 'int', min: 1, def: 30_000 }, retries: { t: 'int', min: 0, def: 3 },
        onFailure: { t: 'enum', values: ['zero', 'throw'], def: 'throw' },
      } },
      searchPenalty: opt({ t: 'num', min: 0, max: 1, def: null, nullable: true }),
      softOverlong: { t: 'obj', optional: true, fields: {
        maxLength: { t: 'int', min: 1 }, cacheLength: { t: 'int', min: 1 }, factor: { t: 'num', min: 0, def: 1 },
      } },
      // A reward function from a module (loadCustomReward), added with its weight.
      custom: { t: 'obj', optional: true, fields: {
        module: { t: 'string', path: true }, export: { t: 'string', def: 'default' }, weight: { t: 'num', def: 1 },
      } },
    } },
    filters: { t: 'obj', fields: {
      dynamicSampling: { t: 'obj', fields: { enabled: { t: 'bool', def: false }, maxRounds: { t: 'int', min: 1, def: 4 } } },
      overlong: { t: 'bool', def: false },
      rejectionSampling: { t: 'obj', optional: true, fields: {
        samples: { t: 'int', min: 2, def: 4 }, min: { t: 'num', min: 0, max: 1, def: 0 }, max: { t: 'num', min: 0, max: 1, def: 1 },
      } },
    } },
    templates: { t: 'obj', fields: {
      mgpo: { t: 'obj', fields: Object.fromEntries(Object.entries(MGPO_TEMPLATE).map(([k, v]) => [k, { t: 'string', def: v, allowEmpty: true }])) },
      grpo: { t: 'obj', fields: Object.fromEntries(Object.entries(GRPO_TEMPLATE).map(([k, v]) => [k, { t: 'string', def: v, allowEmpty: true }])) },
      search: { t: 'obj', fields: Object.fromEntries(Object.entries(SEARCH_TEMPLATE).map(([k, v]) => [k, { t: 'string', def: v, allowEmpty: true }])) },
    } },
    search: { t: 'obj', optional: true, fields: {
      corpus: { t: 'string', path: true }, topK: { t: 'int', min: 1, def: 5 }, maxTurns: { t: 'int', min: 1, def: 3 },
    } },
    lora: { t: 'obj', optional: true, fields: {
      r: { t: 'int', min: 1, def: 8 }, alpha: { t: 'num', gt: 0, def: 16 }, dropout: { t: 'num', min: 0, max: 0.99, def: 0 },
      targets: { t: 'strings', def: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], nonEmpty: true },
      seed: { t: 'int', min: 0, def: 0 },
    } },
    validation: { t: 'obj', optional: true, fields: {
      data: { t: 'string', path: true }, every: { t: 'int', min: 0, def: 0 },
      limit: opt({ t: 'int', min: 1, def: null, nullable: true }), maxNewTokens: opt({ t: 'int', min: 1, def: null, nullable: true }),
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
      gradAccumSteps: { t: 'int', min: 1, def: 1 },
    } },
    steps: { t: 'int', min: 1 },
    promptsPerStep: { t: 'int', min: 1, def: 1 },
    loss: { t: 'obj', fields: {
      epsLow: { t: 'num', min: 0, def: 0.2 },
      epsHigh: { t: 'num', min: 0, def: 0.2 },
      dualClip: opt({ t: 'num', gt: 1, def: null, nullable: true }),
      temperature: opt({ t: 'num', gt: 0, def: null, nullable: true }),
      aggregation: { t: 'enum', values: ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'], def: 'token-mean' },
      normLength: opt({ t: 'int', min: 1, def: null, nullable: true }),
      computeEntropy: { t: 'bool', def: false },
      beta: { t: 'num', min: 0, def: 0 },
      kl: { t: 'enum', values: ['k1', 'k2', 'k3'], def: 'k3' },
      entropyCoef: { t: 'num', min: 0, def: 0 },
    } },
    checkpoint: { t: 'obj', fields: { every: { t: 'int', min: 0, def: 50 }, keepLast: { t: 'int', min: 1, def: 3 } } },
    output: { t: 'string', path: true },
    reportSamples: { t: 'int', min: 0, def: 2 },
  },
};

/** Validates a parsed config object; throws one Error listing every problem. */
export function validateTrainConfig(raw: unknown, baseDir = process.cwd()): TrainConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`train config: expected an object (a JSON object or YAML mapping) at the top level, got ${showValue(raw)}`);
  const errors: string[] = [];
  const cfg = checkSpec(SCHEMA, (raw as { algorithm?: unknown }).algorithm === 'dapo' ? withDapoDefaults(raw as Record<string, unknown>) : raw, '', baseDir, errors) as TrainConfig;
  if (errors.length === 0) {
    // The old log-probs are the sampling distribution's: the loss uses the sampling temperature
    // unless told otherwise (greedy sampling, temperature 0, keeps 1).
    if (cfg.loss.temperature == null) cfg.loss.temperature = cfg.rollout.sampling.temperature > 0 ? cfg.rollout.sampling.temperature : 1;
    try { checkMgpoTemplate(cfg.templates.mgpo); checkGrpoTemplate(cfg.templates.grpo); checkToolTemplate(cfg.templates.search); } catch (e) { errors.push(`templates: ${(e as Error).message}`); }
    if (cfg.algorithm === 'search' && !cfg.search) errors.push('search: required when algorithm is "search" ({ "corpus": "corpus.jsonl" })');
    if (cfg.validation && cfg.algorithm === 'search') errors.push('validation: not supported with algorithm "search" yet (greedy validation runs the grpo and mgpo rollouts)');
    if (cfg.search && cfg.algorithm !== 'search') errors.push(`search: only used by algorithm "search", got algorithm "${cfg.algorithm}"`);
    const rs = cfg.filters.rejectionSampling;
    if (rs && !(rs.min < rs.max)) errors.push(`filters.rejectionSampling: expected min < max, got min ${rs.min} and max ${rs.max}`);
    const so = cfg.reward.softOverlong;
    if (so && so.cacheLength >= so.maxLength) errors.push(`reward.softOverlong.cacheLength: expected < maxLength (${so.maxLength}), got ${so.cacheLength}`);
    if (cfg.reward.iou && cfg.algorithm !== 'mgpo') errors.push('reward.iou: needs algorithm "mgpo" (the IoU is of the crop tool\'s box)');
    if (cfg.optim.gradientCheckpointing && cfg.lora && cfg.lora.dropout > 0) errors.push('lora.dropout: must be 0 with optim.gradientCheckpointing (the recomputed forward would draw new dropout masks)');
    if (cfg.loss.aggregation === 'seq-mean-token-sum-norm' && cfg.loss.normLength == null) errors.push('loss.normLength: required when loss.aggregation is "seq-mean-token-sum-norm"');
    if (cfg.optim.schedule.warmupSteps > cfg.steps) errors.push(`optim.schedule.warmupSteps: expected <= steps (${cfg.steps}), got ${cfg.optim.schedule.warmupSteps}`);
  }
  if (errors.length) throw new Error(`train config has ${errors.length} problem(s):\n  ${errors.join('\n  ')}`);
  return cfg;
}

/** DAPO's defaults, filled under the user's own values. */
function withDapoDefaults(raw: Record<string, unknown>): Record<string, unknown> {
  const sub = (k: string) => (raw[k] && typeof raw[k] === 'object' && !Array.isArray(raw[k]) ? raw[k] as Record<string, unknown> : undefined);
  const loss = sub('loss'), filters = sub('filters');
  if (raw.loss !== undefined && !loss) return raw;        // let the validator report the bad value
  if (raw.filters !== undefined && !filters) return raw;
  const ds = filters?.dynamicSampling;
  if (ds !== undefined && (ds === null || typeof ds !== 'object' || Array.isArray(ds))) return raw;
  return {
    ...raw,
    loss: { epsHigh: 0.28, aggregation: 'token-mean', ...loss },
    filters: { ...filters, dynamicSampling: { enabled: true, ...(ds as object | undefined) } },
  };
}

/** Parses config text: YAML for .yaml/.yml files, else JSON. */
export function parseConfigText(text: string, file: string): unknown {
  if (/\.ya?ml$/i.test(file)) {
    try { return parseYaml(text, { uniqueKeys: true, prettyErrors: true }); } catch (e) {
      throw new Error(`config: ${file} is not valid YAML (${(e as Error).message.split('\n')[0]})`);
    }
  }
  try { return JSON.parse(text); } catch (e) { throw new Error(`config: ${file} is not valid JSON (${(e as Error).message})`); }
}

/** Reads and validates a JSON or YAML config file; relative paths resolve against the file's folder. */
export function loadTrainConfig(file: string): TrainConfig {
  const abs = path.resolve(file);
  let text: string;
  try { text = readFileSync(abs, 'utf8'); } catch (e) {
    throw new Error(`train config: cannot read ${abs} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return validateTrainConfig(parseConfigText(text, abs), path.dirname(abs));
}
