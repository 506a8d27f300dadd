// Optimizers over a list of parameters, updating them in place under noGrad: SGD (with
// momentum and weight decay) and AdamW (decoupled weight decay, bias-corrected moments in
// f32). Optimizer state is kept (not freed by tidy) and released by dispose().
import { Tensor } from '../tensor.js';
import { keep, tidy } from '../memory.js';
import { noGrad } from '../autograd/grad_mode.js';
import { zerosLike } from '../ops/creation.js';

abstract class Optimizer {
  readonly params: Tensor[];
  constructor(params: Tensor[]) {
    if (!Array.isArray(params) || params.some((p) => !(p instanceof Tensor))) {
      throw new Error('optimizer: params must be an array of tensors');
    }
    this.params = params;
  }
  zeroGrad(): void { for (const p of this.params) { if (p.grad) { p.grad.dispose(); p.grad = null; } } }
  abstract step(): void;
  abstract dispose(): void;
}

export class SGD extends Optimizer {
  lr: number; momentum: number; weightDecay: number;
  private buf = new Map<Tensor, Tensor>();
  constructor(params: Tensor[], opts: { lr: number; momentum?: number; weightDecay?: number }) {
    super(params);
    this.lr = opts.lr; this.momentum = opts.momentum ?? 0; this.weightDecay = opts.weightDecay ?? 0;
  }
  step(): void {
    noGrad(() => tidy(() => {
      for (const p of this.params) {
        if (!p.grad) continue;
        let g = p.grad;
        if (this.weightDecay) g = g.add(p.mul(this.weightDecay));
        if (this.momentum) {
          let b = this.buf.get(p);
          if (!b) { b = keep(g.clone()); this.buf.set(p, b); } else b.mul_(this.momentum).add_(g);
          g = b;
        }
        p.add_(g, -this.lr);
      }
    }));
  }
  dispose(): void { for (const b of this.buf.values()) b.dispose(); this.buf.clear(); }
}

export class AdamW extends Optimizer {
  lr: number; beta1: number; beta2: number; eps: number; weightDecay: number;
  private t = 0;
  private m = new Map<Tensor, Tensor>();
  private v = new Map<Tensor, Tensor>();
  constructor(params: Tensor[], opts: { lr: number; betas?: [number, number]; eps?: number; weightDecay?: number }) {
    super(params);
    this.lr = opts.lr;
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }
  step(): void {
    this.t++;
    const bc1 = 1 - this.beta1 ** this.t, bc2 = 1 - this.beta2 ** this.t;
    noGrad(() => tidy(() => {
      for (const p of this.params) {
        if (!p.grad) continue;
        const g = p.grad.to('f32');
        let m = this.m.get(p), v = this.v.get(p);
        if (!m) { m = keep(zerosLike(p, { dtype: 'f32' })); this.m.set(p, m); }
        if (!v) { v = keep(zerosLike(p, { dtype: 'f32' })); this.v.set(p, v); }
        m.mul_(this.beta1).add_(g, 1 - this.beta1);
        v.mul_(this.beta2).add_(g.square(), 1 - this.beta2);
        if (this.weightDecay) p.mul_(1 - this.lr * this.weightDecay);
        const update = m.mul(1 / bc1).div(v.mul(1 / bc2).sqrt().add(this.eps)).mul(-this.lr);
        p.add_(update);
      }
    }));
  }
  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear(); this.v.clear();
  }
}
