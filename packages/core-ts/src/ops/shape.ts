// Views and copies: reshape/view, flatten, permute/transpose, narrow/slice, select, expand,
// squeeze/unsqueeze share storage without copying; contiguous, clone, to(dtype), to(device)
// copy. Each records its backward (views route the gradient back to the input's layout).
import native from '@fovea/native';
import { type DType, checkDType } from '../dtype.js';
import { parseDevice } from '../device.js';
import { Tensor, contiguousStrides, numelOf, shapeStr } from '../tensor.js';
import { record } from '../autograd/record.js';
import { noGrad } from '../autograd/grad_mode.js';
import { zeros } from './creation.js';
import { normDim, sumToShape, expandedArg } from './helpers.js';
import { checkInPlace } from './elementwise.js';

declare module '../tensor.js' {
  interface Tensor {
    reshape(shape: number[]): Tensor;
    view(shape: number[]): Tensor;
    flatten(startDim?: number, endDim?: number): Tensor;
    permute(dims: number[]): Tensor;
    transpose(dim0: number, dim1: number): Tensor;
    /** 2-D transpose. */
    t(): Tensor;
    narrow(dim: number, start: number, length: number): Tensor;
    slice(dim: number, start?: number, end?: number, step?: number): Tensor;
    select(dim: number, index: number): Tensor;
    expand(shape: number[]): Tensor;
    squeeze(dim?: number): Tensor;
    unsqueeze(dim: number): Tensor;
    contiguous(): Tensor;
    clone(): Tensor;
    to(target: DType | string): Tensor;
    detach(): Tensor;
    /** In place: copies src (broadcast, cast) into this tensor's elements. Not differentiable. */
    copy_(src: Tensor): Tensor;
  }
}

/** Resolves one -1 and checks the element count. */
function resolveShape(op: string, from: readonly number[], shape: readonly number[]): number[] {
  if (!Array.isArray(shape)) throw new Error(`${op}: shape must be an array`);
  const out = shape.slice();
  const n = numelOf(from);
  let infer = -1, known = 1;
  out.forEach((s, i) => {
    if (s === -1) {
      if (infer >= 0) throw new Error(`${op}: only one dimension can be -1, got ${shapeStr(shape)}`);
      infer = i;
    } else if (!Number.isInteger(s) || s < 0) {
      throw new Error(`${op}: invalid dimension ${s} in ${shapeStr(shape)}`);
    } else known *= s;
  });
  if (infer >= 0) {
    if (known === 0 || n % known !== 0) throw new Error(`${op}: cannot reshape ${shapeStr(from)} to ${shapeStr(shape)}`);
    out[infer] = n / known;
  }
  if (numelOf(out) !== n) {
    throw new Error(`${op}: cannot reshape ${shapeStr(from)} (${n} elements) to ${shapeStr(shape)} (${numelOf(out)} elements)`);
  }
  return out;
}

/** Strides that view `t` as `shape` without copying, or null if impossible. */
function viewStrides(t: Tensor, shape: number[]): number[] | null {
  if (t.isContiguous()) return contiguousStrides(shape);
  // Group old dims into contiguous chunks and split each over the new dims (as PyTorch does).
  const oldShape = t.shape, oldStrides = t.strides;
  const newStrides = new Array<number>(shape.length);
  let viewD = shape.length - 1;
  let chunkBase = oldStrides[oldStrides.length - 1] ?? 1;
  let tensorNumel = 1, viewNumel = 1;
  for (let d = oldShape.length - 1; d >= 0; d--) {
    tensorNumel *= oldShape[d];
    if (d === 0 || (oldShape[d - 1] !== 1 && oldStrides[d - 1] !== tensorNumel * chunkBase)) {
      while (viewD >= 0 && (viewNumel < tensorNumel || shape[viewD] === 1)) {
        newStrides[viewD] = viewNumel * chunkBase;
        viewNumel *= shape[viewD];
        viewD--;
      }
      if (viewNumel !== tensorNumel) return null;
      if (d > 0) { chunkBase = oldStrides[d - 1]; tensorNumel = 1; viewNumel = 1; }
    }
  }
  if (viewD !== -1) return null;
  return newStrides;
}

Tensor.prototype.reshape = function (shape: number[]): Tensor {
  const s = resolveShape('reshape', this.shape, shape);
  const st = viewStrides(this, s);
  let out: Tensor;
  if (st) out = this.viewAs(s, st, this.offset);
  else {
    const c = noGrad(() => this.contiguous());
    out = c.viewAs(s, contiguousStrides(s), 0);
    c.dispose();
  }
  const inShape = this.shape.slice();
  record('reshape', [this], [out], ([g]) => [g!.reshape(inShape)]);
  return out;
};
Tensor.prototype.view = Tensor.prototype.reshape;

Tensor.prototype.flatten = function (startDim = 0, endDim = -1): Tensor {
  if (this.ndim === 0) return this.reshape([1]);
  const a = normDim('flatten', startDim, this.ndim), b = normDim('flatten', endDim, this.ndim);
  if (a > b) throw new Error(`flatten: startDim ${startDim} comes after endDim ${endDim}`);
  const s = [...this.shape.slice(0, a), numelOf(this.shape.slice(a, b + 1)), ...this.shape.slice(b + 1)];
  return this.reshape(s);
};

Tensor.prototype.permute = function (dims: number[]): Tensor {
  if (!Array.isArray(dims) || dims.length !== this.ndim) {
    throw new Error(`permute: expected ${this.ndim} dims for shape ${shapeStr(this.shape)}, got ${JSON.stringify(dims)}`);
  }
  const d = dims.map((x) => normDim('permute', x, this.ndim));
  if (new Set(d).size !== d.length) throw new Error(`permute: repeated dim in ${JSON.stringify(dims)}`);
  const out = this.viewAs(d.map((i) => this.shape[i]), d.map((i) => this.strides[i]), this.offset);
  const inv = new Array<number>(d.length);
  d.forEach((v, i) => { inv[v] = i; });
  record('permute', [this], [out], ([g]) => [g!.permute(inv)]);
  return out;
};

Tensor.prototype.transpose = function (dim0: number, dim1: number): Tensor {
  const a = normDim('transpose', dim0, this.ndim), b = normDim('transpose', dim1, this.ndim);
  const p = this.shape.map((_, i) => i);
  p[a] = b; p[b] = a;
  return this.permute(p);
};

Tensor.prototype.t = function (): Tensor {
  if (this.ndim !== 2) throw new Error(`t: expected a 2-D tensor, got ${shapeStr(this.shape)}`);
  return this.transpose(0, 1);
};

Tensor.prototype.slice = function (dim: number, start = 0, end?: number, step = 1): Tensor {
  const d = normDim('slice', dim, this.ndim);
  const n = this.shape[d];
  if (!Number.isInteger(step) || step < 1) throw new Error(`slice: step must be a positive integer, got ${step}`);
  let s = start < 0 ? start + n : start;
  let e = end === undefined ? n : end < 0 ? end + n : end;
  s = Math.min(Math.max(s, 0), n);
  e = Math.min(Math.max(e, s), n);
  const len = Math.ceil((e - s) / step);
  const shape = this.shape.slice(), strides = this.strides.slice();
  shape[d] = len;
  strides[d] = this.strides[d] * step;
  const out = this.viewAs(shape, strides, this.offset + s * this.strides[d]);
  const inShape = this.shape.slice(), dtype = this.dtype, device = this.device;
  record('slice', [this], [out], ([g]) => {
    const z = zeros(inShape, { dtype, device });
    const region = z.slice(d, s, e, step);
    region.copy_(g!);
    region.dispose();
    return [z];
  });
  return out;
};

Tensor.prototype.narrow = function (dim: number, start: number, length: number): Tensor {
  const d = normDim('narrow', dim, this.ndim);
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > this.shape[d]) {
    throw new Error(`narrow: [${start}, ${start + length}) is out of range for dim ${dim} of size ${this.shape[d]}`);
  }
  return this.slice(d, start, start + length);
};

Tensor.prototype.select = function (dim: number, index: number): Tensor {
  const d = normDim('select', dim, this.ndim);
  const n = this.shape[d];
  const i = index < 0 ? index + n : index;
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new Error(`select: index ${index} is out of range for dim ${dim} of size ${n}`);
  const s = this.narrow(d, i, 1);
  const out = s.squeeze(d);
  s.dispose();
  return out;
};

Tensor.prototype.expand = function (shape: number[]): Tensor {
  const target = shape.map((s, i) => (s === -1 ? this.shape[i - (shape.length - this.ndim)] : s));
  const a = expandedArg(this, target, 'expand');
  const out = this.viewAs(target, a.strides, this.offset);
  const inShape = this.shape.slice();
  record('expand', [this], [out], ([g]) => [sumToShape(g!, inShape)]);
  return out;
};

Tensor.prototype.squeeze = function (dim?: number): Tensor {
  let shape: number[];
  if (dim === undefined) shape = this.shape.filter((s) => s !== 1);
  else {
    const d = normDim('squeeze', dim, this.ndim);
    shape = this.shape.slice();
    if (this.ndim > 0 && shape[d] === 1) shape.splice(d, 1);
  }
  return this.reshape(shape);
};

Tensor.prototype.unsqueeze = function (dim: number): Tensor {
  const d = normDim('unsqueeze', dim, this.ndim + 1);
  const shape = this.shape.slice();
  shape.splice(d, 0, 1);
  return this.reshape(shape);
};

function copyTo(src: Tensor, dtype: DType, ordinal: number, op: string): Tensor {
  const out = Tensor.empty(src.shape, dtype, ordinal);
  if (ordinal === src.ordinal) {
    native.copy(src.arg(op), out.arg(op));
  } else {
    // Across devices: make it contiguous in its dtype on the source, move bytes, then cast.
    const c = src.isContiguous() && src.dtype === dtype ? src : noGrad(() => copyTo(src, dtype, src.ordinal, op));
    const esize = out.storage.nbytes / Math.max(out.size, 1);
    native.storageCopy(out.storage.handle, 0, c.storage.handle, c.offset * esize, out.storage.nbytes);
    if (c !== src) c.dispose();
  }
  return out;
}

Tensor.prototype.contiguous = function (): Tensor {
  if (this.isContiguous()) {
    const out = this.viewAs(this.shape.slice(), this.strides.slice(), this.offset);
    record('contiguous', [this], [out], ([g]) => [g]);
    return out;
  }
  return this.clone();
};

Tensor.prototype.clone = function (): Tensor {
  const out = copyTo(this, this.dtype, this.ordinal, 'clone');
  record('clone', [this], [out], ([g]) => [g]);
  return out;
};

Tensor.prototype.to = function (target: DType | string): Tensor {
  let dtype = this.dtype, ordinal = this.ordinal;
  if (target === 'cpu' || target.startsWith('cuda')) ordinal = parseDevice(target, 'to').ordinal;
  else dtype = checkDType(target, 'to');
  if (dtype === this.dtype && ordinal === this.ordinal) {
    const out = this.viewAs(this.shape.slice(), this.strides.slice(), this.offset);
    record('to', [this], [out], ([g]) => [g]);
    return out;
  }
  const out = copyTo(this, dtype, ordinal, 'to');
  const inDtype = this.dtype, inDevice = this.device;
  record('to', [this], [out], ([g]) => [g!.to(inDtype).to(inDevice)]);
  return out;
};

Tensor.prototype.detach = function (): Tensor {
  return this.viewAs(this.shape.slice(), this.strides.slice(), this.offset);
};

Tensor.prototype.copy_ = function (src: Tensor): Tensor {
  if (!(src instanceof Tensor)) throw new Error('copy_: src must be a Tensor');
  checkInPlace(this, 'copy_');
  if (src.ordinal !== this.ordinal) {
    const moved = noGrad(() => src.to(this.device));
    this.copy_(moved);
    moved.dispose();
    return this;
  }
  native.copy(expandedArg(src, this.shape, 'copy_'), this.arg('copy_'));
  return this;
};
