// TensorView: what every kernel receives. A raw pointer (already offset to the first
// element), dtype, device, shape and strides in elements. The Node-API layer builds these
// after checking that every element the view can reach lies inside its storage, so kernels
// may index freely within shape/strides.
#pragma once
#include <cstdint>
#include "core/dtype.h"
#include "core/error.h"

namespace fovea {

constexpr int kMaxDims = 8;
constexpr int kCpu = -1;  // device id for host memory; >= 0 is a CUDA ordinal

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::F32;
  int device = kCpu;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  bool contiguous() const {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != s) return false;
      s *= shape[i];
    }
    return true;
  }
  int64_t size(int d) const { return shape[d < 0 ? d + ndim : d]; }
  template <class T> T* ptr() const { return static_cast<T*>(data); }
};

// Contiguous view of n elements over a raw pointer (used by C++ tests and composite kernels).
inline TensorView make_view(void* data, DType dt, std::initializer_list<int64_t> shape) {
  TensorView v;
  v.data = data; v.dtype = dt; v.ndim = int(shape.size());
  int i = 0;
  for (int64_t s : shape) v.shape[i++] = s;
  int64_t st = 1;
  for (int d = v.ndim - 1; d >= 0; --d) { v.strides[d] = st; st *= v.shape[d]; }
  return v;
}

}  // namespace fovea
