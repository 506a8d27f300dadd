// Bad input: every op validates at the boundary and throws a JavaScript Error that names the
// op and what was expected. Nothing may crash the process or read out of bounds; the last
// group forges views and handles directly against the native layer to prove it.
import { describe, expect, it } from 'vitest';
import native from '@fovea/native';
import * as F from '../src/index.js';
import { Tensor, tensor, zeros, ones, arange } from '../src/index.js';

describe('ops reject bad input with clear errors', () => {
  it('mismatched shapes', () => {
    expect(() => F.add(zeros([2, 3]), zeros([4, 3]))).toThrow(/add: shapes \[2, 3\] and \[4, 3\] cannot be broadcast/);
    expect(() => F.matmul(zeros([2, 3]), zeros([4, 5]))).toThrow(/matmul: inner dimensions differ/);
    expect(() => F.linear(zeros([2, 3]), zeros([4, 5]))).toThrow(/linear: .*features/);
    expect(() => F.cat([zeros([2, 3]), zeros([3, 3])], 1)).toThrow(/cat: tensors\[1\]/);
    expect(() => F.rmsNorm(zeros([2, 3]), ones([4]))).toThrow(/rmsNorm: weight \[4\] must be \[3\]/);
    expect(() => zeros([2, 3]).reshape([4, 2])).toThrow(/reshape: cannot reshape \[2, 3\]/);
    expect(() => F.split(zeros([5]), [2, 2])).toThrow(/split: sizes/);
    expect(() => F.rotary(zeros([2, 2, 3]), zeros([2, 3]), zeros([2, 3]))).toThrow(/rotary: head dim 3 must be even/);
  });

  it('wrong dtypes', () => {
    expect(() => F.exp(tensor([1, 2], { dtype: 'i32' }))).toThrow(/exp: x must be a float tensor/);
    expect(() => F.matmul(zeros([2, 2]), zeros([2, 2], { dtype: 'f64' }))).toThrow(/matmul: a is f32 but b is f64/);
    expect(() => F.embedding(zeros([4, 2]), zeros([3]))).toThrow(/embedding: index must be i32 or i64/);
    expect(() => F.where(zeros([2]), zeros([2]), zeros([2]))).toThrow(/where: cond must be bool/);
    expect(() => tensor([1.5], { dtype: 'i32' })).toThrow(/not a valid i32/);
    expect(() => zeros([2], { dtype: 'u8' as never })).toThrow(/unknown dtype/);
    expect(() => { tensor([1], { dtype: 'i32' }).requiresGrad = true; }).toThrow(/only float tensors/);
  });

  it('indices out of range', () => {
    const w = arange(0, 12, 1, { dtype: 'f32' }).reshape([4, 3]);
    expect(() => F.embedding(w, tensor([0, 4], { dtype: 'i32' }))).toThrow(/embedding.*4/);
    expect(() => F.embedding(w, tensor([-1], { dtype: 'i64' }))).toThrow(/-1/);
    expect(() => F.indexSelect(w, 1, tensor([3], { dtype: 'i32' }))).toThrow(/indexSelect.*3/);
    expect(() => F.gather(w, 0, tensor([[9, 0, 0]], { dtype: 'i32' }))).toThrow(/gather.*9/);
    expect(() => F.scatterAdd(w, 1, tensor([[5]], { dtype: 'i32' }), ones([1, 1]))).toThrow(/scatterAdd.*5/);
    expect(() => F.crossEntropy(zeros([2, 3]), tensor([0, 3], { dtype: 'i32' }))).toThrow(/crossEntropy.*3/);
    expect(() => w.narrow(0, 3, 2)).toThrow(/narrow: \[3, 5\) is out of range/);
    expect(() => w.select(1, 3)).toThrow(/select: index 3 is out of range/);
    expect(() => w.sum(2)).toThrow(/sum: dim 2 is out of range/);
  });

  it('disposed tensors', () => {
    const a = ones([2]);
    a.dispose();
    expect(() => a.add(1)).toThrow(/was disposed/);
    expect(() => a.toArray()).toThrow(/was disposed/);
    expect(() => a.dispose()).not.toThrow();
  });

  it('non-tensor arguments', () => {
    expect(() => F.add(1, 2)).toThrow(/at least one operand must be a Tensor/);
    expect(() => F.matmul({} as Tensor, zeros([2]))).toThrow(/matmul: a must be a Tensor/);
    expect(() => F.cat([])).toThrow(/cat: expected a non-empty array/);
    expect(() => zeros([-1])).toThrow(/shape/);
    expect(() => tensor([[1, 2], [3]])).toThrow(/ragged/);
  });
});

describe('the native layer cannot be driven out of bounds from JavaScript', () => {
  const view = (t: Tensor, over: Partial<{ shape: number[]; strides: number[]; offset: number; dtype: number }>) =>
    ({ ...t.arg(), ...over });

  it('rejects views that reach outside their storage', () => {
    const t = zeros([4]);
    const out = zeros([8]);
    expect(() => native.unary(0, view(t, { shape: [8], strides: [1] }), out.arg(), 0, 0)).toThrow(/reaches outside its storage/);
    expect(() => native.unary(0, view(t, { shape: [4], strides: [1], offset: 1 }), zeros([4]).arg(), 0, 0)).toThrow(/reaches outside/);
    expect(() => native.unary(0, view(t, { shape: [2], strides: [-1], offset: 0 }), zeros([2]).arg(), 0, 0)).toThrow(/reaches outside/);
    expect(() => native.copy(view(t, { dtype: 1 }), zeros([4], { dtype: 'f64' }).arg())).toThrow(/reaches outside/);
    expect(() => native.fill(view(t, { shape: [1, 2, 3, 4, 5, 6, 7, 8, 9], strides: [0, 0, 0, 0, 0, 0, 0, 0, 0] }), 1)).toThrow(/at most 8/);
    expect(() => native.fill(view(t, { shape: [2.5], strides: [1] }), 1)).toThrow(/integer/);
    expect(() => native.fill(view(t, { dtype: 99 }), 1)).toThrow(/unknown dtype code/);
  });

  it('rejects freed storage, bad handles and bad op codes', () => {
    const t = zeros([4]);
    const arg = t.arg();
    t.dispose();
    expect(() => native.fill(arg, 1)).toThrow(/disposed/);
    expect(() => native.fill({ storage: {}, dtype: 0, shape: [1], strides: [1], offset: 0 }, 1)).toThrow(/not a native storage handle/);
    expect(() => native.unary(999, zeros([1]).arg(), zeros([1]).arg(), 0, 0)).toThrow(/unknown op code/);
    expect(() => native.storageRead(zeros([1]).storage.handle, 0, 100)).toThrow(/exceeds the storage/);
    expect(() => native.storageWrite(zeros([1]).storage.handle, 2, new Float32Array(1))).toThrow(/exceeds the storage/);
    expect(() => native.gemm(zeros([1, 2, 3]).arg(), zeros([1, 4, 5]).arg(), zeros([1, 2, 5]).arg(), 1, 0)).toThrow(/inner dimensions differ/);
    expect(() => native.storageAlloc(-1, -5)).toThrow(/nbytes must be >= 0/);
  });
});

describe('in-place updates', () => {
  it('refuse to modify a tensor that requires grad while recording', () => {
    const w = F.ones([3], { requiresGrad: true });
    expect(() => w.add_(1)).toThrow(/add_: in-place update of a tensor that requires grad/);
    expect(() => w.copy_(F.zeros([3]))).toThrow(/copy_: in-place/);
    F.noGrad(() => w.add_(1));
    expect(w.toArray()).toEqual([2, 2, 2]);
  });
});
