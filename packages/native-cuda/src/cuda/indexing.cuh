// Strided iteration for elementwise kernels: N views that share one shape (the output's;
// broadcast inputs carry stride 0), walked by a row-major linear index i in [0, numel).
//
// The host coalesces the shape first: size-1 dims are dropped and adjacent dims are merged
// wherever every view is contiguous across them, so the common all-contiguous case becomes
// one dim with unit strides and kernels take their Contig fast path (offset = i, no division).
// Offsets are 64-bit throughout.
#pragma once
#include <cstdint>
#include "core/tensor_view.h"

namespace fovea::cuda {

template <int N> struct Iter {
  int ndim = 0;                       // after coalescing; 0 means a single element
  int64_t shape[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};  // in elements, per view

  // True when every view is a plain contiguous run (offset of element i is i).
  bool contiguous() const {
    if (ndim == 0) return true;
    if (ndim > 1) return false;
    for (int k = 0; k < N; ++k)
      if (strides[k][0] != 1) return false;
    return true;
  }

  __device__ __forceinline__ void offsets(int64_t i, int64_t (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t size = shape[d];
      const int64_t q = i / size;
      const int64_t c = i - q * size;
      i = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += c * strides[k][d];
    }
  }
};

// Builds the iterator for views[0..N) over `shape` (every view has that shape; the caller
// checked it).
template <int N> Iter<N> make_iter(const TensorView& shape, const TensorView* const (&views)[N]) {
  // Collect non-trivial dims, outermost first.
  int64_t sz[kMaxDims];
  int64_t st[N][kMaxDims];
  int nd = 0;
  for (int d = 0; d < shape.ndim; ++d) {
    if (shape.shape[d] == 1) continue;
    sz[nd] = shape.shape[d];
    for (int k = 0; k < N; ++k) st[k][nd] = views[k]->strides[d];
    ++nd;
  }
  // Merge from the innermost dim outwards: dim d folds into the current inner run when, for
  // every view, stepping once in d equals stepping over the whole inner run.
  Iter<N> it;
  if (nd == 0) return it;
  int64_t rsz[kMaxDims];
  int64_t rst[N][kMaxDims];
  int r = 0;
  rsz[0] = sz[nd - 1];
  for (int k = 0; k < N; ++k) rst[k][0] = st[k][nd - 1];
  for (int d = nd - 2; d >= 0; --d) {
    bool mergeable = true;
    for (int k = 0; k < N; ++k) mergeable = mergeable && st[k][d] == rst[k][r] * rsz[r];
    if (mergeable) {
      rsz[r] *= sz[d];
    } else {
      ++r;
      rsz[r] = sz[d];
      for (int k = 0; k < N; ++k) rst[k][r] = st[k][d];
    }
  }
  it.ndim = r + 1;
  for (int d = 0; d <= r; ++d) {  // back to outermost-first order
    it.shape[d] = rsz[r - d];
    for (int k = 0; k < N; ++k) it.strides[k][d] = rst[k][r - d];
  }
  return it;
}

}  // namespace fovea::cuda
