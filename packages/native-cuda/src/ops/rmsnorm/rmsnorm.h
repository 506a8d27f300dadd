// RMSNorm over the last dimension (HF Qwen2RMSNorm semantics), forward and backward.
//   x [rows, H] contiguous (any leading dims), weight [H] (any float dtype), y like x,
//   rstd [rows] f32 (f64 when x is f64, so f64 gradchecks stay exact).
//   rstd_r = 1 / sqrt(mean_j(x_rj²) + eps), computed in f32 from the upcast input (f64 for f64)
//   y_rj   = w_j · round_x(x_rj · rstd_r), rounded to x's dtype
// round_x is the rounding to x's dtype that HF's `hidden_states.to(input_dtype)` does before
// the weight multiply (a no-op for f32/f64). HF's result dtype would follow type promotion
// with the weight's dtype; ours is always x's dtype (the TS side casts if it wants more).
// Backward (of the unrounded map, with xhat = x · rstd):
//   dx_rj = rstd_r · (w_j dy_rj) - rstd_r³ / H · x_rj · Σ_k w_k dy_rk x_rk
//   dw_j  = Σ_r dy_rj · x_rj · rstd_r      (f32 [H], f64 for f64 x; overwritten, not +=)
// dw is accumulated in double per thread over a fixed split of the rows, then the partials
// are added in thread order: deterministic for a fixed thread count.
#pragma once
#include <cstdint>
#include "core/cpu_features.h"
#include "core/tensor_view.h"

namespace fovea {

void rmsnorm_cpu(const TensorView& x, const TensorView& w, double eps, const TensorView& y,
                 const TensorView& rstd);
void rmsnorm_reference(const TensorView& x, const TensorView& w, double eps,
                       const TensorView& y, const TensorView& rstd);
void rmsnorm_backward_cpu(const TensorView& x, const TensorView& w, const TensorView& rstd,
                          const TensorView& dy, const TensorView& dx, const TensorView& dw);

// f32 row primitives for x and w both f32, one table per ISA (rmsnorm_kernels_*.cpp).
// `stream`: write y with non-temporal stores (softmax.h explains when and the fence).
struct RmsNormRowKernels {
  float (*sum_sq)(const float* x, int64_t n);  // Σ x_i²
  void (*scale_mul)(const float* x, const float* w, float* y, int64_t n, float r,
                    bool stream);              // y_i = w_i · (x_i · r)
  const char* name;
};
const RmsNormRowKernels& rmsnorm_row_kernels(Isa isa);
const RmsNormRowKernels& rmsnorm_kernels_portable();
const RmsNormRowKernels& rmsnorm_kernels_avx2();
const RmsNormRowKernels& rmsnorm_kernels_avx512();

}  // namespace fovea
