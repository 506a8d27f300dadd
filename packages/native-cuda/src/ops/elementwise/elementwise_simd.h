// SIMD fast paths for f32 elementwise ops on contiguous data (AVX-512 or AVX2/FMA, chosen at
// run time with fovea::isa()). Each returns false when it has no fast path for the op, and
// the generic strided kernel runs instead. Results match the scalar kernels to within the
// vectorized exp's error (≤ 2 ulp) for exp, sigmoid and silu, and exactly for the rest.
#pragma once
#include <cstdint>
#include "ops/elementwise/elementwise.h"

namespace fovea {

// out[i] = op(x[i]) for i in [0, n).
bool unary_f32_simd(UnaryOp op, const float* x, float* out, int64_t n, float alpha, float beta);
// out[i] = op(a[i], b[i]) (or b broadcast as a scalar when b_scalar).
bool binary_f32_simd(BinaryOp op, const float* a, const float* b, bool b_scalar, float* out, int64_t n);

}  // namespace fovea
