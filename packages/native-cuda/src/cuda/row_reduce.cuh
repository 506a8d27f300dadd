// Row-wise reductions shared by reduce.cu and softmax.cu. A "group" of G threads owns one row
// of a contiguous [rows, n] tensor: G = 32 is a warp per row (8 rows per 256-thread block,
// for short rows), G = 256 is the whole block per row (long rows).
//
// Each thread walks its elements in increasing index order (j = lane, lane + G, ...), which
// is what lets arg-reductions keep the first occurrence: a thread's candidate is its earliest
// best element, and the combine breaks ties by the smaller index.
//
// group_allreduce returns the group's result to every thread of the group. For G = 256 it
// uses __syncthreads, so every thread of the block must call it the same number of times
// (true when the row loop is uniform per block, which it is for G = 256).
#pragma once
#include <cstdint>
#include "cuda/dtype.cuh"

namespace fovea::cuda {

constexpr int kRowBlock = 256;  // threads per block for row kernels

template <int G> struct RowLayout {
  static constexpr int kRowsPerBlock = kRowBlock / G;
  __device__ static int lane() { return int(threadIdx.x) % G; }
  __device__ static int64_t first_row() {
    return int64_t(blockIdx.x) * kRowsPerBlock + int(threadIdx.x) / G;
  }
  __device__ static int64_t row_step() { return int64_t(gridDim.x) * kRowsPerBlock; }
};

// Grid for `rows` rows with G threads each (capped; kernels loop over the rest).
template <int G> inline unsigned row_grid(int64_t rows) {
  int64_t blocks = (rows + RowLayout<G>::kRowsPerBlock - 1) / RowLayout<G>::kRowsPerBlock;
  return unsigned(blocks < 1 ? 1 : (blocks > (int64_t(1) << 20) ? (int64_t(1) << 20) : blocks));
}

template <int G, class V, class Combine>
__device__ __forceinline__ V group_allreduce(V v, Combine comb) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = comb(v, __shfl_xor_sync(0xffffffffu, v, o));
  if constexpr (G > 32) {
    static_assert(G == kRowBlock, "a multi-warp group must be the whole block");
    __shared__ V part[G / 32];
    const int warp = int(threadIdx.x) >> 5;
    __syncthreads();  // everyone has read part[] from the previous call
    if ((threadIdx.x & 31) == 0) part[warp] = v;
    __syncthreads();
    v = part[0];
#pragma unroll
    for (int w = 1; w < G / 32; ++w) v = comb(v, part[w]);
  }
  return v;
}

// A (value, index) candidate for max/min/argmax/argmin; index < 0 means "none yet".
template <class A> struct ValIdx {
  A v;
  int64_t i;
};

// Winner of two candidates: NaN beats everything (NaN propagates), then the larger (max) or
// smaller (min) value, then the smaller index. Associative and commutative, so the tree
// order of the reduction cannot change which element wins.
template <bool IsMax, class A>
__device__ __forceinline__ ValIdx<A> pick(ValIdx<A> a, ValIdx<A> b) {
  if (a.i < 0) return b;
  if (b.i < 0) return a;
  const bool an = is_nan(a.v), bn = is_nan(b.v);
  if (an || bn) {
    if (an && bn) return a.i < b.i ? a : b;
    return an ? a : b;
  }
  if (a.v == b.v) return a.i < b.i ? a : b;
  return (IsMax ? a.v > b.v : a.v < b.v) ? a : b;
}

template <int G, bool IsMax, class A>
__device__ __forceinline__ ValIdx<A> group_allreduce_pick(ValIdx<A> c) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    ValIdx<A> other{__shfl_xor_sync(0xffffffffu, c.v, o),
                    (int64_t)__shfl_xor_sync(0xffffffffu, (long long)c.i, o)};
    c = pick<IsMax>(c, other);
  }
  if constexpr (G > 32) {
    static_assert(G == kRowBlock, "a multi-warp group must be the whole block");
    __shared__ A pv[G / 32];
    __shared__ int64_t pi[G / 32];
    const int warp = int(threadIdx.x) >> 5;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) { pv[warp] = c.v; pi[warp] = c.i; }
    __syncthreads();
    c = ValIdx<A>{pv[0], pi[0]};
#pragma unroll
    for (int w = 1; w < G / 32; ++w) c = pick<IsMax>(c, ValIdx<A>{pv[w], pi[w]});
  }
  return c;
}

// NaN-propagating max for the softmax / logsumexp shift.
template <class A> __device__ __forceinline__ A nan_max(A a, A b) {
  return (a > b || a != a) ? a : b;
}

}  // namespace fovea::cuda
