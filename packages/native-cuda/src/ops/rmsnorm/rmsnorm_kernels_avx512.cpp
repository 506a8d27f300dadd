// AVX-512 f32 row primitives for RMSNorm (table in rmsnorm.h): Σx² with four FMA accumulators,
// and y = w·(x·r). Masked tails. The portable versions live in rmsnorm_cpu.cpp.
// GCC 12.2's avx512fintrin.h builds its "undefined" vectors by self-initialization, which
// trips -W(maybe-)uninitialized wherever max/min/scalef/reduce inline (GCC PR 105593, fixed in
// 12.3). The pragma must precede <immintrin.h> to cover the header's lines.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "ops/rmsnorm/rmsnorm.h"
#include <algorithm>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fovea {

#if defined(__x86_64__)
namespace {

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

AVX512 inline __mmask16 mask_for(int64_t rem) {
  return rem >= 16 ? __mmask16(0xffff) : __mmask16((1u << rem) - 1u);
}

AVX512 float sum_sq512(const float* x, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    __m512 c = _mm512_loadu_ps(x + i + 32), d = _mm512_loadu_ps(x + i + 48);
    s0 = _mm512_fmadd_ps(a, a, s0); s1 = _mm512_fmadd_ps(b, b, s1);
    s2 = _mm512_fmadd_ps(c, c, s2); s3 = _mm512_fmadd_ps(d, d, s3);
  }
  for (; i < n; i += 16) {
    __m512 a = _mm512_maskz_loadu_ps(mask_for(n - i), x + i);
    s0 = _mm512_fmadd_ps(a, a, s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

AVX512 void scale_mul512(const float* x, const float* w, float* y, int64_t n, float r,
                         bool stream) {
  const __m512 rv = _mm512_set1_ps(r);
  auto f = [&](int64_t i, __mmask16 m) AVX512 {
    return _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), rv));
  };
  int64_t i = 0;
  if (stream) {  // masked head up to a 64-byte boundary of y, then non-temporal stores
    const int64_t head = std::min<int64_t>(n, int64_t((64 - (reinterpret_cast<uintptr_t>(y) & 63)) & 63) / 4);
    if (head) { _mm512_mask_storeu_ps(y, mask_for(head), f(0, mask_for(head))); i = head; }
    if ((reinterpret_cast<uintptr_t>(y + i) & 63) == 0)
      for (; i + 16 <= n; i += 16) _mm512_stream_ps(y + i, f(i, __mmask16(0xffff)));
  }
  for (; i + 32 <= n; i += 32) {
    _mm512_storeu_ps(y + i, f(i, __mmask16(0xffff)));
    _mm512_storeu_ps(y + i + 16, f(i + 16, __mmask16(0xffff)));
  }
  for (; i < n; i += 16) _mm512_mask_storeu_ps(y + i, mask_for(n - i), f(i, mask_for(n - i)));
}

#undef AVX512
}  // namespace

const RmsNormRowKernels& rmsnorm_kernels_avx512() {
  static const RmsNormRowKernels k{sum_sq512, scale_mul512, "avx512"};
  return k;
}
#else
const RmsNormRowKernels& rmsnorm_kernels_avx512() { return rmsnorm_kernels_portable(); }
#endif

}  // namespace fovea
