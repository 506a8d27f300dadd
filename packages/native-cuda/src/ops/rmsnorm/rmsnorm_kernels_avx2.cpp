// AVX2/FMA f32 row primitives for RMSNorm (table in rmsnorm.h): the AVX-512 file's structure
// with 8 lanes and maskload/maskstore tails. The portable versions live in rmsnorm_cpu.cpp.
#include "ops/rmsnorm/rmsnorm.h"
#include <algorithm>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fovea {

#if defined(__x86_64__)
namespace {

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 inline __m256i mask_for(int64_t rem) {
  int r = rem >= 8 ? 8 : int(rem);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2 float sum_sq256(const float* x, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    __m256 c = _mm256_loadu_ps(x + i + 16), d = _mm256_loadu_ps(x + i + 24);
    s0 = _mm256_fmadd_ps(a, a, s0); s1 = _mm256_fmadd_ps(b, b, s1);
    s2 = _mm256_fmadd_ps(c, c, s2); s3 = _mm256_fmadd_ps(d, d, s3);
  }
  for (; i < n; i += 8) {
    __m256 a = _mm256_maskload_ps(x + i, mask_for(n - i));
    s0 = _mm256_fmadd_ps(a, a, s0);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

AVX2 void scale_mul256(const float* x, const float* w, float* y, int64_t n, float r,
                       bool stream) {
  const __m256 rv = _mm256_set1_ps(r);
  auto f = [&](int64_t i, __m256i m) AVX2 {
    return _mm256_mul_ps(_mm256_maskload_ps(w + i, m), _mm256_mul_ps(_mm256_maskload_ps(x + i, m), rv));
  };
  auto full = [&](int64_t i) AVX2 {
    return _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), rv));
  };
  int64_t i = 0;
  if (stream) {  // masked head up to a 32-byte boundary of y, then non-temporal stores
    const int64_t head = std::min<int64_t>(n, int64_t((32 - (reinterpret_cast<uintptr_t>(y) & 31)) & 31) / 4);
    if (head) { _mm256_maskstore_ps(y, mask_for(head), f(0, mask_for(head))); i = head; }
    if ((reinterpret_cast<uintptr_t>(y + i) & 31) == 0)
      for (; i + 8 <= n; i += 8) _mm256_stream_ps(y + i, full(i));
  }
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_ps(y + i, full(i));
    _mm256_storeu_ps(y + i + 8, full(i + 8));
  }
  for (; i < n; i += 8) _mm256_maskstore_ps(y + i, mask_for(n - i), f(i, mask_for(n - i)));
}

#undef AVX2
}  // namespace

const RmsNormRowKernels& rmsnorm_kernels_avx2() {
  static const RmsNormRowKernels k{sum_sq256, scale_mul256, "avx2"};
  return k;
}
#else
const RmsNormRowKernels& rmsnorm_kernels_avx2() { return rmsnorm_kernels_portable(); }
#endif

}  // namespace fovea
