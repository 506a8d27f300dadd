// AVX2 and AVX-512 versions of the AdamW f32 core (adamw.h). Each vector line is the same
// operation, in the same order, as adamw_core_portable's scalar line (fma exactly where the
// portable code calls std::fma; sqrt and div are correctly rounded), so every ISA gives the
// same bits as the portable loop; tests/test_adamw.cpp checks that exactly. GCC implements
// the intrinsics as vector arithmetic and, with -ffp-contract=fast, would fuse mul+add here
// but not in the portable loop, so both files turn contraction off and write the two fmas
// they want (the moment updates, as ATen's vectorized kernels) explicitly.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#pragma GCC optimize("fp-contract=off")  // see above: mul then add stay two roundings
#include "ops/adamw/adamw.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fovea {

#if defined(__x86_64__)

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f,avx512vl,fma")))

AVX2 void adamw_core_avx2(const AdamWScalars& s, float* w, const float* g, float* m, float* v,
                          int64_t n) {
  const __m256 decay = _mm256_set1_ps(s.decay), b1 = _mm256_set1_ps(s.beta1),
               omb1 = _mm256_set1_ps(s.one_minus_beta1), b2 = _mm256_set1_ps(s.beta2),
               omb2 = _mm256_set1_ps(s.one_minus_beta2), nss = _mm256_set1_ps(s.neg_step_size),
               bc2 = _mm256_set1_ps(s.bc2_sqrt), eps = _mm256_set1_ps(s.eps);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 mi = _mm256_fmadd_ps(gi, omb1, _mm256_mul_ps(_mm256_loadu_ps(m + i), b1));
    const __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(omb2, gi), gi,
                                    _mm256_mul_ps(_mm256_loadu_ps(v + i), b2));
    const __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
    _mm256_storeu_ps(w + i, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), decay),
                                          _mm256_div_ps(_mm256_mul_ps(nss, mi), den)));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
  }
  if (i < n) adamw_core_portable(s, w + i, g + i, m + i, v + i, n - i);
}

AVX512 void adamw_core_avx512(const AdamWScalars& s, float* w, const float* g, float* m,
                              float* v, int64_t n) {
  const __m512 decay = _mm512_set1_ps(s.decay), b1 = _mm512_set1_ps(s.beta1),
               omb1 = _mm512_set1_ps(s.one_minus_beta1), b2 = _mm512_set1_ps(s.beta2),
               omb2 = _mm512_set1_ps(s.one_minus_beta2), nss = _mm512_set1_ps(s.neg_step_size),
               bc2 = _mm512_set1_ps(s.bc2_sqrt), eps = _mm512_set1_ps(s.eps);
  for (int64_t i = 0; i < n; i += 16) {
    // Masked tail: lanes past n are neither read nor written (zeros give finite junk).
    const __mmask16 k = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1u);
    const __m512 gi = _mm512_maskz_loadu_ps(k, g + i);
    const __m512 mi = _mm512_fmadd_ps(gi, omb1, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, m + i), b1));
    const __m512 vi = _mm512_fmadd_ps(_mm512_mul_ps(omb2, gi), gi,
                                    _mm512_mul_ps(_mm512_maskz_loadu_ps(k, v + i), b2));
    const __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2), eps);
    _mm512_mask_storeu_ps(w + i, k, _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + i), decay),
                                                  _mm512_div_ps(_mm512_mul_ps(nss, mi), den)));
    _mm512_mask_storeu_ps(m + i, k, mi);
    _mm512_mask_storeu_ps(v + i, k, vi);
  }
}

#else  // not x86-64: the portable loop serves every ISA level

void adamw_core_avx2(const AdamWScalars& s, float* w, const float* g, float* m, float* v,
                     int64_t n) { adamw_core_portable(s, w, g, m, v, n); }
void adamw_core_avx512(const AdamWScalars& s, float* w, const float* g, float* m, float* v,
                       int64_t n) { adamw_core_portable(s, w, g, m, v, n); }

#endif

}  // namespace fovea
