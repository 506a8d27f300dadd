// checkpoint (src/autograd/checkpoint.ts): an attention + MLP block (rmsNorm, linear, rotary,
// flashAttention, silu) run with and without checkpointing gives the same outputs and the
// same gradients for inputs and every param; shared params, several outputs, integer and view
// inputs, a stack of 4 blocks, nested checkpoints, retainGraph, the noGrad path, memory
// (fewer live bytes after the forward, nothing left after the backward) and bad input.
import { afterEach, describe, expect, it } from 'vitest';
import {
  Tensor, linear, rmsNorm, silu, rotary, flashAttention, randn, tensor, tidy, noGrad, memoryStats, indexSelect, cos, sin,
} from '../src/index.js';
import { checkpoint } from '../src/autograd/checkpoint.js';

const S = 12, H = 2, D = 8, C = H * D, F = 24;
const f32 = (t: Tensor) => Array.from(t.data() as Float32Array);

interface Params { n1: Tensor; wq: Tensor; wk: Tensor; wv: Tensor; wo: Tensor; n2: Tensor; w1: Tensor; w2: Tensor }
function makeParams(seed: number): Params {
  const p = (shape: number[], s: number, std = 0.3) => randn(shape, { seed: seed * 100 + s, std }).requiresGrad_(true);
  return {
    n1: randn([C], { seed: seed * 100, mean: 1, std: 0.1 }).requiresGrad_(true),
    wq: p([C, C], 1), wk: p([C, C], 2), wv: p([C, C], 3), wo: p([C, C], 4),
    n2: randn([C], { seed: seed * 100 + 5, mean: 1, std: 0.1 }).requiresGrad_(true),
    w1: p([F, C], 6), w2: p([C, F], 7),
  };
}
const paramList = (p: Params) => [p.n1, p.wq, p.wk, p.wv, p.wo, p.n2, p.w1, p.w2];

// Constants every block reads (no gradient): rotary angles and the sequence offsets.
const pos = tensor(Array.from({ length: S * D }, (_, i) => Math.floor(i / D) * (1 + (i % D)) * 0.1), { shape: [S, D] });
const COS = cos(pos), SIN = sin(pos);
const attnOpts = { cuSeqlensQ: tensor([0, 5, S], { dtype: 'i32' }), cuSeqlensK: tensor([0, 5, S], { dtype: 'i32' }),
  maxSeqlenQ: 7, maxSeqlenK: 7, causal: true };

/** A pre-norm decoder block: x + attn(norm(x)), then + mlp(norm(·)). x [S, C]. */
function block(p: Params, x: Tensor): Tensor {
  const h = rmsNorm(x, p.n1);
  const q = rotary(linear(h, p.wq).reshape([S, H, D]), COS, SIN);
  const k = rotary(linear(h, p.wk).reshape([S, H, D]), COS, SIN);
  const v = linear(h, p.wv).reshape([S, H, D]);
  const x2 = x.add(linear(flashAttention(q, k, v, attnOpts).out.reshape([S, C]), p.wo));
  return x2.add(linear(silu(linear(rmsNorm(x2, p.n2), p.w1)), p.w2));
}

/** Runs body, returns the listed tensors' gradients (copied out) and clears them. */
function gradsOf(ts: Tensor[], body: () => void): number[][] {
  tidy(body);
  return ts.map((t) => {
    const g = t.grad ? f32(t.grad) : [];
    t.grad?.dispose();
    t.grad = null;
    return g;
  });
}

function expectClose(a: number[][], b: number[][], what: string) {
  expect(a.length).toBe(b.length);
  a.forEach((ga, i) => {
    expect(ga.length, `${what} [${i}] length`).toBe(b[i].length);
    expect(ga.length, `${what} [${i}] has a gradient`).toBeGreaterThan(0);
    const scale = Math.max(1, ...b[i].map(Math.abs));
    const err = Math.max(...ga.map((v, j) => Math.abs(v - b[i][j])));
    expect(err / scale, `${what} [${i}]`).toBeLessThanOrEqual(1e-6);
  });
}

describe('checkpoint: same outputs and gradients as without', () => {
  it('one attention + MLP block: outputs bit-identical, input and param grads equal', () => {
    const p = makeParams(1), x = randn([S, C], { seed: 7 }).requiresGrad_(true);
    const proj = randn([S, C], { seed: 8 });
    let plainOut: number[] = [], ckOut: number[] = [];
    const plain = gradsOf([x, ...paramList(p)], () => {
      const y = block(p, x);
      plainOut = f32(y);
      y.mul(proj).sum().backward();
    });
    const ck = gradsOf([x, ...paramList(p)], () => {
      const y = checkpoint((xi) => block(p, xi), [x], { params: paramList(p) });
      expect(y.gradFn?.name).toBe('checkpoint');
      ckOut = f32(y);
      y.mul(proj).sum().backward();
    });
    expect(ckOut).toEqual(plainOut);
    expectClose(ck, plain, 'grad');
    expect(ck).toEqual(plain);  // same ops in the same order: bit-identical on the CPU
  });

  it('bf16 block with two outputs; the caller may dispose the inputs after the forward', () => {
    const w1 = randn([C, C], { seed: 30, std: 0.3 }).to('bf16').requiresGrad_(true);
    const nw = randn([C], { seed: 31, mean: 1, std: 0.1 }).to('bf16').requiresGrad_(true);
    const x = randn([S, C], { seed: 32 }).to('bf16').requiresGrad_(true);
    const fn = (h: Tensor) => { const y = silu(linear(rmsNorm(h, nw), w1)); return [y.add(h), y.mul(y)]; };
    const run = (ck: boolean) => gradsOf([x, w1, nw], () => {
      const h = x.mul(1.5);
      const [a, b] = ck ? checkpoint(fn, [h], { params: [w1, nw] }) : fn(h);
      h.dispose();  // the checkpoint node saved its own alias
      expect(a.dtype).toBe('bf16');
      a.sum().add(b.mean()).backward();
    });
    const plain = run(false), ck = run(true);
    expectClose(ck, plain, 'bf16');
  });

  it('a param used inside and outside the checkpoint gets the sum of both gradients', () => {
    const p = makeParams(2), x = randn([S, C], { seed: 9 }).requiresGrad_(true);
    // wo is also the output projection after the block, and n1 normalizes the input before it.
    const run = (ck: boolean) => gradsOf([x, ...paramList(p)], () => {
      const xin = rmsNorm(x, p.n1);
      const y = ck ? checkpoint((xi) => block(p, xi), [xin], { params: paramList(p) }) : block(p, xin);
      linear(y, p.wo).square().sum().backward();
    });
    const plain = run(false), ck = run(true);
    expectClose(ck, plain, 'shared');
    // Either order of application: grad already present before the checkpoint's backward.
    const pre = gradsOf([p.wo], () => { linear(x, p.wo).sum().backward(); })[0];
    const both = gradsOf([p.wo], () => {
      linear(x, p.wo).sum().backward();
      checkpoint((xi) => block(p, xi), [x], { params: paramList(p) }).sum().backward();
    })[0];
    const only = gradsOf([p.wo], () => { checkpoint((xi) => block(p, xi), [x], { params: paramList(p) }).sum().backward(); })[0];
    expectClose([both], [pre.map((v, i) => v + only[i])], 'accumulated');
  });

  it('two outputs (one unused in the loss), an integer input and a view input', () => {
    const p = makeParams(3);
    const base = randn([C, S + 4], { seed: 10 }).requiresGrad_(true);
    const ids = tensor([3, 1, 0, 2, 2, 5, 4, 6, 7, 11, 10, 9], { dtype: 'i32' });
    const fn = (xv: Tensor, idx: Tensor) => {
      const y = block(p, indexSelect(xv, 0, idx));
      return [y, y.mul(2).silu(), rmsNorm(y, p.n2)];
    };
    const run = (ck: boolean, useThird: boolean) => gradsOf([base, ...paramList(p)], () => {
      const xv = base.narrow(1, 2, S).transpose(0, 1);  // a strided, offset view [S, C]
      const outs = ck ? checkpoint(fn, [xv, ids], { params: paramList(p) }) : fn(xv, ids);
      expect(outs.length).toBe(3);
      const a = outs[0].square().sum(), b = outs[1].mean();
      (useThird ? a.add(b).add(outs[2].sum()) : a.add(b)).backward();
    });
    for (const useThird of [false, true]) {
      const plain = run(false, useThird), ck = run(true, useThird);
      expectClose(ck, plain, `outputs (third used: ${useThird})`);
    }
  });

  it('a stack of 4 checkpointed blocks, and nested checkpoints', () => {
    const ps = [4, 5, 6, 7].map(makeParams), x = randn([S, C], { seed: 11 }).requiresGrad_(true);
    const all = [x, ...ps.flatMap(paramList)];
    const plain = gradsOf(all, () => { ps.reduce((h, p) => block(p, h), x).square().mean().backward(); });
    const stacked = gradsOf(all, () => {
      ps.reduce((h, p) => checkpoint((hi) => block(p, hi), [h], { params: paramList(p) }), x).square().mean().backward();
    });
    expectClose(stacked, plain, 'stack');
    // Two checkpoints of two blocks each, every block checkpointed again inside.
    const pair = (a: Params, b: Params) => (h: Tensor) => [a, b].reduce(
      (hh, p) => checkpoint((hi) => block(p, hi), [hh], { params: paramList(p) }), h);
    const nested = gradsOf(all, () => {
      const h = checkpoint(pair(ps[0], ps[1]), [x], { params: [...paramList(ps[0]), ...paramList(ps[1])] });
      checkpoint(pair(ps[2], ps[3]), [h], { params: [...paramList(ps[2]), ...paramList(ps[3])] }).square().mean().backward();
    });
    expectClose(nested, plain, 'nested');
  });

  it('params only (inputs need no gradient) still get gradients; retainGraph backpropagates twice', () => {
    const p = makeParams(8), x = randn([S, C], { seed: 12 });
    const plain = gradsOf(paramList(p), () => { block(p, x).sum().backward(); });
    const ck = gradsOf(paramList(p), () => {
      const y = checkpoint((xi) => block(p, xi), [x], { params: paramList(p) });
      y.sum().backward(null, { retainGraph: true });
      y.sum().backward();
    });
    expectClose(ck, plain.map((g) => g.map((v) => 2 * v)), 'retainGraph twice');
  });
});

describe('checkpoint: when nothing is recorded', () => {
  it('runs fn once and records nothing under noGrad or when nothing requires grad', () => {
    const p = makeParams(9), x = randn([S, C], { seed: 13 }).requiresGrad_(true);
    let calls = 0;
    const fn = (xi: Tensor) => { calls++; return block(p, xi); };
    tidy(() => {
      const ref = noGrad(() => block(p, x));
      const y = noGrad(() => checkpoint(fn, [x], { params: paramList(p) }));
      expect(calls).toBe(1);
      expect(y.gradFn).toBeNull();
      expect(y.requiresGrad).toBe(false);
      expect(f32(y)).toEqual(f32(ref));
      const c = randn([S, C], { seed: 14 });
      const frozen = checkpoint((xi) => { calls++; return xi.mul(2).silu(); }, [c]);
      expect(calls).toBe(2);
      expect(frozen.gradFn).toBeNull();
      // With a gradient: once in the forward, once more in the backward.
      checkpoint(fn, [x], { params: paramList(p) }).sum().backward();
      expect(calls).toBe(4);
    });
    for (const t of [x, ...paramList(p)]) { t.grad?.dispose(); t.grad = null; }
  });
});

describe('checkpoint: memory', () => {
  it('holds fewer live bytes after the forward, and frees everything after the backward', () => {
    const ps = [1, 2, 3, 4].map(makeParams), x = randn([S, C], { seed: 15 }).requiresGrad_(true);
    const all = [x, ...ps.flatMap(paramList)];
    const measure = (ck: boolean) => {
      const before = memoryStats().cpu;
      let afterForward = 0;
      tidy(() => {
        const y = ps.reduce((h, p) => (ck ? checkpoint((hi) => block(p, hi), [h], { params: paramList(p) }) : tidy(() => block(p, h))), x);
        afterForward = memoryStats().cpu.liveBytes - before.liveBytes;
        y.square().sum().backward();
      });
      const gradBytes = all.reduce((s, t) => s + t.grad!.size * 4, 0);
      const afterBackward = memoryStats().cpu;
      expect(afterBackward.liveBytes - before.liveBytes, 'only the leaf gradients remain').toBe(gradBytes);
      expect(afterBackward.liveTensors - before.liveTensors).toBe(all.length);
      for (const t of all) { t.grad!.dispose(); t.grad = null; }
      const end = memoryStats().cpu;
      expect(end.liveBytes).toBe(before.liveBytes);
      expect(end.liveTensors).toBe(before.liveTensors);
      return afterForward;
    };
    const plain = measure(false), ck = measure(true);
    // Checkpointed: each block keeps only its input alias (shared storage) and its output.
    expect(ck).toBeLessThan(plain / 4);
    expect(ck).toBeLessThanOrEqual(4 * S * C * 4);
  });

  it('frees the saved inputs when the outputs are dropped without a backward, or are all integer', () => {
    const p = makeParams(6), x = randn([S, C], { seed: 19 }).requiresGrad_(true);
    const before = memoryStats().cpu;
    tidy(() => {
      const h = x.mul(3);
      const y = checkpoint((hi) => block(p, hi), [h], { params: paramList(p) });
      h.dispose();
      expect(y.gradFn?.name).toBe('checkpoint');
      const idx = checkpoint((hi) => block(p, hi).argmax(-1), [x], { params: paramList(p) });
      expect(idx.dtype).toBe('i64');
      expect(idx.gradFn).toBeNull();
    });
    expect(memoryStats().cpu.liveTensors).toBe(before.liveTensors);
    expect(memoryStats().cpu.liveBytes).toBe(before.liveBytes);
  });

  it('frees the recomputation when the backward throws', () => {
    const p = makeParams(5), x = randn([S, C], { seed: 16 }).requiresGrad_(true);
    const outside = x.mul(2);  // has autograd history, captured instead of passed in inputs
    const before = memoryStats().cpu;
    tidy(() => {
      const y = checkpoint((xi) => block(p, xi).add(outside), [x], { params: paramList(p) });
      expect(() => y.sum().backward()).toThrow(/checkpoint: fn read a tensor with autograd history \(made by mul\)/);
    });
    expect(memoryStats().cpu.liveTensors).toBe(before.liveTensors);
    expect(memoryStats().cpu.liveBytes).toBe(before.liveBytes);
    for (const t of [x, ...paramList(p)]) { t.grad?.dispose(); t.grad = null; }
    outside.dispose();
  });
});

describe('checkpoint: bad input', () => {
  const x = randn([3, 4], { seed: 17 }).requiresGrad_(true);
  const w = randn([4, 4], { seed: 18 }).requiresGrad_(true);
  afterEach(() => { for (const t of [x, w]) { t.grad?.dispose(); t.grad = null; } });
  it('names checkpoint, what was wrong and what was expected', () => {
    const bad = (f: () => unknown, re: RegExp) => expect(f).toThrow(re);
    bad(() => checkpoint(42 as never, [x]), /checkpoint: fn must be a function/);
    bad(() => checkpoint((a) => a, x as never), /checkpoint: inputs must be an array of tensors/);
    bad(() => checkpoint((a) => a, [x, 3 as never]), /checkpoint: inputs\[1\] must be a Tensor, got number/);
    bad(() => checkpoint((a) => a, [null as never]), /checkpoint: inputs\[0\] must be a Tensor, got null/);
    const dead = randn([2]); dead.dispose();
    bad(() => checkpoint((a) => a, [dead]), /checkpoint: inputs\[0\] \[2\] was disposed/);
    bad(() => checkpoint((a) => a, [x], { params: [w, 'w' as never] }), /checkpoint: opts.params\[1\] must be a Tensor/);
    bad(() => checkpoint((a) => a, [x], { params: w as never }), /checkpoint: opts.params must be an array/);
    tidy(() => {
      bad(() => checkpoint((a) => a, [x], { params: [w.mul(1)] }), /checkpoint: opts.params\[0\] \[4, 4\] has autograd history \(made by mul\); params must be leaves/);
      bad(() => checkpoint((() => 5) as never, [x]), /checkpoint: fn must return a Tensor or Tensor\[\], got number in the forward/);
      bad(() => checkpoint((() => [x.mul(2), {}]) as never, [x]), /checkpoint: fn must return a Tensor or Tensor\[\], got an object that is not a Tensor at \[1\]/);
      bad(() => noGrad(() => checkpoint((() => 'y') as never, [x])), /checkpoint: fn must return a Tensor or Tensor\[\], got string without recording/);
      bad(() => checkpoint(() => [], [x]), /checkpoint: fn returned an empty array/);
    });
  });

  it('a weight read from the closure but missing from opts.params is an error, not a silent zero', () => {
    tidy(() => {
      const y = checkpoint((a) => linear(a, w), [x]);
      expect(() => y.sum().backward()).toThrow(/checkpoint: fn read a leaf \[4, 4\] that requires grad but is neither one of inputs .* nor in opts.params/);
    });
  });

  it('a recomputation that differs from the forward is an error', () => {
    tidy(() => {
      let n = 0;
      const y = checkpoint((a) => (n++ === 0 ? a.mul(2) : a.narrow(0, 0, 2)), [x]);
      expect(() => y.sum().backward()).toThrow(/checkpoint: the recomputation returned \[2, 4\] f32 but the forward returned \[3, 4\] f32/);
    });
  });

  it('an input returned as is gets a fresh output, never a rewritten caller tensor', () => {
    tidy(() => {
      const [a, b] = checkpoint((t) => [t, t], [x]);
      expect(a).not.toBe(x);
      expect(x.gradFn).toBeNull();
      a.add(b).sum().backward();
      expect(f32(x.grad!)).toEqual(new Array(12).fill(2));
    });
  });
});
