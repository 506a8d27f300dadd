// Fused RMSNorm over the last dimension, as Hugging Face's Qwen2RMSNorm computes it:
// y = weight · (x_f32 · rsqrt(mean(x_f32²) + eps)), cast to x's dtype. The forward saves
// rstd (f32, one per row); the backward kernel gives dx and dw (summed over rows in f32).
import native from '@fovea/native';
import { Tensor, shapeStr } from '../tensor.js';
import { record } from '../autograd/record.js';
import { noGrad } from '../autograd/grad_mode.js';
import { checkFloat, checkSameDevice, checkTensor } from './helpers.js';

export function rmsNorm(a: Tensor, w: Tensor, eps = 1e-6): Tensor {
  const x = checkTensor(a, 'rmsNorm', 'x'), weight = checkTensor(w, 'rmsNorm', 'weight');
  checkFloat('rmsNorm', 'x', x);
  checkFloat('rmsNorm', 'weight', weight);
  checkSameDevice('rmsNorm', x, weight);
  const H = x.shape[x.ndim - 1];
  if (x.ndim === 0 || weight.ndim !== 1 || weight.shape[0] !== H) {
    throw new Error(`rmsNorm: weight ${shapeStr(weight.shape)} must be [${H}] for x ${shapeStr(x.shape)}`);
  }
  if (!(eps >= 0)) throw new Error(`rmsNorm: eps must be >= 0, got ${eps}`);
  const xc = noGrad(() => x.contiguous()), wc = noGrad(() => weight.contiguous());
  const y = Tensor.empty(x.shape, x.dtype, x.ordinal);
  const rstd = Tensor.empty(x.shape.slice(0, -1), 'f32', x.ordinal);
  native.rmsNorm(xc.arg('rmsNorm'), wc.arg('rmsNorm'), eps, y.arg('rmsNorm'), rstd.arg('rmsNorm'));
  record('rmsNorm', [x, weight], [y], ([g], [sx, sw, sr]) => {
    const gc = g!.contiguous();
    const dx = Tensor.empty(sx.shape, sx.dtype, sx.ordinal);
    const dw = Tensor.empty([H], 'f32', sx.ordinal);
    native.rmsNormBackward(sx.arg('rmsNorm'), sw.arg('rmsNorm'), sr.arg('rmsNorm'), gc.arg('rmsNorm'), dx.arg('rmsNorm'), dw.arg('rmsNorm'));
    gc.dispose();
    const dwc = dw.to(sw.dtype);
    dw.dispose();
    return [dx, dwc];
  }, [xc, wc, rstd]);
  xc.dispose(); wc.dispose(); rstd.dispose();
  return y;
}
