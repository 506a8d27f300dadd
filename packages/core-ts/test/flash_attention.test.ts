// flashAttention (src/ops/flashAttention.ts): against the committed PyTorch f64 fixtures
// (tools/oracle/gen_flash_attn.py and the shared kernel fixtures), against a naive attention
// composed of existing ops (matmul, softmax, where), gradcheck in f64, the dense attention()
// wrapper, bf16 inputs, and every bad input the issue lists (each a clear error).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tensor, gradcheck, randn, tensor, tidy, where, cat, noGrad } from '../src/index.js';
import { attention, flashAttention } from '../src/ops/flashAttention.js';
import { loadManifest, loadTensor, readValues, relError } from './fixtures.js';

const ROOT = join(__dirname, 'fixtures', 'flash_attn');
const index = JSON.parse(readFileSync(join(ROOT, 'index.json'), 'utf8')) as { cases: string[]; shared: string[] };
const vals = (t: Tensor) => Array.from(t.to('f64').data() as Float64Array);
const i32 = (xs: number[]) => tensor(xs, { dtype: 'i32' });
// Norm-wise error with an absolute floor: gradients whose reference is ~0 (a window of one key
// gives dS = P(dP − dO·O) = 0 exactly) are judged by ‖a − b‖ / √n instead of relative error.
function gradError(a: number[], b: number[]): number {
  const abs = Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]) ** 2, 0) / Math.max(a.length, 1));
  return Math.min(relError(a, b), abs * 1e-5 / 1e-7);  // abs 1e-7 counts like rel 1e-5
}

describe('flashAttention vs PyTorch f64 fixtures (gen_flash_attn.py)', () => {
  for (const name of index.cases) {
    it(name, () => tidy(() => {
      const dir = join(ROOT, name), m = loadManifest(dir), T = m.tensors;
      const p = m.params as { maxSeqlenQ: number; maxSeqlenK: number; causal: boolean; windowLeft: number; windowRight: number; scale: number };
      const [q, k, v] = ['q', 'k', 'v'].map((n) => loadTensor(dir, T[n]).requiresGrad_(true));
      const { out, lse } = flashAttention(q, k, v, {
        cuSeqlensQ: loadTensor(dir, T.cuSeqlensQ), cuSeqlensK: loadTensor(dir, T.cuSeqlensK), ...p,
      });
      expect(relError(vals(out), readValues(dir, T.out))).toBeLessThan(2e-6);
      expect(relError(vals(lse), readValues(dir, T.lse))).toBeLessThan(2e-6);
      out.mul(loadTensor(dir, T.proj)).sum().backward();
      for (const n of ['q', 'k', 'v']) {
        const g = [q, k, v][['q', 'k', 'v'].indexOf(n)].grad!;
        expect(gradError(vals(g), readValues(dir, T[`grad_${n}`])), `grad_${n}`).toBeLessThan(1e-5);
      }
    }));
  }
});

describe('flashAttention vs the shared kernel fixtures (/work/shared/fixtures/kernels)', () => {
  for (const name of index.shared) {
    it(name, () => tidy(() => {
      const dir = join(ROOT, 'shared', name);
      const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
      const T = m.tensors, p = m.params;
      const [q, k, v] = ['q', 'k', 'v'].map((n) => loadTensor(dir, T[n]).requiresGrad_(true));
      const { out, lse } = flashAttention(q, k, v, {
        cuSeqlensQ: loadTensor(dir, T.cu_seqlens_q), cuSeqlensK: loadTensor(dir, T.cu_seqlens_k),
        maxSeqlenQ: Math.max(...p.seqlens_q), maxSeqlenK: Math.max(...p.seqlens_k),
        causal: p.causal, windowLeft: p.window_left, windowRight: p.window_right, scale: p.softmax_scale,
      });
      expect(relError(vals(out), readValues(dir, T.out))).toBeLessThan(2e-6);
      expect(relError(vals(lse), readValues(dir, T.lse))).toBeLessThan(2e-6);
      out.backward(loadTensor(dir, T.dout));
      expect(gradError(vals(q.grad!), readValues(dir, T.dq))).toBeLessThan(1e-5);
      expect(gradError(vals(k.grad!), readValues(dir, T.dk))).toBeLessThan(1e-5);
      expect(gradError(vals(v.grad!), readValues(dir, T.dv))).toBeLessThan(1e-5);
    }));
  }
  it('has the shared fixtures copied into the repo', () => {
    expect(index.shared.length).toBeGreaterThanOrEqual(6);
    for (const n of index.shared) expect(existsSync(join(ROOT, 'shared', n, 'manifest.json'))).toBe(true);
  });
});

// Naive attention from existing ops: per sequence, scores = q·kᵀ·scale with an explicit mask
// (where), softmax, ·v. Rows must each see at least one key (softmax of all -inf is NaN).
function naive(q: Tensor, k: Tensor, v: Tensor, sq: number[], sk: number[], causal: boolean, wl: number, wr: number): Tensor {
  const Hq = q.shape[1], Hkv = k.shape[1], D = q.shape[2], g = Hq / Hkv, scale = 1 / Math.sqrt(D);
  const outs: Tensor[] = [];
  let q0 = 0, k0 = 0;
  for (let b = 0; b < sq.length; b++) {
    const qs = q.narrow(0, q0, sq[b]).permute([1, 0, 2]);                            // [Hq, sq, D]
    const expandKv = (t: Tensor) => t.narrow(0, k0, sk[b]).unsqueeze(2).expand([sk[b], Hkv, g, D]).reshape([sk[b], Hq, D]).permute([1, 0, 2]);
    const ks = expandKv(k), vs = expandKv(v);                                          // [Hq, sk, D]
    const mask: boolean[] = [];
    for (let i = 0; i < sq[b]; i++) {
      for (let j = 0; j < sk[b]; j++) {
        const diag = i + sk[b] - sq[b];
        mask.push(!((causal && j > diag) || (wl >= 0 && j < diag - wl) || (wr >= 0 && j > diag + wr)));
      }
    }
    const s = qs.matmul(ks.transpose(1, 2)).mul(scale);
    const masked = where(tensor(mask, { shape: [sq[b], sk[b]], dtype: 'bool' }), s, -Infinity);
    outs.push(masked.softmax(-1).matmul(vs).permute([1, 0, 2]));                      // [sq, Hq, D]
    q0 += sq[b]; k0 += sk[b];
  }
  return cat(outs, 0);
}

describe('flashAttention vs a naive attention of existing ops', () => {
  const configs: [string, number[], number[], number, number, number, boolean, number, number][] = [
    ['gqa causal prefix', [5, 70, 1], [9, 70, 3], 4, 2, 16, true, -1, -1],
    ['mha noncausal window', [33, 2], [33, 2], 3, 3, 24, false, 5, 3],
    ['gqa7 causal window', [80], [80], 7, 1, 8, true, 10, 0],
  ];
  for (const [name, sq, sk, hq, hkv, d, causal, wl, wr] of configs) {
    it(name, () => tidy(() => {
      const tq = sq.reduce((a, b) => a + b, 0), tk = sk.reduce((a, b) => a + b, 0);
      const mk = (shape: number[], seed: number) => randn(shape, { seed, std: 1.5 });
      const leaves = (s: number) => [mk([tq, hq, d], s), mk([tk, hkv, d], s + 1), mk([tk, hkv, d], s + 2)].map((t) => t.requiresGrad_(true));
      const [q1, k1, v1] = leaves(10), [q2, k2, v2] = leaves(10);
      const cum = (xs: number[]) => xs.reduce((o, x) => [...o, o[o.length - 1] + x], [0]);
      const { out } = flashAttention(q1, k1, v1, {
        cuSeqlensQ: i32(cum(sq)), cuSeqlensK: i32(cum(sk)), maxSeqlenQ: Math.max(...sq), maxSeqlenK: Math.max(...sk),
        causal, windowLeft: wl, windowRight: wr,
      });
      const ref = naive(q2, k2, v2, sq, sk, causal, wl, wr);
      expect(relError(vals(out), vals(ref))).toBeLessThan(1e-5);
      const proj = randn(out.shape, { seed: 99 });
      out.mul(proj).sum().backward();
      ref.mul(proj).sum().backward();
      expect(relError(vals(q1.grad!), vals(q2.grad!))).toBeLessThan(1e-5);
      expect(relError(vals(k1.grad!), vals(k2.grad!))).toBeLessThan(1e-5);
      expect(relError(vals(v1.grad!), vals(v2.grad!))).toBeLessThan(1e-5);
    }));
  }
});

describe('flashAttention gradcheck (f64)', () => {
  const cases: [string, number[], number[], number, number, boolean, number, number][] = [
    ['gqa causal prefix with an empty sequence', [2, 0, 3], [4, 1, 3], 4, 2, true, -1, -1],
    ['mha noncausal window, rows that see nothing', [4, 2], [4, 1], 2, 2, true, 1, 0],
  ];
  for (const [name, sq, sk, hq, hkv, causal, wl, wr] of cases) {
    it(name, () => tidy(() => {
      const cum = (xs: number[]) => xs.reduce((o, x) => [...o, o[o.length - 1] + x], [0]);
      const tq = cum(sq).at(-1)!, tk = cum(sk).at(-1)!, d = 3;
      const inputs = [randn([tq, hq, d], { seed: 1, dtype: 'f64' }), randn([tk, hkv, d], { seed: 2, dtype: 'f64' }), randn([tk, hkv, d], { seed: 3, dtype: 'f64' })];
      const opts = { cuSeqlensQ: i32(cum(sq)), cuSeqlensK: i32(cum(sk)), maxSeqlenQ: Math.max(...sq), maxSeqlenK: Math.max(...sk), causal, windowLeft: wl, windowRight: wr };
      const res = gradcheck((q, k, v) => flashAttention(q, k, v, opts).out, inputs);
      expect(res.ok, res.worst).toBe(true);
    }));
  }
  it('attention() dense wrapper', () => tidy(() => {
    const inputs = [randn([2, 3, 4, 2], { seed: 4, dtype: 'f64' }), randn([2, 3, 2, 2], { seed: 5, dtype: 'f64' }), randn([2, 3, 2, 2], { seed: 6, dtype: 'f64' })];
    const res = gradcheck((q, k, v) => attention(q, k, v, { causal: true }), inputs);
    expect(res.ok, res.worst).toBe(true);
  }));
});

describe('flashAttention semantics', () => {
  it('rows that see no key give out 0 and lse +inf; zero-length sequences are fine', () => tidy(() => {
    // Sequence 0: 3 queries, 1 key, causal: rows 0 and 1 see nothing. Sequence 1: empty.
    const q = randn([3, 2, 4], { seed: 1 }), k = randn([1, 1, 4], { seed: 2 }), v = randn([1, 1, 4], { seed: 3 });
    const { out, lse } = flashAttention(q, k, v, { cuSeqlensQ: i32([0, 3, 3]), cuSeqlensK: i32([0, 1, 1]), maxSeqlenQ: 3, maxSeqlenK: 1, causal: true });
    const o = out.dataNumbers(), l = lse.dataNumbers();
    expect(o.slice(0, 16).every((x) => x === 0)).toBe(true);
    expect([l[0], l[1], l[3], l[4]]).toEqual([Infinity, Infinity, Infinity, Infinity]);
    expect(Number.isFinite(l[2]) && Number.isFinite(l[5])).toBe(true);
    expect(o.slice(16, 20)).toEqual(v.dataNumbers().map((x) => expect.closeTo(x, 6)));  // one key: out = v
  }));

  it('attention() equals flashAttention on the packed tensors', () => tidy(() => {
    const q = randn([2, 5, 4, 8], { seed: 7 }), k = randn([2, 6, 2, 8], { seed: 8 }), v = randn([2, 6, 2, 8], { seed: 9 });
    const dense = attention(q, k, v, { causal: true });
    const { out } = flashAttention(q.reshape([10, 4, 8]), k.reshape([12, 2, 8]), v.reshape([12, 2, 8]),
      { cuSeqlensQ: i32([0, 5, 10]), cuSeqlensK: i32([0, 6, 12]), maxSeqlenQ: 5, maxSeqlenK: 6, causal: true });
    expect(dense.shape).toEqual([2, 5, 4, 8]);
    expect(relError(vals(dense), vals(out))).toBe(0);
  }));

  it('bf16 inputs are computed in f32 and rounded once', () => tidy(() => {
    const q = randn([40, 4, 64], { seed: 1 }), k = randn([40, 2, 64], { seed: 2 }), v = randn([40, 2, 64], { seed: 3 });
    const [qb, kb, vb] = [q, k, v].map((t) => t.to('bf16'));
    const opts = { cuSeqlensQ: i32([0, 17, 40]), cuSeqlensK: i32([0, 17, 40]), maxSeqlenQ: 23, maxSeqlenK: 23, causal: true };
    const ref = flashAttention(qb.to('f32'), kb.to('f32'), vb.to('f32'), opts).out;
    const got = flashAttention(qb, kb, vb, opts);
    expect(got.out.dtype).toBe('bf16');
    expect(got.lse.dtype).toBe('f32');
    expect(relError(vals(got.out), vals(ref))).toBeLessThan(4e-3);
  }));

  it('non-contiguous q (a permuted view) gives the same result', () => tidy(() => {
    const qT = randn([4, 9, 8], { seed: 1 }), k = randn([9, 2, 8], { seed: 2 }), v = randn([9, 2, 8], { seed: 3 });
    const opts = { cuSeqlensQ: i32([0, 9]), cuSeqlensK: i32([0, 9]), maxSeqlenQ: 9, maxSeqlenK: 9 };
    const a = flashAttention(qT.permute([1, 0, 2]), k, v, opts).out;
    const b = flashAttention(noGrad(() => qT.permute([1, 0, 2]).contiguous()), k, v, opts).out;
    expect(relError(vals(a), vals(b))).toBe(0);
  }));
});

describe('flashAttention bad input', () => {
  const q = () => randn([6, 4, 8], { seed: 1 }), kv = () => randn([6, 2, 8], { seed: 2 });
  const base = () => ({ cuSeqlensQ: i32([0, 2, 6]), cuSeqlensK: i32([0, 2, 6]), maxSeqlenQ: 4, maxSeqlenK: 4 });
  const call = (over: Record<string, unknown> = {}, qq = q(), kk = kv(), vv = kv()) =>
    () => tidy(() => flashAttention(qq, kk, vv, { ...base(), ...over } as never));
  it('accepts the good call', () => { expect(call()).not.toThrow(); });
  it('cuSeqlens not non-decreasing', () => {
    expect(call({ cuSeqlensQ: i32([0, 4, 2, 6]), cuSeqlensK: i32([0, 2, 4, 6]) })).toThrow(/flashAttention: cuSeqlensQ must be non-decreasing, but cuSeqlensQ\[2\] = 2 < cuSeqlensQ\[1\] = 4/);
  });
  it('cuSeqlens not starting at 0', () => {
    expect(call({ cuSeqlensK: i32([1, 2, 6]) })).toThrow(/flashAttention: cuSeqlensK\[0\] must be 0, got 1/);
  });
  it('last entry != total', () => {
    expect(call({ cuSeqlensQ: i32([0, 2, 5]) })).toThrow(/last entry of cuSeqlensQ must equal totalQ .* = 6, got 5/);
    expect(call({ cuSeqlensK: i32([0, 2, 7]) })).toThrow(/last entry of cuSeqlensK must equal totalK .* = 6, got 7/);
  });
  it('Q and K offsets of different lengths', () => {
    expect(call({ cuSeqlensQ: i32([0, 6]) })).toThrow(/cuSeqlensQ and cuSeqlensK must have the same length/);
  });
  it('Hq not a multiple of Hkv', () => {
    expect(call({}, q(), randn([6, 3, 8]), randn([6, 3, 8]))).toThrow(/flashAttention: the number of query heads \(4\) must be a multiple of the number of KV heads \(3\)/);
  });
  it('D different between q, k and v', () => {
    expect(call({}, q(), randn([6, 2, 4]), kv())).toThrow(/flashAttention: q, k and v must have the same head dim/);
    expect(call({}, q(), kv(), randn([6, 2, 16]))).toThrow(/same head dim/);
  });
  it('wrong dtype of the offsets', () => {
    expect(call({ cuSeqlensQ: tensor([0, 2, 6], { dtype: 'i64' }) })).toThrow(/flashAttention: opts.cuSeqlensQ must be an i32 tensor, got i64/);
    expect(call({ cuSeqlensK: tensor([0, 2, 6]) })).toThrow(/opts.cuSeqlensK must be an i32 tensor, got f32/);
  });
  it('offsets that are not 1-D', () => {
    expect(call({ cuSeqlensQ: tensor([[0, 2, 6]], { dtype: 'i32' }), cuSeqlensK: tensor([[0, 2, 6]], { dtype: 'i32' }) })).toThrow(/cuSeqlensQ must be a 1-D i32 tensor/);
  });
  it('wrong device of the offsets (a CUDA q with CPU offsets is refused before any kernel)', () => {
    // Without a GPU we cannot build a CUDA tensor; the check is the same one on ordinals, so
    // exercise it through a fake device ordinal on an offsets view.
    const cu = i32([0, 2, 6]);
    Object.defineProperty(cu, 'ordinal', { get: () => 0 });
    Object.defineProperty(cu, 'device', { get: () => 'cuda:0' });
    expect(call({ cuSeqlensQ: cu })).toThrow(/flashAttention: opts.cuSeqlensQ is on cuda:0 but q is on cpu; the offsets must be on q's device/);
  });
  it('maxSeqlen smaller than the longest sequence', () => {
    expect(call({ maxSeqlenQ: 3 })).toThrow(/maxSeqlenQ = 3 is less than the longest query sequence \(4\)/);
    expect(call({ maxSeqlenK: 1.5 })).toThrow(/opts.maxSeqlenK must be an integer >= 0/);
  });
  it('dtype mismatch, wrong rank, bad options', () => {
    expect(call({}, q(), kv().to('f64'), kv())).toThrow(/flashAttention: k is f64 but q is f32/);
    expect(call({}, randn([6, 32]))).toThrow(/flashAttention: q must be 3-D \[total, heads, headDim\], got \[6, 32\]/);
    expect(call({ windowLeft: -2 })).toThrow(/opts.windowLeft must be an integer >= -1/);
    expect(call({ scale: NaN })).toThrow(/opts.scale must be a finite number/);
    expect(call({ causal: 1 })).toThrow(/opts.causal must be a boolean/);
    expect(() => flashAttention(q(), kv(), kv(), undefined as never)).toThrow(/flashAttention: opts with cuSeqlensQ/);
    expect(call({}, q(), kv(), randn([5, 2, 8]))).toThrow(/v must have k's shape/);
    expect(call({}, tensor([1, 2, 3], { dtype: 'i32' }).reshape([1, 1, 3]))).toThrow(/q must be a float tensor/);
  });
});
