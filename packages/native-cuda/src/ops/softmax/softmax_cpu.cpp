// CPU softmax / log-softmax (forward and backward) over the last dim of contiguous rows.
//
// softmax_reference: the plain per-row loops in the compute type (f32, f64 for f64).
// softmax_cpu: f32 rows go through the ISA's row primitives (softmax.h):
//   softmax:      m = max x;  e_i = exp(x_i - m) stored, s = Σ e_i;  y = e · (1/s)
//   log-softmax:  m = max x;  s = Σ exp(x_i - m);  y = (x_i - m) - log s
// A 4096-float row is 16 KB, so the re-reads hit L1. While a row computes, the next row of
// the chunk is prefetched; outputs of kStreamingStoreBytes or more are written with
// non-temporal stores (softmax then keeps e in a per-chunk scratch row, so y is written once
// and never read). bench/nn_lab.cpp measured these choices; NOTES.md has the numbers.
// bf16/f16 rows are widened into the scratch row, run through the same primitives in place,
// and rounded once on store; f64 uses the reference loops.
// Rows are split over the thread pool; each row is computed by one thread, so the result
// does not depend on the thread count.
#include "ops/softmax/softmax.h"
#include <cmath>
#include <limits>
#include <vector>
#include "core/error.h"
#include "core/thread_pool.h"
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

namespace fovea {
namespace {

int64_t row_len(const TensorView& x) { return x.ndim == 0 ? 1 : x.shape[x.ndim - 1]; }
int64_t row_count(const TensorView& x, int64_t n) { return n == 0 ? 0 : x.numel() / n; }
int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)); }

template <class T>
void reference_rows(const TensorView& x, const TensorView& out, bool log) {
  using C = typename Compute<T>::type;
  const int64_t n = row_len(x), rows = row_count(x, n);
  const T* xp = x.ptr<T>();
  T* yp = out.ptr<T>();
  parallel_for(0, rows, row_grain(n), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const T* xr = xp + r * n;
      T* yr = yp + r * n;
      C m = -std::numeric_limits<C>::infinity();
      for (int64_t i = 0; i < n; ++i) m = std::max(m, C(load(xr + i)));
      C s = 0;
      for (int64_t i = 0; i < n; ++i) s += std::exp(C(load(xr + i)) - m);
      if (log) {
        const C ls = std::log(s);
        for (int64_t i = 0; i < n; ++i) store(yr + i, (C(load(xr + i)) - m) - ls);
      } else {
        const C inv = C(1) / s;
        for (int64_t i = 0; i < n; ++i) store(yr + i, std::exp(C(load(xr + i)) - m) * inv);
      }
    }
  });
}

// One f32 row through the primitives; y may alias x. `buf` (n floats) is needed only when
// streaming; `ahead` is the next row to prefetch (or null).
inline void fast_row(const SoftmaxRowKernels& k, const float* x, float* y, int64_t n, bool log,
                     bool stream, float* buf, const float* ahead) {
  const float m = k.max(x, n);
  if (log) {
    const float s = k.sum_exp(x, n, m, ahead);
    k.sub2(x, y, n, m, std::log(s), stream);
  } else if (stream) {
    const float s = k.exp_store_sum(x, buf, n, m, ahead);
    k.scale_store(buf, y, n, 1.f / s, true);
  } else {
    const float s = k.exp_store_sum(x, y, n, m, ahead);
    k.scale_store(y, y, n, 1.f / s, false);
  }
}

void fast_rows_f32(const SoftmaxRowKernels& k, const TensorView& x, const TensorView& out,
                   bool log) {
  const int64_t n = row_len(x), rows = row_count(x, n);
  const float* xp = x.ptr<float>();
  float* yp = out.ptr<float>();
  const bool stream = rows * n * int64_t(sizeof(float)) >= kStreamingStoreBytes;
  parallel_for(0, rows, row_grain(n), [&](int64_t rb, int64_t re) {
    std::vector<float> buf(stream && !log ? static_cast<size_t>(n) : 0);
    for (int64_t r = rb; r < re; ++r)
      fast_row(k, xp + r * n, yp + r * n, n, log, stream, buf.data(),
               r + 1 < re ? xp + (r + 1) * n : nullptr);
    if (stream) stream_fence();
  });
}

template <class T>
void fast_rows_16bit(const SoftmaxRowKernels& k, const TensorView& x, const TensorView& out,
                     bool log) {
  const int64_t n = row_len(x), rows = row_count(x, n);
  const T* xp = x.ptr<T>();
  T* yp = out.ptr<T>();
  parallel_for(0, rows, row_grain(n), [&](int64_t rb, int64_t re) {
    std::vector<float> buf(static_cast<size_t>(n));
    for (int64_t r = rb; r < re; ++r) {
      const T* xr = xp + r * n;
      T* yr = yp + r * n;
      for (int64_t i = 0; i < n; ++i) buf[i] = load(xr + i);
      fast_row(k, buf.data(), buf.data(), n, log, false, nullptr, nullptr);
      for (int64_t i = 0; i < n; ++i) store(yr + i, buf[i]);
    }
  });
}

template <class T>
void backward_rows(const TensorView& y, const TensorView& dy, const TensorView& dx, bool log) {
  using C = typename Compute<T>::type;
  const int64_t n = row_len(y), rows = row_count(y, n);
  const T* yp = y.ptr<T>();
  const T* gp = dy.ptr<T>();
  T* dp = dx.ptr<T>();
  parallel_for(0, rows, row_grain(n), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const T* yr = yp + r * n;
      const T* gr = gp + r * n;
      T* dr = dp + r * n;
      // 8 partial sums: vectorizable, tree-like rounding.
      C part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k)
          part[k] += log ? C(load(gr + i + k)) : C(load(gr + i + k)) * C(load(yr + i + k));
      C s = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
      for (; i < n; ++i) s += log ? C(load(gr + i)) : C(load(gr + i)) * C(load(yr + i));
      // dx may alias dy: each element is read before it is written.
      if (log)
        for (int64_t j = 0; j < n; ++j) store(dr + j, C(load(gr + j)) - std::exp(C(load(yr + j))) * s);
      else
        for (int64_t j = 0; j < n; ++j) store(dr + j, C(load(yr + j)) * (C(load(gr + j)) - s));
    }
  });
}

}  // namespace

const SoftmaxRowKernels& softmax_row_kernels(Isa i) {
  switch (i) {
    case Isa::Avx512: return softmax_kernels_avx512();
    case Isa::Avx2: return softmax_kernels_avx2();
    default: return softmax_kernels_portable();
  }
}

void stream_fence() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

void vec_exp_f32(Isa i, const float* x, float* y, int64_t n) {
  softmax_row_kernels(i).exp_scale(x, y, n, 0.f, 1.f);
}

void softmax_reference(const TensorView& x, const TensorView& out, bool log) {
  dispatch_float(x.dtype, [&](auto t) { reference_rows<decltype(t)>(x, out, log); });
}

void softmax_cpu(const TensorView& x, const TensorView& out, bool log) {
  const SoftmaxRowKernels& k = softmax_row_kernels(isa());
  switch (x.dtype) {
    case DType::F32: fast_rows_f32(k, x, out, log); break;
    case DType::BF16: fast_rows_16bit<bf16>(k, x, out, log); break;
    case DType::F16: fast_rows_16bit<f16>(k, x, out, log); break;
    case DType::F64: reference_rows<double>(x, out, log); break;
    default: fail("softmax: x must be a float tensor, got ", dtype_name(x.dtype));
  }
}

void softmax_backward_cpu(const TensorView& y, const TensorView& dy, const TensorView& dx,
                          bool log) {
  dispatch_float(y.dtype, [&](auto t) { backward_rows<decltype(t)>(y, dy, dx, log); });
}

}  // namespace fovea
