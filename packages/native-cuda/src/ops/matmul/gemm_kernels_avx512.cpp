// AVX-512 GEMM micro-kernel, 14×32: 28 zmm accumulators (14 rows × two 16-float vectors
// along N), two zmm loads of packed B per k and 14 broadcasts of packed A, so 30 of the 32
// zmm registers stay live and each k step issues 28 FMAs against 16 loads.
// Compiled with a target attribute so the library keeps a baseline x86-64 build;
// gemm_kernels_portable.cpp is the plain C++ version of the same computation.
// NOTES.md in this folder records the shapes tried (12×32, 6×64, ...) and what they measured;
// notably, software-prefetching the C tile here made GCC spill B to the stack and halved
// the kernel's speed.
#include "ops/matmul/gemm_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fovea {
namespace gemm {

#if defined(__x86_64__)
namespace {

constexpr int MR = 14, NR = 32;

#define FOVEA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

FOVEA_AVX512 void kernel_14x32(int64_t kc, const float* ap, const float* bp, float* c,
                               int64_t ldc, float beta) {
  __m512 acc[MR][2];
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i]);
      acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
    }
    ap += MR;
    bp += NR;
  }
  const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.f) {  // write-only: C may hold NaN
      _mm512_storeu_ps(row, acc[i][0]);
      _mm512_storeu_ps(row + 16, acc[i][1]);
    } else {
      _mm512_storeu_ps(row, _mm512_fmadd_ps(vb, _mm512_loadu_ps(row), acc[i][0]));
      _mm512_storeu_ps(row + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(row + 16), acc[i][1]));
    }
  }
}

}  // namespace

KernelInfo kernel_avx512() { return {kernel_14x32, MR, NR, "avx512 14x32"}; }
#else
KernelInfo kernel_avx512() { return kernel_portable(); }
#endif

}  // namespace gemm
}  // namespace fovea
