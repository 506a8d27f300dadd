// Reductions over any set of dimensions, with keepdim: sum, mean, max/min (values and
// indices), argmax/argmin, logsumexp, var. The reduced dimensions are moved last and made
// contiguous, so one native kernel (a reduction over the last axis of [rows, n]) serves all.
import native from '@fovea/native';
import { type DType, isFloat } from '../dtype.js';
import { Tensor, numelOf } from '../tensor.js';
import { record } from '../autograd/record.js';
import { noGrad } from '../autograd/grad_mode.js';
import { REDUCE } from '../native/opcodes.js';
import { arange } from './creation.js';
import { checkFloat, checkTensor, normDim } from './helpers.js';
import { where } from './elementwise.js';

export type Dims = number | number[] | null | undefined;

declare module '../tensor.js' {
  interface Tensor {
    sum(dims?: Dims, keepdim?: boolean): Tensor;
    mean(dims?: Dims, keepdim?: boolean): Tensor;
    max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
    min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
    argmax(dim: number, keepdim?: boolean): Tensor;
    argmin(dim: number, keepdim?: boolean): Tensor;
    logsumexp(dims?: Dims, keepdim?: boolean): Tensor;
    var(dims?: Dims, opts?: { keepdim?: boolean; correction?: number }): Tensor;
  }
}

function normDims(op: string, dims: Dims, ndim: number): number[] {
  if (dims === null || dims === undefined) return [...Array(ndim).keys()];
  const list = (Array.isArray(dims) ? dims : [dims]).map((d) => normDim(op, d, ndim));
  if (new Set(list).size !== list.length) throw new Error(`${op}: repeated dim in ${JSON.stringify(dims)}`);
  return list.sort((a, b) => a - b);
}

interface Plan { rows: Tensor; n: number; outShape: number[]; keptShape: number[] }

/** Moves `dims` last and flattens to a contiguous [rows, n]. */
function plan(x: Tensor, dims: number[], keepdim: boolean, op: string): Plan {
  const rest = [...Array(x.ndim).keys()].filter((d) => !dims.includes(d));
  const n = numelOf(dims.map((d) => x.shape[d]));
  const keptShape = x.shape.map((s, d) => (dims.includes(d) ? 1 : s));
  const outShape = keepdim ? keptShape : rest.map((d) => x.shape[d]);
  const rows = noGrad(() => {
    const p = x.permute([...rest, ...dims]);
    const c = p.contiguous();
    const r = c.reshape([numelOf(rest.map((d) => x.shape[d])), n]);
    p.dispose(); c.dispose();
    return r;
  });
  void op;
  return { rows, n, outShape, keptShape };
}

function runReduce(op: keyof typeof REDUCE, x: Tensor, dims: number[], keepdim: boolean, wantValues: boolean, wantIdx: boolean) {
  const p = plan(x, dims, keepdim, op);
  const values = wantValues ? Tensor.empty(p.outShape, x.dtype, x.ordinal) : null;
  const indices = wantIdx ? Tensor.empty(p.outShape, 'i64', x.ordinal) : null;
  native.reduceLast(REDUCE[op], p.rows.arg(op), values ? values.arg(op) : null, indices ? indices.arg(op) : null);
  p.rows.dispose();
  return { values, indices, keptShape: p.keptShape, n: p.n };
}

export function sum(a: Tensor, dims?: Dims, keepdim = false): Tensor {
  const x = checkTensor(a, 'sum', 'x');
  // Integer and bool sums accumulate in i64 (as PyTorch).
  const src = isFloat(x.dtype) || x.dtype === 'i64' ? x : noGrad(() => x.to('i64'));
  const d = normDims('sum', dims, x.ndim);
  const { values, keptShape } = runReduce('sum', src, d, keepdim, true, false);
  if (src !== x) src.dispose();
  const inShape = x.shape.slice();
  record('sum', [x], [values!], ([g]) => [g!.reshape(keptShape).expand(inShape)]);
  return values!;
}

export function mean(a: Tensor, dims?: Dims, keepdim = false): Tensor {
  const x = checkTensor(a, 'mean', 'x');
  checkFloat('mean', 'x', x);
  const d = normDims('mean', dims, x.ndim);
  const { values, keptShape, n } = runReduce('mean', x, d, keepdim, true, false);
  const inShape = x.shape.slice();
  record('mean', [x], [values!], ([g]) => [g!.reshape(keptShape).expand(inShape).mul(1 / n)]);
  return values!;
}

function extremum(op: 'max' | 'min', a: Tensor, dim: number, keepdim: boolean) {
  const x = checkTensor(a, op, 'x');
  const d = normDim(op, dim, x.ndim);
  if (x.ndim > 0 && x.shape[d] === 0) throw new Error(`${op}: cannot reduce over an empty dimension ${dim} of size 0`);
  const { values, indices, keptShape } = runReduce(op, x, x.ndim ? [d] : [], keepdim, true, true);
  const inShape = x.shape.slice();
  // The gradient flows to the selected element only.
  record(op, [x], [values!], ([g], [idx]) => {
    const pos = arange(0, inShape[d] ?? 1, 1, { device: g!.device }).reshape(inShape.map((s, i) => (i === d ? s : 1)));
    const mask = pos.eq(idx.reshape(keptShape));
    return [where(mask, g!.reshape(keptShape), 0)];
  }, [indices!]);
  return { values: values!, indices: indices! };
}

export const max = (a: Tensor, dim: number, keepdim = false) => extremum('max', a, dim, keepdim);
export const min = (a: Tensor, dim: number, keepdim = false) => extremum('min', a, dim, keepdim);

function argext(op: 'argmax' | 'argmin', a: Tensor, dim: number, keepdim: boolean): Tensor {
  const x = checkTensor(a, op, 'x');
  const d = normDim(op, dim, x.ndim);
  if (x.ndim > 0 && x.shape[d] === 0) throw new Error(`${op}: cannot reduce over an empty dimension ${dim} of size 0`);
  return runReduce(op, x, x.ndim ? [d] : [], keepdim, false, true).indices!;
}
export const argmax = (a: Tensor, dim: number, keepdim = false) => argext('argmax', a, dim, keepdim);
export const argmin = (a: Tensor, dim: number, keepdim = false) => argext('argmin', a, dim, keepdim);

export function logsumexp(a: Tensor, dims?: Dims, keepdim = false): Tensor {
  const x = checkTensor(a, 'logsumexp', 'x');
  checkFloat('logsumexp', 'x', x);
  const d = normDims('logsumexp', dims, x.ndim);
  const { values, keptShape } = runReduce('logsumexp', x, d, keepdim, true, false);
  record('logsumexp', [x], [values!], ([g], [sx, out]) =>
    [g!.reshape(keptShape).mul(sx.sub(out.reshape(keptShape)).exp())], [x, values!]);
  return values!;
}

/** Variance: Σ(x − mean)² / (N − correction); correction 1 (default) is the unbiased estimate. */
export function variance(a: Tensor, dims?: Dims, opts: { keepdim?: boolean; correction?: number } = {}): Tensor {
  const x = checkTensor(a, 'var', 'x');
  checkFloat('var', 'x', x);
  const d = normDims('var', dims, x.ndim);
  const n = numelOf(d.map((i) => x.shape[i]));
  const correction = opts.correction ?? 1;
  const m = x.mean(d, true);
  const diff = x.sub(m);
  const sq = diff.square();
  const s = sq.sum(d, opts.keepdim ?? false);
  const out = s.mul(1 / Math.max(n - correction, 0));
  for (const t of [m, diff, sq, s]) t.dispose();
  return out;
}

Tensor.prototype.sum = function (dims?: Dims, keepdim = false) { return sum(this, dims, keepdim); };
Tensor.prototype.mean = function (dims?: Dims, keepdim = false) { return mean(this, dims, keepdim); };
Tensor.prototype.max = function (dim: number, keepdim = false) { return max(this, dim, keepdim); };
Tensor.prototype.min = function (dim: number, keepdim = false) { return min(this, dim, keepdim); };
Tensor.prototype.argmax = function (dim: number, keepdim = false) { return argmax(this, dim, keepdim); };
Tensor.prototype.argmin = function (dim: number, keepdim = false) { return argmin(this, dim, keepdim); };
Tensor.prototype.logsumexp = function (dims?: Dims, keepdim = false) { return logsumexp(this, dims, keepdim); };
Tensor.prototype.var = function (dims?: Dims, opts = {}) { return variance(this, dims, opts); };

export type { DType };
