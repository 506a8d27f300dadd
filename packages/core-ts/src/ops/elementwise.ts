// Elementwise ops with NumPy broadcasting and type promotion: arithmetic, comparisons,
// where, and the unary math functions, each with its backward. A JS number operand becomes
// a 0-d tensor of the other operand's dtype (an integer tensor with a fractional number
// promotes to f32, as in PyTorch).
import native from '@fovea/native';
import { type DType, isFloat, promoteTypes } from '../dtype.js';
import { Tensor } from '../tensor.js';
import { record } from '../autograd/record.js';
import { isGradEnabled, noGrad } from '../autograd/grad_mode.js';
import { BINARY, UNARY } from '../native/opcodes.js';
import { fromHost } from './creation.js';
import { broadcastShapes, checkFloat, checkSameDevice, checkTensor, expandedArg, sumToShape } from './helpers.js';

export type Operand = Tensor | number;

declare module '../tensor.js' {
  interface Tensor {
    add(b: Operand): Tensor; sub(b: Operand): Tensor; mul(b: Operand): Tensor; div(b: Operand): Tensor;
    pow(b: Operand): Tensor; maximum(b: Operand): Tensor; minimum(b: Operand): Tensor;
    eq(b: Operand): Tensor; ne(b: Operand): Tensor; lt(b: Operand): Tensor; le(b: Operand): Tensor;
    gt(b: Operand): Tensor; ge(b: Operand): Tensor;
    neg(): Tensor; exp(): Tensor; log(): Tensor; sqrt(): Tensor; rsqrt(): Tensor; abs(): Tensor;
    silu(): Tensor; gelu(): Tensor; sigmoid(): Tensor; tanh(): Tensor; relu(): Tensor;
    sin(): Tensor; cos(): Tensor; square(): Tensor; reciprocal(): Tensor;
    clamp(min?: number | null, max?: number | null): Tensor;
    cast(dtype: DType): Tensor;
    /** In place (no autograd; for optimizers and gradient accumulation). */
    add_(b: Operand, alpha?: number): Tensor;
    mul_(b: Operand): Tensor;
    zero_(): Tensor;
    fill_(v: number): Tensor;
  }
}

function scalarFor(v: number, like: Tensor): Tensor {
  const dtype: DType = !isFloat(like.dtype) && !Number.isInteger(v) ? 'f32' : like.dtype;
  return fromHost([v], [], dtype === 'bool' ? 'f32' : dtype, like.device);
}

/** Validates and promotes both operands; returns tensors the caller must dispose if owned. */
function operands(op: string, a: Operand, b: Operand): { x: Tensor; y: Tensor; owned: Tensor[] } {
  const owned: Tensor[] = [];
  if (typeof a === 'number' && typeof b === 'number') throw new Error(`${op}: at least one operand must be a Tensor`);
  let x = typeof a === 'number' ? null : checkTensor(a, op, 'a');
  let y = typeof b === 'number' ? null : checkTensor(b, op, 'b');
  if (!x) { x = scalarFor(a as number, y!); owned.push(x); }
  if (!y) { y = scalarFor(b as number, x); owned.push(y); }
  checkSameDevice(op, x, y);
  const dt = promoteTypes(x.dtype, y.dtype);
  const conv = (t: Tensor) => {
    if (t.dtype === dt) return t;
    const c = t.to(dt);  // differentiable cast
    owned.push(c);
    return c;
  };
  return { x: conv(x), y: conv(y), owned };
}

function runBinary(op: keyof typeof BINARY, x: Tensor, y: Tensor, outDtype?: DType): Tensor {
  const shape = broadcastShapes(op, x.shape, y.shape);
  const out = Tensor.empty(shape, outDtype ?? x.dtype, x.ordinal);
  native.binary(BINARY[op], expandedArg(x, shape, op), expandedArg(y, shape, op), out.arg(op));
  return out;
}

type BinaryGrad = (g: Tensor, x: Tensor, y: Tensor, out: Tensor) => [Tensor | null, Tensor | null];

function defineBinary(name: keyof typeof BINARY, grad: BinaryGrad | null, saveOut = false) {
  return (a: Operand, b: Operand): Tensor => {
    const { x, y, owned } = operands(name, a, b);
    const isCmp = grad === null;
    if (!isCmp && x.dtype === 'bool') throw new Error(`${name}: not defined for bool tensors`);
    const out = runBinary(name, x, y, isCmp ? 'bool' : undefined);
    if (!isCmp) {
      const xs = x.shape.slice(), ys = y.shape.slice();
      record(name, [x, y], [out], ([g], saved) => {
        const [gx, gy] = grad(g!, saved[0], saved[1], saved[2]);
        return [gx && sumToShape(gx, xs), gy && sumToShape(gy, ys)];
      }, saveOut ? [x, y, out] : [x, y]);
    }
    for (const t of owned) t.dispose();
    return out;
  };
}

export const add = defineBinary('add', (g) => [g, g]);
export const sub = defineBinary('sub', (g) => [g, g.neg()]);
export const mul = defineBinary('mul', (g, x, y) => [g.mul(y), g.mul(x)]);
export const div = defineBinary('div', (g, x, y) => [g.div(y), g.mul(x).div(y.square()).neg()]);
export const pow = defineBinary('pow', (g, x, y, out) => [
  // d/dx x^y = y x^(y-1); d/dy x^y = x^y ln x (defined for x > 0)
  g.mul(y).mul(x.pow(y.sub(1))),
  g.mul(out).mul(x.log()),
], true);
const pick = (g: Tensor, mask: Tensor) => noGrad(() => {
  const z = g.mul(mask.cast(g.dtype));
  return z;
});
export const maximum = defineBinary('maximum', (g, x, y) => {
  // Ties split the gradient evenly (as PyTorch does).
  const gt = x.gt(y).cast(g.dtype), eq = x.eq(y).cast(g.dtype).mul(0.5);
  const wx = gt.add(eq);
  return [pick(g, wx), g.sub(pick(g, wx))];
});
export const minimum = defineBinary('minimum', (g, x, y) => {
  const lt = x.lt(y).cast(g.dtype), eq = x.eq(y).cast(g.dtype).mul(0.5);
  const wx = lt.add(eq);
  return [pick(g, wx), g.sub(pick(g, wx))];
});
export const eq = defineBinary('eq', null);
export const ne = defineBinary('ne', null);
export const lt = defineBinary('lt', null);
export const le = defineBinary('le', null);
export const gt = defineBinary('gt', null);
export const ge = defineBinary('ge', null);

/** cond ? a : b with broadcasting over all three. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  checkTensor(cond, 'where', 'cond');
  if (cond.dtype !== 'bool') throw new Error(`where: cond must be bool, got ${cond.dtype}`);
  const { x, y, owned } = operands('where', a, b);
  checkSameDevice('where', cond, x);
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, x.shape), y.shape);
  const out = Tensor.empty(shape, x.dtype, x.ordinal);
  native.where(expandedArg(cond, shape, 'where'), expandedArg(x, shape, 'where'), expandedArg(y, shape, 'where'), out.arg('where'));
  const xs = x.shape.slice(), ys = y.shape.slice();
  record('where', [x, y], [out], ([g], [c]) => {
    const zero = g!.mul(0);
    return [sumToShape(where(c, g!, zero), xs), sumToShape(where(c, zero, g!), ys)];
  }, [cond]);
  for (const t of owned) t.dispose();
  return out;
}

// ---------------------------------------------------------------- unary
function runUnary(op: keyof typeof UNARY, x: Tensor, alpha = 0, beta = 0): Tensor {
  const out = Tensor.empty(x.shape, x.dtype, x.ordinal);
  native.unary(UNARY[op], x.arg(op), out.arg(op), alpha, beta);
  return out;
}

type UnaryGrad = (g: Tensor, x: Tensor, out: Tensor) => Tensor;
function defineUnary(name: keyof typeof UNARY, grad: UnaryGrad, opts: { floatOnly?: boolean } = {}) {
  const floatOnly = opts.floatOnly ?? true;
  return (a: Tensor): Tensor => {
    const x = checkTensor(a, name, 'x');
    if (floatOnly) checkFloat(name, 'x', x);
    const out = runUnary(name, x);
    record(name, [x], [out], ([g], [sx, so]) => [grad(g!, sx, so)], [x, out]);
    return out;
  };
}

function nativeGrad(op: keyof typeof BINARY, inp: Tensor, g: Tensor): Tensor {
  return runBinary(op, inp, g);
}

export const neg = defineUnary('neg', (g) => g.neg(), { floatOnly: false });
export const exp = defineUnary('exp', (g, _x, y) => g.mul(y));
export const log = defineUnary('log', (g, x) => g.div(x));
export const sqrt = defineUnary('sqrt', (g, _x, y) => g.div(y.mul(2)));
export const rsqrt = defineUnary('rsqrt', (g, _x, y) => g.mul(y.pow(3)).mul(-0.5));
export const abs = defineUnary('abs', (g, x) => g.mul(runUnary('sign', x)), { floatOnly: false });
export const silu = defineUnary('silu', (g, x) => nativeGrad('siluBackward', x, g));
export const gelu = defineUnary('gelu', (g, x) => nativeGrad('geluBackward', x, g));
export const sigmoid = defineUnary('sigmoid', (g, _x, y) => nativeGrad('sigmoidBackward', y, g));
export const tanh = defineUnary('tanh', (g, _x, y) => nativeGrad('tanhBackward', y, g));
export const relu = defineUnary('relu', (g, x) => nativeGrad('reluBackward', x, g), { floatOnly: false });
export const sin = defineUnary('sin', (g, x) => g.mul(x.cos()));
export const cos = defineUnary('cos', (g, x) => g.mul(x.sin()).neg());
export const square = defineUnary('square', (g, x) => g.mul(x).mul(2), { floatOnly: false });
export const reciprocal = defineUnary('reciprocal', (g, _x, y) => g.mul(y.square()).neg());

/** x^p for a scalar exponent p. */
export function powScalar(a: Tensor, p: number): Tensor {
  const x = checkTensor(a, 'pow', 'x');
  checkFloat('pow', 'x', x);
  const out = runUnary('powScalar', x, p);
  record('pow', [x], [out], ([g], [sx]) => [p === 0 ? g!.mul(0) : g!.mul(runUnary('powScalar', sx, p - 1)).mul(p)], [x]);
  return out;
}

/** Clamps to [min, max]; either bound may be omitted. Gradient passes where not clamped. */
export function clamp(a: Tensor, min?: number | null, max?: number | null): Tensor {
  const x = checkTensor(a, 'clamp', 'x');
  const lo = min ?? -Infinity, hi = max ?? Infinity;
  if (lo > hi) throw new Error(`clamp: min ${lo} is greater than max ${hi}`);
  const out = runUnary('clamp', x, lo, hi);
  record('clamp', [x], [out], ([g], [sx]) => {
    const inside = sx.ge(lo).mul_(sx.le(hi));
    return [g!.mul(inside.cast(g!.dtype))];
  }, [x]);
  return out;
}

/** Dtype conversion (differentiable between float types). */
export function cast(a: Tensor, dtype: DType): Tensor {
  return checkTensor(a, 'cast', 'x').to(dtype);
}

const methods: Record<string, (this: Tensor, ...args: never[]) => Tensor> = {};
for (const [k, f] of Object.entries({ add, sub, mul, div, maximum, minimum, eq, ne, lt, le, gt, ge })) {
  methods[k] = function (this: Tensor, b: Operand) { return f(this, b); } as never;
}
for (const [k, f] of Object.entries({ neg, exp, log, sqrt, rsqrt, abs, silu, gelu, sigmoid, tanh, relu, sin, cos, square, reciprocal })) {
  methods[k] = function (this: Tensor) { return f(this); } as never;
}
Object.assign(Tensor.prototype, methods);
Tensor.prototype.pow = function (b: Operand) { return typeof b === 'number' ? powScalar(this, b) : pow(this, b); };
Tensor.prototype.clamp = function (min?: number | null, max?: number | null) { return clamp(this, min, max); };
Tensor.prototype.cast = function (dtype: DType) { return this.to(dtype); };

/** In-place writes would silently corrupt a recorded graph: allowed only without grad
 * recording (optimizers and gradient accumulation run under noGrad). */
export function checkInPlace(t: Tensor, op: string): void {
  t.assertAlive(op);
  if (isGradEnabled() && t.requiresGrad) {
    throw new Error(`${op}: in-place update of a tensor that requires grad; wrap it in noGrad(() => ...)`);
  }
}

Tensor.prototype.add_ = function (b: Operand, alpha = 1): Tensor {
  checkInPlace(this, 'add_');
  const y = typeof b === 'number' ? scalarFor(b * alpha, this) : checkTensor(b, 'add_', 'b');
  const yy = alpha !== 1 && typeof b !== 'number' ? noGrad(() => y.mul(alpha)) : y;
  const yc = yy.dtype === this.dtype ? yy : noGrad(() => yy.to(this.dtype));
  checkSameDevice('add_', this, yc);
  native.binary(BINARY.add, this.arg('add_'), expandedArg(yc, this.shape, 'add_'), this.arg('add_'));
  for (const t of new Set([y, yy, yc])) if (t !== b) t.dispose();
  return this;
};
Tensor.prototype.mul_ = function (b: Operand): Tensor {
  checkInPlace(this, 'mul_');
  const y = typeof b === 'number' ? scalarFor(b, this) : checkTensor(b, 'mul_', 'b');
  const yc = y.dtype === this.dtype ? y : noGrad(() => y.to(this.dtype));
  checkSameDevice('mul_', this, yc);
  native.binary(BINARY.mul, this.arg('mul_'), expandedArg(yc, this.shape, 'mul_'), this.arg('mul_'));
  for (const t of new Set([y, yc])) if (t !== b) t.dispose();
  return this;
};
Tensor.prototype.fill_ = function (v: number): Tensor {
  checkInPlace(this, 'fill_');
  native.fill(this.arg('fill_'), v);
  return this;
};
Tensor.prototype.zero_ = function (): Tensor { return this.fill_(0); };
