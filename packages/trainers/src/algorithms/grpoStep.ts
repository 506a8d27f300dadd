// The policy-gradient update of GRPO/DAPO/MGPO on a batch of rollouts.
//
// buildTrainingBatch packs the rollouts back to back (cuSeqlens), recomputes M-RoPE positions
// over each WHOLE multi-turn sequence with getRopeIndexPacked — crop images included, so their
// tokens get 3-D image positions (MGPO's public code gave them text positions) — and keeps only
// the rows that predict a loss-masked token:
//   row i of sequence s (i + 1 still in s) predicts tokens[i + 1]; it is kept iff lossMask[i + 1] > 0;
//   targets = tokens[i + 1], mask = lossMask[i + 1], oldLogprobs = rollout.oldLogprobs[i + 1],
//   advantages = A_s (broadcast per sequence), seqIndex = s.
// The last token of a sequence predicts nothing. Fully masked rollouts add no row (and are not
// counted by the seq-mean aggregations, as in grpoLoss).
//
// grpoStep runs μ = ppoEpochs passes over the rollouts in mini-batches; every pass uses the
// rollouts' OLD log-probs (the sampling policy), so the ratio departs from 1 after the first
// update. Each mini-batch: forward (optionally gradient-checkpointed) → hidden rows → the fused
// grpoLoss with model.lmHeadWeight (no [N, V] logits) → backward → optional global-norm clip →
// optimizer step → zero grads. With gradAccumulation = k a mini-batch runs as k micro-batches
// whose gradients add up before the one optimizer step; each micro-batch's loss is scaled by its
// share of the mini-batch's denominator (loss tokens for token-mean, sequences with a loss token
// for the seq-mean aggregations), so the accumulated gradient equals the one of the whole
// mini-batch in a single pass (tested). With beta > 0 the reference model's log-probs come from
// tokenLogprobs over the reference model's hidden rows (no gradient).
// Entropy bonus (entropyCoef c > 0): loss −= c · Σ_i w_i H_i with the fused loss's aggregation
// weights w_i (token-mean: m_i/Σm; seq-mean-token-mean: m_i/(count_s·S); ...) and H_i the entropy
// of the (temperature-scaled) policy at token i. It is computed with plain autograd ops over the
// full [N, V] logits of the mini-batch (not fused: only use it with modest batches).
import {
  type AdamW, type GrpoConfig, type GrpoStats, type SGD, type Tensor, backward, clipGradNorm, exp, grpoLoss, indexSelect, linear,
  logSoftmax, mul, neg, noGrad, sub, sum, tensor, tidy, tokenLogprobs,
} from '@fovea/core';
import { type GridThw, type Qwen2_5_VL, getRopeIndexPacked } from '@fovea/models';
import type { Rollout } from '../rollout/rollout.js';

export interface TrainingBatch {
  inputIds: Int32Array;
  cuSeqlens: Int32Array;
  /** i32 [3, L] row-major. */
  positionIds: Int32Array;
  /** Every image of every sequence, in token order. */
  pixelRows: Float32Array | null;
  patchDim: number;
  grids: GridThw[];
  /** Packed row indices whose hidden state predicts a loss token. */
  rows: Int32Array;
  targets: Int32Array;
  mask: Float32Array;
  oldLogprobs: Float32Array;
  advantages: Float32Array;
  seqIndex: Int32Array;
  numSeqs: number;
}

/** Packs rollouts (one advantage each) into a training batch; see the file comment. */
export function buildTrainingBatch(model: Qwen2_5_VL, rollouts: readonly Rollout[], advantages: ArrayLike<number>): TrainingBatch {
  const op = 'buildTrainingBatch';
  if (!rollouts.length) throw new Error(`${op}: no rollouts`);
  if (advantages.length !== rollouts.length) throw new Error(`${op}: ${advantages.length} advantages for ${rollouts.length} rollouts (one per rollout)`);
  const cfg = model.config;
  const L = rollouts.reduce((a, r) => a + r.tokens.length, 0);
  const inputIds = new Int32Array(L), cuSeqlens = new Int32Array(rollouts.length + 1);
  const grids: GridThw[] = [];
  const imgs = rollouts.flatMap((r) => r.images);
  const patchDim = imgs[0]?.patchDim ?? 0;
  const pixelRows = imgs.length ? new Float32Array(imgs.reduce((a, im) => a + im.pixelValues.length, 0)) : null;
  let o = 0, po = 0;
  const rows: number[] = [], targets: number[] = [], mask: number[] = [], old: number[] = [], adv: number[] = [], seq: number[] = [];
  for (const [s, r] of rollouts.entries()) {
    const n = r.tokens.length;
    if (r.lossMask.length !== n || r.oldLogprobs.length !== n) {
      throw new Error(`${op}: rollout ${s} has ${n} tokens but ${r.lossMask.length} mask and ${r.oldLogprobs.length} log-prob entries`);
    }
    const a = advantages[s];
    if (!Number.isFinite(a)) throw new Error(`${op}: advantages[${s}] is ${a}`);
    inputIds.set(r.tokens, o);
    for (const im of r.images) {
      if (im.patchDim !== patchDim) throw new Error(`${op}: rollout ${s} has an image with ${im.patchDim}-wide patch rows, others ${patchDim}`);
      grids.push({ ...im.grid });
      pixelRows!.set(im.pixelValues, po);
      po += im.pixelValues.length;
    }
    for (let i = 0; i + 1 < n; i++) {
      const m = r.lossMask[i + 1];
      if (!(m >= 0) || !Number.isFinite(m)) throw new Error(`${op}: rollout ${s} lossMask[${i + 1}] is ${m}; expected a finite number >= 0`);
      if (m === 0) continue;
      rows.push(o + i); targets.push(r.tokens[i + 1]); mask.push(m); old.push(r.oldLogprobs[i + 1]); adv.push(a); seq.push(s);
    }
    o += n;
    cuSeqlens[s + 1] = o;
  }
  const positionIds = getRopeIndexPacked(inputIds, cuSeqlens, grids,
    { imageTokenId: cfg.imageTokenId, visionStartTokenId: cfg.visionStartTokenId }, { spatialMergeSize: cfg.vision.spatialMergeSize });
  return {
    inputIds, cuSeqlens, positionIds, pixelRows, patchDim, grids, rows: Int32Array.from(rows), targets: Int32Array.from(targets),
    mask: Float32Array.from(mask), oldLogprobs: Float32Array.from(old), advantages: Float32Array.from(adv), seqIndex: Int32Array.from(seq),
    numSeqs: rollouts.length,
  };
}

/** Hidden rows of the batch's loss tokens ([N, H]); differentiable unless called under noGrad. */
export function batchHidden(model: Qwen2_5_VL, b: TrainingBatch, gradientCheckpointing = false): Tensor {
  const dev = model.device;
  const images = b.pixelRows
    ? { pixelValues: tensor(b.pixelRows, { dtype: 'f32', device: dev }).reshape([b.pixelRows.length / b.patchDim, b.patchDim]), gridThw: b.grids }
    : null;
  const hidden = model.forward({ inputIds: b.inputIds, images, cuSeqlens: b.cuSeqlens, positionIds: b.positionIds }, { gradientCheckpointing });
  return indexSelect(hidden, 0, tensor(b.rows, { dtype: 'i32', device: dev }));
}

export interface GrpoStepOptions {
  loss?: GrpoConfig;
  /** μ: passes over the rollouts per rollout batch (default 1). */
  ppoEpochs?: number;
  /** Rollouts per optimizer step (default: all of them). */
  miniBatchSize?: number;
  /** Global gradient-norm clip (default off; MGPO used 1.0). */
  maxGradNorm?: number;
  gradientCheckpointing?: boolean;
  /** Entropy bonus coefficient (default 0: off). See the file comment. */
  entropyCoef?: number;
  /** Micro-batches per mini-batch, gradients accumulated before one optimizer step (default 1). */
  gradAccumulation?: number;
  /** Frozen reference policy for the KL term (needed when loss.beta > 0). */
  refModel?: Qwen2_5_VL;
  /** Runs fn with the model acting as the reference policy (LoRA: adapters disabled). Used
   * instead of refModel when given. */
  asReference?: <T>(fn: () => T) => T;
}

export interface GrpoStepStats {
  /** One entry per optimizer step, in order. */
  updates: (GrpoStats & { gradNorm: number; rollouts: number })[];
  /** Mean over updates of loss and gradNorm. */
  loss: number;
  gradNorm: number;
}

/** μ × mini-batch policy-gradient updates on one rollout batch (see the file comment). */
export function grpoStep(
  model: Qwen2_5_VL, optimizer: AdamW | SGD, rollouts: readonly Rollout[], advantages: ArrayLike<number>, opts: GrpoStepOptions = {},
): GrpoStepStats {
  const op = 'grpoStep';
  const epochs = opts.ppoEpochs ?? 1;
  const mb = opts.miniBatchSize ?? rollouts.length;
  if (!Number.isInteger(epochs) || epochs < 1) throw new Error(`${op}: ppoEpochs must be a positive integer, got ${epochs}`);
  if (!Number.isInteger(mb) || mb < 1) throw new Error(`${op}: miniBatchSize must be a positive integer, got ${mb}`);
  if (advantages.length !== rollouts.length) throw new Error(`${op}: ${advantages.length} advantages for ${rollouts.length} rollouts`);
  const beta = opts.loss?.beta ?? 0;
  const accum = opts.gradAccumulation ?? 1;
  if (!Number.isInteger(accum) || accum < 1) throw new Error(`${op}: gradAccumulation must be a positive integer, got ${accum}`);
  if (beta > 0 && !opts.refModel && !opts.asReference) throw new Error(`${op}: loss.beta = ${beta} > 0 needs opts.refModel (the frozen reference policy) or opts.asReference`);
  const seqMean = (opts.loss?.aggregation ?? 'token-mean') !== 'token-mean';
  const entropyCoef = opts.entropyCoef ?? 0;
  if (!(entropyCoef >= 0) || !Number.isFinite(entropyCoef)) throw new Error(`${op}: entropyCoef must be a finite number >= 0, got ${entropyCoef}`);
  const updates: GrpoStepStats['updates'] = [];
  const advArr = Array.from(advantages);
  for (let e = 0; e < epochs; e++) {
    for (let start = 0; start < rollouts.length; start += mb) {
      const part = rollouts.slice(start, start + mb);
      const partAdv = advArr.slice(start, start + mb);
      // Micro-batches: contiguous slices of the mini-batch, each with its share of the denominator.
      const microSize = Math.ceil(part.length / accum);
      const micros: TrainingBatch[] = [];
      for (let m = 0; m < part.length; m += microSize) {
        const b = buildTrainingBatch(model, part.slice(m, m + microSize), partAdv.slice(m, m + microSize));
        if (b.rows.length) micros.push(b);
      }
      if (micros.length === 0) continue;  // every token masked (overlong filtering): nothing to learn
      const share = (b: TrainingBatch) => seqMean ? new Set(b.seqIndex).size : b.mask.reduce((a, x) => a + x, 0);
      const total = micros.reduce((a, b) => a + share(b), 0);
      const parts: { w: number; s: GrpoStats }[] = [];
      for (const b of micros) {
        const w = share(b) / total;
        const s = tidy(() => {
          const dev = model.device;
          const f32 = (x: Float32Array) => tensor(x, { dtype: 'f32', device: dev });
          const targets = tensor(b.targets, { dtype: 'i32', device: dev });
          const refLp = () => noGrad(() => {
            const ref = opts.asReference ? model : opts.refModel!;
            return tokenLogprobs({ hidden: batchHidden(ref, b), weight: ref.lmHeadWeight, targets, temperature: opts.loss?.temperature }).logprobs;
          });
          const ref = beta > 0 ? (opts.asReference ? opts.asReference(refLp) : refLp()) : null;
          const hidden = batchHidden(model, b, opts.gradientCheckpointing ?? false);
          const { loss, stats: st } = grpoLoss({
            hidden, weight: model.lmHeadWeight, targets, mask: f32(b.mask), advantages: f32(b.advantages),
            oldLogprobs: f32(b.oldLogprobs), refLogprobs: ref, seqIndex: tensor(b.seqIndex, { dtype: 'i32', device: dev }),
            numSeqs: b.numSeqs, config: opts.loss,
          });
          const total = entropyCoef > 0 ? sub(loss, mul(entropyTerm(hidden, model.lmHeadWeight, b, opts.loss ?? {}), entropyCoef)) : loss;
          backward(micros.length === 1 ? total : mul(total, w));
          return st;
        });
        parts.push({ w, s });
      }
      const gradNorm = clipGradNorm(optimizer.params, opts.maxGradNorm ?? Infinity);  // @fovea/core's (native f64 norm)
      optimizer.step();
      optimizer.zeroGrad();
      updates.push({ ...combineStats(parts), gradNorm, rollouts: part.length });
    }
  }
  const mean = (f: (u: GrpoStepStats['updates'][number]) => number) => updates.length ? updates.reduce((a, u) => a + f(u), 0) / updates.length : 0;
  return { updates, loss: mean((u) => u.loss), gradNorm: mean((u) => u.gradNorm) };
}

/** Stats of one optimizer step from its micro-batches: weighted means, token counts summed. */
function combineStats(parts: { w: number; s: GrpoStats }[]): GrpoStats {
  if (parts.length === 1) return parts[0].s;
  const wm = (f: (s: GrpoStats) => number) => parts.reduce((a, p) => a + p.w * f(p.s), 0);
  const tok = parts.reduce((a, p) => a + p.s.tokens, 0);
  // Per-token statistics are means over tokens: weight them by each micro-batch's tokens.
  const tm = (f: (s: GrpoStats) => number) => (tok > 0 ? parts.reduce((a, p) => a + p.s.tokens * f(p.s), 0) / tok : 0);
  const out: GrpoStats = {
    loss: wm((s) => s.loss), pgLoss: wm((s) => s.pgLoss), klLoss: wm((s) => s.klLoss),
    clipFracLow: tm((s) => s.clipFracLow), clipFracHigh: tm((s) => s.clipFracHigh), clipFracDual: tm((s) => s.clipFracDual),
    approxKl: tm((s) => s.approxKl), klRef: tm((s) => s.klRef), meanRatio: tm((s) => s.meanRatio), tokens: tok,
  };
  if (parts.every((p) => p.s.entropy !== undefined)) out.entropy = tm((s) => s.entropy!);
  return out;
}

/** The fused loss's per-token aggregation weights w_i (see grpo_loss.h), on the host. */
export function aggregationWeights(b: Pick<TrainingBatch, 'mask' | 'seqIndex' | 'numSeqs'>, cfg: GrpoConfig): Float32Array {
  const n = b.mask.length, w = new Float32Array(n);
  const agg = cfg.aggregation ?? 'token-mean';
  if (agg === 'token-mean') {
    const tot = b.mask.reduce((a, x) => a + x, 0);
    for (let i = 0; i < n; i++) w[i] = tot > 0 ? b.mask[i] / tot : 0;
    return w;
  }
  if (agg === 'seq-mean-token-sum-norm') {
    for (let i = 0; i < n; i++) w[i] = b.mask[i] / (cfg.normLength ?? 1);
    return w;
  }
  const cnt = new Float64Array(b.numSeqs);
  for (let i = 0; i < n; i++) cnt[b.seqIndex[i]] += b.mask[i];
  const S = cnt.reduce((a, c) => a + (c > 0 ? 1 : 0), 0);
  for (let i = 0; i < n; i++) {
    const c = cnt[b.seqIndex[i]];
    w[i] = S === 0 || c <= 0 ? 0 : agg === 'seq-mean-token-mean' ? b.mask[i] / (c * S) : b.mask[i] / S;
  }
  return w;
}

/** Σ_i w_i H_i over the batch's loss tokens: the aggregated policy entropy (differentiable). */
export function entropyTerm(hidden: Tensor, weight: Tensor, b: TrainingBatch, cfg: GrpoConfig): Tensor {
  const T = cfg.temperature ?? 1;
  const logits = T === 1 ? linear(hidden, weight) : mul(linear(hidden, weight), 1 / T);
  const logp = logSoftmax(logits, -1);
  const H = neg(sum(mul(exp(logp), logp), -1));            // [N]
  const w = tensor(aggregationWeights(b, cfg), { dtype: 'f32', device: hidden.device });
  return sum(mul(H, w));
}
