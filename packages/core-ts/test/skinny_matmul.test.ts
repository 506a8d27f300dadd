// Decoding-shaped products (few rows M against a large weight) through linear/matmul: these
// take the native skinny GEMM path (packages/native-cuda/src/ops/matmul/gemm_skinny.cpp):
// the dot form for linear's Wᵀ (W stored [N, K]), the axpy form for a row-major [K, N] B.
// Each result is checked against a float64 reference computed here from the exact input
// values, with the f32-accumulation bound (2K + 8)·2⁻²⁴·Σ|x·w| (plus half an ulp of a bf16
// output), the rule the C++ GEMM tests use.
import { describe, expect, it } from 'vitest';
import { tensor, tidy, type Tensor } from '../src/index.js';
import { linear, matmul } from '../src/ops/matmul.js';

// Deterministic U(-1, 1) values (a small LCG), so the reference sees the same numbers.
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

/** Max violation ratio |got − ref| / tol over out[m, n] = Σ_k x(m, k)·w(k, n); ≤ 1 passes. */
function checkAgainstF64(got: Float32Array, x: Float32Array, M: number, K: number, w: (k: number, n: number) => number,
  N: number, outUlp = 0): number {
  const unit = 2 ** -24;
  let worst = 0;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0, abs = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k] * w(k, n);
        acc += p;
        abs += Math.abs(p);
      }
      const tol = (2 * K + 8) * unit * abs + outUlp * Math.abs(acc) + 1e-30;
      worst = Math.max(worst, Math.abs(got[m * N + n] - acc) / tol);
    }
  }
  return worst;
}

describe('skinny matmul (decode shapes)', () => {
  it('linear(x [M, K], W [N, K]) for M = 1..8 with odd K and N', () => {
    for (const [K, N] of [[7, 37], [33, 1], [896, 4864 + 3]]) {
      const wv = values(N * K, 7 + K);
      tidy(() => {
        const W = tensor(wv, { shape: [N, K] });
        for (let M = 1; M <= 8; M++) {
          const xv = values(M * K, 100 + M);
          const y = linear(tensor(xv, { shape: [M, K] }), W);
          expect(y.shape).toEqual([M, N]);
          const worst = checkAgainstF64(y.data() as Float32Array, xv, M, K, (k, n) => wv[n * K + k], N);
          expect(worst, `M=${M} K=${K} N=${N}`).toBeLessThanOrEqual(1);
        }
      });
    }
  });

  it('an lm_head-like [1, 896] · [20000, 896]ᵀ and a decode batch [4, 1, 896]', () => {
    const K = 896, N = 20000;
    const wv = values(N * K, 3);
    tidy(() => {
      const W = tensor(wv, { shape: [N, K] });
      const xv = values(K, 4);
      const y = linear(tensor(xv, { shape: [1, K] }), W);
      expect(checkAgainstF64(y.data() as Float32Array, xv, 1, K, (k, n) => wv[n * K + k], N)).toBeLessThanOrEqual(1);
      // [B, 1, K]: a broadcast W shared by the 4 rows of the batch.
      const xb = values(4 * K, 5);
      const yb = linear(tensor(xb, { shape: [4, 1, K] }), W);
      expect(yb.shape).toEqual([4, 1, N]);
      expect(checkAgainstF64(yb.data() as Float32Array, xb, 4, K, (k, n) => wv[n * K + k], N)).toBeLessThanOrEqual(1);
    });
  });

  it('bf16 weights and activations (converted on the fly, f32 accumulate, bf16 out)', () => {
    const K = 896, N = 1003;
    tidy(() => {
      const W = tensor(values(N * K, 11), { shape: [N, K] }).to('bf16');
      const wv = W.data() as Float32Array;  // the exact bf16 values, widened
      for (const M of [1, 3, 8]) {
        const x = tensor(values(M * K, 12 + M), { shape: [M, K] }).to('bf16');
        const xv = x.data() as Float32Array;
        const y = linear(x, W);
        expect(y.dtype).toBe('bf16');
        const worst = checkAgainstF64(y.data() as Float32Array, xv, M, K, (k, n) => wv[n * K + k], N, 2 ** -8);
        expect(worst, `M=${M}`).toBeLessThanOrEqual(1);
      }
    });
  });

  it('matmul with a row-major B [K, N] and a transposed (strided) x', () => {
    const K = 301, N = 1500;
    const bv = values(K * N, 21);
    tidy(() => {
      const B = tensor(bv, { shape: [K, N] });
      for (const M of [1, 2, 5, 8]) {
        const xv = values(M * K, 30 + M);
        const y = matmul(tensor(xv, { shape: [M, K] }), B);
        expect(checkAgainstF64(y.data() as Float32Array, xv, M, K, (k, n) => bv[k * N + n], N), `M=${M}`).toBeLessThanOrEqual(1);
      }
      // x given as the transpose of a [K, M] tensor: A's rows are strided.
      const M = 3;
      const xt = values(K * M, 40);
      const xs: Tensor = tensor(xt, { shape: [K, M] }).t();
      const xv = new Float32Array(M * K);
      for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) xv[m * K + k] = xt[k * M + m];
      const W = tensor(values(N * K, 41), { shape: [N, K] });
      const wv = W.data() as Float32Array;
      const y = linear(xs, W);
      expect(checkAgainstF64(y.data() as Float32Array, xv, M, K, (k, n) => wv[n * K + k], N)).toBeLessThanOrEqual(1);
    });
  });
});
