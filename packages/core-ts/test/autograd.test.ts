// Autograd: gradient accumulation, noGrad, detach, retainGraph, multi-use of a tensor, and
// gradcheck (finite differences in f64) on every differentiable op.
import { describe, expect, it } from 'vitest';
import * as F from '../src/index.js';
import { Tensor, gradcheck, noGrad, randn, rand, tensor, tidy } from '../src/index.js';

describe('autograd mechanics', () => {
  it('accumulates gradients across backward calls and through shared inputs', () => {
    const x = tensor([1, 2, 3], { requiresGrad: true });
    const y = x.mul(x).add(x).sum();  // d/dx = 2x + 1
    y.backward();
    expect(x.grad!.toArray()).toEqual([3, 5, 7]);
    x.mul(2).sum().backward();
    expect(x.grad!.toArray()).toEqual([5, 7, 9]);
  });

  it('leaf gradients never share a buffer, even when a backward hands one tensor to two leaves', () => {
    const x = tensor([1, 2], { requiresGrad: true }), y = tensor([3, 4], { requiresGrad: true });
    x.add(y).sum().backward();  // add's backward hands the same tensor to both leaves
    expect(x.grad!.storage).not.toBe(y.grad!.storage);
    x.add(y).mul(2).sum().backward();
    expect(x.grad!.toArray()).toEqual([3, 3]);
    expect(y.grad!.toArray()).toEqual([3, 3]);
    const w = tensor([[1, 2], [3, 4]], { requiresGrad: true });
    w.matmul(tensor([[1], [1]])).sum().backward();
    expect(w.grad!.toArray()).toEqual([[1, 1], [1, 1]]);
  });

  it('noGrad records nothing; detach cuts the graph', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const y = noGrad(() => x.mul(3));
    expect(y.requiresGrad).toBe(false);
    const z = x.detach();
    expect(z.requiresGrad).toBe(false);
    expect(() => z.sum().backward()).toThrow(/does not require grad/);
  });


  it('second backward without retainGraph throws a clear error', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const y = x.exp().sum();
    y.backward(null, { retainGraph: true });
    y.backward();
    expect(() => y.backward()).toThrow(/already freed/);
    expect(x.grad!.dataNumbers()[0]).toBeCloseTo(2 * Math.E, 5);
  });

  it('backward survives tidy disposing the intermediates', () => {
    const x = tensor([0.5, -1], { requiresGrad: true });
    const loss = tidy(() => x.tanh().mul(2).exp().sum());
    loss.backward();
    const expected = [0.5, -1].map((v) => 2 * (1 - Math.tanh(v) ** 2) * Math.exp(2 * Math.tanh(v)));
    x.grad!.dataNumbers().forEach((g, i) => expect(g).toBeCloseTo(expected[i], 5));
  });
});

const r = (shape: number[], seed: number, opts: { low?: number; high?: number } = {}) =>
  rand(shape, { seed, dtype: 'f64', low: opts.low ?? -1, high: opts.high ?? 1 });

describe('gradcheck (f64 finite differences) on every differentiable op', () => {
  const cases: [string, () => Tensor[], (...x: Tensor[]) => Tensor | Tensor[], number[]?][] = [
    ['add broadcast', () => [r([2, 3], 1), r([3], 2)], (a, b) => a.add(b)],
    ['sub broadcast', () => [r([2, 1], 1), r([1, 3], 2)], (a, b) => a.sub(b)],
    ['mul', () => [r([2, 3], 1), r([2, 3], 2)], (a, b) => a.mul(b)],
    ['div', () => [r([2, 3], 1), r([2, 3], 2, { low: 0.5, high: 2 })], (a, b) => a.div(b)],
    ['pow', () => [r([4], 1, { low: 0.5, high: 2 }), r([4], 2)], (a, b) => a.pow(b)],
    ['powScalar', () => [r([4], 1, { low: 0.5, high: 2 })], (a) => a.pow(2.5)],
    ['maximum', () => [r([5], 1), r([5], 2)], (a, b) => a.maximum(b)],
    ['minimum', () => [r([5], 1), r([5], 2)], (a, b) => a.minimum(b)],
    ['where', () => [r([4], 1), r([4], 2), r([4], 3)], (c, a, b) => F.where(c.gt(0), a, b), [1, 2]],
    ['neg', () => [r([3], 1)], (a) => a.neg()],
    ['exp', () => [r([3], 1)], (a) => a.exp()],
    ['log', () => [r([3], 1, { low: 0.5, high: 2 })], (a) => a.log()],
    ['sqrt', () => [r([3], 1, { low: 0.5, high: 2 })], (a) => a.sqrt()],
    ['rsqrt', () => [r([3], 1, { low: 0.5, high: 2 })], (a) => a.rsqrt()],
    ['abs', () => [r([4], 1)], (a) => a.abs()],
    ['silu', () => [r([4], 1)], (a) => a.silu()],
    ['gelu', () => [r([4], 1)], (a) => a.gelu()],
    ['sigmoid', () => [r([4], 1)], (a) => a.sigmoid()],
    ['tanh', () => [r([4], 1)], (a) => a.tanh()],
    ['relu', () => [r([4], 1)], (a) => a.relu()],
    ['clamp', () => [r([6], 1)], (a) => a.clamp(-0.5, 0.5)],
    ['sum dims keepdim', () => [r([2, 3, 4], 1)], (a) => a.sum([0, 2], true)],
    ['mean', () => [r([2, 3], 1)], (a) => a.mean(-1)],
    ['max', () => [r([3, 4], 1)], (a) => a.max(1).values],
    ['min', () => [r([3, 4], 1)], (a) => a.min(0, true).values],
    ['logsumexp', () => [r([3, 4], 1)], (a) => a.logsumexp(1)],
    ['var', () => [r([3, 4], 1)], (a) => a.var(1)],
    ['matmul batched broadcast', () => [r([2, 1, 3, 4], 1), r([5, 4, 2], 2)], (a, b) => a.matmul(b)],
    ['matmul 1-D', () => [r([4], 1), r([4, 3], 2)], (a, b) => a.matmul(b)],
    ['linear', () => [r([2, 4], 1), r([3, 4], 2), r([3], 3)], (x, w, b) => F.linear(x, w, b)],
    ['softmax dim0', () => [r([3, 4], 1)], (a) => a.softmax(0)],
    ['logSoftmax', () => [r([3, 4], 1)], (a) => a.logSoftmax(-1)],
    ['rmsNorm', () => [r([3, 8], 1), r([8], 2)], (x, w) => F.rmsNorm(x, w, 1e-6)],
    ['rotary', () => [r([3, 2, 4], 1), r([3, 4], 2), r([3, 4], 3)], (x, c, s) => F.rotary(x, c, s), [0]],
    ['embedding', () => [r([5, 3], 1), tensor([0, 4, 4, 2], { dtype: 'i32' })], (w, i) => F.embedding(w, i), [0]],
    ['indexSelect', () => [r([3, 5], 1), tensor([4, 0, 4], { dtype: 'i64' })], (x, i) => F.indexSelect(x, 1, i), [0]],
    ['gather', () => [r([3, 4], 1), tensor([[0, 3], [1, 1], [2, 0]], { dtype: 'i32' })], (x, i) => F.gather(x, 1, i), [0]],
    ['scatterAdd', () => [r([3, 4], 1), tensor([[0, 3], [1, 1], [2, 0]], { dtype: 'i32' }), r([3, 2], 2)], (x, i, s) => F.scatterAdd(x, 1, i, s), [0, 2]],
    ['cat', () => [r([2, 3], 1), r([2, 1], 2)], (a, b) => F.cat([a, b], 1)],
    ['stack', () => [r([2, 3], 1), r([2, 3], 2)], (a, b) => F.stack([a, b], 1)],
    ['split', () => [r([5, 2], 1)], (a) => F.split(a, [2, 3], 0)],
    ['views', () => [r([2, 3, 4], 1)], (a) => a.permute([2, 0, 1]).reshape([4, 6]).narrow(1, 1, 4).unsqueeze(0).expand([2, 4, 4]).squeeze(1)],
    ['crossEntropy mean', () => [r([4, 6], 1), tensor([1, -100, 5, 0], { dtype: 'i32' })], (l, t) => F.crossEntropy(l, t), [0]],
    ['crossEntropy none', () => [r([4, 6], 1), tensor([1, 2, 5, 0], { dtype: 'i64' })], (l, t) => F.crossEntropy(l, t, { reduction: 'none' }), [0]],
  ];
  for (const [name, make, fn, check] of cases) {
    it(name, () => {
      const res = tidy(() => gradcheck(fn, make(), { check }));
      expect(res.ok, res.worst).toBe(true);
    });
  }
});

void randn;
