// Tensor: metadata in TypeScript (shape, strides, offset, dtype, device), data in a native
// Storage. Views share storage; every op lives in src/ops/<op>.ts and is attached to the
// prototype there (declaration merging), so this file stays the data structure only.
import type { ViewArg } from '@fovea/native';
import native from '@fovea/native';
import { type DType, DTYPE_CODES, DTYPE_SIZES, bf16BitsToF32, f16BitsToF32 } from './dtype.js';
import { deviceName } from './device.js';
import { Storage } from './storage.js';
import { trackTensor, untrackTensor } from './memory.js';
import type { Node } from './autograd/node.js';

/** Nested JS arrays as returned by toArray(). */
export type NestedArray = number | boolean | NestedArray[];
export type HostArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

// Backstop for tensors dropped without dispose(): keeps the live-tensor count honest. The
// native handle's own finalizer frees the memory.
const finalizer = new FinalizationRegistry<{ ordinal: number; storage: Storage }>((h) => {
  untrackTensor(null, h.ordinal);
  h.storage.release();
});

let nextId = 1;
/** The id the next tensor will get (ids only grow). */
export function nextTensorId(): number { return nextId; }

export function contiguousStrides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) { st[i] = s; s *= shape[i]; }
  return st;
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export class Tensor {
  readonly __isTensor = true;
  readonly id = nextId++;
  readonly shape: number[];
  readonly strides: number[];
  readonly offset: number;
  readonly dtype: DType;
  readonly storage: Storage;
  /** Gradient accumulated by backward() (leaves only). */
  grad: Tensor | null = null;
  /** The node that produced this tensor (null for leaves and tensors without history). */
  gradFn: Node | null = null;
  /** Which output of gradFn this tensor is. */
  outputIndex = 0;
  private _requiresGrad = false;
  private disposed = false;
  private readonly token: object = {};

  /** Low level: wraps storage (retaining it). Use the creation functions instead. */
  constructor(storage: Storage, shape: number[], strides: number[], offset: number, dtype: DType) {
    this.storage = storage;
    this.shape = shape;
    this.strides = strides;
    this.offset = offset;
    this.dtype = dtype;
    storage.retain();
    trackTensor(this, storage.ordinal);
    finalizer.register(this, { ordinal: storage.ordinal, storage }, this.token);
  }

  /** Allocates a contiguous tensor whose contents are unspecified (ops fill their outputs). */
  static empty(shape: readonly number[], dtype: DType, ordinal: number): Tensor {
    for (const s of shape) {
      if (!Number.isInteger(s) || s < 0) throw new Error(`empty: invalid shape ${shapeStr(shape)}`);
    }
    const n = numelOf(shape);
    const storage = new Storage(ordinal, n * DTYPE_SIZES[dtype]);
    return new Tensor(storage, shape.slice(), contiguousStrides(shape), 0, dtype);
  }

  get device(): string { return deviceName(this.storage.ordinal); }
  get ordinal(): number { return this.storage.ordinal; }
  get ndim(): number { return this.shape.length; }
  get size(): number { return numelOf(this.shape); }
  /** Alias of size (number of elements). */
  numel(): number { return numelOf(this.shape); }
  get isDisposed(): boolean { return this.disposed; }
  get isLeaf(): boolean { return this.gradFn === null; }

  get requiresGrad(): boolean { return this._requiresGrad; }
  set requiresGrad(v: boolean) {
    if (v && !(this.dtype === 'f32' || this.dtype === 'f64' || this.dtype === 'bf16' || this.dtype === 'f16')) {
      throw new Error(`requiresGrad: only float tensors can require gradients, got ${this.dtype}`);
    }
    if (!v && this.gradFn) throw new Error('requiresGrad: cannot turn off on a non-leaf tensor; use detach()');
    this._requiresGrad = v;
  }
  /** Sets requiresGrad (for chaining). */
  requiresGrad_(v = true): this { this.requiresGrad = v; return this; }

  isContiguous(): boolean {
    let s = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== s) return false;
      s *= this.shape[i];
    }
    return true;
  }

  /** Throws if disposed; every op calls this on its inputs. */
  assertAlive(op: string): void {
    if (this.disposed) throw new Error(`${op}: tensor ${shapeStr(this.shape)} ${this.dtype} was disposed`);
  }

  /** The view descriptor the native bindings take. */
  arg(op = 'op'): ViewArg {
    this.assertAlive(op);
    return {
      storage: this.storage.handle,
      dtype: DTYPE_CODES[this.dtype],
      shape: this.shape,
      strides: this.strides,
      offset: this.offset,
    };
  }

  /** Low level: a new Tensor over the same storage with other metadata (no autograd). */
  viewAs(shape: number[], strides: number[], offset: number, dtype: DType = this.dtype): Tensor {
    this.assertAlive('view');
    return new Tensor(this.storage, shape, strides, offset, dtype);
  }

  /** Releases this tensor's hold on its storage (freed when no view remains) and its graph. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    finalizer.unregister(this.token);
    untrackTensor(this, this.storage.ordinal);
    this.storage.release();
    if (this.gradFn) { this.gradFn.unref(); this.gradFn = null; }
  }

  /** Raw bytes of the elements in row-major order (a copy). */
  rawBytes(): Uint8Array {
    this.assertAlive('rawBytes');
    const esize = DTYPE_SIZES[this.dtype];
    if (this.isContiguous()) {
      return new Uint8Array(native.storageRead(this.storage.handle, this.offset * esize, this.size * esize));
    }
    const tmp = Tensor.empty(this.shape, this.dtype, this.ordinal);
    try {
      native.copy(this.arg('rawBytes'), tmp.arg('rawBytes'));
      return new Uint8Array(native.storageRead(tmp.storage.handle, 0, tmp.size * esize));
    } finally {
      tmp.dispose();
    }
  }

  /** A copy of the elements as a typed array (bf16/f16 widened to Float32Array, i64 as
   * BigInt64Array, bool as Uint8Array). Synchronizes with the device. */
  data(): HostArray {
    const bytes = this.rawBytes();
    const buf = bytes.buffer;
    switch (this.dtype) {
      case 'f32': return new Float32Array(buf);
      case 'f64': return new Float64Array(buf);
      case 'i32': return new Int32Array(buf);
      case 'i64': return new BigInt64Array(buf);
      case 'bool': return bytes;
      case 'bf16': {
        const u = new Uint16Array(buf), out = new Float32Array(u.length);
        for (let i = 0; i < u.length; i++) out[i] = bf16BitsToF32(u[i]);
        return out;
      }
      case 'f16': {
        const u = new Uint16Array(buf), out = new Float32Array(u.length);
        for (let i = 0; i < u.length; i++) out[i] = f16BitsToF32(u[i]);
        return out;
      }
    }
  }

  /** Elements as plain JS numbers (i64 converted with Number()), row-major. */
  dataNumbers(): number[] {
    const d = this.data();
    const out = new Array<number>(d.length);
    if (d instanceof BigInt64Array) for (let i = 0; i < d.length; i++) out[i] = Number(d[i]);
    else for (let i = 0; i < d.length; i++) out[i] = d[i] as number;
    return out;
  }

  /** Nested JS arrays (a copy); bool gives booleans. */
  toArray(): NestedArray {
    const flat = this.dataNumbers();
    const isBool = this.dtype === 'bool';
    const build = (dim: number, base: number): NestedArray => {
      if (dim === this.shape.length) return isBool ? flat[base] !== 0 : flat[base];
      const inner = numelOf(this.shape.slice(dim + 1));
      const out: NestedArray[] = [];
      for (let i = 0; i < this.shape[dim]; i++) out.push(build(dim + 1, base + i * inner));
      return out;
    };
    return build(0, 0);
  }

  /** The single element of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`item: tensor has ${this.size} elements ${shapeStr(this.shape)}, expected 1`);
    return this.dataNumbers()[0];
  }

  toString(): string {
    return `Tensor(${shapeStr(this.shape)}, ${this.dtype}, ${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}
