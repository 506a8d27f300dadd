// Portable GEMM micro-kernel: plain C++ with no intrinsics, compiled for baseline x86-64
// (or any architecture). It is both the fallback when FOVEA_ISA=portable / no AVX2, and the
// readable reference for what the SIMD micro-kernels in gemm_kernels_avx2.cpp and
// gemm_kernels_avx512.cpp compute (same packed layouts, see gemm_internal.h).
#include "ops/matmul/gemm_internal.h"

namespace fovea {
namespace gemm {
namespace {

constexpr int MR = 4, NR = 8;  // 32 accumulators: fits 16 SSE registers as 8 × 4 lanes

void kernel_4x8(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                float beta) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i) {
      const float a = ap[k * MR + i];
      for (int j = 0; j < NR; ++j) acc[i][j] += a * bp[k * NR + j];
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.f)
      for (int j = 0; j < NR; ++j) row[j] = acc[i][j];  // write-only: C may hold NaN
    else if (beta == 1.f)
      for (int j = 0; j < NR; ++j) row[j] += acc[i][j];
    else
      for (int j = 0; j < NR; ++j) row[j] = acc[i][j] + beta * row[j];
  }
}

}  // namespace

KernelInfo kernel_portable() { return {kernel_4x8, MR, NR, "portable 4x8"}; }

}  // namespace gemm
}  // namespace fovea
