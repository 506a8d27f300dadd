// Optimizers over a list of parameters, updating them in place under noGrad: SGD (with
// momentum and weight decay) and AdamW (torch.optim.AdamW semantics, amsgrad off). AdamW
// runs the fused native kernel (packages/native-cuda/src/ops/adamw): one pass per parameter
// reads p, g, m, v once and writes p, m, v. Moments are f32; a bf16/f16 parameter also gets
// an f32 master copy that the kernel updates, writing the rounded value (nearest even) back
// to the parameter. Optimizer state is kept (not freed by tidy) and released by dispose().
import native from '@fovea/native';
import { Tensor, shapeStr } from '../tensor.js';
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

/** One parameter's AdamW state, as torch keeps it (`step`, `exp_avg`, `exp_avg_sq`) plus the
 * f32 master copy of a bf16/f16 parameter (null for f32 parameters). */
export interface AdamWParamState { step: number; expAvg: Tensor; expAvgSq: Tensor; master: Tensor | null }
/** The optimizer's state for checkpoints: `step` counts step() calls; `params[i]` belongs to
 * params[i] (null until that parameter first had a gradient). */
export interface AdamWState { step: number; params: (AdamWParamState | null)[] }
export interface AdamWOptions { lr: number; betas?: [number, number]; eps?: number; weightDecay?: number }

const MASTERED = new Set(['bf16', 'f16']);
const ADAMW_DTYPES = new Set(['f32', 'bf16', 'f16']);

export class AdamW extends Optimizer {
  lr: number; beta1: number; beta2: number; eps: number; weightDecay: number;
  private t = 0;
  private slots: (AdamWParamState | null)[];
  constructor(params: Tensor[], opts: AdamWOptions) {
    super(params);
    params.forEach((p, i) => {
      if (!ADAMW_DTYPES.has(p.dtype)) {
        throw new Error(`AdamW: parameter ${i} is ${p.dtype}; AdamW updates f32, bf16 or f16 parameters`);
      }
    });
    if (opts === null || typeof opts !== 'object') throw new Error('AdamW: options {lr, betas?, eps?, weightDecay?} are required');
    this.lr = opts.lr;
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.checkHyper('AdamW');
    this.slots = params.map(() => null);
  }

  /** Hyper-parameters are plain fields (schedulers set lr), so they are checked on every step. */
  private checkHyper(op: string): void {
    const num = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
    if (!num(this.lr) || this.lr < 0) throw new Error(`${op}: lr must be a finite number >= 0, got ${this.lr}`);
    for (const [name, b] of [['beta1', this.beta1], ['beta2', this.beta2]] as const) {
      if (!num(b) || b < 0 || b >= 1) throw new Error(`${op}: ${name} must be in [0, 1), got ${b}`);
    }
    if (!num(this.eps) || this.eps < 0) throw new Error(`${op}: eps must be a finite number >= 0, got ${this.eps}`);
    if (!num(this.weightDecay) || this.weightDecay < 0) {
      throw new Error(`${op}: weightDecay must be a finite number >= 0, got ${this.weightDecay}`);
    }
  }

  private newSlot(p: Tensor): AdamWParamState {
    return noGrad(() => ({
      step: 0,
      expAvg: keep(zerosLike(p, { dtype: 'f32' })),
      expAvgSq: keep(zerosLike(p, { dtype: 'f32' })),
      master: MASTERED.has(p.dtype) ? keep(p.to('f32').contiguous()) : null,
    }));
  }

  step(): void {
    const op = 'AdamW.step';
    this.checkHyper(op);
    this.t++;
    noGrad(() => tidy(() => {
      this.params.forEach((p, i) => {
        if (!p.grad) return;
        p.assertAlive(op);
        if (!p.isContiguous()) throw new Error(`${op}: parameter ${i} ${shapeStr(p.shape)} is not contiguous; it is updated in place`);
        let g = p.grad;
        if (g.shape.length !== p.shape.length || g.shape.some((d, k) => d !== p.shape[k])) {
          throw new Error(`${op}: the gradient of parameter ${i} has shape ${shapeStr(g.shape)}, expected ${shapeStr(p.shape)}`);
        }
        if (g.ordinal !== p.ordinal) throw new Error(`${op}: the gradient of parameter ${i} is on ${g.device}, the parameter on ${p.device}`);
        if (!ADAMW_DTYPES.has(g.dtype)) g = g.to('f32');
        if (!g.isContiguous()) g = g.contiguous();
        const s = this.slots[i] ?? (this.slots[i] = this.newSlot(p));
        native.adamwStep(p.arg(op), g.arg(op), s.expAvg.arg(op), s.expAvgSq.arg(op), s.master ? s.master.arg(op) : null,
          this.lr, this.beta1, this.beta2, this.eps, this.weightDecay, s.step + 1);
        s.step++;
      });
    }));
  }

  /** The live state (not copies): the tensors stay owned by the optimizer and are freed by
   * dispose() or the next loadState(); clone them to keep them longer. */
  state(): AdamWState {
    return { step: this.t, params: this.slots.map((s) => (s ? { ...s } : null)) };
  }

  /** Replaces the state with copies of `state`'s tensors, after checking every entry against
   * its parameter (count, shapes, f32 moments, a master exactly for bf16/f16 parameters). */
  loadState(state: AdamWState): void {
    const op = 'AdamW.loadState';
    if (!state || typeof state !== 'object' || !Array.isArray(state.params)) throw new Error(`${op}: expected {step, params: [...]}`);
    if (!Number.isInteger(state.step) || state.step < 0) throw new Error(`${op}: step must be an integer >= 0, got ${state.step}`);
    if (state.params.length !== this.params.length) {
      throw new Error(`${op}: the state has ${state.params.length} parameter entries, the optimizer has ${this.params.length} parameters`);
    }
    const check = (i: number, name: string, t: unknown, p: Tensor) => {
      if (!(t instanceof Tensor)) throw new Error(`${op}: params[${i}].${name} must be a Tensor`);
      t.assertAlive(op);
      if (t.dtype !== 'f32') throw new Error(`${op}: params[${i}].${name} is ${t.dtype}, expected f32`);
      if (t.shape.length !== p.shape.length || t.shape.some((d, k) => d !== p.shape[k])) {
        throw new Error(`${op}: params[${i}].${name} has shape ${shapeStr(t.shape)}, expected ${shapeStr(p.shape)} (the parameter's)`);
      }
    };
    state.params.forEach((e, i) => {
      if (e === null) return;
      const p = this.params[i];
      if (!Number.isInteger(e.step) || e.step < 0) throw new Error(`${op}: params[${i}].step must be an integer >= 0, got ${e.step}`);
      check(i, 'expAvg', e.expAvg, p);
      check(i, 'expAvgSq', e.expAvgSq, p);
      if (MASTERED.has(p.dtype)) check(i, 'master', e.master, p);
      else if (e.master) throw new Error(`${op}: params[${i}].master must be null for a ${p.dtype} parameter`);
    });
    const copy = (t: Tensor, p: Tensor) => keep(noGrad(() => zerosLike(p, { dtype: 'f32' }).copy_(t)));
    const slots = state.params.map((e, i) => (e === null ? null : {
      step: e.step,
      expAvg: copy(e.expAvg, this.params[i]),
      expAvgSq: copy(e.expAvgSq, this.params[i]),
      master: e.master ? copy(e.master, this.params[i]) : null,
    }));
    this.dispose();
    this.slots = slots;
    this.t = state.step;
  }

  dispose(): void {
    for (const s of this.slots) {
      if (!s) continue;
      s.expAvg.dispose(); s.expAvgSq.dispose(); s.master?.dispose();
    }
    this.slots = this.params.map(() => null);
  }
}
