// The fused AdamW and clipGradNorm against PyTorch (tools/oracle/gen_adamw.py, torch 1.13):
// five steps per case, parameters and moments after each step; bf16 parameters against an
// f32 master stepped by torch and rounded to bf16; the state round trip; bad input.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import native from '@fovea/native';
import { tensor, type Tensor } from '../src/index.js';
import { AdamW } from '../src/optim/optimizers.js';
import { clipGradNorm } from '../src/optim/clip.js';
import { relError } from './fixtures.js';

interface Entry { offset: number; dtype: 'f32' | 'bf16'; shape: number[] }
interface StepFx { grad: Entry; param: Entry; expAvg: Entry; expAvgSq: Entry; master?: Entry }
interface AdamWCase {
  name: string; paramDtype: 'f32' | 'bf16'; gradDtype: 'f32' | 'bf16'; lr: number; betas: [number, number];
  eps: number; weightDecay: number; param0: Entry; steps: StepFx[];
}
interface ClipCase { name: string; maxNorm: number; normType: number | 'inf'; totalNorm: number; grads: Entry[]; clipped: Entry[] }

const DIR = join(__dirname, 'fixtures', 'adamw');
const manifest = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8')) as { adamw: AdamWCase[]; clip: ClipCase[] };
const blob = readFileSync(join(DIR, 'data.bin'));

const count = (e: Entry) => e.shape.reduce((a, b) => a * b, 1);
/** Raw values; bf16 decoded exactly to f32. */
function values(e: Entry): Float32Array {
  const n = count(e);
  if (e.dtype === 'f32') return new Float32Array(blob.buffer.slice(blob.byteOffset + e.offset, blob.byteOffset + e.offset + 4 * n));
  const u = new Uint16Array(blob.buffer.slice(blob.byteOffset + e.offset, blob.byteOffset + e.offset + 2 * n));
  const out = new Float32Array(n), w = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) w[i] = u[i] << 16;
  return out;
}
const load = (e: Entry): Tensor => tensor(values(e), { shape: e.shape, dtype: e.dtype });
const bf16Bits = (x: number) => { const f = new Float32Array([x]); return new Uint32Array(f.buffer)[0] >>> 16; };
/** Distance in bf16 ulps between two bf16-representable numbers of the same sign. */
const ulps = (a: number, b: number) => (a === b ? 0 : Math.sign(a) !== Math.sign(b) ? Infinity : Math.abs(bf16Bits(a) - bf16Bits(b)));

describe('AdamW (fused) against torch.optim.AdamW', () => {
  for (const c of manifest.adamw) {
    it(c.name, () => {
      const p = load(c.param0);
      const opt = new AdamW([p], { lr: c.lr, betas: c.betas, eps: c.eps, weightDecay: c.weightDecay });
      for (const [k, s] of c.steps.entries()) {
        p.grad = load(s.grad);
        opt.step();
        p.grad.dispose();
        const st = opt.state();
        expect(st.step).toBe(k + 1);
        const ps = st.params[0]!;
        expect(ps.step).toBe(k + 1);
        expect(relError(ps.expAvg.data() as Float32Array, values(s.expAvg))).toBeLessThanOrEqual(1e-6);
        expect(relError(ps.expAvgSq.data() as Float32Array, values(s.expAvgSq))).toBeLessThanOrEqual(1e-6);
        const got = p.data() as Float32Array, want = values(s.param);
        if (c.paramDtype === 'f32') {
          expect(p.dtype).toBe('f32');
          expect(ps.master).toBeNull();
          expect(relError(got, want)).toBeLessThanOrEqual(1e-6);
        } else {
          expect(p.dtype).toBe('bf16');
          expect(relError(ps.master!.data() as Float32Array, values(s.master!))).toBeLessThanOrEqual(1e-6);
          let off = 0, worst = 0;
          for (let i = 0; i < got.length; i++) { const u = ulps(got[i], want[i]); if (u) off++; worst = Math.max(worst, u); }
          expect(worst).toBeLessThanOrEqual(1);
          expect(off).toBeLessThanOrEqual(Math.max(1, Math.ceil(got.length / 100)));  // ties only: rare
        }
      }
      opt.dispose();
      p.dispose();
    });
  }
});

describe('AdamW state', () => {
  it('state() / loadState() resumes bit for bit', () => {
    const c = manifest.adamw.find((x) => x.paramDtype === 'bf16')!;
    const make = () => load(c.param0);
    const pa = make(), pb = make();
    const a = new AdamW([pa], { lr: c.lr, betas: c.betas, eps: c.eps });
    for (const s of c.steps.slice(0, 2)) { pa.grad = load(s.grad); a.step(); }
    pb.copy_(pa);
    const b = new AdamW([pb], { lr: c.lr, betas: c.betas, eps: c.eps });
    b.loadState(a.state());
    expect(b.state().step).toBe(2);
    for (const s of c.steps.slice(2)) {
      pa.grad = load(s.grad); pb.grad = load(s.grad);
      a.step(); b.step();
    }
    expect(Array.from(pb.rawBytes())).toEqual(Array.from(pa.rawBytes()));
    expect(Array.from(b.state().params[0]!.master!.rawBytes())).toEqual(Array.from(a.state().params[0]!.master!.rawBytes()));
    a.dispose(); b.dispose();
  });

  it('a parameter without a gradient keeps its own step count (as torch)', () => {
    const p = tensor([1, 2, 3]), q = tensor([4, 5]);
    const opt = new AdamW([p, q], { lr: 0.1 });
    p.grad = tensor([0.1, 0.2, 0.3]);
    opt.step();
    q.grad = tensor([1, 1]);
    opt.step();
    const st = opt.state();
    expect(st.step).toBe(2);
    expect(st.params[0]!.step).toBe(2);
    expect(st.params[1]!.step).toBe(1);
    opt.dispose();
  });
});

describe('clipGradNorm against torch.nn.utils.clip_grad_norm_', () => {
  for (const c of manifest.clip) {
    it(c.name, () => {
      const params = c.grads.map((e) => { const p = tensor(new Float32Array(count(e)), { shape: e.shape }); p.grad = load(e); return p; });
      const total = clipGradNorm(params, c.maxNorm, { normType: c.normType === 'inf' ? Infinity : c.normType });
      expect(Math.abs(total - c.totalNorm) / c.totalNorm).toBeLessThanOrEqual(1e-6);
      params.forEach((p, i) => expect(relError(p.grad!.data() as Float32Array, values(c.clipped[i]))).toBeLessThanOrEqual(1e-6));
    });
  }

  it('reports a non-finite norm and leaves the gradients alone', () => {
    const p = tensor([0, 0, 0]);
    p.grad = tensor([1, NaN, 2]);
    expect(clipGradNorm([p], 1)).toBe(Infinity);
    expect(p.grad.dataNumbers()[0]).toBe(1);
    p.grad = tensor([1, Infinity, 2]);
    expect(clipGradNorm(p, 1, { normType: Infinity })).toBe(Infinity);
    expect(() => clipGradNorm([p], 1, { errorIfNonfinite: true })).toThrow(/clipGradNorm: the total norm of order 2 .* Infinity/);
  });

  it('bf16 gradients, no gradients, and bad arguments', () => {
    const p = tensor([0, 0], { dtype: 'bf16' });
    p.grad = tensor([3, 4], { dtype: 'bf16' });
    expect(clipGradNorm([p], 1)).toBeCloseTo(5, 12);
    expect(p.grad.dataNumbers()).toEqual([0.6015625, 0.80078125]);  // 0.6 and 0.8 rounded to bf16
    expect(clipGradNorm([tensor([1])], 1)).toBe(0);
    expect(() => clipGradNorm([p], -1)).toThrow(/clipGradNorm: maxNorm must be a number >= 0/);
    expect(() => clipGradNorm([p], 1, { normType: 0 })).toThrow(/clipGradNorm: normType must be/);
  });
});

describe('AdamW bad input', () => {
  it('rejects non-float parameters and bad hyper-parameters', () => {
    expect(() => new AdamW([tensor([1, 2], { dtype: 'i32' })], { lr: 1e-3 })).toThrow(/AdamW: parameter 0 is i32; AdamW updates f32, bf16 or f16/);
    expect(() => new AdamW([tensor([1])], { lr: -1 })).toThrow(/AdamW: lr must be a finite number >= 0, got -1/);
    expect(() => new AdamW([tensor([1])], { lr: 1e-3, betas: [1, 0.999] })).toThrow(/AdamW: beta1 must be in \[0, 1\), got 1/);
    expect(() => new AdamW([tensor([1])], { lr: 1e-3, betas: [0.9, -0.5] })).toThrow(/AdamW: beta2 must be in \[0, 1\)/);
    expect(() => new AdamW([tensor([1])], { lr: 1e-3, eps: NaN })).toThrow(/AdamW: eps must be/);
    const opt = new AdamW([tensor([1])], { lr: 1e-3 });
    opt.lr = -0.5;
    expect(() => opt.step()).toThrow(/AdamW.step: lr must be a finite number >= 0, got -0.5/);
  });

  it('rejects a gradient of the wrong shape, and the native binding checks too', () => {
    const p = tensor([1, 2, 3]);
    p.grad = tensor([1, 2]);
    const opt = new AdamW([p], { lr: 1e-3 });
    expect(() => opt.step()).toThrow(/AdamW.step: the gradient of parameter 0 has shape \[2\], expected \[3\]/);
    expect(p.dataNumbers()).toEqual([1, 2, 3]);
    p.grad = tensor([1, 2, 3]);
    opt.step();
    const s = opt.state().params[0]!;
    // Straight to the binding: shapes and dtypes are validated natively as well.
    const g = tensor([1, 2]);
    expect(() => native.adamwStep(p.arg(), g.arg(), s.expAvg.arg(), s.expAvgSq.arg(), null, 1e-3, 0.9, 0.999, 1e-8, 0, 2))
      .toThrow(/adamwStep: grad has shape \[2\] but the parameter has shape \[3\]/);
    const half = tensor([1, 2, 3], { dtype: 'bf16' });
    expect(() => native.adamwStep(half.arg(), p.arg(), s.expAvg.arg(), s.expAvgSq.arg(), null, 1e-3, 0.9, 0.999, 1e-8, 0, 2))
      .toThrow(/adamwStep: a bf16 parameter needs an f32 master copy/);
    expect(() => native.adamwStep(p.arg(), p.arg(), s.expAvg.arg(), half.arg(), null, 1e-3, 0.9, 0.999, 1e-8, 0, 2))
      .toThrow(/adamwStep: expAvgSq must be f32, got bf16/);
    opt.dispose();
  });

  it('loadState rejects wrong shapes, dtypes, masters and counts', () => {
    const p = tensor([1, 2, 3]), h = tensor([1, 2], { dtype: 'bf16' });
    const opt = new AdamW([p, h], { lr: 1e-3 });
    p.grad = tensor([1, 1, 1]); h.grad = tensor([1, 1], { dtype: 'bf16' });
    opt.step();
    const good = opt.state();
    const e0 = good.params[0]!, e1 = good.params[1]!;
    const f = (x: number[], dtype: 'f32' | 'bf16' = 'f32') => tensor(x, { dtype });
    expect(() => opt.loadState({ step: 1, params: [e0] })).toThrow(/AdamW.loadState: the state has 1 parameter entries, the optimizer has 2/);
    expect(() => opt.loadState({ step: 1, params: [{ ...e0, expAvg: f([0, 0]) }, e1] }))
      .toThrow(/AdamW.loadState: params\[0\].expAvg has shape \[2\], expected \[3\]/);
    expect(() => opt.loadState({ step: 1, params: [{ ...e0, expAvgSq: f([0, 0, 0], 'bf16') }, e1] }))
      .toThrow(/AdamW.loadState: params\[0\].expAvgSq is bf16, expected f32/);
    expect(() => opt.loadState({ step: 1, params: [e0, { ...e1, master: null }] }))
      .toThrow(/AdamW.loadState: params\[1\].master must be a Tensor/);
    expect(() => opt.loadState({ step: 1, params: [{ ...e0, master: f([1, 2, 3]) }, e1] }))
      .toThrow(/AdamW.loadState: params\[0\].master must be null for a f32 parameter/);
    expect(() => opt.loadState({ step: -1, params: [e0, e1] })).toThrow(/AdamW.loadState: step must be an integer >= 0/);
    // Nothing was replaced by the failed loads.
    expect(opt.state().params[0]!.expAvg).toBe(e0.expAvg);
    const want = e1.master!.dataNumbers();
    opt.loadState(good);  // copies first, then frees the old state (e0, e1 die with it)
    expect(e1.master!.isDisposed).toBe(true);
    expect(opt.state().params[1]!.master!.dataNumbers()).toEqual(want);
    opt.dispose();
  });
});
