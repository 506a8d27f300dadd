// Fused AdamW step (torch.optim.AdamW, amsgrad off) and the gradient-norm reduction behind
// clipGradNorm. One pass per parameter: p, g, m, v (and the f32 master of a 16-bit
// parameter) are each read once and p, m, v (master) written once.
//
// Per element, in f32, with the scalars below computed in f64 and rounded to f32 as
// PyTorch's single-tensor path does (its Scalars become float for f32 tensors):
//   m = fma(g, 1−β1, β1·m)                   (as ATen's vectorized add with alpha)
//   v = fma((1−β2)·g, g, β2·v)               (addcmul)
//   w = w·decay + (−stepSize·m) / (√v / bc2Sqrt + eps)     (w·decay rounded, as torch's mul_)
//       decay = 1 − lr·wd, stepSize = lr/(1−β1^t), bc2Sqrt = √(1−β2^t)
// The CPU files compile with fp contraction off (#pragma), so only the explicit fmas fuse;
// the CUDA kernel uses __fmul_rn/__fadd_rn for the same reason.
// w is the parameter itself when it is f32; when it is bf16/f16, w is the f32 master copy
// and the parameter receives round-to-nearest-even(w) after the update.
// Layouts: every tensor contiguous with p's shape; m, v, master f32; g f32, bf16 or f16.
#pragma once
#include <cstdint>
#include "core/cpu_features.h"
#include "core/tensor_view.h"

namespace fovea {

struct AdamWHyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  int64_t step = 1;  // t after incrementing, >= 1
};

// The f32 scalars the kernel uses, derived from AdamWHyper (see the formula above).
struct AdamWScalars {
  float decay, beta1, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps;
};
AdamWScalars adamw_scalars(const AdamWHyper& h);

// Validates hyper-parameters and views (throws fovea::Error naming "adamwStep").
void adamw_check(const AdamWHyper& h, const TensorView& p, const TensorView& g,
                 const TensorView& m, const TensorView& v, const TensorView* master);

// The plain per-element loop (single thread, scalar f32 math): the reference.
void adamw_reference(const AdamWHyper& h, const TensorView& p, const TensorView& g,
                     const TensorView& m, const TensorView& v, const TensorView* master);
// The fast path: threaded, f32 core per ISA (isa() unless given).
void adamw_cpu(const AdamWHyper& h, const TensorView& p, const TensorView& g,
               const TensorView& m, const TensorView& v, const TensorView* master);
void adamw_cpu_isa(Isa isa, const AdamWHyper& h, const TensorView& p, const TensorView& g,
                   const TensorView& m, const TensorView& v, const TensorView* master);

// f32 core on contiguous arrays: w, m, v updated in place from g (all length n).
using AdamWCoreFn = void (*)(const AdamWScalars&, float* w, const float* g, float* m, float* v,
                             int64_t n);
AdamWCoreFn adamw_core(Isa isa);
void adamw_core_portable(const AdamWScalars&, float* w, const float* g, float* m, float* v,
                         int64_t n);
void adamw_core_avx2(const AdamWScalars&, float* w, const float* g, float* m, float* v, int64_t n);
void adamw_core_avx512(const AdamWScalars&, float* w, const float* g, float* m, float* v,
                       int64_t n);

// Σ|x|^p over a contiguous float tensor, accumulated in f64 (p = 2: Σx²); for p = +inf the
// max |x|. NaN propagates. The sum is formed from fixed-size blocks added in order, so the
// result does not depend on the thread count.
double grad_norm_pow_cpu(const TensorView& x, double p);

}  // namespace fovea
