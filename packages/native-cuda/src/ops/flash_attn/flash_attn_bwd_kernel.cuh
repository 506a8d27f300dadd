// Flash-attention backward kernels (FlashAttention-2's algorithm, recomputing P from lse):
//   dsum_kernel  Dsum_i = rowsum(dO_i ∘ O_i)                       one warp per (row, head)
//   dkdv_kernel  dV_j = Σ_i P_ij dO_i,  dK_j = scale · Σ_i dS_ij Q_i   one block per (key tile,
//                KV head × split, sequence); it loops over its split's query heads of the KV
//                head's group and every query tile that can see the key tile, accumulating in
//                f32 registers in a fixed order. One split: stored straight to dk/dv. Several
//                (GQA with too few blocks to fill the GPU): each split stores its f32 partial
//                to a workspace and dkdv_reduce_kernel adds the splits in index order, so
//                dK/dV stay deterministic either way.
//                Atomic mode also adds this tile's dQ contribution (dS·K) into an f32 workspace.
//   dq_kernel    dQ_i = scale · Σ_j dS_ij K_j                        one block per (query tile,
//                head, sequence): the deterministic dQ pass (no atomics).
//   dkdv_reduce  dk, dv = Σ over splits of the f32 partials, in split order (GQA split only).
//   dq_convert   dq = dq_acc (f32, already scaled) rounded to T      atomic mode only.
// with P_ij = exp(s_ij·scale − lse_i) (0 where masked or lse = +inf), dP = dO·Vᵀ and
// dS = P ∘ (dP − Dsum). dS is rounded to T before its products, as FlashAttention does.
//
// Padding invariants: padded query rows carry lse = +inf, dO = 0 and Dsum = 0, padded keys
// are masked, so every padded entry of P and dS is exactly 0.
#pragma once
#include "ops/flash_attn/flash_attn_common.cuh"

namespace fovea::cuda::fa {

constexpr int kLDP = kBN + 8;  // row stride of the P / dS tiles in shared memory

template <int D> constexpr size_t dkdv_smem_bytes() {
  return size_t(4) * 64 * (D + 8) * 2 + size_t(2) * kBM * kLDP * 2 + 2 * kBM * sizeof(float);
}
template <int D> constexpr size_t dq_smem_bytes() { return size_t(4) * 64 * (D + 8) * 2; }

template <class T>
__global__ void dsum_kernel(const FaArgs a, int d) {
  const int64_t rows = a.total_q * a.hq;
  const int lane = threadIdx.x & 31;
  for (int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; w < rows;
       w += (int64_t(gridDim.x) * blockDim.x) >> 5) {
    const int64_t i = w / a.hq;
    const int h = int(w % a.hq);
    const uint16_t* o = static_cast<const uint16_t*>(a.out) + i * a.o_rs + h * a.o_hs;
    const uint16_t* go = static_cast<const uint16_t*>(a.dout) + i * a.o_rs + h * a.o_hs;
    float acc = 0.f;
    for (int c = lane; c < d; c += 32) acc += Mma<T>::to_f(o[c]) * Mma<T>::to_f(go[c]);
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, m);
    if (lane == 0) a.dsum[int64_t(h) * a.total_q + i] = acc;
  }
}

// dk/dv = Σ_split ws[.][split] in split order (deterministic), rounded to T. plane = total_k·hkv·D.
template <class T>
__global__ void dkdv_reduce_kernel(const FaArgs a, const float* ws, int nsplit, int64_t plane) {
  uint16_t* dk = static_cast<uint16_t*>(a.dk);
  uint16_t* dv = static_cast<uint16_t*>(a.dv);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < plane;
       i += int64_t(gridDim.x) * blockDim.x) {
    float sk = 0.f, sv = 0.f;
    for (int sp = 0; sp < nsplit; ++sp) {
      sk += ws[sp * plane + i];
      sv += ws[(nsplit + sp) * plane + i];
    }
    dk[i] = Mma<T>::bits(sk);
    dv[i] = Mma<T>::bits(sv);
  }
}

template <class T>
__global__ void dq_convert_kernel(const FaArgs a, int64_t n) {
  T* dq = static_cast<T*>(a.dq);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    reinterpret_cast<uint16_t*>(dq)[i] = Mma<T>::bits(a.dq_acc[i]);
}

// S = Q·Kᵀ and dP = dO·Vᵀ for this warp's 16 query rows against a 64-key tile, then P and
// dS in place (sc becomes P, dp becomes dS). lse2 = lse·log2(e) of rows (row_a, row_a + 8).
template <class T, int D>
__device__ __forceinline__ void scores_and_ds(const FaArgs& a, const Seq& s, const uint16_t* sQw,
                                              const uint16_t* sdOw, const uint16_t* sK,
                                              const uint16_t* sV, int row_a, int n0,
                                              const float lse2[2], const float dsum[2],
                                              float (&sc)[8][4], float (&dp)[8][4]) {
  constexpr int LDS = D + 8, KD = D / 16;
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int n = 0; n < 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) sc[n][e] = dp[n][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < KD; ++kk) {
    uint32_t qa[4], da[4];
    load_a<true>(qa, sQw + kk * 16, LDS, 1);
    load_a<true>(da, sdOw + kk * 16, LDS, 1);
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      uint32_t kb[2], vb[2];
      load_b<true>(kb, sK + n * 8 * LDS + kk * 16, 1, LDS);  // B(dim, key) = K[key][dim]
      load_b<true>(vb, sV + n * 8 * LDS + kk * 16, 1, LDS);  // B(dim, key) = V[key][dim]
      Mma<T>::run(sc[n], qa, kb);
      Mma<T>::run(dp[n], da, vb);
    }
  }
#pragma unroll
  for (int n = 0; n < 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e >> 1, i = row_a + r * 8, j = n0 + n * 8 + 2 * t + (e & 1);
      const float p = visible(a, s, i, j) ? exp2f(sc[n][e] * a.scale_log2 - lse2[r]) : 0.f;
      sc[n][e] = p;
      dp[n][e] = p * (dp[n][e] - dsum[r]);
    }
  }
}

// nsplit: blockIdx.y = hk · nsplit + split; split handles heads_per_split query heads.
// ws (nsplit > 1 only): f32 [2, nsplit, total_k, hkv, D], dK (scaled) then dV.
template <class T, int D>
__global__ void __launch_bounds__(kThreads) dkdv_kernel(const FaArgs a, int atomic_dq, int nsplit,
                                                        int heads_per_split, float* ws) {
  constexpr int LDS = D + 8, ND = D / 8;
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t* sK = smem;
  uint16_t* sV = sK + 64 * LDS;
  uint16_t* sQ = sV + 64 * LDS;
  uint16_t* sdO = sQ + 64 * LDS;
  uint16_t* sP = sdO + 64 * LDS;  // [query][key], P rounded to T
  uint16_t* sdS = sP + kBM * kLDP;
  float* sLse2 = reinterpret_cast<float*>(sdS + kBM * kLDP);
  float* sDsum = sLse2 + kBM;

  const int b = blockIdx.z, hk = blockIdx.y / nsplit, split = blockIdx.y % nsplit;
  const int n0 = blockIdx.x * kBN;
  const Seq s(a, b);
  if (n0 >= s.sk) return;
  const int h_begin = hk * a.group + split * heads_per_split;
  const int h_end = min(h_begin + heads_per_split, (hk + 1) * a.group);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int kv_rows = min(kBN, s.sk - n0);
  load_tile<D>(sK, static_cast<const T*>(a.k) + int64_t(s.k0 + n0) * a.k_rs + hk * a.k_hs, a.k_rs,
               kv_rows, a.vec);
  load_tile<D>(sV, static_cast<const T*>(a.v) + int64_t(s.k0 + n0) * a.v_rs + hk * a.v_hs, a.v_rs,
               kv_rows, a.vec);

  float dk[ND][4], dv[ND][4];  // this warp's 16 keys (n0 + 16·warp ...) × D
#pragma unroll
  for (int n = 0; n < ND; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;

  int qlo, qhi;
  query_range(a, s, n0, n0 + kv_rows - 1, &qlo, &qhi);
  for (int h = h_begin; h < h_end; ++h) {
    for (int m0 = (qlo / kBM) * kBM; m0 < qhi; m0 += kBM) {
      __syncthreads();  // previous tile's readers of sQ/sdO/sP/sdS are done
      const int rows = min(kBM, s.sq - m0);
      load_tile<D>(sQ, static_cast<const T*>(a.q) + int64_t(s.q0 + m0) * a.q_rs + h * a.q_hs,
                   a.q_rs, rows, a.vec);
      load_tile<D>(sdO, static_cast<const T*>(a.dout) + int64_t(s.q0 + m0) * a.o_rs + h * a.o_hs,
                   a.o_rs, rows, a.vec);
      for (int r = threadIdx.x; r < kBM; r += kThreads) {
        const int64_t idx = int64_t(h) * a.total_q + s.q0 + m0 + r;
        sLse2[r] = r < rows ? a.lse[idx] * kLog2e : INFINITY;
        sDsum[r] = r < rows ? a.dsum[idx] : 0.f;
      }
      __syncthreads();

      // Step A (warp = 16 query rows): P and dS, stored transposable in shared memory.
      const int rl = warp * 16 + g;
      const float lse2[2] = {sLse2[rl], sLse2[rl + 8]}, ds_row[2] = {sDsum[rl], sDsum[rl + 8]};
      float sc[8][4], dp[8][4];
      scores_and_ds<T, D>(a, s, sQ + warp * 16 * LDS, sdO + warp * 16 * LDS, sK, sV, m0 + rl, n0,
                          lse2, ds_row, sc, dp);
#pragma unroll
      for (int n = 0; n < 8; ++n) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int off = (rl + 8 * r) * kLDP + n * 8 + 2 * t;
          *reinterpret_cast<uint32_t*>(sP + off) = Mma<T>::pack(sc[n][2 * r], sc[n][2 * r + 1]);
          *reinterpret_cast<uint32_t*>(sdS + off) = Mma<T>::pack(dp[n][2 * r], dp[n][2 * r + 1]);
        }
      }
      if (atomic_dq) {  // dQ[rows] += scale · dS·K, into the f32 workspace
        uint32_t dsa[4][4];
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) acc_to_a<T>(dsa[kk], dp, kk);
#pragma unroll
        for (int n = 0; n < ND; ++n) {
          float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            uint32_t kb[2];
            load_b<false>(kb, sK + kk * 16 * LDS + n * 8, LDS, 1);  // B(key, dim) = K[key][dim]
            Mma<T>::run(c, dsa[kk], kb);
          }
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int i = m0 + rl + 8 * r;
            if (i >= s.sq) continue;
            float* dst = a.dq_acc + (int64_t(s.q0 + i) * a.hq + h) * D + n * 8 + 2 * t;
            atomicAdd(dst, c[2 * r] * a.scale);
            atomicAdd(dst + 1, c[2 * r + 1] * a.scale);
          }
        }
      }
      __syncthreads();

      // Step B (warp = 16 keys): dV += Pᵀ·dO, dK += dSᵀ·Q; A(key, query) = P[query][key].
#pragma unroll
      for (int kk = 0; kk < kBM / 16; ++kk) {
        uint32_t pa[4], sa[4];
        load_a<false>(pa, sP + kk * 16 * kLDP + warp * 16, 1, kLDP);
        load_a<false>(sa, sdS + kk * 16 * kLDP + warp * 16, 1, kLDP);
#pragma unroll
        for (int n = 0; n < ND; ++n) {
          uint32_t ob[2], qb[2];
          load_b<false>(ob, sdO + kk * 16 * LDS + n * 8, LDS, 1);  // B(query, dim)
          load_b<false>(qb, sQ + kk * 16 * LDS + n * 8, LDS, 1);
          Mma<T>::run(dv[n], pa, ob);
          Mma<T>::run(dk[n], sa, qb);
        }
      }
    }
  }

  // Every key row of the tile is written, zeros included (keys no query sees).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int j = n0 + warp * 16 + g + 8 * r;
    if (j >= s.sk) continue;
    const int64_t row = (int64_t(s.k0 + j) * a.hkv + hk) * D;
    if (nsplit > 1) {
      const int64_t plane = a.total_k * a.hkv * D;
      float* wk = ws + split * plane + row;
      float* wv = ws + (nsplit + split) * plane + row;
#pragma unroll
      for (int n = 0; n < ND; ++n) {
        const int c = n * 8 + 2 * t;
        *reinterpret_cast<float2*>(wk + c) = make_float2(dk[n][2 * r] * a.scale, dk[n][2 * r + 1] * a.scale);
        *reinterpret_cast<float2*>(wv + c) = make_float2(dv[n][2 * r], dv[n][2 * r + 1]);
      }
      continue;
    }
    uint16_t* dkr = static_cast<uint16_t*>(a.dk) + row;
    uint16_t* dvr = static_cast<uint16_t*>(a.dv) + row;
#pragma unroll
    for (int n = 0; n < ND; ++n) {
      const int c = n * 8 + 2 * t;
      *reinterpret_cast<uint32_t*>(dkr + c) =
          Mma<T>::pack(dk[n][2 * r] * a.scale, dk[n][2 * r + 1] * a.scale);
      *reinterpret_cast<uint32_t*>(dvr + c) = Mma<T>::pack(dv[n][2 * r], dv[n][2 * r + 1]);
    }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) dq_kernel(const FaArgs a) {
  constexpr int LDS = D + 8, ND = D / 8;
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t* sQ = smem;
  uint16_t* sdO = sQ + 64 * LDS;
  uint16_t* sK = sdO + 64 * LDS;
  uint16_t* sV = sK + 64 * LDS;

  const int b = blockIdx.z, h = blockIdx.y, m0 = blockIdx.x * kBM;
  const Seq s(a, b);
  if (m0 >= s.sq) return;
  const int hk = h / a.group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int rows = min(kBM, s.sq - m0);
  load_tile<D>(sQ, static_cast<const T*>(a.q) + int64_t(s.q0 + m0) * a.q_rs + h * a.q_hs, a.q_rs,
               rows, a.vec);
  load_tile<D>(sdO, static_cast<const T*>(a.dout) + int64_t(s.q0 + m0) * a.o_rs + h * a.o_hs,
               a.o_rs, rows, a.vec);
  const int row_a = m0 + warp * 16 + g;
  float lse2[2], ds_row[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = row_a + 8 * r;
    const int64_t idx = int64_t(h) * a.total_q + s.q0 + i;
    lse2[r] = i < s.sq ? a.lse[idx] * kLog2e : INFINITY;
    ds_row[r] = i < s.sq ? a.dsum[idx] : 0.f;
  }

  float dq[ND][4];
#pragma unroll
  for (int n = 0; n < ND; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;
  int klo, khi;
  key_range(a, s, m0, m0 + rows - 1, &klo, &khi);
  const T* kbase = static_cast<const T*>(a.k) + int64_t(s.k0) * a.k_rs + hk * a.k_hs;
  const T* vbase = static_cast<const T*>(a.v) + int64_t(s.k0) * a.v_rs + hk * a.v_hs;
  for (int n0 = (klo / kBN) * kBN; n0 < khi; n0 += kBN) {
    __syncthreads();
    const int kv_rows = min(kBN, s.sk - n0);
    load_tile<D>(sK, kbase + int64_t(n0) * a.k_rs, a.k_rs, kv_rows, a.vec);
    load_tile<D>(sV, vbase + int64_t(n0) * a.v_rs, a.v_rs, kv_rows, a.vec);
    __syncthreads();
    float sc[8][4], dp[8][4];
    scores_and_ds<T, D>(a, s, sQ + warp * 16 * LDS, sdO + warp * 16 * LDS, sK, sV, row_a, n0,
                        lse2, ds_row, sc, dp);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      uint32_t dsa[4];
      acc_to_a<T>(dsa, dp, kk);
#pragma unroll
      for (int n = 0; n < ND; ++n) {
        uint32_t kb[2];
        load_b<false>(kb, sK + kk * 16 * LDS + n * 8, LDS, 1);  // B(key, dim) = K[key][dim]
        Mma<T>::run(dq[n], dsa, kb);
      }
    }
  }

  // dq is contiguous [total_q, hq, D]; every row of the tile that exists is written.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = row_a + 8 * r;
    if (i >= s.sq) continue;
    uint16_t* dqr = static_cast<uint16_t*>(a.dq) + (int64_t(s.q0 + i) * a.hq + h) * D;
#pragma unroll
    for (int n = 0; n < ND; ++n)
      *reinterpret_cast<uint32_t*>(dqr + n * 8 + 2 * t) =
          Mma<T>::pack(dq[n][2 * r] * a.scale, dq[n][2 * r + 1] * a.scale);
  }
}

}  // namespace fovea::cuda::fa
