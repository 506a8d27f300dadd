// Tensor basics: creation, dtypes, views without copies, reading back, devices, seeded
// random numbers.
import { describe, expect, it } from 'vitest';
import {
  Tensor, arange, cudaStatus, full, ones, rand, randn, tensor, zeros, Generator, manualSeed, setNumThreads, numThreads,
} from '../src/index.js';

describe('creation', () => {
  it('builds from nested arrays, typed arrays and scalars', () => {
    const a = tensor([[1, 2, 3], [4, 5, 6]]);
    expect(a.shape).toEqual([2, 3]);
    expect(a.dtype).toBe('f32');
    expect(a.toArray()).toEqual([[1, 2, 3], [4, 5, 6]]);
    const b = tensor(new Int32Array([1, -2, 3]));
    expect(b.dtype).toBe('i32');
    expect(Array.from(b.data() as Int32Array)).toEqual([1, -2, 3]);
    const c = tensor(2.5);
    expect(c.shape).toEqual([]);
    expect(c.item()).toBe(2.5);
    const d = tensor([true, false]);
    expect(d.dtype).toBe('bool');
    expect(d.toArray()).toEqual([true, false]);
    const e = tensor([1, 2, 3], { dtype: 'i64' });
    expect((e.data() as BigInt64Array)[2]).toBe(3n);
  });

  it('rounds to bf16 and f16 to nearest even', () => {
    const x = tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, 1e-8], { dtype: 'bf16' });
    expect(Array.from(x.data())).toEqual([1, 1 + 2 ** -6, 65536, Math.fround(x.data()[3])]);
    const h = tensor([1 + 2 ** -11, 65504, 70000], { dtype: 'f16' });
    expect(Array.from(h.data())).toEqual([1, 65504, Infinity]);
  });

  it('zeros, ones, full, arange', () => {
    expect(zeros([2, 2]).toArray()).toEqual([[0, 0], [0, 0]]);
    expect(ones([3], { dtype: 'i32' }).toArray()).toEqual([1, 1, 1]);
    expect(full([2], 7.5, { dtype: 'f64' }).toArray()).toEqual([7.5, 7.5]);
    expect(arange(5).toArray()).toEqual([0, 1, 2, 3, 4]);
    expect(arange(5).dtype).toBe('i64');
    expect(arange(0, 1, 0.25).toArray()).toEqual([0, 0.25, 0.5, 0.75]);
  });

  it('random numbers are reproducible from a seed and independent of the thread count', () => {
    const a = randn([1000], { seed: 42 }).dataNumbers();
    const b = randn([1000], { seed: 42 }).dataNumbers();
    expect(a).toEqual(b);
    const n = numThreads();
    setNumThreads(1);
    const c = randn([1000], { seed: 42 }).dataNumbers();
    setNumThreads(n);
    expect(c).toEqual(a);
    const g = new Generator(7);
    const u1 = rand([10], { generator: g }).dataNumbers();
    const u2 = rand([10], { generator: g }).dataNumbers();
    expect(u1).not.toEqual(u2);
    manualSeed(3);
    const m1 = rand([5]).dataNumbers();
    manualSeed(3);
    expect(rand([5]).dataNumbers()).toEqual(m1);
    const big = randn([100000], { seed: 1 }).dataNumbers();
    const mean = big.reduce((s, v) => s + v, 0) / big.length;
    const sd = Math.sqrt(big.reduce((s, v) => s + (v - mean) ** 2, 0) / big.length);
    expect(Math.abs(mean)).toBeLessThan(0.02);
    expect(Math.abs(sd - 1)).toBeLessThan(0.02);
    const u = rand([100000], { seed: 2, low: -1, high: 3 }).dataNumbers();
    expect(Math.min(...u)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...u)).toBeLessThan(3);
  });
});

describe('views', () => {
  it('reshape, permute, transpose, narrow, expand, squeeze share storage', () => {
    const x = arange(24, undefined, 1, { dtype: 'f32' }).reshape([2, 3, 4]);
    const p = x.permute([2, 0, 1]);
    expect(p.storage).toBe(x.storage);
    expect(p.shape).toEqual([4, 2, 3]);
    expect(p.isContiguous()).toBe(false);
    expect(p.contiguous().reshape([-1]).dataNumbers().slice(0, 6)).toEqual([0, 4, 8, 12, 16, 20]);
    const n = x.narrow(2, 1, 2);
    expect(n.storage).toBe(x.storage);
    expect(n.toArray()).toEqual([[[1, 2], [5, 6], [9, 10]], [[13, 14], [17, 18], [21, 22]]]);
    const s = x.slice(1, 0, 3, 2);
    expect(s.shape).toEqual([2, 2, 4]);
    expect(s.select(1, 1).toArray()).toEqual([[8, 9, 10, 11], [20, 21, 22, 23]]);
    const e = tensor([1, 2, 3]).unsqueeze(0).expand([2, 3]);
    expect(e.strides).toEqual([0, 1]);
    expect(e.toArray()).toEqual([[1, 2, 3], [1, 2, 3]]);
    expect(tensor([[[5]]]).squeeze().shape).toEqual([]);
    expect(x.transpose(0, 2).reshape([4, 6]).shape).toEqual([4, 6]);
    expect(x.flatten(1).shape).toEqual([2, 12]);
  });

  it('to(dtype) casts; float → int truncates toward zero', () => {
    const x = tensor([1.7, -1.7, 2.5]);
    expect(x.to('i32').toArray()).toEqual([1, -1, 2]);
    expect(x.to('f64').dtype).toBe('f64');
    expect(tensor([1, 0, 2], { dtype: 'i32' }).to('bool').toArray()).toEqual([true, false, true]);
  });
});

describe('devices', () => {
  it('asking for cuda without a usable GPU throws an error saying what is missing', () => {
    const st = cudaStatus();
    if (st.available) return;  // a GPU machine: covered by the GPU suite
    expect(st.reason.length).toBeGreaterThan(0);
    expect(() => zeros([2], { device: 'cuda' })).toThrow(/cuda|CUDA|sidecar|driver|GPU/);
    expect(() => zeros([2], { device: 'tpu' })).toThrow(/unknown device/);
  });
});

void Tensor;
