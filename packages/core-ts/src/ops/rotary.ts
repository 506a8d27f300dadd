// Fused rotary position embedding, rotate-half convention (Qwen, Llama):
// y = x·cos + rotate_half(x)·sin with rotate_half(x) = cat(−x[D/2:], x[:D/2]).
// x is [S, H, D] or [B, S, H, D]; cos and sin hold one angle per position and channel,
// shared by all heads: [S, D], [S, 1, D], [B, S, D] or [B, S, 1, D]. cos/sin are constants
// (no gradient); the backward applies the transposed rotation to dy.
import native from '@fovea/native';
import { Tensor, numelOf, shapeStr } from '../tensor.js';
import { record } from '../autograd/record.js';
import { noGrad } from '../autograd/grad_mode.js';
import { checkFloat, checkSameDevice, checkTensor } from './helpers.js';

function angles(t: Tensor, B: number, S: number, D: number, name: string): Tensor {
  const n = numelOf(t.shape);
  const b = n / (S * D);
  const lastOk = t.shape[t.ndim - 1] === D;
  if (!lastOk || (b !== 1 && b !== B) || !Number.isInteger(b)) {
    throw new Error(`rotary: ${name} ${shapeStr(t.shape)} must hold [S=${S}, D=${D}] angles (optionally per batch ${B})`);
  }
  return noGrad(() => {
    const c = t.contiguous();
    const r = c.reshape([b, S, D]);
    c.dispose();
    return r;
  });
}

function run(x4: Tensor, cos: Tensor, sin: Tensor, inverse: boolean): Tensor {
  const out = Tensor.empty(x4.shape, x4.dtype, x4.ordinal);
  native.rotary(x4.arg('rotary'), cos.arg('rotary'), sin.arg('rotary'), out.arg('rotary'), inverse ? 1 : 0);
  return out;
}

export function rotary(a: Tensor, cosIn: Tensor, sinIn: Tensor): Tensor {
  const x = checkTensor(a, 'rotary', 'x');
  checkTensor(cosIn, 'rotary', 'cos');
  checkTensor(sinIn, 'rotary', 'sin');
  checkFloat('rotary', 'x', x);
  checkSameDevice('rotary', x, cosIn, sinIn);
  if (x.ndim !== 3 && x.ndim !== 4) throw new Error(`rotary: x must be [S, H, D] or [B, S, H, D], got ${shapeStr(x.shape)}`);
  const x4shape = x.ndim === 3 ? [1, ...x.shape] : x.shape.slice();
  const [B, S, , D] = x4shape;
  if (D % 2 !== 0) throw new Error(`rotary: head dim ${D} must be even`);
  const cos = angles(cosIn, B, S, D, 'cos'), sin = angles(sinIn, B, S, D, 'sin');
  const x4 = noGrad(() => { const c = x.contiguous(); const r = c.reshape(x4shape); c.dispose(); return r; });
  const y4 = run(x4, cos, sin, false);
  const out = noGrad(() => y4.reshape(x.shape.slice()));
  y4.dispose(); x4.dispose();
  const xs = x.shape.slice();
  record('rotary', [x], [out], ([g], [c, s]) => {
    const g4 = g!.contiguous().reshape(x4shape);
    const d4 = run(g4, c, s, true);
    return [d4.reshape(xs)];
  }, [cos, sin]);
  cos.dispose(); sin.dispose();
  return out;
}
