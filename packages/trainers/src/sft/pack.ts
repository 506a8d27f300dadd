// Packing encoded conversations into one forward pass, and the SFT loss on it.
//
// buildSftBatch lays the conversations back to back (cuSeqlens), computes M-RoPE positions per
// sequence with getRopeIndexPacked (each restarts at 0, images get 3-D positions), concatenates
// their images in order, and keeps only the rows that predict a loss token:
//   row i of sequence s (i + 1 still in s) is kept iff lossMask[i + 1] = 1; target = ids[i + 1].
// The batch has grpoStep's TrainingBatch shape, so batchHidden runs the packed forward for it.
//
// sftLoss is the token-mean cross-entropy over those rows, −(1/N) Σ log p(target), computed by the
// fused lm_head kernel of @fovea/core (grpoLoss) without materializing [N, V] logits:
//   with advantage 1, the old log-probs defaulted to the current ones (ratio exactly 1, inside the
//   clip range), beta 0 and aggregation 'token-mean', ∂loss/∂logp_i = −1/N, the gradient of the
//   mean cross-entropy; the kernel's klRef stat with a zero reference and the k1 estimator is the
//   mean log p itself (accumulated in f64), which gives the cross-entropy value in the same pass.
// The returned tensor has the cross-entropy's value and gradient.
import {
  type Tensor, grpoLoss, ones, tensor, zeros,
} from '@fovea/core';
import { type GridThw, type Qwen2_5_VL, getRopeIndexPacked } from '@fovea/models';
import type { TrainingBatch } from '../algorithms/grpoStep.js';
import type { SftExample } from './encode.js';

/** A packed SFT batch: TrainingBatch (mask 1, advantage 1 per row) plus token counts. */
export interface SftBatch extends TrainingBatch {
  /** Rows with loss (= rows.length). */
  lossTokens: number;
  /** All tokens of the pack (inputIds.length). */
  totalTokens: number;
}

/** Packs examples into one batch; see the file comment. */
export function buildSftBatch(model: Qwen2_5_VL, examples: readonly SftExample[]): SftBatch {
  const op = 'buildSftBatch';
  if (!examples.length) throw new Error(`${op}: no examples to pack`);
  const cfg = model.config;
  const L = examples.reduce((a, e) => a + e.inputIds.length, 0);
  const inputIds = new Int32Array(L), cuSeqlens = new Int32Array(examples.length + 1);
  const withImages = examples.filter((e) => e.pixelRows);
  const patchDim = withImages[0]?.patchDim ?? 0;
  const pixelRows = withImages.length ? new Float32Array(withImages.reduce((a, e) => a + e.pixelRows!.length, 0)) : null;
  const grids: GridThw[] = [];
  const rows: number[] = [], targets: number[] = [], seq: number[] = [];
  let o = 0, po = 0;
  for (const [s, e] of examples.entries()) {
    const n = e.inputIds.length;
    if (e.lossMask.length !== n) throw new Error(`${op}: example ${e.id} has ${n} tokens but ${e.lossMask.length} mask entries`);
    inputIds.set(e.inputIds, o);
    if (e.pixelRows) {
      if (e.patchDim !== patchDim) throw new Error(`${op}: example ${e.id} has ${e.patchDim}-wide patch rows, others ${patchDim}`);
      pixelRows!.set(e.pixelRows, po);
      po += e.pixelRows.length;
      for (const g of e.grids) grids.push({ ...g });
    }
    for (let i = 0; i + 1 < n; i++) {
      if (!e.lossMask[i + 1]) continue;
      rows.push(o + i); targets.push(e.inputIds[i + 1]); seq.push(s);
    }
    o += n;
    cuSeqlens[s + 1] = o;
  }
  const positionIds = getRopeIndexPacked(inputIds, cuSeqlens, grids,
    { imageTokenId: cfg.imageTokenId, visionStartTokenId: cfg.visionStartTokenId }, { spatialMergeSize: cfg.vision.spatialMergeSize });
  const N = rows.length;
  return {
    inputIds, cuSeqlens, positionIds, pixelRows, patchDim, grids,
    rows: Int32Array.from(rows), targets: Int32Array.from(targets),
    mask: new Float32Array(N).fill(1), oldLogprobs: new Float32Array(N), advantages: new Float32Array(N).fill(1),
    seqIndex: Int32Array.from(seq), numSeqs: examples.length, lossTokens: N, totalTokens: L,
  };
}

export interface SftLossResult {
  /** Scalar: the mean cross-entropy (value and gradient). */
  loss: Tensor;
  /** Σ −log p(target) over the rows, in f64. */
  nllSum: number;
  /** Rows (loss tokens). */
  tokens: number;
}

/** Token-mean cross-entropy of batch.targets from the hidden rows [N, H] (see the file comment).
 * Its small per-token tensors are temporaries: call it inside tidy(). */
export function sftLoss(model: Qwen2_5_VL, hidden: Tensor, batch: SftBatch): SftLossResult {
  const N = batch.rows.length;
  if (N === 0) throw new Error('sftLoss: the batch has no loss tokens');
  if (hidden.shape.length !== 2 || hidden.shape[0] !== N) throw new Error(`sftLoss: hidden must be [${N}, H] (one row per loss token), got [${hidden.shape.join(', ')}]`);
  const dev = model.device;
  const f32 = { dtype: 'f32' as const, device: dev };
  const { loss, stats } = grpoLoss({
    hidden, weight: model.lmHeadWeight, targets: tensor(batch.targets, { dtype: 'i32', device: dev }),
    advantages: ones([N], f32), mask: ones([N], f32), seqIndex: tensor(batch.seqIndex, { dtype: 'i32', device: dev }),
    numSeqs: batch.numSeqs, oldLogprobs: null, refLogprobs: zeros([N], f32),
    config: { epsLow: 0.2, epsHigh: 0.2, beta: 0, kl: 'k1', aggregation: 'token-mean', temperature: 1 },
  });
  // stats.klRef = mean(logp − 0) over the rows; loss = −1 exactly (ratio 1, advantage 1).
  const meanLogp = stats.klRef;
  const ce = loss.add(-meanLogp + 1);
  return { loss: ce, nllSum: -meanLogp * N, tokens: N };
}
