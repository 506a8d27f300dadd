// AVX2/FMA f32 row primitives for softmax / log-softmax / cross entropy (the table declared in
// softmax.h): the AVX-512 file's structure with 8-lane vectors. Tails use maskload /
// maskstore (masked lanes never touch memory). softmax_kernels_portable.cpp is the plain C++
// version of each primitive.
#include "ops/softmax/softmax.h"
#include "ops/softmax/vec_exp.h"
#include <limits>

namespace fovea {

#if defined(__x86_64__)
namespace {

#define AVX2 __attribute__((target("avx2,fma")))

// Lanes [0, min(rem, 8)) set.
AVX2 inline __m256i mask_for(int64_t rem) {
  const int r = rem >= 8 ? 8 : int(rem);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline void prefetch2(const float* p) {  // 32 floats = 2 cache lines
  _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + 16), _MM_HINT_T0);
}
AVX2 inline __m256 exp_minus(const float* p, __m256 sh) {
  return vexp::exp256(_mm256_sub_ps(_mm256_loadu_ps(p), sh));
}
AVX2 inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

AVX2 float max256(const float* x, int64_t n) {
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
    m2 = _mm256_max_ps(m2, _mm256_loadu_ps(x + i + 16));
    m3 = _mm256_max_ps(m3, _mm256_loadu_ps(x + i + 24));
  }
  for (; i < n; i += 8) {
    __m256i m = mask_for(n - i);
    m0 = _mm256_max_ps(m0, _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, m), _mm256_castsi256_ps(m)));
  }
  return hmax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
}

AVX2 float sum_exp256(const float* x, int64_t n, float shift, const float* ahead) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if (ahead) prefetch2(ahead + i);
    s0 = _mm256_add_ps(s0, exp_minus(x + i, sh));
    s1 = _mm256_add_ps(s1, exp_minus(x + i + 8, sh));
    s2 = _mm256_add_ps(s2, exp_minus(x + i + 16, sh));
    s3 = _mm256_add_ps(s3, exp_minus(x + i + 24, sh));
  }
  for (; i < n; i += 8) {  // masked lanes load 0; their exp is and-ed away
    __m256i m = mask_for(n - i);
    __m256 e = vexp::exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), sh));
    s1 = _mm256_add_ps(s1, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

AVX2 float exp_store_sum256(const float* x, float* y, int64_t n, float shift, const float* ahead) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if (ahead) prefetch2(ahead + i);
    __m256 e0 = exp_minus(x + i, sh), e1 = exp_minus(x + i + 8, sh);
    __m256 e2 = exp_minus(x + i + 16, sh), e3 = exp_minus(x + i + 24, sh);
    _mm256_storeu_ps(y + i, e0);
    _mm256_storeu_ps(y + i + 8, e1);
    _mm256_storeu_ps(y + i + 16, e2);
    _mm256_storeu_ps(y + i + 24, e3);
    s0 = _mm256_add_ps(s0, e0); s1 = _mm256_add_ps(s1, e1);
    s2 = _mm256_add_ps(s2, e2); s3 = _mm256_add_ps(s3, e3);
  }
  for (; i < n; i += 8) {
    __m256i m = mask_for(n - i);
    __m256 e = vexp::exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), sh));
    _mm256_maskstore_ps(y + i, m, e);
    s1 = _mm256_add_ps(s1, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

AVX2 void exp_scale256(const float* x, float* y, int64_t n, float shift, float scale) {
  const __m256 sh = _mm256_set1_ps(shift), sc = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 e0 = exp_minus(x + i, sh), e1 = exp_minus(x + i + 8, sh);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(e0, sc));
    _mm256_storeu_ps(y + i + 8, _mm256_mul_ps(e1, sc));
  }
  for (; i < n; i += 8) {
    __m256i m = mask_for(n - i);
    __m256 e = vexp::exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), sh));
    _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(e, sc));
  }
}

// y = f(x) elementwise. With `stream`, the 32-byte-aligned body of y is written with
// non-temporal stores; the unaligned head and the tail use masked stores.
template <class F>
AVX2 inline void map_store(const float* x, float* y, int64_t n, bool stream, F f) {
  int64_t i = 0;
  if (stream) {
    const int64_t head = std::min<int64_t>(n, int64_t((32 - (reinterpret_cast<uintptr_t>(y) & 31)) & 31) / 4);
    if (head) {
      __m256i m = mask_for(head);
      _mm256_maskstore_ps(y, m, f(_mm256_maskload_ps(x, m)));
      i = head;
    }
    if ((reinterpret_cast<uintptr_t>(y + i) & 31) == 0)
      for (; i + 8 <= n; i += 8) _mm256_stream_ps(y + i, f(_mm256_loadu_ps(x + i)));
  }
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
    _mm256_storeu_ps(y + i + 8, f(_mm256_loadu_ps(x + i + 8)));
  }
  for (; i < n; i += 8) {
    __m256i m = mask_for(n - i);
    _mm256_maskstore_ps(y + i, m, f(_mm256_maskload_ps(x + i, m)));
  }
}

AVX2 void scale_store256(const float* x, float* y, int64_t n, float s, bool stream) {
  const __m256 sv = _mm256_set1_ps(s);
  map_store(x, y, n, stream, [&](__m256 v) AVX2 { return _mm256_mul_ps(v, sv); });
}

AVX2 void sub2_256(const float* x, float* y, int64_t n, float a, float b, bool stream) {
  const __m256 av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
  map_store(x, y, n, stream, [&](__m256 v) AVX2 { return _mm256_sub_ps(_mm256_sub_ps(v, av), bv); });
}

#undef AVX2
}  // namespace

const SoftmaxRowKernels& softmax_kernels_avx2() {
  static const SoftmaxRowKernels k{max256,         sum_exp256, exp_store_sum256, exp_scale256,
                                   scale_store256, sub2_256,   "avx2"};
  return k;
}
#else
const SoftmaxRowKernels& softmax_kernels_avx2() { return softmax_kernels_portable(); }
#endif

}  // namespace fovea
