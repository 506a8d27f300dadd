// clipGradNorm: global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_. The total
// norm over every gradient (as if concatenated) is accumulated in f64 natively (gradNormPow,
// packages/native-cuda/src/ops/adamw); when it exceeds maxNorm every gradient is scaled in
// place by maxNorm / (norm + 1e-6).
// Non-finite norms (a NaN or Inf in some gradient): the result is Infinity and the gradients
// are left as they are (torch would multiply them by NaN or 0); with errorIfNonfinite it
// throws instead, so a trainer can skip the step either way.
import native from '@fovea/native';
import { Tensor } from '../tensor.js';
import { noGrad } from '../autograd/grad_mode.js';

export interface ClipGradNormOptions {
  /** The p of the p-norm: a number > 0, or Infinity (max |g|). Default 2. */
  normType?: number;
  /** Throw when the total norm is NaN or Inf (default false: return Infinity). */
  errorIfNonfinite?: boolean;
}

/** Clips the gradients of `params` (those that have one) to a global norm of at most
 * `maxNorm`, in place; returns the total norm before clipping. */
export function clipGradNorm(params: Tensor[] | Tensor, maxNorm: number, opts: ClipGradNormOptions = {}): number {
  const op = 'clipGradNorm';
  const list = params instanceof Tensor ? [params] : params;
  if (!Array.isArray(list) || list.some((p) => !(p instanceof Tensor))) throw new Error(`${op}: params must be a tensor or an array of tensors`);
  if (typeof maxNorm !== 'number' || Number.isNaN(maxNorm) || maxNorm < 0) throw new Error(`${op}: maxNorm must be a number >= 0, got ${maxNorm}`);
  const p = opts.normType ?? 2;
  if (typeof p !== 'number' || !(p > 0)) throw new Error(`${op}: normType must be a number > 0 or Infinity, got ${p}`);
  const grads = list.map((t) => t.grad).filter((g): g is Tensor => g !== null && g !== undefined);
  if (grads.length === 0) return 0;
  let acc = 0;
  noGrad(() => {
    for (const g of grads) {
      const c = g.isContiguous() ? g : g.contiguous();
      const part = native.gradNormPow(c.arg(op), p) as number;
      if (c !== g) c.dispose();
      acc = p === Infinity ? (Number.isNaN(part) || Number.isNaN(acc) ? NaN : Math.max(acc, part)) : acc + part;
    }
  });
  const total = p === Infinity ? acc : p === 2 ? Math.sqrt(acc) : p === 1 ? acc : acc ** (1 / p);
  if (!Number.isFinite(total)) {
    if (opts.errorIfNonfinite) {
      throw new Error(`${op}: the total norm of order ${p} of the gradients is ${total}; they hold NaN or Inf values. ` +
        'Skip this step, or pass errorIfNonfinite: false to get Infinity back instead');
    }
    return Infinity;
  }
  const coef = maxNorm / (total + 1e-6);
  if (coef < 1) noGrad(() => { for (const g of grads) g.mul_(coef); });
  return total;
}
