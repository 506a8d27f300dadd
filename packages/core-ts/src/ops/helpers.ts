// Shared checks and shape arithmetic for ops: argument validation with messages that name
// the op, NumPy broadcasting, stride-0 expansion for native calls, reducing a broadcast
// gradient back to an input's shape, and dimension normalization.
import type { ViewArg } from '@fovea/native';
import { DTYPE_CODES } from '../dtype.js';
import { Tensor, shapeStr } from '../tensor.js';

export function checkTensor(x: unknown, op: string, name: string): Tensor {
  if (!(x instanceof Tensor)) throw new Error(`${op}: ${name} must be a Tensor, got ${typeof x}`);
  x.assertAlive(op);
  return x;
}

export function checkSameDevice(op: string, ...ts: Tensor[]): void {
  const d = ts[0].ordinal;
  for (const t of ts) {
    if (t.ordinal !== d) {
      throw new Error(`${op}: tensors are on different devices (${ts[0].device} and ${t.device}); move them with .to(device)`);
    }
  }
}

export function checkFloat(op: string, name: string, t: Tensor): void {
  if (!(t.dtype === 'f32' || t.dtype === 'f64' || t.dtype === 'bf16' || t.dtype === 'f16')) {
    throw new Error(`${op}: ${name} must be a float tensor (f32, f64, bf16, f16), got ${t.dtype}`);
  }
}

/** Normalizes a possibly negative dim for a tensor of rank ndim. */
export function normDim(op: string, dim: number, ndim: number): number {
  const r = Math.max(ndim, 1);
  if (!Number.isInteger(dim) || dim < -r || dim >= r) {
    throw new Error(`${op}: dim ${dim} is out of range for a tensor of rank ${ndim} (expected ${-r}..${r - 1})`);
  }
  return dim < 0 ? dim + r : dim;
}

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1, y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) {
      throw new Error(`${op}: shapes ${shapeStr(a)} and ${shapeStr(b)} cannot be broadcast together (dim ${i}: ${x} vs ${y})`);
    }
    out[i] = x === 1 ? y : x;
  }
  return out;
}

/** The view arg of t broadcast to shape (stride 0 on expanded dims); no copy. */
export function expandedArg(t: Tensor, shape: readonly number[], op = 'expand'): ViewArg {
  const n = shape.length, k = t.shape.length;
  if (k > n) throw new Error(`${op}: cannot expand ${shapeStr(t.shape)} to ${shapeStr(shape)}`);
  const strides = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const j = i - (n - k);
    if (j < 0) { strides[i] = 0; continue; }
    if (t.shape[j] === shape[i]) strides[i] = t.shape[j] === 1 ? 0 : t.strides[j];
    else if (t.shape[j] === 1) strides[i] = 0;
    else throw new Error(`${op}: cannot expand ${shapeStr(t.shape)} to ${shapeStr(shape)}`);
  }
  t.assertAlive(op);
  return { storage: t.storage.handle, dtype: DTYPE_CODES[t.dtype], shape: shape.slice(), strides, offset: t.offset };
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/** Sums a gradient of a broadcast result back to an input's shape. */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.shape.length - shape.length;
  const dims: number[] = [];
  for (let i = 0; i < g.shape.length; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  const s = dims.length ? g.sum(dims, true) : g;
  return s.reshape(shape.slice());
}

export function checkShapeArg(op: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || !shape.every((s) => Number.isInteger(s) && s >= 0)) {
    throw new Error(`${op}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  return shape.slice();
}
