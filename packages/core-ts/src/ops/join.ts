// cat, stack and split. cat writes each input into a narrow view of one output with the
// native strided copy; split returns views (no copy). Backward of cat narrows the gradient.
import { Tensor, shapeStr } from '../tensor.js';
import { record } from '../autograd/record.js';
import { checkSameDevice, checkTensor, normDim } from './helpers.js';

export function cat(tensors: Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0) throw new Error('cat: expected a non-empty array of tensors');
  tensors.forEach((t, i) => checkTensor(t, 'cat', `tensors[${i}]`));
  const first = tensors[0];
  checkSameDevice('cat', ...tensors);
  const d = normDim('cat', dim, first.ndim);
  for (const [i, t] of tensors.entries()) {
    if (t.dtype !== first.dtype) throw new Error(`cat: tensors[${i}] is ${t.dtype} but tensors[0] is ${first.dtype}`);
    if (t.ndim !== first.ndim || t.shape.some((s, k) => k !== d && s !== first.shape[k])) {
      throw new Error(`cat: tensors[${i}] ${shapeStr(t.shape)} does not match tensors[0] ${shapeStr(first.shape)} outside dim ${dim}`);
    }
  }
  const shape = first.shape.slice();
  shape[d] = tensors.reduce((n, t) => n + t.shape[d], 0);
  const out = Tensor.empty(shape, first.dtype, first.ordinal);
  const sizes: number[] = [];
  let off = 0;
  for (const t of tensors) {
    const region = out.viewAs(
      shape.map((s, k) => (k === d ? t.shape[d] : s)), out.strides.slice(), off * out.strides[d]);
    region.copy_(t);
    region.dispose();
    sizes.push(t.shape[d]);
    off += t.shape[d];
  }
  record('cat', tensors, [out], ([g]) => {
    let o = 0;
    return sizes.map((n) => { const s = g!.narrow(d, o, n); o += n; return s; });
  });
  return out;
}

export function stack(tensors: Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0) throw new Error('stack: expected a non-empty array of tensors');
  tensors.forEach((t, i) => checkTensor(t, 'stack', `tensors[${i}]`));
  for (const [i, t] of tensors.entries()) {
    if (t.shape.length !== tensors[0].shape.length || t.shape.some((s, k) => s !== tensors[0].shape[k])) {
      throw new Error(`stack: tensors[${i}] ${shapeStr(t.shape)} differs from tensors[0] ${shapeStr(tensors[0].shape)}`);
    }
  }
  const d = normDim('stack', dim, tensors[0].ndim + 1);
  const parts = tensors.map((t) => t.unsqueeze(d));
  const out = cat(parts, d);
  for (const p of parts) p.dispose();
  return out;
}

/** Splits along dim into chunks of `size` (last may be smaller) or of the given sizes. */
export function split(x: Tensor, sizes: number | number[], dim = 0): Tensor[] {
  checkTensor(x, 'split', 'x');
  const d = normDim('split', dim, x.ndim);
  const n = x.shape[d];
  let list: number[];
  if (typeof sizes === 'number') {
    if (!Number.isInteger(sizes) || sizes <= 0) throw new Error(`split: size must be a positive integer, got ${sizes}`);
    list = [];
    for (let o = 0; o < n; o += sizes) list.push(Math.min(sizes, n - o));
  } else {
    list = sizes.slice();
    if (list.some((s) => !Number.isInteger(s) || s < 0) || list.reduce((a, b) => a + b, 0) !== n) {
      throw new Error(`split: sizes ${JSON.stringify(sizes)} must be non-negative integers summing to ${n} (dim ${dim} of ${shapeStr(x.shape)})`);
    }
  }
  let o = 0;
  return list.map((s) => { const v = x.narrow(d, o, s); o += s; return v; });
}
