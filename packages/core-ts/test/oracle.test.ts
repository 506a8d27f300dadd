// Every op against the PyTorch fixtures (tools/oracle/gen_ops.py): forward outputs and the
// gradients of Σ out·proj. Each case also runs with non-contiguous (transposed-storage)
// inputs, which must give the same numbers. Tolerances: norm-wise relative error ≤ 1e-5 for
// f32 (the f32 PyTorch baseline lands near 1e-7), the manifest's rtol for bf16 cases; integer,
// bool and cast outputs must match exactly.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as F from '../src/index.js';
import { type Tensor, tidy, noGrad } from '../src/index.js';
import { type Manifest, loadManifest, loadTensor, readValues, relError } from './fixtures.js';

const ROOT = join(__dirname, 'fixtures', 'ops');
const index = JSON.parse(readFileSync(join(ROOT, 'index.json'), 'utf8')) as { cases: string[] };

const BINARY = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const;
const UNARY = ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'silu', 'gelu', 'sigmoid', 'tanh', 'relu'] as const;

type P = Record<string, any>;
function run(m: Manifest, x: Tensor[]): Tensor[] {
  const p = m.params as P;
  const op = m.op;
  if ((BINARY as readonly string[]).includes(op)) return [(F as any)[op](x[0], x[1])];
  if ((UNARY as readonly string[]).includes(op)) return [(F as any)[op](x[0])];
  switch (op) {
    case 'where': return [F.where(x[0], x[1], x[2])];
    case 'powScalar': return [F.powScalar(x[0], p.exponent)];
    case 'clamp': return [F.clamp(x[0], p.min, p.max)];
    case 'cast': return [x[0].to(p.dtype)];
    case 'sum': return [F.sum(x[0], p.dims, p.keepdim)];
    case 'mean': return [F.mean(x[0], p.dims, p.keepdim)];
    case 'logsumexp': return [F.logsumexp(x[0], p.dims, p.keepdim)];
    case 'var': return [F.variance(x[0], p.dims, { keepdim: p.keepdim, correction: p.correction })];
    case 'max': case 'min': { const r = F[op as 'max'](x[0], p.dim, p.keepdim); return [r.values, r.indices]; }
    case 'argmax': return [F.argmax(x[0], p.dim, p.keepdim)];
    case 'matmul': return [F.matmul(x[0], x[1])];
    case 'linear': return [F.linear(x[0], x[1], x[2])];
    case 'softmax': return [F.softmax(x[0], p.dim)];
    case 'logSoftmax': return [F.logSoftmax(x[0], p.dim)];
    case 'embedding': return [F.embedding(x[0], x[1])];
    case 'indexSelect': return [F.indexSelect(x[0], p.dim, x[1])];
    case 'gather': return [F.gather(x[0], p.dim, x[1])];
    case 'scatterAdd': return [F.scatterAdd(x[0], p.dim, x[1], x[2])];
    case 'cat': return [F.cat(x, p.dim)];
    case 'stack': return [F.stack(x, p.dim)];
    case 'split': return F.split(x[0], p.sizes, p.dim);
    case 'rmsNorm': return [F.rmsNorm(x[0], x[1], p.eps)];
    case 'rotary': return [F.rotary(x[0], x[1], x[2])];
    case 'crossEntropy': return [F.crossEntropy(x[0], x[1], { ignoreIndex: p.ignoreIndex, reduction: p.reduction })];
    default: throw new Error(`no runner for op ${op}`);
  }
}

/** Same values, transposed storage: exercises every op's strided paths. */
function nonContiguous(t: Tensor): Tensor {
  if (t.ndim < 2) return t;
  return noGrad(() => {
    const tt = t.transpose(0, t.ndim - 1).contiguous();
    return tt.transpose(0, t.ndim - 1);
  });
}

function check(m: Manifest, dir: string, strided: boolean): void {
  const floatTol = m.tolerance?.rtol ?? 1e-5;
  tidy(() => {
    const inputs = m.inputs.map((n) => loadTensor(dir, m.tensors[n]));
    const xs = strided ? inputs.map(nonContiguous) : inputs;
    m.inputs.forEach((n, i) => { if (m.differentiable.includes(n)) xs[i].requiresGrad = true; });
    const outs = run(m, xs);
    expect(outs.length).toBe(m.outputs.length);
    let loss: Tensor | null = null;
    m.outputs.forEach((name, k) => {
      const ref = m.tensors[name];
      const got = outs[k];
      expect(got.shape, `${m.case} ${name} shape`).toEqual(ref.shape);
      const refVals = readValues(dir, ref);
      const exact = ref.dtype !== 'f64';  // ints, bools and cast outputs are stored in their dtype
      const vals = got.dataNumbers();
      if (exact) expect(vals, `${m.case} ${name}`).toEqual(refVals);
      else expect(relError(vals, refVals), `${m.case} ${name}`).toBeLessThanOrEqual(floatTol);
      const projName = m.projections?.[name] ?? (k === 0 ? 'proj' : undefined);
      if (projName && m.tensors[projName] && got.requiresGrad) {
        const term = got.to('f64').mul(loadTensor(dir, m.tensors[projName])).sum();
        loss = loss ? loss.add(term) : term;
      }
    });
    if (!m.differentiable.length) return;
    expect(loss, `${m.case}: output should require grad`).not.toBeNull();
    loss!.backward();
    m.inputs.forEach((n, i) => {
      if (!m.differentiable.includes(n)) return;
      const g = (strided ? xs[i] : inputs[i]).grad;
      expect(g, `${m.case} grad_${n}`).not.toBeNull();
      const ref = readValues(dir, m.tensors[`grad_${n}`]);
      expect(relError(g!.dataNumbers(), ref), `${m.case} grad_${n}`).toBeLessThanOrEqual(floatTol);
      g!.dispose();
    });
  });
}

describe('ops match the PyTorch fixtures', () => {
  for (const c of index.cases) {
    const dir = join(ROOT, c);
    const m = loadManifest(dir);
    it(`${c}`, () => check(m, dir, false));
    it(`${c} (non-contiguous inputs)`, () => check(m, dir, true));
  }
});
