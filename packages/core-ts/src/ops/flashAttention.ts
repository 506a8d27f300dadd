// Flash attention over packed variable-length sequences (FlashAttention's varlen semantics),
// differentiable in q, k and v. Kernels: packages/native-cuda/src/ops/flash_attn/ (CPU: tiled
// online softmax, never an [S, S] matrix; CUDA in the sidecar); the binding validates shapes,
// dtypes, devices and the offsets themselves (flash_attn_napi.cpp).
//   q [totalQ, Hq, D]; k, v [totalK, Hkv, D]; Hq a multiple of Hkv; query head h reads KV
//   head ⌊h·Hkv/Hq⌋. Sequence b owns rows cuSeqlensQ[b]..cuSeqlensQ[b+1] of q and
//   cuSeqlensK[b]..cuSeqlensK[b+1] of k/v (i32 offsets, B + 1 entries, starting at 0).
//   The causal mask is bottom-right aligned: with sq queries and sk keys, query i sees key j
//   iff j ≤ i + sk − sq (a query block after a cached prefix sees the whole prefix); windows
//   keep j in [i + sk − sq − windowLeft, i + sk − sq + windowRight] (−1: unbounded).
//   out is like q; lse is f32 [Hq, totalQ], the natural-log log-sum-exp of the scaled scores
//   (+∞ for a row that sees no key; its out row is 0). lse is not differentiable.
// The backward recomputes the probabilities from the saved lse (saved: q, k, v, out, lse).
import native from '@fovea/native';
import { Tensor, shapeStr } from '../tensor.js';
import { record } from '../autograd/record.js';
import { noGrad } from '../autograd/grad_mode.js';
import { fromHost } from './creation.js';
import { checkFloat, checkSameDevice, checkTensor } from './helpers.js';

export interface FlashAttentionOptions {
  /** i32 [B + 1] cumulative query offsets, on q's device. */
  cuSeqlensQ: Tensor;
  /** i32 [B + 1] cumulative key offsets, on q's device. */
  cuSeqlensK: Tensor;
  /** At least the longest query sequence. */
  maxSeqlenQ: number;
  /** At least the longest key sequence. */
  maxSeqlenK: number;
  causal?: boolean;
  windowLeft?: number;
  windowRight?: number;
  /** Multiplies q·k before the softmax; default 1/√D. */
  scale?: number;
}

const OP = 'flashAttention';

function intOpt(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 2 ** 31 - 1) {
    throw new Error(`${OP}: opts.${name} must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

export function flashAttention(qIn: Tensor, kIn: Tensor, vIn: Tensor, opts: FlashAttentionOptions): { out: Tensor; lse: Tensor } {
  const q = checkTensor(qIn, OP, 'q'), k = checkTensor(kIn, OP, 'k'), v = checkTensor(vIn, OP, 'v');
  if (!opts || typeof opts !== 'object') throw new Error(`${OP}: opts with cuSeqlensQ, cuSeqlensK, maxSeqlenQ and maxSeqlenK is required`);
  const cuq = checkTensor(opts.cuSeqlensQ, OP, 'opts.cuSeqlensQ'), cuk = checkTensor(opts.cuSeqlensK, OP, 'opts.cuSeqlensK');
  checkFloat(OP, 'q', q);
  for (const [n, t] of [['k', k], ['v', v]] as const) {
    if (t.dtype !== q.dtype) throw new Error(`${OP}: ${n} is ${t.dtype} but q is ${q.dtype}; q, k and v must have the same dtype`);
  }
  checkSameDevice(OP, q, k, v);
  for (const [n, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.ndim !== 3) throw new Error(`${OP}: ${n} must be 3-D [total, heads, headDim], got ${shapeStr(t.shape)}`);
  }
  for (const [n, t] of [['cuSeqlensQ', cuq], ['cuSeqlensK', cuk]] as const) {
    if (t.dtype !== 'i32') throw new Error(`${OP}: opts.${n} must be an i32 tensor, got ${t.dtype}`);
    if (t.ordinal !== q.ordinal) throw new Error(`${OP}: opts.${n} is on ${t.device} but q is on ${q.device}; the offsets must be on q's device`);
  }
  const D = q.shape[2];
  if (k.shape[2] !== D || v.shape[2] !== D) {
    throw new Error(`${OP}: q, k and v must have the same head dim, got q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)}`);
  }
  const maxSeqlenQ = intOpt('maxSeqlenQ', opts.maxSeqlenQ, 0), maxSeqlenK = intOpt('maxSeqlenK', opts.maxSeqlenK, 0);
  const causal = opts.causal ?? false;
  if (typeof causal !== 'boolean') throw new Error(`${OP}: opts.causal must be a boolean, got ${String(causal)}`);
  const windowLeft = intOpt('windowLeft', opts.windowLeft ?? -1, -1), windowRight = intOpt('windowRight', opts.windowRight ?? -1, -1);
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new Error(`${OP}: opts.scale must be a finite number, got ${String(scale)}`);

  const [qc, kc, vc, cq, ck] = noGrad(() => [q, k, v, cuq, cuk].map((t) => t.contiguous()));
  const out = Tensor.empty(q.shape, q.dtype, q.ordinal);
  const lse = Tensor.empty([q.shape[1], q.shape[0]], 'f32', q.ordinal);
  const scalars = [maxSeqlenQ, maxSeqlenK, causal ? 1 : 0, windowLeft, windowRight, scale];
  try {
    native.flashAttnFwd(qc.arg(OP), kc.arg(OP), vc.arg(OP), cq.arg(OP), ck.arg(OP), out.arg(OP), lse.arg(OP), ...scalars);
  } catch (e) {
    for (const t of [qc, kc, vc, cq, ck, out, lse]) t.dispose();
    throw e;
  }
  record(OP, [q, k, v], [out], ([g], [sq, sk, sv, so, sl, scq, sck]) => {
    const gc = g!.contiguous();
    const dq = Tensor.empty(sq.shape, sq.dtype, sq.ordinal);
    const dk = Tensor.empty(sk.shape, sk.dtype, sk.ordinal);
    const dv = Tensor.empty(sv.shape, sv.dtype, sv.ordinal);
    const b = 'flashAttentionBackward';
    try {
      native.flashAttnBwd(sq.arg(b), sk.arg(b), sv.arg(b), so.arg(b), sl.arg(b), gc.arg(b), scq.arg(b), sck.arg(b),
        dq.arg(b), dk.arg(b), dv.arg(b), ...scalars, 1);
    } finally {
      gc.dispose();
    }
    return [dq, dk, dv];
  }, [qc, kc, vc, out, lse, cq, ck]);
  for (const t of [qc, kc, vc, cq, ck]) t.dispose();
  return { out, lse };
}

export interface AttentionOptions {
  causal?: boolean;
  scale?: number;
}

/**
 * Dense attention over q [B, Sq, Hq, D] and k, v [B, Sk, Hkv, D] (every sequence full
 * length): packs them and calls flashAttention. Returns out [B, Sq, Hq, D]; differentiable.
 */
export function attention(qIn: Tensor, kIn: Tensor, vIn: Tensor, opts: AttentionOptions = {}): Tensor {
  const q = checkTensor(qIn, 'attention', 'q'), k = checkTensor(kIn, 'attention', 'k'), v = checkTensor(vIn, 'attention', 'v');
  for (const [n, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.ndim !== 4) throw new Error(`attention: ${n} must be 4-D [B, S, H, D], got ${shapeStr(t.shape)}`);
  }
  const [B, Sq, Hq, D] = q.shape, Sk = k.shape[1];
  if (k.shape[0] !== B || v.shape[0] !== B || v.shape[1] !== Sk) {
    throw new Error(`attention: q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)} and v ${shapeStr(v.shape)} must share B, and k and v S`);
  }
  const offsets = (s: number) => fromHost(Array.from({ length: B + 1 }, (_, b) => b * s), [B + 1], 'i32', q.device);
  const cuSeqlensQ = offsets(Sq), cuSeqlensK = offsets(Sk);
  const q3 = q.reshape([B * Sq, Hq, D]), k3 = k.reshape([B * Sk, k.shape[2], k.shape[3]]), v3 = v.reshape([B * Sk, v.shape[2], v.shape[3]]);
  try {
    const { out, lse } = flashAttention(q3, k3, v3, { cuSeqlensQ, cuSeqlensK, maxSeqlenQ: Sq, maxSeqlenK: Sk, causal: opts.causal ?? false, scale: opts.scale });
    lse.dispose();
    const r = out.reshape([B, Sq, Hq, D]);
    out.dispose();
    return r;
  } finally {
    for (const t of [cuSeqlensQ, cuSeqlensK, q3, k3, v3]) t.dispose();
  }
}
