// softmax and logSoftmax over one dimension (numerically stable; the native kernel works on
// the last axis, other dims are moved there and back). Backward uses the saved output:
// softmax dx = y·(dy − Σdy·y); log-softmax dx = dy − exp(y)·Σdy.
import native from '@fovea/native';
import { Tensor } from '../tensor.js';
import { record } from '../autograd/record.js';
import { noGrad } from '../autograd/grad_mode.js';
import { checkFloat, checkTensor, normDim } from './helpers.js';

declare module '../tensor.js' {
  interface Tensor {
    softmax(dim?: number): Tensor;
    logSoftmax(dim?: number): Tensor;
  }
}

/** Runs fn on x with `dim` moved last and contiguous; moves the result's last dim back. */
function onLastDim(x: Tensor, d: number, fn: (c: Tensor) => Tensor): Tensor {
  return noGrad(() => {
    const last = x.ndim - 1;
    if (d === last || x.ndim === 0) {
      const c = x.contiguous();
      const r = fn(c);
      c.dispose();
      return r;
    }
    const t = x.transpose(d, last), c = t.contiguous();
    const r = fn(c);
    const back = r.transpose(d, last), out = back.contiguous();
    for (const z of [t, c, r, back]) z.dispose();
    return out;
  });
}

function softmaxImpl(a: Tensor, dim: number, log: boolean): Tensor {
  const op = log ? 'logSoftmax' : 'softmax';
  const x = checkTensor(a, op, 'x');
  checkFloat(op, 'x', x);
  const d = normDim(op, dim, x.ndim);
  const out = onLastDim(x, d, (c) => {
    const y = Tensor.empty(c.shape, c.dtype, c.ordinal);
    native.softmax(c.arg(op), y.arg(op), log ? 1 : 0);
    return y;
  });
  record(op, [x], [out], ([g], [y]) => {
    // y and g with `dim` last; dy moves back the same way.
    const last = y.ndim - 1;
    const moveLast = (t: Tensor) => (d === last ? t.contiguous() : t.transpose(d, last).contiguous());
    const yl = moveLast(y), gl = moveLast(g!.to(y.dtype));
    const dx = Tensor.empty(yl.shape, yl.dtype, yl.ordinal);
    native.softmaxBackward(yl.arg(op), gl.arg(op), dx.arg(op), log ? 1 : 0);
    const r = d === last ? dx : dx.transpose(d, last);
    return [r];
  }, [out]);
  return out;
}

export const softmax = (x: Tensor, dim = -1) => softmaxImpl(x, dim, false);
export const logSoftmax = (x: Tensor, dim = -1) => softmaxImpl(x, dim, true);

Tensor.prototype.softmax = function (dim = -1) { return softmax(this, dim); };
Tensor.prototype.logSoftmax = function (dim = -1) { return logSoftmax(this, dim); };
