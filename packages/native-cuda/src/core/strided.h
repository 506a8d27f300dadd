// Strided iteration over several views that share one shape (the output's; broadcast inputs
// have stride 0). Adjacent dimensions that are contiguous for every view are merged first,
// so the common all-contiguous case becomes one flat loop. The work is split over rows (all
// dimensions but the innermost) on the thread pool; fn(ptrs, inner_strides, len) is called
// for runs along the innermost dimension with element pointers and element strides.
#pragma once
#include <array>
#include <cstdint>
#include "core/tensor_view.h"
#include "core/thread_pool.h"

namespace fovea {

template <int N>
struct StridedPlan {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];
  char* base[N];
  int64_t elem[N];

  explicit StridedPlan(const std::array<const TensorView*, N>& v) {
    const TensorView& ref = *v[0];
    for (int k = 0; k < N; ++k) {
      base[k] = static_cast<char*>(v[k]->data);
      elem[k] = int64_t(dtype_size(v[k]->dtype));
    }
    // Drop size-1 dims, then merge dims that are contiguous in every view.
    for (int d = 0; d < ref.ndim; ++d) {
      if (ref.shape[d] == 1) continue;
      if (ndim > 0) {
        bool merge = true;
        for (int k = 0; k < N; ++k)
          if (strides[k][ndim - 1] != v[k]->strides[d] * ref.shape[d]) { merge = false; break; }
        if (merge) {
          shape[ndim - 1] *= ref.shape[d];
          for (int k = 0; k < N; ++k) strides[k][ndim - 1] = v[k]->strides[d];
          continue;
        }
      }
      shape[ndim] = ref.shape[d];
      for (int k = 0; k < N; ++k) strides[k][ndim] = v[k]->strides[d];
      ++ndim;
    }
    if (ndim == 0) {
      ndim = 1;
      shape[0] = 1;
      for (int k = 0; k < N; ++k) strides[k][0] = 1;
    }
  }

  // fn(std::array<char*, N> ptrs, std::array<int64_t, N> inner_strides_in_elements, int64_t len)
  template <class F>
  void run(int64_t grain_elems, F&& fn) const {
    for (int d = 0; d < ndim; ++d) if (shape[d] == 0) return;
    const int64_t inner = shape[ndim - 1];
    int64_t rows = 1;
    for (int d = 0; d < ndim - 1; ++d) rows *= shape[d];
    std::array<int64_t, N> inner_st;
    for (int k = 0; k < N; ++k) inner_st[k] = strides[k][ndim - 1];
    if (rows == 1) {
      // One long run: split it into chunks.
      parallel_for(0, inner, grain_elems, [&](int64_t b, int64_t e) {
        std::array<char*, N> p;
        for (int k = 0; k < N; ++k) p[k] = base[k] + b * inner_st[k] * elem[k];
        fn(p, inner_st, e - b);
      });
      return;
    }
    int64_t grain_rows = std::max<int64_t>(1, grain_elems / std::max<int64_t>(inner, 1));
    parallel_for(0, rows, grain_rows, [&](int64_t rb, int64_t re) {
      int64_t idx[kMaxDims];
      int64_t r = rb;
      for (int d = ndim - 2; d >= 0; --d) { idx[d] = r % shape[d]; r /= shape[d]; }
      for (int64_t row = rb; row < re; ++row) {
        std::array<char*, N> p;
        for (int k = 0; k < N; ++k) {
          int64_t off = 0;
          for (int d = 0; d < ndim - 1; ++d) off += idx[d] * strides[k][d];
          p[k] = base[k] + off * elem[k];
        }
        fn(p, inner_st, inner);
        for (int d = ndim - 2; d >= 0; --d) {
          if (++idx[d] < shape[d]) break;
          idx[d] = 0;
        }
      }
    });
  }
};

constexpr int64_t kElementwiseGrain = 1 << 15;

}  // namespace fovea
