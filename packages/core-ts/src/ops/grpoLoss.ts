// Fused GRPO loss (issue 4): lm_head → log-probabilities → clipped surrogate + KL → aggregation in
// one chunked native pass that never builds the [N, V] logits. The kernel computes the loss, the
// stats and the gradients w.r.t. hidden, weight and bias for an upstream gradient of 1 (the loss is
// a scalar); the backward only scales those saved gradients by the incoming gradient. Gradients are
// accumulated in f32 (f64 for f64 models, which gradcheck uses) and cast to the input dtype.
//
// Per token (mask m, advantage A, temperature T):
//   logp = log softmax((hidden·Wᵀ + b)/T)[target];  r = exp(clamp(logp − old, ±20))
//   pg = max(−A·r, −A·clip(r, 1 − epsLow, 1 + epsHigh)), and for A < 0 with dualClip c: min(pg, −A·c)
//   kl: k1 = logp − ref; k2 = ½(logp − ref)²; k3 = clamp(exp(ref − logp) − (ref − logp) − 1, ±10)
//   ℓ = pg + beta·kl
// Aggregation (S = number of sequences with at least one unmasked token):
//   'token-mean'               Σ m·ℓ / Σ m                      over the whole batch
//   'seq-mean-token-mean'      (1/S) Σ_s (Σ_{t∈s} m·ℓ / Σ_{t∈s} m)
//   'seq-mean-token-sum'       (1/S) Σ_s Σ_{t∈s} m·ℓ
//   'seq-mean-token-sum-norm'  Σ_s Σ_{t∈s} m·ℓ / normLength     (verl's Dr. GRPO form: NOT divided by S)
// Fully masked sequences add nothing and are not counted in S.
import native from '@fovea/native';
import { Tensor, shapeStr } from '../tensor.js';
import { record } from '../autograd/record.js';
import { noGrad } from '../autograd/grad_mode.js';
import { checkFloat, checkSameDevice, checkTensor } from './helpers.js';
import { tensor } from './creation.js';

export type GrpoAggregation = 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum' | 'seq-mean-token-sum-norm';
export type GrpoKl = 'k1' | 'k2' | 'k3';

export interface GrpoConfig {
  epsLow?: number;            // 0.2
  epsHigh?: number;           // 0.2 (DAPO clip-higher: 0.28)
  dualClip?: number | false;  // off; c > 1 bounds the loss of A < 0 tokens by c·|A|
  beta?: number;              // 0: KL coefficient (needs refLogprobs when > 0)
  kl?: GrpoKl;                // 'k3'
  temperature?: number;       // 1
  aggregation?: GrpoAggregation;  // 'token-mean'
  normLength?: number;        // required for 'seq-mean-token-sum-norm'
  computeEntropy?: boolean;   // false
  chunkTokens?: number;       // rows of logits per chunk (0: automatic, ~128 MB)
}

export interface GrpoLossArgs {
  hidden: Tensor;        // [N, H] final hidden states predicting targets (already shifted)
  weight: Tensor;        // [V, H] lm_head
  bias?: Tensor | null;  // [V]
  targets: Tensor;       // i32 [N]
  advantages: Tensor;    // f32 [N]
  mask: Tensor;          // f32 (or bool) [N], 1 = token gets loss; other values >= 0 weight the token
  seqIndex: Tensor;      // i32 [N], in [0, numSeqs)
  numSeqs: number;
  oldLogprobs?: Tensor | null;  // [N]; default: current logp detached (ratio 1)
  refLogprobs?: Tensor | null;  // [N]; needed when beta > 0
  config?: GrpoConfig;
}

export interface GrpoStats {
  loss: number; pgLoss: number; klLoss: number;
  clipFracLow: number; clipFracHigh: number; clipFracDual: number;
  approxKl: number;   // mean ½(logp − old)² over unmasked tokens
  klRef: number;      // mean kl(logp, ref) (0 without ref)
  meanRatio: number;
  entropy?: number;   // when computeEntropy
  tokens: number;     // Σ mask
}

const KL_CODES: Record<GrpoKl, number> = { k1: 0, k2: 1, k3: 2 };
const AGG_CODES: Record<GrpoAggregation, number> = {
  'token-mean': 0, 'seq-mean-token-mean': 1, 'seq-mean-token-sum': 2, 'seq-mean-token-sum-norm': 3,
};
const NUM_STATS = 11;

function checkModel(op: string, hiddenIn: unknown, weightIn: unknown, biasIn: unknown, targetsIn: unknown) {
  const hidden = checkTensor(hiddenIn, op, 'hidden'), weight = checkTensor(weightIn, op, 'weight');
  const targets = checkTensor(targetsIn, op, 'targets');
  const bias = biasIn == null ? null : checkTensor(biasIn, op, 'bias');
  checkFloat(op, 'hidden', hidden);
  if (hidden.ndim !== 2) throw new Error(`${op}: hidden ${shapeStr(hidden.shape)} must be [N, H]`);
  const [N, H] = hidden.shape;
  if (weight.ndim !== 2 || weight.shape[1] !== H) throw new Error(`${op}: weight ${shapeStr(weight.shape)} must be [V, ${H}] for hidden ${shapeStr(hidden.shape)}`);
  if (weight.dtype !== hidden.dtype) throw new Error(`${op}: weight is ${weight.dtype} but hidden is ${hidden.dtype}; they must match`);
  const V = weight.shape[0];
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== V || bias.dtype !== hidden.dtype)) {
    throw new Error(`${op}: bias ${bias.dtype} ${shapeStr(bias.shape)} must be ${hidden.dtype} [${V}]`);
  }
  if (targets.dtype !== 'i32') throw new Error(`${op}: targets must be i32, got ${targets.dtype}`);
  if (targets.ndim !== 1 || targets.shape[0] !== N) throw new Error(`${op}: targets ${shapeStr(targets.shape)} must be [${N}] (one per row of hidden ${shapeStr(hidden.shape)})`);
  checkSameDevice(op, ...[hidden, weight, targets, ...(bias ? [bias] : [])]);
  return { hidden, weight, bias, targets, N, H, V };
}

/** A per-token [N] vector as a contiguous tensor of dtype `acc` (a new tensor the caller disposes). */
function perToken(op: string, name: string, x: unknown, N: number, acc: 'f32' | 'f64' | 'i32', like: Tensor): Tensor {
  const t = checkTensor(x, op, name);
  checkSameDevice(op, like, t);
  if (t.ndim !== 1 || t.shape[0] !== N) throw new Error(`${op}: ${name} ${shapeStr(t.shape)} must be [${N}] (one per row of hidden)`);
  if (acc === 'i32' && t.dtype !== 'i32') throw new Error(`${op}: ${name} must be i32, got ${t.dtype}`);
  const okMask = name === 'mask' && t.dtype === 'bool';  // a bool mask is taken as 0/1
  if (acc !== 'i32' && !okMask && t.dtype !== 'f32' && t.dtype !== 'f64' && t.dtype !== 'bf16' && t.dtype !== 'f16') {
    throw new Error(`${op}: ${name} must be a float tensor${name === 'mask' ? ' (or bool)' : ''}, got ${t.dtype}`);
  }
  return noGrad(() => (t.dtype === acc ? t.contiguous() : t.to(acc)));
}

/** The fused GRPO loss; differentiable in hidden, weight and bias. See the file comment. */
export function grpoLoss(args: GrpoLossArgs): { loss: Tensor; stats: GrpoStats } {
  const op = 'grpoLoss';
  if (args == null || typeof args !== 'object') throw new Error(`${op}: expected an arguments object`);
  const { hidden, weight, bias, targets, N, H, V } = checkModel(op, args.hidden, args.weight, args.bias, args.targets);
  const cfg = args.config ?? {};
  const epsLow = cfg.epsLow ?? 0.2, epsHigh = cfg.epsHigh ?? 0.2, beta = cfg.beta ?? 0;
  const dualClip = cfg.dualClip === false || cfg.dualClip == null ? 0 : cfg.dualClip;
  const kl = cfg.kl ?? 'k3', aggregation = cfg.aggregation ?? 'token-mean', temperature = cfg.temperature ?? 1;
  if (!(kl in KL_CODES)) throw new Error(`${op}: kl must be 'k1', 'k2' or 'k3', got '${kl}'`);
  if (!(aggregation in AGG_CODES)) throw new Error(`${op}: aggregation must be one of ${Object.keys(AGG_CODES).join(', ')}; got '${aggregation}'`);
  if (aggregation === 'seq-mean-token-sum-norm' && cfg.normLength == null) {
    throw new Error(`${op}: aggregation 'seq-mean-token-sum-norm' needs config.normLength (the constant each sequence's token sum is divided by)`);
  }
  const normLength = cfg.normLength ?? 1;
  if (!Number.isInteger(args.numSeqs) || args.numSeqs < 1) throw new Error(`${op}: numSeqs must be an integer >= 1, got ${args.numSeqs}`);
  if (beta > 0 && args.refLogprobs == null) throw new Error(`${op}: beta = ${beta} > 0 needs refLogprobs (the reference policy's log-probs)`);
  const acc = hidden.dtype === 'f64' ? 'f64' : 'f32';
  const owned: Tensor[] = [];
  const own = (t: Tensor) => { owned.push(t); return t; };
  try {
    const adv = own(perToken(op, 'advantages', args.advantages, N, acc, hidden));
    const mask = own(perToken(op, 'mask', args.mask, N, acc, hidden));
    const seq = own(perToken(op, 'seqIndex', args.seqIndex, N, 'i32', hidden));
    const old = args.oldLogprobs == null ? null : own(perToken(op, 'oldLogprobs', args.oldLogprobs, N, acc, hidden));
    const ref = args.refLogprobs == null ? null : own(perToken(op, 'refLogprobs', args.refLogprobs, N, acc, hidden));
    const hc = own(noGrad(() => hidden.contiguous())), wc = own(noGrad(() => weight.contiguous()));
    const bc = bias ? own(noGrad(() => bias.contiguous())) : null;
    const tc = own(noGrad(() => targets.contiguous()));
    const logprobs = own(Tensor.empty([N], acc, hidden.ordinal));
    const entropy = cfg.computeEntropy ? own(Tensor.empty([N], acc, hidden.ordinal)) : null;
    const stats = own(Tensor.empty([NUM_STATS], 'f64', -1));
    const dH = own(Tensor.empty([N, H], acc, hidden.ordinal));
    const dW = own(Tensor.empty([V, H], acc, hidden.ordinal));
    const dB = bias ? own(Tensor.empty([V], acc, hidden.ordinal)) : null;
    native.grpoLoss(hc.arg(op), wc.arg(op), bc ? bc.arg(op) : null, tc.arg(op), adv.arg(op), mask.arg(op), seq.arg(op),
      old ? old.arg(op) : null, ref ? ref.arg(op) : null, logprobs.arg(op), entropy ? entropy.arg(op) : null,
      stats.arg(op), dH.arg(op), dW.arg(op), dB ? dB.arg(op) : null,
      args.numSeqs, epsLow, epsHigh, dualClip, beta, KL_CODES[kl], temperature, AGG_CODES[aggregation], normLength,
      cfg.chunkTokens ?? 0);
    const s = Array.from(stats.data() as Float64Array);
    const out: GrpoStats = {
      loss: s[0], pgLoss: s[1], klLoss: s[2], clipFracLow: s[3], clipFracHigh: s[4], clipFracDual: s[5],
      approxKl: s[6], klRef: s[7], meanRatio: s[8], tokens: s[10],
    };
    if (cfg.computeEntropy) out.entropy = s[9];
    const loss = tensor(s[0], { dtype: acc, device: hidden.device });
    const inputs = [hidden, weight, bias];
    record(op, inputs, [loss], ([g], saved) => {
      const scale = g!.item();
      return [0, 1, 2].map((i) => {
        if (!inputs[i]) return null;
        const d = saved[i]!;
        // Upstream gradient 1 (the usual loss.backward()): hand back an alias of the saved
        // gradient instead of a copy, so a [V, H] gradient is not duplicated.
        const scaled = scale === 1 ? d.viewAs(d.shape.slice(), d.strides.slice(), d.offset) : d.mul(scale);
        if (scaled.dtype === inputs[i]!.dtype) return scaled;
        const cast = scaled.to(inputs[i]!.dtype);
        scaled.dispose();
        return cast;
      });
    }, [dH, dW, ...(dB ? [dB] : [])]);
    return { loss, stats: out };
  } finally {
    for (const t of owned) t.dispose();
  }
}

/** Per-token log-probabilities (and entropy) of the targets, no gradient: the same chunked pass,
 *  for the old and reference policies. */
export function tokenLogprobs(args: {
  hidden: Tensor; weight: Tensor; bias?: Tensor | null; targets: Tensor; temperature?: number;
  computeEntropy?: boolean; chunkTokens?: number;
}): { logprobs: Tensor; entropy?: Tensor } {
  const op = 'tokenLogprobs';
  if (args == null || typeof args !== 'object') throw new Error(`${op}: expected an arguments object`);
  const { hidden, weight, bias, targets, N } = checkModel(op, args.hidden, args.weight, args.bias, args.targets);
  const acc = hidden.dtype === 'f64' ? 'f64' : 'f32';
  const owned: Tensor[] = [];
  try {
    const hc = noGrad(() => hidden.contiguous()), wc = noGrad(() => weight.contiguous());
    owned.push(hc, wc);
    const bc = bias ? noGrad(() => bias.contiguous()) : null;
    if (bc) owned.push(bc);
    const tc = noGrad(() => targets.contiguous());
    owned.push(tc);
    const logprobs = Tensor.empty([N], acc, hidden.ordinal);
    const entropy = args.computeEntropy ? Tensor.empty([N], acc, hidden.ordinal) : undefined;
    try {
      native.tokenLogprobs(hc.arg(op), wc.arg(op), bc ? bc.arg(op) : null, tc.arg(op), logprobs.arg(op),
        entropy ? entropy.arg(op) : null, args.temperature ?? 1, args.chunkTokens ?? 0);
    } catch (e) {
      logprobs.dispose();
      entropy?.dispose();
      throw e;
    }
    return entropy ? { logprobs, entropy } : { logprobs };
  } finally {
    for (const t of owned) t.dispose();
  }
}
