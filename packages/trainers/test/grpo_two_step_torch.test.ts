// Two optimizer steps of GRPO (single turn) and MGPO (two turns with a crop) on the tiny
// Qwen2.5-VL checkpoint, against a PyTorch recomputation (tools/oracle/gen_two_step.py) of the
// real rollouts tools/oracle/dump_two_step.mjs dumped to fixtures/two_step/<case>/.
//
// Fovea's grpoStep runs on a fresh load of the fixture weights with the manifest's config; the
// test compares, per update: the loss, the gradient norm before clipping and the grpoLoss
// statistics; after the last update: every parameter tensor's update (f64 sum and L2 norm of
// after − initial over its well-conditioned weights), every loose weight (below) and a
// deterministic sample of the others. It also checks the packed M-RoPE positions (crop images get
// 3-D image positions) exactly against PyTorch's rope_index.
//
// Tolerances: the expected values come from PyTorch in float64; PyTorch's own float32 run of the
// same two updates, measured against them with the same error definitions (Errors below), is the
// same-precision baseline: each tolerance is max(4 × that baseline, an f32 round-off floor)
// (STYLE habit 4). AdamW moves a weight by about ±lr whatever its gradient's size, and a weight
// whose gradient is near AdamW's eps gets its gradient's round-off amplified ("loose" weights,
// listed by the oracle: ~1% here); those are held to the looser baseline of their own class,
// every other weight to the tight one. The oracle also records how close the nearest ratio came to
// a kink of the clipped surrogate (clipMargin, ≥ 1.8e-2 here): far above the ~1e-6 ratio error, so
// no token can flip between clipped and unclipped.
// Measured (Fovea f32 vs PyTorch f64 / PyTorch f32 vs f64, worst of both cases): loss 4.7e-6 /
// 1.3e-6 relative, grad norm 1.2e-6 / 1.7e-6, tight weights 1.25e-3·lr / 8.4e-4·lr, loose weights
// 2.5e-2·lr / 3.4e-2·lr (lr = 2e-3). Breaking the loss-mask shift, the crop's 3-D positions, the
// clip-high or the dual clip in a scratch copy of grpoStep.ts fails this test (loss-token count;
// positions; loss errors of 0.17–0.41 against tolerances of 1e-5).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AdamW, type GrpoConfig } from '@fovea/core';
import { Qwen2_5_VL } from '@fovea/models';
import { buildTrainingBatch, grpoStep, type GrpoStepStats } from '../src/algorithms/grpoStep.js';
import type { Rollout, RolloutImage } from '../src/rollout/rollout.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const FIX = join(import.meta.dirname, 'fixtures', 'two_step');

interface TensorEntry { file: string; dtype: 'f32' | 'i32'; shape: number[] }
interface Manifest {
  case: string; mode: 'grpo' | 'mgpo'; G: number; model: string;
  rollouts: { promptIndex: number; sample: number; length: number; promptLength: number; turns: number; images: number[];
    finishReason: string | null; truncated: boolean }[];
  images: { grid: { t: number; h: number; w: number }; source: RolloutImage['source']; rows: number }[];
  advantages: number[];
  train: { calls: number; loss: GrpoConfig; ppoEpochs?: number; miniBatchSize?: number; maxGradNorm?: number;
    gradientCheckpointing?: boolean; refModel?: 'initial' };
  adamw: { lr: number; betas: [number, number]; eps: number; weightDecay: number };
  tensors: Record<string, TensorEntry>;
}
interface Expected {
  sampleCap: number;
  f32Baseline: Errors;
  updates: (Record<string, number> & { loss: number; gradNorm: number; clipMargin: number })[];
  params: Record<string, { numel: number; loose: number; deltaSumTight: number; deltaNormTight: number }>;
}

/** Reads one case; a missing or inconsistent fixture names the file and the command that writes it. */
function loadCase(name: string): {
  man: Manifest; exp: Expected; rollouts: Rollout[]; positions: Int32Array; sample: Float32Array; looseIndex: Int32Array; looseValue: Float32Array;
} {
  const dir = join(FIX, name);
  const need = (f: string) => {
    const p = join(dir, f);
    if (!existsSync(p)) {
      throw new Error(`two_step fixture ${p} is missing; regenerate with: node tools/oracle/dump_two_step.mjs && /usr/bin/python3 tools/oracle/gen_two_step.py`);
    }
    return p;
  };
  const man = JSON.parse(readFileSync(need('manifest.json'), 'utf8')) as Manifest;
  const exp = JSON.parse(readFileSync(need('expected.json'), 'utf8')) as Expected;
  const bin = (f: string, dtype: 'f32' | 'i32', n?: number) => {
    const b = readFileSync(need(f));
    const out = dtype === 'f32' ? new Float32Array(b.byteLength / 4) : new Int32Array(b.byteLength / 4);
    new Uint8Array(out.buffer).set(b);
    if (n !== undefined && out.length !== n) throw new Error(`${join(dir, f)}: ${out.length} values, expected ${n}`);
    return out;
  };
  const t = (k: string) => bin(man.tensors[k].file, man.tensors[k].dtype, man.tensors[k].shape.reduce((a, b) => a * b, 1));
  const tokens = t('tokens') as Int32Array, lossMask = t('lossMask') as Float32Array, old = t('oldLogprobs') as Float32Array;
  const pixels = t('pixels') as Float32Array;
  const patchDim = man.tensors.pixels.shape[1];
  let row = 0;
  const images: RolloutImage[] = man.images.map((im) => {
    const pv = pixels.subarray(row * patchDim, (row + im.rows) * patchDim);
    row += im.rows;
    return { pixelValues: pv, patchDim, grid: { ...im.grid }, source: im.source };
  });
  let o = 0;
  const rollouts: Rollout[] = man.rollouts.map((r) => {
    const s = o;
    o += r.length;
    return {
      promptIndex: r.promptIndex, sample: r.sample, tokens: tokens.slice(s, o), lossMask: lossMask.slice(s, o), oldLogprobs: old.slice(s, o),
      promptLength: r.promptLength, images: r.images.map((k) => images[k]), turns: r.turns, responses: [], answer: '',
      finishReason: r.finishReason, truncated: r.truncated, invalidToken: false,
    };
  });
  const looseIndex = bin('looseIndex.bin', 'i32') as Int32Array;
  return {
    man, exp, rollouts, positions: bin('positions.bin', 'i32', 3 * tokens.length) as Int32Array, sample: bin('paramSample.bin', 'f32') as Float32Array,
    looseIndex, looseValue: bin('looseValue.bin', 'f32', looseIndex.length) as Float32Array,
  };
}

/** The oracle's sample of a tensor's elements (gen_two_step.py sample_indices). */
function sampleIndices(numel: number, cap: number): number[] {
  if (numel <= cap) return Array.from({ length: numel }, (_, i) => i);
  const stride = Math.max(1, Math.floor(numel / cap));
  return Array.from({ length: cap }, (_, k) => Math.floor((k * numel) / cap) + ((k * 7919) % stride));
}

const disposers: (() => void)[] = [];
afterAll(() => { for (const d of disposers) d(); });

const STAT_KEYS = ['pgLoss', 'klLoss', 'meanRatio', 'approxKl', 'klRef', 'clipFracLow', 'clipFracHigh', 'clipFracDual'] as const;
/** Max errors against the float64 oracle, defined as gen_two_step.py's max_errors defines them for
 *  its float32 run: loss |Δ|/max(|loss|, 1e-2); gradNorm relative; stat |Δ|/max(1, |x|);
 *  paramTightPerLr max |p − pref|/lr over the sampled well-conditioned weights; paramLoosePerLr the
 *  same over every loose weight (gradient near AdamW's eps, see gen_two_step.py); per tensor over
 *  its well-conditioned weights: deltaNormTight ||Δ| − |Δref||/max(|Δref|, lr) and
 *  deltaSumTightPerLr |ΣΔ − ΣΔref|/(lr·√numel), where Δ = after − initial. */
interface Errors {
  loss: number; gradNorm: number; stat: number;
  paramTightPerLr: number; paramLoosePerLr: number; deltaNormTight: number; deltaSumTightPerLr: number;
}
/** Tolerance = max(FACTOR × PyTorch f32's own error, FLOOR): an f32 implementation may be a few
 *  times noisier than PyTorch's, never orders of magnitude (STYLE habit 4). The floors are f32
 *  round-off levels, so a lucky tiny baseline does not demand the impossible. */
const FACTOR = 4;
const FLOOR: Errors = { loss: 1e-5, gradNorm: 1e-5, stat: 1e-5, paramTightPerLr: 1e-3, paramLoosePerLr: 1e-2, deltaNormTight: 1e-5, deltaSumTightPerLr: 1e-4 };
function tolerances(baseline: Errors): Errors {
  const out = { ...FLOOR };
  for (const k of Object.keys(FLOOR) as (keyof Errors)[]) {
    if (!(baseline?.[k] >= 0)) throw new Error(`expected.json f32Baseline.${k} is ${baseline?.[k]}; regenerate with tools/oracle/gen_two_step.py`);
    out[k] = Math.max(FACTOR * baseline[k], FLOOR[k]);
  }
  return out;
}
const fmt = (e: Errors) => Object.entries(e).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ');

describe.each(['grpo_single_turn', 'mgpo_two_turn'])('two optimizer steps vs PyTorch: %s', (name) => {
  it('loss, grad norm, statistics and parameters match the recomputation', async () => {
    const { man, exp, rollouts, positions, sample, looseIndex, looseValue } = loadCase(name);
    const modelDir = join(ROOT, man.model);
    const model = await Qwen2_5_VL.fromPretrained(modelDir);
    disposers.push(() => model.dispose());
    const refModel = man.train.refModel === 'initial' ? await Qwen2_5_VL.fromPretrained(modelDir) : undefined;
    if (refModel) disposers.push(() => refModel.dispose());

    // Positions over the whole packed batch: exact (crop images included).
    const batch = buildTrainingBatch(model, rollouts, man.advantages);
    expect(batch.positionIds.length).toBe(positions.length);
    expect(Array.from(batch.positionIds).every((v, i) => v === positions[i])).toBe(true);

    const named = model.namedParameters();
    expect(named.map(([n]) => n).sort()).toEqual(Object.keys(exp.params).sort());
    const initial = new Map(named.map(([n, p]) => [n, Float32Array.from(p.data() as Float32Array)]));
    const opt = new AdamW(model.parameters(), man.adamw);
    disposers.push(() => opt.dispose());
    const updates: GrpoStepStats['updates'] = [];
    const t = man.train;
    for (let call = 0; call < t.calls; call++) {
      const s = grpoStep(model, opt, rollouts, man.advantages, {
        loss: t.loss, ppoEpochs: t.ppoEpochs, miniBatchSize: t.miniBatchSize, maxGradNorm: t.maxGradNorm,
        gradientCheckpointing: t.gradientCheckpointing, refModel,
      });
      updates.push(...s.updates);
    }

    expect(updates.length).toBe(exp.updates.length);
    const worst: Errors = { loss: 0, gradNorm: 0, stat: 0, paramTightPerLr: 0, paramLoosePerLr: 0, deltaNormTight: 0, deltaSumTightPerLr: 0 };
    for (const [k, u] of updates.entries()) {
      const e = exp.updates[k];
      expect(u.rollouts).toBe(e.rollouts);
      expect(u.tokens).toBe(e.tokens);
      worst.loss = Math.max(worst.loss, Math.abs(u.loss - e.loss) / Math.max(Math.abs(e.loss), 1e-2));
      worst.gradNorm = Math.max(worst.gradNorm, Math.abs(u.gradNorm - e.gradNorm) / e.gradNorm);
      for (const key of STAT_KEYS) worst.stat = Math.max(worst.stat, Math.abs(u[key] - e[key]) / Math.max(1, Math.abs(e[key])));
    }
    const lr = man.adamw.lr;
    const byName = new Map(named);
    let so = 0, lo = 0;
    for (const n of Object.keys(exp.params)) {   // the oracle's order (the .bin files follow it)
      const after = byName.get(n)!.data() as Float32Array, before = initial.get(n)!;
      const e = exp.params[n];
      expect(after.length).toBe(e.numel);
      const loose = new Uint8Array(e.numel);
      for (let k = 0; k < e.loose; k++, lo++) {
        const i = looseIndex[lo];
        loose[i] = 1;
        worst.paramLoosePerLr = Math.max(worst.paramLoosePerLr, Math.abs(after[i] - looseValue[lo]) / lr);
      }
      let sum = 0, sq = 0;
      for (let i = 0; i < after.length; i++) if (!loose[i]) { const d = after[i] - before[i]; sum += d; sq += d * d; }
      worst.deltaNormTight = Math.max(worst.deltaNormTight, Math.abs(Math.sqrt(sq) - e.deltaNormTight) / Math.max(e.deltaNormTight, lr));
      worst.deltaSumTightPerLr = Math.max(worst.deltaSumTightPerLr, Math.abs(sum - e.deltaSumTight) / (lr * Math.sqrt(e.numel)));
      for (const i of sampleIndices(e.numel, exp.sampleCap)) {
        const ref = sample[so++];
        if (!loose[i]) worst.paramTightPerLr = Math.max(worst.paramTightPerLr, Math.abs(after[i] - ref) / lr);
      }
    }
    expect(so).toBe(sample.length);
    expect(lo).toBe(looseIndex.length);
    const tol = tolerances(exp.f32Baseline);
    console.log(`${name}: Fovea f32 vs PyTorch f64, max errors ${fmt(worst)}; PyTorch f32 baseline ${fmt(exp.f32Baseline)}`);
    for (const k of Object.keys(worst) as (keyof Errors)[]) {
      expect(worst[k], `${k}: error ${worst[k].toExponential(2)} > tolerance ${tol[k].toExponential(2)}`).toBeLessThanOrEqual(tol[k]);
    }
    // The config exercises something: the last update is off-policy and clips, and no token sits
    // close enough to a clip boundary for f32 round-off to flip it.
    const last = exp.updates[exp.updates.length - 1];
    expect(Math.abs(last.meanRatio - 1)).toBeGreaterThan(1e-2);
    expect(last.clipFracLow + last.clipFracHigh + last.clipFracDual).toBeGreaterThan(0);
    expect(Math.min(...exp.updates.map((e) => e.clipMargin))).toBeGreaterThan(1e-3);
  });
});

describe('two_step fixtures', () => {
  it('a missing case names the file and the regeneration command', () => {
    expect(() => loadCase('no_such_case')).toThrow(/no_such_case[/\\]manifest\.json is missing; regenerate with: node tools\/oracle\/dump_two_step\.mjs/);
  });
});
