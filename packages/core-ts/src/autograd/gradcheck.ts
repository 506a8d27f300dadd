// gradcheck: compares autograd's gradients with central finite differences, in f64 on the
// CPU. The scalar checked is Σ out·proj for a fixed random projection `proj` (so every
// output element matters). Used by the tests on every differentiable op.
import { Tensor, shapeStr } from '../tensor.js';
import { noGrad } from './grad_mode.js';
import { fromHost, randn, Generator } from '../ops/creation.js';
import { tidy } from '../memory.js';

export interface GradcheckOptions {
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Indices of inputs to check (default: every float input). */
  check?: number[];
  seed?: number;
}

export interface GradcheckResult {
  ok: boolean;
  maxAbsError: number;
  worst: string;
}

type Fn = (...xs: Tensor[]) => Tensor | Tensor[];

function outputs(r: Tensor | Tensor[]): Tensor[] { return Array.isArray(r) ? r : [r]; }

export function gradcheck(fn: Fn, inputs: Tensor[], opts: GradcheckOptions = {}): GradcheckResult {
  const eps = opts.eps ?? 1e-6, atol = opts.atol ?? 1e-6, rtol = opts.rtol ?? 1e-5;
  const isFloatT = (t: Tensor) => t.dtype === 'f32' || t.dtype === 'f64' || t.dtype === 'bf16' || t.dtype === 'f16';
  const check = opts.check ?? inputs.map((t, i) => (isFloatT(t) ? i : -1)).filter((i) => i >= 0);
  return tidy(() => {
    // f64 copies on the CPU; index/int inputs pass through unchanged.
    const base = inputs.map((t) => (isFloatT(t) ? noGrad(() => t.to('cpu').to('f64').contiguous()) : t));
    const gen = new Generator(opts.seed ?? 1234);
    const projs = noGrad(() => outputs(fn(...base)).map((o) => (isFloatT(o) ? randn(o.shape, { dtype: 'f64', generator: gen }) : null)));
    const objective = (xs: Tensor[]): Tensor => {
      const outs = outputs(fn(...xs));
      let total: Tensor | null = null;
      outs.forEach((o, k) => {
        const p = projs[k];
        if (!p) return;
        const term = o.to('f64').mul(p).sum();
        total = total ? total.add(term) : term;
      });
      if (!total) throw new Error('gradcheck: fn produced no float output');
      return total;
    };
    // Analytic.
    const leaves = base.map((t, i) => (check.includes(i) ? noGrad(() => t.clone()).requiresGrad_(true) : t));
    objective(leaves).backward();
    let maxAbs = 0, worst = 'none', ok = true;
    for (const i of check) {
      const leaf = leaves[i];
      const analytic = leaf.grad ? (leaf.grad.data() as Float64Array) : new Float64Array(leaf.size);
      const values = Float64Array.from(base[i].data() as Float64Array);
      for (let j = 0; j < values.length; j++) {
        const probe = (delta: number) => noGrad(() => {
          const v = values.slice();
          v[j] += delta;
          const xs = base.slice();
          xs[i] = fromHost(v, base[i].shape.slice(), 'f64');
          return objective(xs).item();
        });
        const numeric = (probe(eps) - probe(-eps)) / (2 * eps);
        const err = Math.abs(numeric - analytic[j]);
        if (err > maxAbs) { maxAbs = err; worst = `input ${i} ${shapeStr(base[i].shape)} element ${j}: analytic ${analytic[j]}, numeric ${numeric}`; }
        if (err > atol + rtol * Math.abs(numeric)) ok = false;
      }
      if (leaf.grad) leaf.grad.dispose();
    }
    return { ok, maxAbsError: maxAbs, worst };
  });
}
