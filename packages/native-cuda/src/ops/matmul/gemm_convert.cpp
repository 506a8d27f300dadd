// F16C run conversions for the GEMM packing and scratch store (see gemm_convert.h).
// Compiled with a target attribute; callers check have_f16c() first. Both directions round
// to nearest even and handle subnormals, inf and NaN (NaNs stay NaN; payloads may differ
// from dtype.h's scalar conversions, which canonicalize them).
#include "ops/matmul/gemm_convert.h"
#include "core/cpu_features.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fovea {
namespace gemm {

#if defined(__x86_64__)
// The ISA cap applies here too, so FOVEA_ISA=portable (and the tests) reach the scalar path.
bool have_f16c() {
  static const bool hw = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  }();
  return hw && isa() != Isa::Portable;
}

__attribute__((target("avx,f16c"))) void f16_to_f32_run_f16c(const uint16_t* src, float* dst,
                                                            int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}

__attribute__((target("avx,f16c"))) void f32_to_f16_run_f16c(const float* src, uint16_t* dst,
                                                            int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}
#else
bool have_f16c() { return false; }
void f16_to_f32_run_f16c(const uint16_t*, float*, int64_t) {}
void f32_to_f16_run_f16c(const float*, uint16_t*, int64_t) {}
#endif

}  // namespace gemm
}  // namespace fovea
