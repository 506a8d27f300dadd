// Cross-entropy with an ignore index, fused: the kernel computes each row's log-sum-exp and
// loss without materializing log-probabilities, and the backward writes
// dlogits = dloss·(softmax − onehot) directly. 'mean' divides by the number of rows whose
// target is not ignored (PyTorch's rule); ignored rows get zero loss and zero gradient.
import native from '@fovea/native';
import { Tensor, shapeStr } from '../tensor.js';
import { record } from '../autograd/record.js';
import { noGrad } from '../autograd/grad_mode.js';
import { checkFloat, checkSameDevice, checkTensor } from './helpers.js';

export interface CrossEntropyOptions {
  ignoreIndex?: number;
  reduction?: 'mean' | 'sum' | 'none';
}

export function crossEntropy(logitsIn: Tensor, targetsIn: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const logits = checkTensor(logitsIn, 'crossEntropy', 'logits');
  const targets = checkTensor(targetsIn, 'crossEntropy', 'targets');
  checkFloat('crossEntropy', 'logits', logits);
  checkSameDevice('crossEntropy', logits, targets);
  if (targets.dtype !== 'i32' && targets.dtype !== 'i64') throw new Error(`crossEntropy: targets must be i32 or i64, got ${targets.dtype}`);
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  if (!['mean', 'sum', 'none'].includes(reduction)) throw new Error(`crossEntropy: unknown reduction '${reduction}'`);
  const V = logits.shape[logits.ndim - 1];
  if (logits.ndim < 1 || targets.ndim !== logits.ndim - 1 || targets.shape.some((s, i) => s !== logits.shape[i])) {
    throw new Error(`crossEntropy: logits ${shapeStr(logits.shape)} must be [..., V] with targets ${shapeStr(targets.shape)} = [...]`);
  }
  const N = targets.size;
  const l2 = noGrad(() => { const c = logits.contiguous(); const r = c.reshape([N, V]); c.dispose(); return r; });
  const t1 = noGrad(() => { const c = targets.contiguous(); const r = c.reshape([N]); c.dispose(); return r; });
  // Per-row losses and lse in f32 (f64 for f64 logits, so gradcheck sees full precision).
  const acc = logits.dtype === 'f64' ? 'f64' : 'f32';
  const losses = Tensor.empty([N], acc, logits.ordinal);
  const lse = Tensor.empty([N], acc, logits.ordinal);
  try {
    native.crossEntropy(l2.arg('crossEntropy'), t1.arg('crossEntropy'), ignoreIndex, losses.arg('crossEntropy'), lse.arg('crossEntropy'));
  } catch (e) {
    for (const t of [l2, t1, losses, lse]) t.dispose();
    throw e;
  }
  // Count of rows that count toward the mean.
  const counted = reduction === 'mean' ? noGrad(() => {
    const m = t1.ne(ignoreIndex), s = m.sum(), v = s.item();
    m.dispose(); s.dispose();
    return v;
  }) : 1;
  const out = noGrad(() => {
    let r: Tensor;
    if (reduction === 'none') r = losses.reshape(targets.shape.slice());
    else {
      const s = losses.sum();
      r = reduction === 'mean' ? s.mul(1 / counted) : s.mul(1);
      s.dispose();
    }
    if (logits.dtype !== acc) { const c = r.to(logits.dtype); r.dispose(); r = c; }
    return r;
  });
  record('crossEntropy', [logits], [out], ([g], [sl, st, sLse]) => {
    let dl: Tensor;
    if (reduction === 'none') dl = g!.to(acc).contiguous().reshape([N]);
    else {
      const scale = reduction === 'mean' ? 1 / counted : 1;
      const gs = g!.to(acc).mul(scale);
      dl = gs.expand([N]).contiguous();
      gs.dispose();
    }
    const dx = Tensor.empty([N, V], sl.dtype, sl.ordinal);
    native.crossEntropyBackward(sl.arg('crossEntropy'), st.arg('crossEntropy'), sLse.arg('crossEntropy'), dl.arg('crossEntropy'), ignoreIndex, dx.arg('crossEntropy'));
    return [dx.reshape(logits.shape.slice())];
  }, [l2, t1, lse]);
  for (const t of [l2, t1, losses, lse]) t.dispose();
  return out;
}
