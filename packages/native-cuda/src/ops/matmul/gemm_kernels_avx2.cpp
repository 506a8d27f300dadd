// AVX2/FMA GEMM micro-kernel, 6×16 (the BLIS Haswell shape): 12 ymm accumulators, two ymm
// of B per k and one broadcast of A, 15 of the 16 ymm registers. Compiled with a target
// attribute so the library keeps a baseline x86-64 build; gemm_kernels_portable.cpp is the
// plain C++ version of the same computation.
#include "ops/matmul/gemm_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fovea {
namespace gemm {

#if defined(__x86_64__)
namespace {

constexpr int MR = 6, NR = 16;

__attribute__((target("avx2,fma"))) void kernel_6x16(int64_t kc, const float* ap,
                                                     const float* bp, float* c, int64_t ldc,
                                                     float beta) {
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(ap + i);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
    ap += MR;
    bp += NR;
  }
  const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.f) {  // write-only: C may hold NaN
      _mm256_storeu_ps(row, acc[i][0]);
      _mm256_storeu_ps(row + 8, acc[i][1]);
    } else {
      _mm256_storeu_ps(row, _mm256_fmadd_ps(vb, _mm256_loadu_ps(row), acc[i][0]));
      _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(vb, _mm256_loadu_ps(row + 8), acc[i][1]));
    }
  }
}

}  // namespace

KernelInfo kernel_avx2() { return {kernel_6x16, MR, NR, "avx2 6x16"}; }
#else
KernelInfo kernel_avx2() { return kernel_portable(); }
#endif

}  // namespace gemm
}  // namespace fovea
