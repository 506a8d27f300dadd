// Softmax and log-softmax over the last dimension of contiguous [rows, n] views (the TS side
// makes the input contiguous; any leading dims are flattened into rows).
//   softmax(x)_j     = exp(x_j - m) / Σ_k exp(x_k - m)        m = max_k x_k (stability shift)
//   log_softmax(x)_j = (x_j - m) - log Σ_k exp(x_k - m)
// Backward, given the forward output y (not x):
//   softmax:      dx = y · (dy - Σ dy·y)
//   log-softmax:  dx = dy - exp(y) · Σ dy
// x, out, dy, dx share one float dtype; compute is f32 (f64 for f64), rounded once on store.
// A row holding NaN or +inf gives NaN for the whole row (as PyTorch does).
//
// softmax_cpu runs the f32 row kernels of softmax_row_kernels(isa()) (AVX-512 / AVX2 with a
// polynomial exp, see vec_exp.h); softmax_reference is the plain scalar version they are
// tested against. Cross entropy reuses the same row kernels for its log-sum-exp.
#pragma once
#include <cstdint>
#include "core/cpu_features.h"
#include "core/tensor_view.h"

namespace fovea {

void softmax_cpu(const TensorView& x, const TensorView& out, bool log);
void softmax_reference(const TensorView& x, const TensorView& out, bool log);
void softmax_backward_cpu(const TensorView& y, const TensorView& dy, const TensorView& dx,
                          bool log);

// f32 row primitives, one table per ISA. n may be any length >= 0 (tails are masked).
// exp here is the vectorized polynomial of vec_exp.h (≤ 2 ulp, gradual underflow).
// `ahead` (may be null) points at the next row: its first n floats are prefetched into L1
// while this row computes, so the next row's memory latency hides behind this row's exps.
// `stream` = write y with non-temporal stores (for outputs far larger than the caches: skips
// the read-for-ownership of y and does not evict the input); the caller issues the fence
// (stream_fence) before the data is handed to another thread.
struct SoftmaxRowKernels {
  float (*max)(const float* x, int64_t n);                    // -inf for n == 0; may skip NaN
  float (*sum_exp)(const float* x, int64_t n, float shift, const float* ahead);  // Σ exp(x_i - shift)
  // y_i = exp(x_i - shift); returns Σ y_i (y may alias x).
  float (*exp_store_sum)(const float* x, float* y, int64_t n, float shift, const float* ahead);
  // y_i = scale · exp(x_i - shift)  (y may alias x)
  void (*exp_scale)(const float* x, float* y, int64_t n, float shift, float scale);
  void (*scale_store)(const float* x, float* y, int64_t n, float s, bool stream);    // y_i = x_i · s
  void (*sub2)(const float* x, float* y, int64_t n, float a, float b, bool stream);  // (x_i - a) - b
  const char* name;
};
// Orders this thread's non-temporal stores before later stores (sfence on x86; no-op elsewhere).
void stream_fence();
// Outputs at least this large are written with streaming stores by softmax_cpu / rmsnorm_cpu.
constexpr int64_t kStreamingStoreBytes = int64_t(16) << 20;
const SoftmaxRowKernels& softmax_row_kernels(Isa isa);

// The ISA-specific tables (softmax_kernels_{portable,avx2,avx512}.cpp). Calling one the CPU
// does not support is the caller's bug; use softmax_row_kernels(isa()).
const SoftmaxRowKernels& softmax_kernels_portable();
const SoftmaxRowKernels& softmax_kernels_avx2();
const SoftmaxRowKernels& softmax_kernels_avx512();

// Exposed for tests: the vectorized exp of each ISA applied to n floats (y may alias x).
void vec_exp_f32(Isa isa, const float* x, float* y, int64_t n);

}  // namespace fovea
