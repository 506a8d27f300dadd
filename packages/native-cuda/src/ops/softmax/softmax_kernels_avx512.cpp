// AVX-512 f32 row primitives for softmax / log-softmax / cross entropy (the table declared in
// softmax.h). Four independent accumulators hide the add latency; tails are masked loads and
// stores, so rows of any length run without a scalar epilogue. softmax_kernels_portable.cpp
// is the plain C++ version of each primitive.
// GCC 12.2's avx512fintrin.h builds its "undefined" vectors by self-initialization, which
// trips -W(maybe-)uninitialized wherever max/min/scalef/reduce inline (GCC PR 105593, fixed in
// 12.3). The pragma must precede <immintrin.h> to cover the header's lines.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "ops/softmax/softmax.h"
#include "ops/softmax/vec_exp.h"
#include <limits>

namespace fovea {

#if defined(__x86_64__)
namespace {

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

AVX512 inline __mmask16 mask_for(int64_t rem) {
  return rem >= 16 ? __mmask16(0xffff) : __mmask16((1u << rem) - 1u);
}
inline void prefetch4(const float* p) {  // 64 floats = 4 cache lines
  _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + 16), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + 32), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + 48), _MM_HINT_T0);
}
AVX512 inline __m512 exp_minus(const float* p, __m512 sh) {
  return vexp::exp512(_mm512_sub_ps(_mm512_loadu_ps(p), sh));
}

AVX512 float max512(const float* x, int64_t n) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
    m2 = _mm512_max_ps(m2, _mm512_loadu_ps(x + i + 32));
    m3 = _mm512_max_ps(m3, _mm512_loadu_ps(x + i + 48));
  }
  for (; i < n; i += 16) m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(ninf, mask_for(n - i), x + i));
  return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

AVX512 float sum_exp512(const float* x, int64_t n, float shift, const float* ahead) {
  const __m512 sh = _mm512_set1_ps(shift);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    if (ahead) prefetch4(ahead + i);
    s0 = _mm512_add_ps(s0, exp_minus(x + i, sh));
    s1 = _mm512_add_ps(s1, exp_minus(x + i + 16, sh));
    s2 = _mm512_add_ps(s2, exp_minus(x + i + 32, sh));
    s3 = _mm512_add_ps(s3, exp_minus(x + i + 48, sh));
  }
  for (; i < n; i += 16) {  // masked lanes load 0 and are not added
    __mmask16 m = mask_for(n - i);
    __m512 e = vexp::exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), sh));
    s1 = _mm512_mask_add_ps(s1, m, s1, e);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

AVX512 float exp_store_sum512(const float* x, float* y, int64_t n, float shift, const float* ahead) {
  const __m512 sh = _mm512_set1_ps(shift);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    if (ahead) prefetch4(ahead + i);
    __m512 e0 = exp_minus(x + i, sh), e1 = exp_minus(x + i + 16, sh);
    __m512 e2 = exp_minus(x + i + 32, sh), e3 = exp_minus(x + i + 48, sh);
    _mm512_storeu_ps(y + i, e0);
    _mm512_storeu_ps(y + i + 16, e1);
    _mm512_storeu_ps(y + i + 32, e2);
    _mm512_storeu_ps(y + i + 48, e3);
    s0 = _mm512_add_ps(s0, e0); s1 = _mm512_add_ps(s1, e1);
    s2 = _mm512_add_ps(s2, e2); s3 = _mm512_add_ps(s3, e3);
  }
  for (; i < n; i += 16) {
    __mmask16 m = mask_for(n - i);
    __m512 e = vexp::exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), sh));
    _mm512_mask_storeu_ps(y + i, m, e);
    s1 = _mm512_mask_add_ps(s1, m, s1, e);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

AVX512 void exp_scale512(const float* x, float* y, int64_t n, float shift, float scale) {
  const __m512 sh = _mm512_set1_ps(shift), sc = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 e0 = exp_minus(x + i, sh), e1 = exp_minus(x + i + 16, sh);
    _mm512_storeu_ps(y + i, _mm512_mul_ps(e0, sc));
    _mm512_storeu_ps(y + i + 16, _mm512_mul_ps(e1, sc));
  }
  for (; i < n; i += 16) {
    __mmask16 m = mask_for(n - i);
    __m512 e = vexp::exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), sh));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(e, sc));
  }
}

// y = f(x) elementwise, f a lambda on __m512. With `stream`, the 64-byte-aligned body of y is
// written with non-temporal stores; the unaligned head and the tail use masked stores.
template <class F>
AVX512 inline void map_store(const float* x, float* y, int64_t n, bool stream, F f) {
  int64_t i = 0;
  if (stream) {
    const int64_t head = std::min<int64_t>(n, int64_t((64 - (reinterpret_cast<uintptr_t>(y) & 63)) & 63) / 4);
    if (head) {
      __mmask16 m = mask_for(head);
      _mm512_mask_storeu_ps(y, m, f(_mm512_maskz_loadu_ps(m, x)));
      i = head;
    }
    if ((reinterpret_cast<uintptr_t>(y + i) & 63) == 0)
      for (; i + 16 <= n; i += 16) _mm512_stream_ps(y + i, f(_mm512_loadu_ps(x + i)));
  }
  for (; i + 32 <= n; i += 32) {
    _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
    _mm512_storeu_ps(y + i + 16, f(_mm512_loadu_ps(x + i + 16)));
  }
  for (; i < n; i += 16) {
    __mmask16 m = mask_for(n - i);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

AVX512 void scale_store512(const float* x, float* y, int64_t n, float s, bool stream) {
  const __m512 sv = _mm512_set1_ps(s);
  map_store(x, y, n, stream, [&](__m512 v) AVX512 { return _mm512_mul_ps(v, sv); });
}

AVX512 void sub2_512(const float* x, float* y, int64_t n, float a, float b, bool stream) {
  const __m512 av = _mm512_set1_ps(a), bv = _mm512_set1_ps(b);
  map_store(x, y, n, stream, [&](__m512 v) AVX512 { return _mm512_sub_ps(_mm512_sub_ps(v, av), bv); });
}

#undef AVX512
}  // namespace

const SoftmaxRowKernels& softmax_kernels_avx512() {
  static const SoftmaxRowKernels k{max512,       sum_exp512,     exp_store_sum512, exp_scale512,
                                   scale_store512, sub2_512, "avx512"};
  return k;
}
#else
const SoftmaxRowKernels& softmax_kernels_avx512() { return softmax_kernels_portable(); }
#endif

}  // namespace fovea
