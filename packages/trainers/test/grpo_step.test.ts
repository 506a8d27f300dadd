// The policy-gradient step on the tiny Qwen2.5-VL checkpoint: the fused loss of a packed
// multi-turn batch equals a plain recomputation (per-sequence forward, full logits, log-softmax,
// clipped surrogate, token mean) done here; parameters move after a step; zero advantages
// without KL leave every parameter unchanged; μ > 1 passes use the rollouts' old log-probs; and
// 2-step GRPO and MGPO runs (rollout → reward → advantages → update) finish with finite losses.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, logSoftmax, noGrad, tensor, tidy } from '@fovea/core';
import { GenerationEngine, Qwen2_5_VL, Qwen2_5_VLProcessor, type RgbImage } from '@fovea/models';
import { generateRollouts, type Rollout, type RolloutOptions } from '../src/rollout/rollout.js';
import { grpoStep } from '../src/algorithms/grpoStep.js';
import { groupAdvantages } from '../src/algorithms/advantages.js';
import { type CropTool, cropTool } from '../src/tools/crop.js';

const FIX = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures');
function gradient(height: number, width: number): RgbImage {
  const data = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    const o = (y * width + x) * 3;
    data[o] = (x * 255) / width; data[o + 1] = (y * 255) / height; data[o + 2] = ((x + y) * 7) % 256;
  }
  return { data, height, width, channels: 3 };
}

let dir: string, model: Qwen2_5_VL, proc: Qwen2_5_VLProcessor, engine: GenerationEngine, tool: CropTool;
const image = gradient(300, 220);
const rolloutOpts = (): RolloutOptions => ({
  mode: 'mgpo', G: 3, tool, sampling: { temperature: 1, seed: 7 }, maxNewTokens: 6,
});
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fovea-grpo-step-'));
  cpSync(join(FIX, 'qwen25vl', 'model'), dir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(dir, f));
  model = await Qwen2_5_VL.fromPretrained(dir);
  proc = await Qwen2_5_VLProcessor.fromPretrained(dir);
  engine = new GenerationEngine(model, { maxTokens: 8192, tokenizer: proc.tokenizer });
  const base = cropTool({ processor: proc.imageProcessor, minPixels: 3136 * 4, maxPixels: 100352 });
  // A controlled box so that turn 2 carries a real crop (the untrained model writes none).
  tool = { ...base, crop: (_t, input) => base.crop('```json\n[{"bbox_2d": [20, 30, 120, 150], "label": "sign"}]\n```', input) };
});
afterAll(() => { engine?.dispose(); model?.dispose(); rmSync(dir, { recursive: true, force: true }); });

/** Token-mean clipped surrogate recomputed plainly: one forward per sequence, full logits. */
function referenceLoss(rollouts: Rollout[], adv: number[], epsLow: number, epsHigh: number): { loss: number; clipped: number } {
  let sum = 0, count = 0, clipped = 0;
  for (const [s, r] of rollouts.entries()) {
    const logp = noGrad(() => tidy(() => {
      const rows = r.images.reduce((a, im) => a + im.pixelValues.length, 0);
      const pv = new Float32Array(rows);
      let o = 0;
      for (const im of r.images) { pv.set(im.pixelValues, o); o += im.pixelValues.length; }
      const images = { pixelValues: tensor(pv, { dtype: 'f32' }).reshape([rows / r.images[0].patchDim, r.images[0].patchDim]), gridThw: r.images.map((im) => im.grid) };
      const hidden = model.forward({ inputIds: r.tokens, images });   // positions computed by the model
      return logSoftmax(model.logits(hidden), -1).data() as Float32Array;
    }));
    const V = model.config.text.vocabSize;
    for (let i = 0; i + 1 < r.tokens.length; i++) {
      if (r.lossMask[i + 1] === 0) continue;
      const lp = logp[i * V + r.tokens[i + 1]];
      const ratio = Math.exp(Math.min(20, Math.max(-20, lp - r.oldLogprobs[i + 1])));
      const A = adv[s];
      const clippedRatio = Math.min(Math.max(ratio, 1 - epsLow), 1 + epsHigh);
      if (clippedRatio !== ratio && -A * clippedRatio > -A * ratio) clipped++;
      sum += Math.max(-A * ratio, -A * clippedRatio);
      count++;
    }
  }
  return { loss: sum / count, clipped };
}

function snapshot(): Float32Array[] { return model.parameters().map((p) => Float32Array.from(p.data() as Float32Array)); }

describe('grpoStep', () => {
  it('loss equals a plain recomputation; parameters change after the step', async () => {
    const rollouts = await generateRollouts(model, proc, engine, [{ question: 'Which sign?', choices: ['A sign', 'B sign'], images: [image] }], rolloutOpts());
    expect(rollouts.every((r) => r.turns === 2 && r.images.length === 2)).toBe(true);
    // Move the old log-probs off the current policy so that some ratios clip.
    const shifted = rollouts.map((r) => ({ ...r, oldLogprobs: r.oldLogprobs.map((v, i) => (r.lossMask[i] ? v + 0.3 * Math.sin(1.7 * i) : 0)) }));
    const adv = [1.0, -0.7, 0.4];
    const ref = referenceLoss(shifted, adv, 0.2, 0.28);
    expect(ref.clipped).toBeGreaterThan(0);
    const before = snapshot();
    const opt = new AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0 });
    const stats = grpoStep(model, opt, shifted, adv, { loss: { epsLow: 0.2, epsHigh: 0.28, aggregation: 'token-mean' }, maxGradNorm: 1.0 });
    opt.dispose();
    expect(stats.updates.length).toBe(1);
    expect(Math.abs(stats.updates[0].loss - ref.loss)).toBeLessThan(1e-5);
    expect(stats.updates[0].tokens).toBe(shifted.reduce((a, r) => a + r.lossMask.reduce((x, y) => x + y, 0), 0));
    expect(stats.updates[0].clipFracLow + stats.updates[0].clipFracHigh).toBeGreaterThan(0);
    expect(stats.gradNorm).toBeGreaterThan(0);
    const after = snapshot();
    const changed = after.filter((a, k) => a.some((v, i) => v !== before[k][i])).length;
    expect(changed).toBeGreaterThan(after.length / 2);
  });

  it('zero advantages and no KL: the update is exactly zero', async () => {
    const rollouts = await generateRollouts(model, proc, engine, [{ question: 'Where?', images: [image] }], rolloutOpts());
    const before = snapshot();
    const opt = new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0 });
    const stats = grpoStep(model, opt, rollouts, [0, 0, 0], { loss: { beta: 0 } });
    opt.dispose();
    expect(stats.loss).toBe(0);
    expect(stats.gradNorm).toBe(0);
    const after = snapshot();
    for (const [k, a] of after.entries()) expect(a).toEqual(before[k]);
  });

  it('μ = 2 passes in mini-batches keep the rollouts\' old log-probs (ratio leaves 1 after the first update)', async () => {
    const rollouts = await generateRollouts(model, proc, engine, [{ question: 'Where?', images: [image] }], rolloutOpts());
    const opt = new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0 });
    const stats = grpoStep(model, opt, rollouts, [1, -1, 0.5], { ppoEpochs: 2, miniBatchSize: 2 });
    opt.dispose();
    expect(stats.updates.map((u) => u.rollouts)).toEqual([2, 1, 2, 1]);
    expect(Math.abs(stats.updates[0].meanRatio - 1)).toBeLessThan(1e-4);   // on-policy at the start
    expect(Math.abs(stats.updates[2].meanRatio - 1)).toBeGreaterThan(1e-4);
    expect(() => grpoStep(model, opt, rollouts, [1, 2], {})).toThrow(/advantages for 3 rollouts/);
    expect(() => grpoStep(model, opt, rollouts, [1, 2, 3], { loss: { beta: 0.1 } })).toThrow(/needs opts.refModel/);
  });
});

describe('end to end on the tiny model', () => {
  // A test reward with spread (the untrained model never answers correctly): the share of even ids.
  const reward = (r: Rollout) => { let n = 0, e = 0; r.tokens.forEach((t, i) => { if (r.lossMask[i]) { n++; if (t % 2 === 0) e++; } }); return n ? e / n : 0; };

  for (const mode of ['grpo', 'mgpo'] as const) {
    it(`2-step ${mode} run: rollouts → rewards → advantages → update, finite losses`, async () => {
      const refModel = await Qwen2_5_VL.fromPretrained(dir);
      const opt = new AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0.01 });
      try {
        for (let step = 0; step < 2; step++) {
          const rollouts = await generateRollouts(model, proc, engine, [
            { question: 'What is shown?', choices: ['x', 'y'], images: [image] },
            { question: 'Which corner is bright?', images: [gradient(120, 180)] },
          ], { ...rolloutOpts(), mode, G: 2, sampling: { temperature: 1, seed: 100 * step } });
          expect(rollouts.length).toBe(4);
          const { advantages } = groupAdvantages(rollouts.map(reward), 2);
          const stats = grpoStep(model, opt, rollouts, advantages, {
            loss: { beta: 0.01, kl: 'k3', epsHigh: 0.28 }, refModel, ppoEpochs: 2, maxGradNorm: 1.0,
            gradientCheckpointing: mode === 'mgpo',
          });
          expect(stats.updates.length).toBe(2);
          for (const u of stats.updates) {
            expect(Number.isFinite(u.loss)).toBe(true);
            expect(Number.isFinite(u.klRef)).toBe(true);
            expect(Number.isFinite(u.gradNorm)).toBe(true);
          }
        }
      } finally {
        opt.dispose();
        refModel.dispose();
      }
    });
  }
});
