// PagedKVCache (src/kvcache/): paged attention against flashAttention over the same keys and
// values laid out contiguously (causal, bottom-right aligned — the same semantics) for decode
// and prefill chunks after a cached prefix, GQA and MHA, head dims 64/80/128, block tables
// that are not contiguous (sequences written interleaved, several per write); bf16 storage;
// fork / copy-on-write / free block accounting; pool exhaustion; every bad input the issue
// lists. CUDA pools run the same checks when a GPU is present (skipped otherwise).
import { describe, expect, it } from 'vitest';
import { Tensor, cudaStatus, tensor, tidy } from '../src/index.js';
import { flashAttention } from '../src/ops/flashAttention.js';
import { PagedKVCache } from '../src/kvcache/pagedKVCache.js';

// Deterministic pseudo-random values (mulberry32 + Box-Muller), so failures reproduce.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
}
function randArr(n: number, r: () => number, s = 1): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = r() * s;
  return x;
}
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const vals = (t: Tensor) => t.to('cpu').to('f32').data() as Float32Array;

interface Scenario { ctx: number[]; qlen: number[]; hq: number; hkv: number; d: number }

/**
 * Fills a cache with each sequence's ctx tokens (written in interleaved chunks, several
 * sequences per write, on every layer with different values), runs attention on layer 1 and
 * flashAttention on the contiguous copy; returns the max abs difference and |ref|max.
 */
function compare(sc: Scenario, opts: { dtype?: 'f32' | 'bf16'; device?: string; seed?: number; blockSize?: number } = {}) {
  return tidy(() => {
    const { ctx, qlen, hq, hkv, d } = sc, B = ctx.length, L = 2, r = rng(opts.seed ?? 1);
    const bs = opts.blockSize ?? 16, device = opts.device ?? 'cpu', dtype = opts.dtype ?? 'f32';
    const numBlocks = ctx.reduce((s, n) => s + Math.ceil(n / bs), 0) + 7;
    const cache = new PagedKVCache({ numLayers: L, numKvHeads: hkv, headDim: d, numBlocks, blockSize: bs, dtype, device });
    try {
      const seqs = ctx.map(() => cache.createSequence());
      const row = hkv * d;
      const K = ctx.map((n) => Array.from({ length: L }, () => randArr(n * row, r, 1.5)));
      const V = ctx.map((n) => Array.from({ length: L }, () => randArr(n * row, r)));
      // Interleaved chunked writes: every round, each unfinished sequence reserves a chunk; the
      // round's slots and rows are concatenated into one write per layer.
      const done = ctx.map(() => 0);
      for (let round = 0; done.some((x, b) => x < ctx[b]); round++) {
        const slots: number[] = [], ks: Float32Array[][] = [[], []], vs: Float32Array[][] = [[], []];
        for (let b = 0; b < B; b++) {
          const n = Math.min(ctx[b] - done[b], [7, 29, 1, 300][(round + b) % 4]);
          if (n <= 0) continue;
          const s = cache.reserve(seqs[b], n);
          expect(s).not.toBeNull();
          slots.push(...s!);
          for (let l = 0; l < L; l++) {
            ks[l].push(K[b][l].subarray(done[b] * row, (done[b] + n) * row));
            vs[l].push(V[b][l].subarray(done[b] * row, (done[b] + n) * row));
          }
          done[b] += n;
        }
        const flat = (xs: Float32Array[]) => { const o = new Float32Array(xs.reduce((s, x) => s + x.length, 0)); let p = 0; for (const x of xs) { o.set(x, p); p += x.length; } return o; };
        for (let l = 0; l < L; l++) {
          const shape = [slots.length, hkv, d];
          const kt = tensor(flat(ks[l]), { shape, device }).to(dtype), vt = tensor(flat(vs[l]), { shape, device }).to(dtype);
          cache.write(l, kt, vt, Int32Array.from(slots));
        }
      }
      ctx.forEach((n, b) => expect(cache.length(seqs[b])).toBe(n));
      const cu = [0];
      for (const n of qlen) cu.push(cu[cu.length - 1] + n);
      const qHost = randArr(cu[B] * hq * d, r, 1.5);
      const q = tensor(qHost, { shape: [cu[B], hq, d], device });
      const out = cache.attention(1, q, seqs, cu);
      expect(out.shape).toEqual([cu[B], hq, d]);
      // Reference: the CPU flashAttention in f32 on contiguous k/v (layer 1; rounded to the
      // storage dtype), whatever device the cache is on.
      const cuk = [0];
      for (const n of ctx) cuk.push(cuk[cuk.length - 1] + n);
      const kAll = tensor(Float32Array.from(K.flatMap((x) => Array.from(x[1]))), { shape: [cuk[B], hkv, d] }).to(dtype).to('f32');
      const vAll = tensor(Float32Array.from(V.flatMap((x) => Array.from(x[1]))), { shape: [cuk[B], hkv, d] }).to(dtype).to('f32');
      const ref = flashAttention(tensor(qHost, { shape: [cu[B], hq, d] }), kAll, vAll, {
        cuSeqlensQ: tensor(cu, { dtype: 'i32' }), cuSeqlensK: tensor(cuk, { dtype: 'i32' }),
        maxSeqlenQ: Math.max(...qlen, 0), maxSeqlenK: Math.max(...ctx), causal: true,
      }).out;
      const a = vals(out), e = vals(ref);
      return { err: maxAbsDiff(a, e), refMax: maxAbsDiff(e, new Float32Array(e.length)) };
    } finally {
      cache.dispose();
    }
  });
}

const decodeCtx = [1, 17, 16, 1100, 333];  // incl. 1 token, exactly one block, > 1,000 tokens
const DEVICES = ['cpu', ...(cudaStatus().available ? ['cuda'] : [])];

for (const device of DEVICES) {
  describe(`paged attention equals flashAttention (${device})`, () => {
    // f32 everywhere (the CUDA kernel also takes f32 caches); bf16 storage is tested below.
    const dtype = 'f32';
    const tol = 1e-5;
    for (const [hq, hkv, d] of [[14, 2, 64], [4, 2, 80], [14, 2, 128], [4, 2, 64], [2, 2, 128]]) {
      it(`decode, batch 5, Hq ${hq} / Hkv ${hkv}, D ${d}`, () => {
        const { err } = compare({ ctx: decodeCtx, qlen: decodeCtx.map(() => 1), hq, hkv, d }, { device, dtype });
        expect(err).toBeLessThan(tol);
      });
      it(`prefill chunks after a prefix, Hq ${hq} / Hkv ${hkv}, D ${d}`, () => {
        const { err } = compare({ ctx: [1100, 40, 5, 70], qlen: [37, 40, 3, 0], hq, hkv, d }, { device, dtype, seed: 2 });
        expect(err).toBeLessThan(tol);
      });
    }
    it('block size 8 and 32', () => {
      for (const blockSize of [8, 32]) {
        const { err } = compare({ ctx: [100, 33, 1], qlen: [5, 1, 1], hq: 4, hkv: 2, d: 64 }, { device, dtype, blockSize });
        expect(err).toBeLessThan(tol);
      }
    });
  });
}

describe('bf16 storage', () => {
  it('matches flashAttention on the bf16-rounded keys/values (f32 queries) to f32 accuracy', () => {
    const { err } = compare({ ctx: decodeCtx, qlen: [1, 1, 1, 20, 1], hq: 14, hkv: 2, d: 64 }, { dtype: 'bf16', seed: 3 });
    expect(err).toBeLessThan(1e-5);
  });
  it('bf16 queries give a bf16 output within bf16 tolerance', () => tidy(() => {
    const c = new PagedKVCache({ numLayers: 1, numKvHeads: 2, headDim: 64, numBlocks: 8, dtype: 'bf16' });
    const r = rng(5), s = c.createSequence();
    const slots = c.reserve(s, 50)!;
    const k = tensor(randArr(50 * 128, r), { shape: [50, 2, 64] }), v = tensor(randArr(50 * 128, r), { shape: [50, 2, 64] });
    c.write(0, k.to('bf16'), v.to('bf16'), slots);
    const q = tensor(randArr(4 * 64, r), { shape: [1, 4, 64] });
    const o16 = c.attention(0, q.to('bf16'), [s], [0, 1]);
    const o32 = c.attention(0, q.to('bf16').to('f32'), [s], [0, 1]);
    expect(o16.dtype).toBe('bf16');
    expect(maxAbsDiff(vals(o16), vals(o32))).toBeLessThan(1e-2);
    expect(c.bytesPerToken).toBe(2 * 1 * 2 * 64 * 2);
    c.dispose();
  }));
});

// Writes tokens [from, from + n) of a per-position pattern (k = v = position + 1000·seqTag).
function append(c: PagedKVCache, seq: number, n: number, tag: number, hkv: number, d: number): Int32Array {
  const slots = c.reserve(seq, n);
  if (!slots) throw new Error('pool exhausted');
  const start = c.length(seq) - n, x = new Float32Array(n * hkv * d);
  for (let t = 0; t < n; t++) x.fill(start + t + 1000 * tag, t * hkv * d, (t + 1) * hkv * d);
  tidy(() => {
    const kv = tensor(x, { shape: [n, hkv, d] });
    for (let l = 0; l < c.numLayers; l++) c.write(l, kv, kv, slots);
  });
  return slots;
}

describe('fork, copy-on-write and free', () => {
  it('8 children of a 1,000-token prompt store it once; each child CoWs its partial last block once and sees only its own tokens', () => {
    const c = new PagedKVCache({ numLayers: 2, numKvHeads: 2, headDim: 16, numBlocks: 100 });
    const p = c.createSequence();
    append(c, p, 1000, 0, 2, 16);
    const promptBlocks = Math.ceil(1000 / 16);  // 63: 62 full + one with 8 tokens
    expect(c.usedBlocks).toBe(promptBlocks);
    const kids = c.fork(p, 8);
    expect(c.usedBlocks).toBe(promptBlocks);  // shared by reference, not copied
    for (const k of kids) {
      expect(c.length(k)).toBe(1000);
      expect(Array.from(c.blockTable(k))).toEqual(Array.from(c.blockTable(p)));
    }
    kids.forEach((k, i) => {
      const before = c.copyOnWriteCount, used = c.usedBlocks;
      append(c, k, 1, i + 1, 2, 16);
      expect(c.copyOnWriteCount - before).toBe(1);  // the shared partial block was copied
      expect(c.usedBlocks).toBe(used + 1);
      append(c, k, 7, i + 1, 2, 16);  // fills the copied block: no further copy or block
      expect(c.copyOnWriteCount - before).toBe(1);
      expect(c.usedBlocks).toBe(used + 1);
      const t = c.blockTable(k), pt = c.blockTable(p);
      expect(Array.from(t.subarray(0, 62))).toEqual(Array.from(pt.subarray(0, 62)));  // full blocks still shared
      expect(t[62]).not.toBe(pt[62]);
    });
    expect(c.usedBlocks).toBe(promptBlocks + 8);
    // Each child's attention sees the prompt and its own tokens only: with q = 0 the output is
    // the mean of the visible values (the same per element), which identifies what was seen.
    tidy(() => {
      const q = tensor(new Float32Array(kids.length * 2 * 16), { shape: [kids.length, 2, 16] });
      const out = vals(c.attention(1, q, kids, kids.map((_, i) => i).concat(kids.length)));
      kids.forEach((_, i) => {
        // Positions 0..999 carry 0..999; positions 1000..1007 carry 1000(i+1) + 1000..1007.
        let sum = 0;
        for (let j = 0; j < 1000; j++) sum += j;
        for (let j = 1000; j < 1008; j++) sum += j + 1000 * (i + 1);
        expect(Math.abs(out[i * 32] - sum / 1008)).toBeLessThan(1e-2);
      });
      // The parent still sees its own 1,000 tokens, untouched by the children's writes.
      const po = vals(c.attention(0, tensor(new Float32Array(32), { shape: [1, 2, 16] }), [p], [0, 1]));
      expect(Math.abs(po[0] - 499.5)).toBeLessThan(1e-3);
    });
    // free returns blocks: children's private blocks at once, shared ones with the last owner.
    for (const k of kids) c.free(k);
    expect(c.usedBlocks).toBe(promptBlocks);
    c.free(p);
    expect(c.usedBlocks).toBe(0);
    expect(c.freeBlocks).toBe(100);
    c.dispose();
  });

  it('a full last block is shared without a copy; the sole owner of a shared-then-released block appends in place', () => {
    const c = new PagedKVCache({ numLayers: 1, numKvHeads: 1, headDim: 4, numBlocks: 10, blockSize: 4 });
    const p = c.createSequence();
    append(c, p, 8, 0, 1, 4);  // two full blocks
    const [a] = c.fork(p, 1);
    append(c, a, 1, 1, 1, 4);
    expect(c.copyOnWriteCount).toBe(0);
    expect(c.usedBlocks).toBe(3);
    const q = c.createSequence();
    append(c, q, 6, 2, 1, 4);  // partial last block
    const [b] = c.fork(q, 1);
    c.free(q);                  // b is now the only owner
    append(c, b, 1, 3, 1, 4);
    expect(c.copyOnWriteCount).toBe(0);
    c.dispose();
  });
});

describe('decode loop', () => {
  it('each step sees the token appended since the previous step (metadata is rebuilt after reserve)', () => {
    const c = new PagedKVCache({ numLayers: 2, numKvHeads: 1, headDim: 8, numBlocks: 16, blockSize: 4 });
    const seqs = [c.createSequence(), c.createSequence()];
    append(c, seqs[0], 5, 0, 1, 8);
    append(c, seqs[1], 2, 1, 1, 8);
    tidy(() => {
      const q = tensor(new Float32Array(2 * 2 * 8), { shape: [2, 2, 8] });  // q = 0: out = mean of visible v
      for (let step = 0; step < 6; step++) {
        seqs.forEach((s, i) => append(c, s, 1, i, 1, 8));
        for (let l = 0; l < 2; l++) {
          const out = vals(c.attention(l, q, seqs, [0, 1, 2]));
          seqs.forEach((s, i) => {
            const n = c.length(s);
            const mean = (n - 1) / 2 + 1000 * i;  // values are position + 1000·tag
            expect(Math.abs(out[i * 16] - mean)).toBeLessThan(1e-3);
          });
        }
      }
    });
    c.dispose();
  });
});

describe('pool exhaustion and sizes', () => {
  it('reserve returns null when the pool has too few free blocks and changes nothing', () => {
    const c = new PagedKVCache({ numLayers: 1, numKvHeads: 1, headDim: 4, numBlocks: 4, blockSize: 4 });
    const a = c.createSequence(), b = c.createSequence();
    expect(c.reserve(a, 10)).not.toBeNull();  // 3 blocks
    expect(c.reserve(b, 5)).toBeNull();        // needs 2, 1 free
    expect(c.length(b)).toBe(0);
    expect(c.blockTable(b).length).toBe(0);
    expect(c.usedBlocks).toBe(3);
    // CoW that does not fit: the copy needs a block too.
    const [k1] = c.fork(a, 1);
    expect(c.reserve(k1, 1)).not.toBeNull();   // CoW of the partial block takes the last free one
    expect(c.freeBlocks).toBe(0);
    const [k2] = c.fork(a, 1);
    const before = Array.from(c.blockTable(k2));
    expect(c.reserve(k2, 1)).toBeNull();
    expect(Array.from(c.blockTable(k2))).toEqual(before);
    expect(c.length(k2)).toBe(10);
    c.free(k1);
    expect(c.reserve(k2, 1)).not.toBeNull();
    c.dispose();
  });

  it('a sequence larger than the whole pool throws, saying both sizes', () => {
    const c = new PagedKVCache({ numLayers: 1, numKvHeads: 1, headDim: 4, numBlocks: 4, blockSize: 4 });
    const s = c.createSequence();
    c.reserve(s, 10);
    expect(() => c.reserve(s, 7)).toThrow(/would hold 17 tokens.*whole pool holds 16/);
    c.dispose();
  });

  it('reset drops all sequences; bytesPerToken follows 2·L·Hkv·D·bytes', () => {
    const c = new PagedKVCache({ numLayers: 3, numKvHeads: 2, headDim: 8, numBlocks: 4 });
    const s = c.createSequence();
    c.reserve(s, 20);
    c.reset();
    expect(c.usedBlocks).toBe(0);
    expect(() => c.length(s)).toThrow(/was freed/);
    expect(c.bytesPerToken).toBe(2 * 3 * 2 * 8 * 4);
    c.dispose();
    expect(() => c.createSequence()).toThrow(/disposed/);
  });
});

describe('bad input', () => {
  const mk = () => new PagedKVCache({ numLayers: 2, numKvHeads: 2, headDim: 8, numBlocks: 8, blockSize: 4 });
  it('options', () => {
    expect(() => new PagedKVCache({ numLayers: 0, numKvHeads: 2, headDim: 8, numBlocks: 8 })).toThrow(/numLayers must be a positive integer/);
    expect(() => new PagedKVCache({ numLayers: 1, numKvHeads: 2, headDim: 8, numBlocks: 8, dtype: 'i32' })).toThrow(/dtype must be/);
    expect(() => new PagedKVCache({ numLayers: 1, numKvHeads: 2, headDim: 8, numBlocks: 8, device: 'tpu' })).toThrow(/unknown device/);
  });
  it('unknown, freed and missing sequences; n < 1', () => {
    const c = mk();
    const s = c.createSequence();
    expect(() => c.length(42)).toThrow(/sequence 42 does not exist/);
    expect(() => c.fork(42, 2)).toThrow(/fork: sequence 42 does not exist/);
    expect(() => c.fork(s, 0)).toThrow(/n >= 1/);
    expect(() => c.reserve(s, 0)).toThrow(/n >= 1/);
    expect(() => c.reserve(s, 1.5)).toThrow(/n >= 1/);
    c.free(s);
    expect(() => c.reserve(s, 1)).toThrow(/sequence \d+ was freed/);
    expect(() => c.free(s)).toThrow(/was freed/);
    expect(() => c.blockTable(s)).toThrow(/was freed/);
    c.dispose();
  });
  it('write: layer, shapes, dtypes, slots', () => tidy(() => {
    const c = mk(), s = c.createSequence(), slots = c.reserve(s, 3)!;
    const k = tensor(new Float32Array(3 * 16), { shape: [3, 2, 8] });
    expect(() => c.write(2, k, k, slots)).toThrow(/layer must be an integer in \[0, 2\)/);
    expect(() => c.write(-1, k, k, slots)).toThrow(/layer/);
    const bad = tensor(new Float32Array(3 * 8), { shape: [3, 1, 8] });
    expect(() => c.write(0, bad, bad, slots)).toThrow(/k must be \[T, numKvHeads = 2, D = 8\]/);
    expect(() => c.write(0, k.to('bf16'), k.to('bf16'), slots)).toThrow(/k is bf16 but the cache is f32/);
    expect(() => c.write(0, k, k, Int32Array.from([0, 1]))).toThrow(/slots must be i32 \[T\] with T = k.shape\[0\] = 3/);
    expect(() => c.write(0, k, k, Int32Array.from([0, 1, 32]))).toThrow(/slots\[2\] = 32 is out of range \[0, numBlocks·blockSize = 32\)/);
    expect(() => c.write(0, k, k, Int32Array.from([-1, 1, 2]))).toThrow(/out of range/);
    expect(() => c.write(0, k, k, tensor([0, 1, 2], { dtype: 'f32' }))).toThrow(/i32/);
    c.write(0, k, k, slots);
    c.dispose();
  }));
  it('attention: layer, q shape, GQA ratio, cuSeqlensQ vs q and vs the sequences', () => tidy(() => {
    const c = mk(), s = c.createSequence(), slots = c.reserve(s, 3)!;
    const k = tensor(new Float32Array(3 * 16), { shape: [3, 2, 8] });
    c.write(0, k, k, slots);
    const q = tensor(new Float32Array(2 * 4 * 8), { shape: [2, 4, 8] });
    expect(() => c.attention(5, q, [s], [0, 2])).toThrow(/layer/);
    expect(() => c.attention(0, tensor(new Float32Array(2 * 3 * 8), { shape: [2, 3, 8] }), [s], [0, 2])).toThrow(/numHeads \(3\) must be a multiple of numKvHeads \(2\)/);
    expect(() => c.attention(0, tensor(new Float32Array(2 * 4 * 4), { shape: [2, 4, 4] }), [s], [0, 2])).toThrow(/headDim = 8/);
    expect(() => c.attention(0, q, [s], [0, 1])).toThrow(/cuSeqlensQ\[1\] = 1 must equal q.shape\[0\] = 2/);
    expect(() => c.attention(0, q, [s], [0, 1, 2])).toThrow(/must have seqs.length \+ 1 = 2 entries/);
    expect(() => c.attention(0, q, [s, s], [0, 3, 2])).toThrow(/non-decreasing/);
    expect(() => c.attention(0, q, [s], [1, 2])).toThrow(/cuSeqlensQ\[0\] must be 0/);
    expect(() => c.attention(0, q, [99], [0, 2])).toThrow(/sequence 99 does not exist/);
    const q5 = tensor(new Float32Array(5 * 4 * 8), { shape: [5, 4, 8] });
    expect(() => c.attention(0, q5, [s], [0, 5])).toThrow(/segment 0 has 5 queries but sequence \d+ holds only 3 tokens/);
    expect(() => c.attention(0, q, [s], [0, 2], { scale: NaN })).toThrow(/scale/);
    expect(() => c.attention(0, q.to('i32'), [s], [0, 2])).toThrow(/q must be f32, bf16 or f16/);
    expect(c.attention(0, q, [s], [0, 2]).shape).toEqual([2, 4, 8]);
    c.dispose();
  }));
});
