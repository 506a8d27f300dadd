// Creating tensors: from JS data (typed or nested arrays, numbers), zeros/ones/full,
// arange, and seeded random numbers. Random numbers come from a counter-based generator
// (Philox in the native layer): a Generator is a seed plus an offset that advances by the
// number of values drawn, so the same seed gives the same numbers on every run and thread
// count.
import native from '@fovea/native';
import { type DType, DEFAULT_FLOAT, checkDType, isFloat } from '../dtype.js';
import { parseDevice } from '../device.js';
import { Tensor, numelOf, shapeStr } from '../tensor.js';
import { checkShapeArg } from './helpers.js';

export interface CreateOptions {
  dtype?: DType;
  device?: string;
  requiresGrad?: boolean;
}
export interface TensorOptions extends CreateOptions { shape?: number[] }

type Data = number | boolean | bigint | ArrayLike<number> | BigInt64Array | NestedData;
interface NestedData extends Array<Data> {}

function inferFromNested(data: unknown, shape: number[], flat: (number | boolean | bigint)[], depth: number): void {
  if (Array.isArray(data)) {
    if (shape.length <= depth) shape.push(data.length);
    else if (shape[depth] !== data.length) {
      throw new Error(`tensor: ragged nested array (dim ${depth} has lengths ${shape[depth]} and ${data.length})`);
    }
    for (const d of data) inferFromNested(d, shape, flat, depth + 1);
    return;
  }
  if (depth !== shape.length) throw new Error('tensor: ragged nested array (mixed depths)');
  if (typeof data !== 'number' && typeof data !== 'boolean' && typeof data !== 'bigint') {
    throw new Error(`tensor: unsupported element ${JSON.stringify(data)}; expected numbers or booleans`);
  }
  flat.push(data);
}

function hostArray(dtype: DType, values: ArrayLike<number | boolean | bigint>): ArrayBufferView {
  const n = values.length;
  // Typed arrays of the same type go to storageWrite as they are (it copies them into native
  // memory); other numeric typed arrays convert with the typed-array constructor (no per-element
  // callback: a 2.4M-float image batch took ~1 s through Float32Array.from(values, Number)).
  switch (dtype) {
    case 'f32': case 'bf16': case 'f16':
      if (values instanceof Float32Array) return values;
      if (values instanceof Float64Array || values instanceof Int32Array || values instanceof Uint8Array) return new Float32Array(values);
      return Float32Array.from(values as ArrayLike<number>, Number);
    case 'f64':
      if (values instanceof Float64Array) return values;
      if (values instanceof Float32Array || values instanceof Int32Array) return new Float64Array(values);
      return Float64Array.from(values as ArrayLike<number>, Number);
    case 'i32': {
      if (values instanceof Int32Array) return values;
      const a = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = Number(values[i]);
        if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
          throw new Error(`tensor: value ${v} at index ${i} is not a valid i32`);
        }
        a[i] = v;
      }
      return a;
    }
    case 'i64': {
      const a = new BigInt64Array(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v === 'bigint') a[i] = v;
        else {
          const x = Number(v);
          if (!Number.isSafeInteger(x)) throw new Error(`tensor: value ${x} at index ${i} is not a safe integer for i64`);
          a[i] = BigInt(x);
        }
      }
      return a;
    }
    case 'bool': return Uint8Array.from(values as ArrayLike<number>, (v) => (v ? 1 : 0));
  }
}

function defaultDType(data: unknown): DType {
  if (data instanceof Float64Array) return 'f64';
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof BigInt64Array) return 'i64';
  if (typeof data === 'boolean') return 'bool';
  if (Array.isArray(data)) {
    let d: unknown = data;
    while (Array.isArray(d) && d.length) d = d[0];
    if (typeof d === 'boolean') return 'bool';
    if (typeof d === 'bigint') return 'i64';
  }
  return DEFAULT_FLOAT;
}

/** Writes host values into a new tensor of the given dtype and device. */
export function fromHost(values: ArrayLike<number | boolean | bigint>, shape: number[], dtype: DType, device?: string): Tensor {
  const dev = parseDevice(device, 'tensor');
  const n = numelOf(shape);
  if (values.length !== n) {
    throw new Error(`tensor: ${values.length} values do not fill shape ${shapeStr(shape)} (${n} elements)`);
  }
  // 16-bit floats are written as f32 and rounded natively (round to nearest even).
  const hostType: DType = dtype === 'bf16' || dtype === 'f16' ? 'f32' : dtype;
  const t = Tensor.empty(shape, hostType, dev.ordinal);
  native.storageWrite(t.storage.handle, 0, hostArray(hostType, values));
  if (hostType === dtype) return t;
  const out = Tensor.empty(shape, dtype, dev.ordinal);
  native.copy(t.arg('tensor'), out.arg('tensor'));
  t.dispose();
  return out;
}

/** Builds a tensor from a typed array, nested arrays or a scalar. Numbers default to f32. */
export function tensor(data: Data, opts: TensorOptions = {}): Tensor {
  const dtype = opts.dtype ? checkDType(opts.dtype, 'tensor') : defaultDType(data);
  let shape: number[];
  let flat: ArrayLike<number | boolean | bigint>;
  if (ArrayBuffer.isView(data)) {
    flat = data as unknown as ArrayLike<number>;
    shape = opts.shape ? checkShapeArg('tensor', opts.shape) : [flat.length];
  } else if (Array.isArray(data)) {
    const s: number[] = [];
    const f: (number | boolean | bigint)[] = [];
    inferFromNested(data, s, f, 0);
    flat = f;
    shape = opts.shape ? checkShapeArg('tensor', opts.shape) : s;
  } else if (typeof data === 'number' || typeof data === 'boolean' || typeof data === 'bigint') {
    flat = [data];
    shape = opts.shape ? checkShapeArg('tensor', opts.shape) : [];
  } else {
    throw new Error(`tensor: unsupported data of type ${typeof data}; expected a typed array, nested arrays or a number`);
  }
  const t = fromHost(flat, shape, dtype, opts.device);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export function full(shape: number[], value: number, opts: CreateOptions = {}): Tensor {
  const s = checkShapeArg('full', shape);
  const dtype = opts.dtype ? checkDType(opts.dtype, 'full') : DEFAULT_FLOAT;
  const t = Tensor.empty(s, dtype, parseDevice(opts.device, 'full').ordinal);
  native.fill(t.arg('full'), value);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}
export const zeros = (shape: number[], opts: CreateOptions = {}) => full(shape, 0, opts);
export const ones = (shape: number[], opts: CreateOptions = {}) => full(shape, 1, opts);

function likeOpts(t: Tensor, opts: CreateOptions): CreateOptions {
  return { dtype: opts.dtype ?? t.dtype, device: opts.device ?? t.device, requiresGrad: opts.requiresGrad };
}
export const zerosLike = (t: Tensor, opts: CreateOptions = {}) => full(t.shape, 0, likeOpts(t, opts));
export const onesLike = (t: Tensor, opts: CreateOptions = {}) => full(t.shape, 1, likeOpts(t, opts));
export const fullLike = (t: Tensor, v: number, opts: CreateOptions = {}) => full(t.shape, v, likeOpts(t, opts));

/** Values start, start + step, ... below end (like torch.arange). Default dtype: i64 when all
 * arguments are integers, else f32. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) { end = start; start = 0; }
  if (step === 0 || !Number.isFinite(step)) throw new Error(`arange: step must be a finite nonzero number, got ${step}`);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const allInt = Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step);
  const dtype = opts.dtype ?? (allInt ? 'i64' : DEFAULT_FLOAT);
  const vals = new Array<number>(n);
  for (let i = 0; i < n; i++) vals[i] = start + i * step;
  const t = fromHost(vals, [n], dtype, opts.device);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** A seeded stream of random numbers. */
export class Generator {
  seed: number;
  offset = 0;
  constructor(seed = 0) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`Generator: seed must be a non-negative safe integer, got ${seed}`);
    this.seed = seed;
  }
  /** Reserves n counters and returns the first. */
  take(n: number): number {
    const o = this.offset;
    // Round up to a multiple of 4: Philox yields four values per counter.
    this.offset += Math.ceil(n / 4) * 4;
    return o;
  }
}

let defaultGenerator = new Generator(0);
/** Reseeds the default generator (as torch.manual_seed). */
export function manualSeed(seed: number): void { defaultGenerator = new Generator(seed); }

export interface RandomOptions extends CreateOptions { generator?: Generator; seed?: number }

function random(kind: 0 | 1, shape: number[], a: number, b: number, opts: RandomOptions, op: string): Tensor {
  const s = checkShapeArg(op, shape);
  const dtype = opts.dtype ? checkDType(opts.dtype, op) : DEFAULT_FLOAT;
  if (!isFloat(dtype)) throw new Error(`${op}: dtype must be a float type, got ${dtype}`);
  const gen = opts.generator ?? (opts.seed !== undefined ? new Generator(opts.seed) : defaultGenerator);
  const t = Tensor.empty(s, dtype, parseDevice(opts.device, op).ordinal);
  native.randomFill(t.arg(op), kind, gen.seed, gen.take(t.size), a, b);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** Uniform in [low, high) (default [0, 1)). */
export function rand(shape: number[], opts: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  return random(0, shape, opts.low ?? 0, opts.high ?? 1, opts, 'rand');
}
/** Normal with the given mean and std (default 0, 1). */
export function randn(shape: number[], opts: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  return random(1, shape, opts.mean ?? 0, opts.std ?? 1, opts, 'randn');
}
