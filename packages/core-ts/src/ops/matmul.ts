// matmul with torch.matmul's semantics (1-D operands promoted and the added dim dropped,
// batch dimensions broadcast) over one strided batched GEMM; linear(x, W, b) = x·Wᵀ + b.
// Inputs f32/f64/bf16/f16 (both the same dtype); accumulation is f32 (f64 for f64) and the
// result has the inputs' dtype. Transposed operands are passed as strides, not copied.
import type { ViewArg } from '@fovea/native';
import native from '@fovea/native';
import { DTYPE_CODES } from '../dtype.js';
import { Tensor, numelOf, shapeStr } from '../tensor.js';
import { record } from '../autograd/record.js';
import { noGrad } from '../autograd/grad_mode.js';
import { broadcastShapes, checkFloat, checkSameDevice, checkTensor, expandedArg, sumToShape } from './helpers.js';

declare module '../tensor.js' {
  interface Tensor {
    matmul(b: Tensor): Tensor;
  }
}

/** A [batch, rows, cols] view of t expanded to batchShape + its last two dims, collapsing
 * the batch dims to one stride; null if they cannot be collapsed without a copy. */
function batchView(t: Tensor, batchShape: number[]): ViewArg | null {
  const full = [...batchShape, t.shape[t.ndim - 2], t.shape[t.ndim - 1]];
  const e = expandedArg(t, full, 'matmul');
  const nb = batchShape.length;
  const batch = numelOf(batchShape);
  let stride = 0;
  // Dims of size 1 never matter; the rest must form one arithmetic progression.
  const dims = [...Array(nb).keys()].filter((i) => batchShape[i] !== 1);
  if (dims.length) {
    stride = e.strides[dims[dims.length - 1]];
    let expect = stride * batchShape[dims[dims.length - 1]];
    for (let k = dims.length - 2; k >= 0; k--) {
      const d = dims[k];
      if (stride === 0) { if (e.strides[d] !== 0) return null; continue; }
      if (e.strides[d] !== expect) return null;
      expect *= batchShape[d];
    }
  }
  return { ...e, shape: [batch, full[nb], full[nb + 1]], strides: [stride, e.strides[nb], e.strides[nb + 1]] };
}

function bmm(a: Tensor, b: Tensor): Tensor {
  const batchShape = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const M = a.shape[a.ndim - 2], K = a.shape[a.ndim - 1], N = b.shape[b.ndim - 1];
  const out = Tensor.empty([...batchShape, M, N], a.dtype, a.ordinal);
  const owned: Tensor[] = [];
  const viewOf = (t: Tensor): ViewArg => {
    const v = batchView(t, batchShape);
    if (v) return v;
    const c = noGrad(() => t.expand([...batchShape, t.shape[t.ndim - 2], t.shape[t.ndim - 1]]).contiguous());
    owned.push(c);
    return batchView(c, batchShape)!;
  };
  const av = viewOf(a), bv = viewOf(b);
  const batch = numelOf(batchShape);
  const ov: ViewArg = {
    storage: out.storage.handle, dtype: DTYPE_CODES[out.dtype], shape: [batch, M, N], strides: [M * N, N, 1], offset: 0,
  };
  void K;
  native.gemm(av, bv, ov, 1, 0);
  for (const t of owned) t.dispose();
  return out;
}

export function matmul(a: Tensor, b: Tensor): Tensor {
  const x = checkTensor(a, 'matmul', 'a'), y = checkTensor(b, 'matmul', 'b');
  checkSameDevice('matmul', x, y);
  checkFloat('matmul', 'a', x);
  checkFloat('matmul', 'b', y);
  if (x.dtype !== y.dtype) throw new Error(`matmul: a is ${x.dtype} but b is ${y.dtype}; cast one first`);
  if (x.ndim === 0 || y.ndim === 0) throw new Error('matmul: both operands need at least one dimension');
  const K = x.shape[x.ndim - 1];
  const Kb = y.ndim === 1 ? y.shape[0] : y.shape[y.ndim - 2];
  if (K !== Kb) {
    throw new Error(`matmul: inner dimensions differ: ${shapeStr(x.shape)} @ ${shapeStr(y.shape)} (${K} vs ${Kb})`);
  }
  const out = noGrad(() => {
    const x2 = x.ndim === 1 ? x.reshape([1, K]) : x;
    const y2 = y.ndim === 1 ? y.reshape([K, 1]) : y;
    let r = bmm(x2, y2);
    if (x.ndim === 1 || y.ndim === 1) {
      const shape = r.shape.slice();
      if (y.ndim === 1) shape.splice(shape.length - 1, 1);
      if (x.ndim === 1) shape.splice(shape.length - (y.ndim === 1 ? 1 : 2), 1);
      const s = r.reshape(shape);
      r.dispose();
      r = s;
    }
    if (x2 !== x) x2.dispose();
    if (y2 !== y) y2.dispose();
    return r;
  });
  const xs = x.shape.slice(), ys = y.shape.slice();
  record('matmul', [x, y], [out], ([g], [sx, sy]) => {
    // Work in the promoted ≥2-D forms, then restore each input's shape.
    const gx2 = xs.length === 1 ? sx.reshape([1, K]) : sx;
    const gy2 = ys.length === 1 ? sy.reshape([K, 1]) : sy;
    const outShape2 = broadcastShapes('matmul', gx2.shape.slice(0, -2), gy2.shape.slice(0, -2))
      .concat([gx2.shape[gx2.ndim - 2], gy2.shape[gy2.ndim - 1]]);
    const g2 = g!.reshape(outShape2);
    const dx = matmul(g2, gy2.transpose(-1, -2));
    const dy = matmul(gx2.transpose(-1, -2), g2);
    const dxs = xs.length === 1 ? sumToShape(dx, [1, K]).reshape(xs) : sumToShape(dx, xs);
    const dys = ys.length === 1 ? sumToShape(dy, [K, 1]).reshape(ys) : sumToShape(dy, ys);
    return [dxs, dys];
  }, [x, y]);
  return out;
}

/** x [..., in] · weight [out, in]ᵀ + bias [out]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  checkTensor(x, 'linear', 'x');
  checkTensor(weight, 'linear', 'weight');
  if (weight.ndim !== 2) throw new Error(`linear: weight must be 2-D [out, in], got ${shapeStr(weight.shape)}`);
  if (x.shape[x.ndim - 1] !== weight.shape[1]) {
    throw new Error(`linear: x ${shapeStr(x.shape)} has ${x.shape[x.ndim - 1]} features but weight ${shapeStr(weight.shape)} expects ${weight.shape[1]}`);
  }
  if (bias) {
    checkTensor(bias, 'linear', 'bias');
    if (bias.ndim !== 1 || bias.shape[0] !== weight.shape[0]) {
      throw new Error(`linear: bias must be [${weight.shape[0]}], got ${shapeStr(bias.shape)}`);
    }
  }
  const wt = weight.t();
  const y = matmul(x, wt);
  wt.dispose();
  if (!bias) return y;
  const out = y.add(bias);
  y.dispose();
  return out;
}

Tensor.prototype.matmul = function (b: Tensor) { return matmul(this, b); };
