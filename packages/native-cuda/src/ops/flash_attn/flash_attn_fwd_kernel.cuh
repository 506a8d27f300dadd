// Flash-attention forward kernel: one block per (64-query tile, query head, sequence), 4 warps,
// each warp owning 16 query rows. Keys stream through shared memory 64 at a time; scores
// S = Q·Kᵀ and the update O += P·V run on tensor cores (m16n8k16, f32 accumulators).
//
// Online softmax in the log2 domain: x = s·scale·log2(e); per row the running max m and a
// per-thread partial sum l (summed over the quad at the end); when m grows the accumulator
// and l are rescaled by exp2(m_old − m_new). A row that has seen only masked keys keeps
// m = −inf; its exponent base is taken as 0 so nothing becomes NaN, and at the end l = 0
// marks it empty: out = 0, lse = +inf (flash_attn.h). lse = m·ln2 + ln(l), natural log.
//
// Tile skipping: only key tiles that intersect [key_range(first row), key_range(last row)]
// are visited (causal and windows); the per-element mask handles the partial tiles.
#pragma once
#include "ops/flash_attn/flash_attn_common.cuh"

namespace fovea::cuda::fa {

template <int D> constexpr size_t fwd_smem_bytes() { return size_t(3) * 64 * (D + 8) * 2; }

template <class T, int D>
__global__ void __launch_bounds__(kThreads) fwd_kernel(const FaArgs a) {
  static_assert(D % 16 == 0, "D must be a multiple of the MMA k (16)");
  constexpr int LDS = D + 8, KD = D / 16, ND = D / 8;
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t* sQ = smem;
  uint16_t* sK = sQ + kBM * LDS;
  uint16_t* sV = sK + kBN * LDS;

  const int b = blockIdx.z, h = blockIdx.y, m0 = blockIdx.x * kBM;
  const Seq s(a, b);
  if (m0 >= s.sq) return;  // grid.x covers max_seqlen_q; this sequence is shorter
  const int hk = h / a.group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int rows = min(kBM, s.sq - m0);

  load_tile<D>(sQ, static_cast<const T*>(a.q) + int64_t(s.q0 + m0) * a.q_rs + h * a.q_hs, a.q_rs,
               rows, a.vec);
  __syncthreads();
  uint32_t qf[KD][4];
#pragma unroll
  for (int kk = 0; kk < KD; ++kk) load_a<true>(qf[kk], sQ + warp * 16 * LDS + kk * 16, LDS, 1);

  float o[ND][4];
#pragma unroll
  for (int n = 0; n < ND; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};

  // The band moves right with the row, so the first row's low end and the last row's high
  // end bound every key the tile can see.
  int klo, khi;
  key_range(a, s, m0, m0 + rows - 1, &klo, &khi);
  const T* kbase = static_cast<const T*>(a.k) + int64_t(s.k0) * a.k_rs + hk * a.k_hs;
  const T* vbase = static_cast<const T*>(a.v) + int64_t(s.k0) * a.v_rs + hk * a.v_hs;
  const int row_a = m0 + warp * 16 + g;  // this thread's rows: row_a and row_a + 8

  for (int n0 = (klo / kBN) * kBN; n0 < khi; n0 += kBN) {
    __syncthreads();  // everyone is done reading the previous K/V tile
    const int kv_rows = min(kBN, s.sk - n0);
    load_tile<D>(sK, kbase + int64_t(n0) * a.k_rs, a.k_rs, kv_rows, a.vec);
    load_tile<D>(sV, vbase + int64_t(n0) * a.v_rs, a.v_rs, kv_rows, a.vec);
    __syncthreads();

    float sc[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        uint32_t bf[2];
        load_b<true>(bf, sK + n * 8 * LDS + kk * 16, 1, LDS);  // B(dim, key) = K[key][dim]
        Mma<T>::run(sc[n], qf[kk], bf);
      }
    }

    // Scale into the log2 domain, mask, and take the row maxima (rows g and g+8).
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = row_a + (e >> 1) * 8, j = n0 + n * 8 + 2 * t + (e & 1);
        const float x = visible(a, s, i, j) ? sc[n][e] * a.scale_log2 : -INFINITY;
        sc[n][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float mnew = fmaxf(mrow[r], quad_max(mx[r]));
      base[r] = mnew == -INFINITY ? 0.f : mnew;  // all masked so far: exp2(-inf - 0) = 0
      const float alpha = exp2f(mrow[r] - base[r]);
      mrow[r] = mnew;
      lrow[r] *= alpha;
#pragma unroll
      for (int n = 0; n < ND; ++n) { o[n][2 * r] *= alpha; o[n][2 * r + 1] *= alpha; }
    }
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(sc[n][e] - base[e >> 1]);
        sc[n][e] = p;
        lrow[e >> 1] += p;
      }
    }

    // O += P·V: P (rounded to T) straight from the accumulator registers.
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t pa[4];
      acc_to_a<T>(pa, sc, kk);
#pragma unroll
      for (int n = 0; n < ND; ++n) {
        uint32_t bf[2];
        load_b<false>(bf, sV + kk * 16 * LDS + n * 8, LDS, 1);  // B(key, dim) = V[key][dim]
        Mma<T>::run(o[n], pa, bf);
      }
    }
  }

  // Epilogue: normalize, write out (every row of the tile that exists) and lse.
  T* obase = static_cast<T*>(a.o_w);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = row_a + r * 8;
    const float l = quad_sum(lrow[r]);
    if (i >= s.sq) continue;
    const float inv = l > 0.f ? 1.f / l : 0.f;
    uint16_t* orow = reinterpret_cast<uint16_t*>(obase + int64_t(s.q0 + i) * a.o_rs + h * a.o_hs);
#pragma unroll
    for (int n = 0; n < ND; ++n) {
      orow[n * 8 + 2 * t] = Mma<T>::bits(o[n][2 * r] * inv);
      orow[n * 8 + 2 * t + 1] = Mma<T>::bits(o[n][2 * r + 1] * inv);
    }
    if (t == 0) a.lse[int64_t(h) * a.total_q + s.q0 + i] = l > 0.f ? mrow[r] * kLn2 + logf(l) : INFINITY;
  }
}

}  // namespace fovea::cuda::fa
