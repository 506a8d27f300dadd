// The run loop's optional machinery on the tiny Qwen2.5-VL checkpoint: DAPO's preset and config
// checks; gradient accumulation equal to one pass (token-mean and seq-mean); a DAPO run with
// dynamic sampling, overlong filtering, soft overlong punishment, a format reward and KL to a
// frozen reference copy; an MGPO run with LoRA (reference = adapters disabled), an IoU reward
// and entropy, whose checkpoint holds a PEFT adapter and whose resume matches an uninterrupted
// run; offline rejection sampling's clear failure when no row qualifies; and a run killed with
// SIGKILL mid-way whose resumed metrics equal an uninterrupted run's, step for step.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SGD, type Tensor } from '@fovea/core';
import { Qwen2_5_VL } from '@fovea/models';
import { validateTrainConfig } from '../src/train/config.js';
import { train, METRICS_FILE } from '../src/train/trainer.js';
import { aggregationWeights, batchHidden, buildTrainingBatch, entropyTerm, grpoStep } from '../src/algorithms/grpoStep.js';
import { noGrad } from '@fovea/core';
import type { Rollout } from '../src/rollout/rollout.js';
import { readMetrics } from '../src/metrics/jsonl.js';
import { listCheckpointDirs } from '../src/checkpoint/checkpoint.js';

const FIX = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures');
const TRAIN = join(import.meta.dirname, 'fixtures', 'train');
const CLI = join(import.meta.dirname, '..', 'dist', 'cli.js');
let tmp: string, modelDir: string, rewardModule: string, boxData: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'fovea-trainer-features-'));
  modelDir = join(tmp, 'model');
  cpSync(join(FIX, 'qwen25vl', 'model'), modelDir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(modelDir, f));
  rewardModule = join(tmp, 'lengthReward.mjs');
  writeFileSync(rewardModule, 'export const byLength = (ctx) => ([...(ctx.turns ?? [ctx.response]).join("")].reduce((a, c) => a + c.codePointAt(0), 0) % 7) / 6;\n');
  // The training rows with a ground-truth box on their image (for IoU).
  const d = join(tmp, 'boxdata');
  mkdirSync(d);
  cpSync(TRAIN, d, { recursive: true });
  const rows = readFileSync(join(TRAIN, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  boxData = join(d, 'boxes.jsonl');
  writeFileSync(boxData, rows.map((r) => JSON.stringify({ ...r, bbox: { image: 0, box: [4, 4, 40, 40] } })).join('\n') + '\n');
});
afterAll(() => { if (process.env.FOVEA_KEEP_TMP) console.log('kept', tmp); else rmSync(tmp, { recursive: true, force: true }); });

function raw(algorithm: string, out: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    algorithm, model: modelDir, data: { train: join(TRAIN, 'train.jsonl'), shuffleSeed: 3 },
    rollout: { G: 2, maxNewTokens: 6, sampling: { temperature: 1, seed: 5 }, cropMinPixels: 3136 * 4, cropMaxPixels: 100352 },
    reward: { accuracy: 1, custom: { module: rewardModule, export: 'byLength', weight: 1 } },
    optim: { lr: 1e-3, maxGradNorm: 1.0 }, steps: 2, promptsPerStep: 1,
    checkpoint: { every: 1, keepLast: 2 }, output: join(tmp, out), ...extra,
  };
}

const base = { model: 'm', data: { train: 'd' }, steps: 2, output: 'o' };

describe('config: DAPO preset and cross-field checks', () => {
  it('dapo fills clip-higher, token-mean and dynamic sampling under the user values', () => {
    const c = validateTrainConfig({ ...base, algorithm: 'dapo' }, '/b');
    expect(c.loss.epsHigh).toBe(0.28);
    expect(c.loss.epsLow).toBe(0.2);
    expect(c.loss.aggregation).toBe('token-mean');
    expect(c.filters.dynamicSampling).toEqual({ enabled: true, maxRounds: 4 });
    const u = validateTrainConfig({ ...base, algorithm: 'dapo', loss: { epsHigh: 0.3 }, filters: { dynamicSampling: { enabled: false } } }, '/b');
    expect(u.loss.epsHigh).toBe(0.3);
    expect(u.filters.dynamicSampling.enabled).toBe(false);
    // Plain GRPO keeps the symmetric clip.
    expect(validateTrainConfig(base, '/b').loss.epsHigh).toBe(0.2);
  });
  it('names cross-field problems', () => {
    expect(() => validateTrainConfig({ ...base, reward: { iou: {} } })).toThrow(/reward\.iou: needs algorithm "mgpo"/);
    expect(() => validateTrainConfig({ ...base, filters: { rejectionSampling: { min: 0.8, max: 0.2 } } })).toThrow(/expected min < max/);
    expect(() => validateTrainConfig({ ...base, reward: { softOverlong: { maxLength: 10, cacheLength: 10 } } })).toThrow(/cacheLength: expected < maxLength/);
    expect(() => validateTrainConfig({ ...base, templates: { mgpo: { turn1: 'Find {thing}' } } })).toThrow(/templates: .*thing/);
    expect(() => validateTrainConfig({ ...base, lora: { dropout: 0.1 }, optim: { gradientCheckpointing: true } })).toThrow(/lora\.dropout: must be 0/);
    expect(() => validateTrainConfig({ ...base, reward: { format: { rules: ['boxed', 'xml'] } } })).toThrow(/reward\.format\.rules: expected a list of "boxed"/);
    expect(() => validateTrainConfig({ ...base, lora: { targets: [] } })).toThrow(/lora\.targets: expected a non-empty list of strings/);
    expect(() => validateTrainConfig({ ...base, loss: { kl: 'k4' } })).toThrow(/loss\.kl: expected one of "k1", "k2", "k3"/);
  });
});

/** Text-only rollouts with random tokens, a loss mask on the tail and crafted old log-probs. */
function craftedRollouts(n: number, vocab: number, seed: number): Rollout[] {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  return Array.from({ length: n }, (_, k) => {
    const len = 6 + (k % 3) * 3, prompt = 3 + (k % 2);
    const tokens = Int32Array.from({ length: len }, () => Math.floor(rnd() * Math.min(vocab, 1000)));
    const lossMask = Float32Array.from({ length: len }, (_, i) => (i >= prompt ? 1 : 0));
    const oldLogprobs = Float32Array.from(lossMask, (m) => (m ? -3 - rnd() * 4 : 0));
    return {
      promptIndex: k >> 1, sample: k & 1, tokens, lossMask, oldLogprobs, promptLength: prompt, images: [], turns: 1,
      responses: [''], answer: '', finishReason: 'stop', truncated: false, invalidToken: false,
    };
  });
}

describe('gradient accumulation', () => {
  it('k micro-batches give the same update as one pass (token-mean and seq-mean-token-mean)', async () => {
    const vocab = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')).vocab_size as number;
    const rollouts = craftedRollouts(6, vocab, 11);
    const adv = [1, -1, 0.5, -0.5, 2, -2];
    for (const aggregation of ['token-mean', 'seq-mean-token-mean'] as const) {
      const after: Float32Array[][] = [];
      const stats: number[] = [];
      for (const accum of [1, 2, 3]) {
        const m = await Qwen2_5_VL.fromPretrained(modelDir);
        try {
          const params: Tensor[] = m.parameters();
          const opt = new SGD(params, { lr: 1 });
          const st = grpoStep(m, opt, rollouts, adv, { loss: { aggregation }, gradAccumulation: accum });
          stats.push(st.loss);
          after.push(params.map((p) => Float32Array.from(p.data() as Float32Array)));
        } finally { m.dispose(); }
      }
      for (const k of [1, 2]) {
        let maxDiff = 0, moved = 0;
        const ref0 = await Qwen2_5_VL.fromPretrained(modelDir);
        const orig = ref0.parameters().map((p) => p.data() as Float32Array);
        ref0.dispose();
        for (const [pi, p] of after[0].entries()) {
          for (let i = 0; i < p.length; i++) {
            maxDiff = Math.max(maxDiff, Math.abs(p[i] - after[k][pi][i]));
            moved = Math.max(moved, Math.abs(p[i] - orig[pi][i]));
          }
        }
        expect(moved, `${aggregation}: the update moved the weights`).toBeGreaterThan(1e-4);
        expect(maxDiff, `${aggregation}, accumulation ${k + 1}`).toBeLessThan(1e-6 + 1e-4 * moved);
        expect(stats[k]).toBeCloseTo(stats[0], 5);
      }
    }
  }, 120_000);
});

describe('entropy bonus', () => {
  it('aggregation weights follow the fused loss (token-mean and seq-mean sum to 1)', () => {
    const b = { mask: Float32Array.from([1, 1, 0, 1, 1, 1]), seqIndex: Int32Array.from([0, 0, 0, 1, 1, 2]), numSeqs: 3 };
    const tm = aggregationWeights(b, { aggregation: 'token-mean' });
    expect(Array.from(tm)).toEqual([0.2, 0.2, 0, 0.2, 0.2, 0.2].map((x) => Math.fround(x)));
    const sm = aggregationWeights(b, { aggregation: 'seq-mean-token-mean' });
    expect(Array.from(sm).map((x) => +x.toFixed(6))).toEqual([1 / 6, 1 / 6, 0, 1 / 6, 1 / 6, 1 / 3].map((x) => +x.toFixed(6)));
  });
  it('with zero advantages, a step with entropyCoef > 0 raises the policy entropy on the loss tokens', async () => {
    const vocab = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')).vocab_size as number;
    const rollouts = craftedRollouts(4, vocab, 5);
    const adv = [0, 0, 0, 0];
    const m = await Qwen2_5_VL.fromPretrained(modelDir);
    try {
      const b = buildTrainingBatch(m, rollouts, adv);
      const H = () => noGrad(() => entropyTerm(batchHidden(m, b), m.lmHeadWeight, b, {}).item());
      const before = H();
      expect(before).toBeGreaterThan(0);
      grpoStep(m, new SGD(m.parameters(), { lr: 0.5 }), rollouts, adv, { entropyCoef: 1 });
      expect(H()).toBeGreaterThan(before + 1e-4);
      expect(() => grpoStep(m, new SGD(m.parameters(), { lr: 0.5 }), rollouts, adv, { entropyCoef: -1 })).toThrow(/entropyCoef must be a finite number >= 0/);
    } finally { m.dispose(); }
  }, 60_000);
});

describe('run features', () => {
  it('DAPO: dynamic sampling, soft overlong punishment, format reward and KL to a frozen reference', async () => {
    const cfg = validateTrainConfig(raw('dapo', 'dapo', {
      reward: {
        accuracy: 1, custom: { module: rewardModule, export: 'byLength', weight: 1 },
        format: { weight: 0.5, rules: ['boxed'] }, softOverlong: { maxLength: 8, cacheLength: 4, factor: 0.5 },
      },
      filters: { dynamicSampling: { maxRounds: 3 } },
      loss: { beta: 0.05, kl: 'k3', computeEntropy: true, entropyCoef: 0.01 },
      rollout: { G: 3, maxNewTokens: 6, sampling: { temperature: 1, seed: 5 } },
    }));
    const warnings: string[] = [];
    await train(cfg, { onWarning: (w) => warnings.push(w) });
    const { records } = readMetrics(join(tmp, 'dapo', METRICS_FILE));
    expect(records.map((r) => r.step)).toEqual([1, 2]);
    for (const r of records) {
      expect(r.sampling_rounds).toBeGreaterThanOrEqual(1);
      expect(r.sampling_rounds).toBeLessThanOrEqual(3);
      expect(r.groups_dropped).toBeGreaterThanOrEqual(0);
      // maxNewTokens 6 < the overlong window's start (8 − 4 = 4)? Lengths of 5–6 tokens fall in the
      // window: the punishment is ≤ 0 and the component is reported.
      expect(r.reward_overlong).toBeLessThanOrEqual(0);
      expect(r.reward_format).toBeGreaterThanOrEqual(0);
      if (r.updates > 0) {
        expect(Number.isFinite(r.kl_ref)).toBe(true);
        expect(r.entropy).toBeGreaterThan(0);
      } else {
        expect(r.kl_ref).toBeUndefined();   // no update, no loss statistics
        expect(warnings.some((w) => w.includes(`step ${r.step}: dynamic sampling found no group`))).toBe(true);
      }
    }
    // Step 1 trains the starting model itself: no distance to the reference yet (when it updated).
    if (records[0].updates > 0) expect(records[0].kl_ref).toBeCloseTo(0, 6);
  }, 120_000);

  it('overlong filtering: truncated responses get no loss (all truncated: no update, weights unchanged)', async () => {
    // The untrained model never stops by itself within 6 tokens: every response is truncated.
    await train(validateTrainConfig(raw('grpo', 'overlong', { steps: 1, filters: { overlong: true } })));
    const [r] = readMetrics(join(tmp, 'overlong', METRICS_FILE)).records;
    expect(r.overlong_masked).toBe(2);
    expect(r.updates).toBe(0);
    expect(r.grad_norm).toBe(0);
    const sha = (f: string) => JSON.parse(readFileSync(join(tmp, 'overlong', 'checkpoint-1', 'complete.json'), 'utf8')).files[f].sha256;
    const { createHash } = await import('node:crypto');
    expect(sha('model/model.safetensors')).toBe(createHash('sha256').update(readFileSync(join(modelDir, 'model.safetensors'))).digest('hex'));
  }, 60_000);

  it('MGPO with LoRA, an IoU reward and KL (reference = adapters off): adapter checkpoints and exact resume', async () => {
    const mk = (out: string, steps: number) => validateTrainConfig(raw('mgpo', out, {
      data: { train: boxData, shuffleSeed: 3 }, steps,
      lora: { r: 4, alpha: 8, targets: ['q_proj', 'v_proj'], dropout: 0.1 },
      reward: { accuracy: 1, custom: { module: rewardModule, export: 'byLength', weight: 1 }, iou: { weight: 1 } },
      loss: { beta: 0.1 }, optim: { lr: 1e-2, maxGradNorm: 1.0 },
      rollout: { G: 3, maxNewTokens: 6, sampling: { temperature: 1, seed: 5 }, cropMinPixels: 3136 * 4, cropMaxPixels: 100352 },
    }));
    await train(mk('lora', 2));
    const { records } = readMetrics(join(tmp, 'lora', METRICS_FILE));
    expect(records.map((r) => r.step)).toEqual([1, 2]);
    for (const r of records) {
      expect(r.valid_box_ratio).toBeGreaterThanOrEqual(0);
      expect(r.crop_iou).toBeGreaterThanOrEqual(0);
      expect(r.crop_iou).toBeLessThanOrEqual(1);
      expect(r.reward_iou).toBeGreaterThanOrEqual(0);
    }
    expect(records[0].grad_norm).toBeGreaterThan(0);
    expect(records[1].kl_ref).toBeGreaterThan(0);   // step 1 moved the adapters away from the reference
    const ck = listCheckpointDirs(join(tmp, 'lora'))[0].dir;
    expect(existsSync(join(ck, 'model', 'adapter_model.safetensors'))).toBe(true);
    expect(existsSync(join(ck, 'model', 'adapter_config.json'))).toBe(true);
    expect(existsSync(join(ck, 'model', 'model.safetensors'))).toBe(false);
    // Resume: stop after step 1, continue to 2; step 2 and the adapter equal the straight run's.
    await train(mk('lora-resume', 1));
    await train(mk('lora-resume', 2));
    const resumed = readMetrics(join(tmp, 'lora-resume', METRICS_FILE)).records;
    expect(resumed.map((r) => r.step)).toEqual([1, 2]);
    for (const k of ['reward_mean', 'loss', 'grad_norm', 'kl_ref', 'crop_iou', 'response_length']) expect(resumed[1][k], k).toBe(records[1][k]);
    const sha = (run: string) => JSON.parse(readFileSync(join(tmp, run, 'checkpoint-2', 'complete.json'), 'utf8')).files['model/adapter_model.safetensors'].sha256;
    expect(sha('lora-resume')).toBe(sha('lora'));
  }, 180_000);

  it('greedy validation every N steps with the run\'s templates (val_* metrics on those steps only)', async () => {
    await train(validateTrainConfig(raw('mgpo', 'val', {
      data: { train: boxData, shuffleSeed: 3 }, steps: 3, validation: { data: boxData, every: 2, maxNewTokens: 4 },
    })));
    const recs = readMetrics(join(tmp, 'val', METRICS_FILE)).records;
    expect(recs.map((r) => r.val_accuracy === undefined)).toEqual([true, false, false]);   // steps 2 and 3 (the last)
    for (const r of recs.slice(1)) {
      expect(r.val_accuracy).toBeGreaterThanOrEqual(0);
      expect(r.val_valid_box_ratio).toBeGreaterThanOrEqual(0);
      expect(r.val_iou).toBeGreaterThanOrEqual(0);
    }
    expect(() => validateTrainConfig({ ...base, algorithm: 'search', search: { corpus: 'c.jsonl' }, validation: { data: 'v' } })).toThrow(/validation: not supported with algorithm "search"/);
  }, 120_000);

  it('algorithm "search": multi-turn rollouts over a local BM25 corpus run end to end', async () => {
    expect(() => validateTrainConfig({ ...base, algorithm: 'search' })).toThrow(/search: required when algorithm is "search"/);
    expect(() => validateTrainConfig({ ...base, search: { corpus: 'c' } })).toThrow(/search: only used by algorithm "search"/);
    await train(validateTrainConfig(raw('search', 'search', {
      search: { corpus: join(import.meta.dirname, 'fixtures', 'search_corpus', 'corpus.jsonl'), maxTurns: 2 },
      reward: { accuracy: 1, searchPenalty: 0.1, custom: { module: rewardModule, export: 'byLength', weight: 1 } },
    })));
    const recs = readMetrics(join(tmp, 'search', METRICS_FILE)).records;
    expect(recs.map((r) => r.step)).toEqual([1, 2]);
    for (const r of recs) { expect(r.turns).toBeGreaterThanOrEqual(1); expect(r.turns).toBeLessThanOrEqual(2); }
  }, 120_000);

  it('offline rejection sampling fails clearly when the starting model solves no row sometimes-but-not-always', async () => {
    const cfg = validateTrainConfig(raw('grpo', 'reject', { filters: { rejectionSampling: { samples: 2 } } }));
    const progress: number[] = [];
    await expect(train(cfg, { onRejectionProgress: (d) => progress.push(d) })).rejects.toThrow(/rejection sampling kept no row of 2/);
    expect(progress).toEqual([1, 2]);
    expect(existsSync(join(tmp, 'reject', 'rejection.json'))).toBe(true);
  }, 60_000);
});

describe('resume after SIGKILL', () => {
  const volatile = new Set(['step_time_s', 'tokens_per_s']);
  const stable = (recs: Record<string, unknown>[]) => recs.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !volatile.has(k))));

  it('a run killed mid-way and restarted writes the same metrics, step for step, as one never interrupted', async () => {
    expect(existsSync(CLI), `${CLI} (build with npm run build:ts)`).toBe(true);
    const steps = 8;
    const cfgFor = (out: string) => {
      const f = join(tmp, `${out}.json`);
      writeFileSync(f, JSON.stringify(raw('grpo', out, { steps, checkpoint: { every: 2, keepLast: 2 }, rollout: { G: 2, maxNewTokens: 16, sampling: { temperature: 1, seed: 9 } } })));
      return f;
    };
    const run = (file: string, killAfterLines?: number) => new Promise<{ code: number | null; signal: string | null; linesAtKill: number }>((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, 'train', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => { err += String(d); });
      let linesAtKill = -1;
      const metricsFile = join(JSON.parse(readFileSync(file, 'utf8')).output, METRICS_FILE);
      const timer = killAfterLines === undefined ? null : setInterval(() => {
        if (!existsSync(metricsFile)) return;
        const n = readFileSync(metricsFile, 'utf8').split('\n').filter(Boolean).length;
        if (n >= killAfterLines) { linesAtKill = n; child.kill('SIGKILL'); clearInterval(timer!); }
      }, 5);
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        if (timer) clearInterval(timer);
        if (code !== 0 && signal === null) reject(new Error(`fovea train exited ${code}: ${err}`));
        else resolve({ code, signal, linesAtKill });
      });
    });
    const straight = await run(cfgFor('straight'));
    expect(straight.code).toBe(0);
    const killed = await run(cfgFor('killed'), 3);
    expect(killed.signal).toBe('SIGKILL');
    expect(killed.linesAtKill).toBeLessThan(steps);
    const again = await run(join(tmp, 'killed.json'));
    expect(again.code).toBe(0);
    const a = readMetrics(join(tmp, 'straight', METRICS_FILE)).records;
    const b = readMetrics(join(tmp, 'killed', METRICS_FILE)).records;
    expect(b.map((r) => r.step)).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
    expect(stable(b)).toEqual(stable(a));
  }, 240_000);
});

describe('README', () => {
  it('the documented training and SFT configs are valid as written', async () => {
    const { parseConfigText } = await import('../src/train/config.js');
    const { validateSftConfig } = await import('../src/sft/config.js');
    const text = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    const train = validateTrainConfig(parseConfigText(blocks[0], 'run.yaml'), '/base');
    expect(train.algorithm).toBe('mgpo');
    expect(train.rollout.G).toBe(8);
    const sft = validateSftConfig(parseConfigText(blocks[1], 'sft.yaml'), '/base');
    expect(sft.lora?.r).toBe(8);
  });
});

describe('loss temperature', () => {
  it('defaults to the sampling temperature (the old log-probs\' distribution); greedy keeps 1; explicit wins', () => {
    expect(validateTrainConfig({ ...base, rollout: { sampling: { temperature: 0.7 } } }, '/b').loss.temperature).toBe(0.7);
    expect(validateTrainConfig({ ...base, rollout: { sampling: { temperature: 0 } } }, '/b').loss.temperature).toBe(1);
    expect(validateTrainConfig({ ...base, rollout: { sampling: { temperature: 0.7 } }, loss: { temperature: 1.2 } }, '/b').loss.temperature).toBe(1.2);
    expect(() => validateTrainConfig({ ...base, loss: { temperature: 0 } })).toThrow(/loss\.temperature: expected a number > 0 or null/);
  });
});
