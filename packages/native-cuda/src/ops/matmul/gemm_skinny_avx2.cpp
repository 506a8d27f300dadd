// AVX2/FMA kernels of the skinny GEMM path (contract in gemm_internal.h, driver and portable
// versions in gemm_skinny.cpp). 16 ymm registers, so blocks are smaller than AVX-512's:
//   dot:  up to 3 W rows × 3 A rows = 9 accumulators + 3 W + 1 A vector. Each output's order:
//         8 lane sums over k (k ≡ lane mod 8; the K tail read through a zeroed buffer), then a
//         fixed reduction (hi+lo halves, then pairs).
//   axpy: the f32 out tile (L1) is the accumulator; 4 rows of B per 8 columns, FMA'd into
//         every row in k order, so each output accumulates k = 0..K-1 in sequence. Partial
//         column blocks go through small zeroed buffers.
// bf16 B is widened on the fly (zero-extend, shift left 16), f16 with F16C (the driver only
// sends f16 here when have_f16c()).
#include <algorithm>
#include <cstring>
#include "ops/matmul/gemm_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fovea {
namespace gemm {

#if defined(__x86_64__)
namespace {

#define FOVEA_AVX2 __attribute__((target("avx2,fma,f16c")))

FOVEA_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
FOVEA_AVX2 inline __m256 load8(const bf16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
FOVEA_AVX2 inline __m256 load8(const f16* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
// The first n < 8 elements, the rest zero, without reading past p + n.
template <class T> FOVEA_AVX2 inline __m256 load8_part(const T* p, int64_t n) {
  T tmp[8];
  std::memset(tmp, 0, sizeof(tmp));
  std::memcpy(tmp, p, size_t(n) * sizeof(T));
  return load8(tmp);
}
FOVEA_AVX2 inline float reduce8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

template <int MB, int NB, class TW>
FOVEA_AVX2 void dot_block(int64_t K, const float* a, int64_t lda, const TW* w, int64_t ldw,
                          float* out, int64_t ldo) {
  __m256 acc[NB][MB];
#pragma GCC unroll 3
  for (int j = 0; j < NB; ++j)
#pragma GCC unroll 3
    for (int r = 0; r < MB; ++r) acc[j][r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 wv[NB];
#pragma GCC unroll 3
    for (int j = 0; j < NB; ++j) wv[j] = load8(w + j * ldw + k);
#pragma GCC unroll 3
    for (int j = 0; j < NB; ++j)  // the next block's rows (see gemm_skinny_avx512.cpp)
      _mm_prefetch(reinterpret_cast<const char*>(w + (3 + j) * ldw + k), _MM_HINT_T0);
#pragma GCC unroll 3
    for (int r = 0; r < MB; ++r) {
      const __m256 av = _mm256_loadu_ps(a + r * lda + k);
#pragma GCC unroll 3
      for (int j = 0; j < NB; ++j) acc[j][r] = _mm256_fmadd_ps(av, wv[j], acc[j][r]);
    }
  }
  if (k < K) {  // A is zero-padded past K; W's tail comes through a zeroed buffer
    __m256 wv[NB];
#pragma GCC unroll 3
    for (int j = 0; j < NB; ++j) wv[j] = load8_part(w + j * ldw + k, K - k);
#pragma GCC unroll 3
    for (int r = 0; r < MB; ++r) {
      const __m256 av = _mm256_loadu_ps(a + r * lda + k);
#pragma GCC unroll 3
      for (int j = 0; j < NB; ++j) acc[j][r] = _mm256_fmadd_ps(av, wv[j], acc[j][r]);
    }
  }
#pragma GCC unroll 3
  for (int j = 0; j < NB; ++j)
#pragma GCC unroll 3
    for (int r = 0; r < MB; ++r) out[r * ldo + j] = reduce8(acc[j][r]);
}

using DotBlock = void (*)(int64_t, const float*, int64_t, const void*, int64_t, float*, int64_t);
template <int MB, int NB, class TW>
void dot_block_erased(int64_t K, const float* a, int64_t lda, const void* w, int64_t ldw,
                      float* out, int64_t ldo) {
  dot_block<MB, NB, TW>(K, a, lda, static_cast<const TW*>(w), ldw, out, ldo);
}
template <class TW> struct DotTable {
  DotBlock t[3][3] = {  // t[mb-1][nb-1]
      {dot_block_erased<1, 1, TW>, dot_block_erased<1, 2, TW>, dot_block_erased<1, 3, TW>},
      {dot_block_erased<2, 1, TW>, dot_block_erased<2, 2, TW>, dot_block_erased<2, 3, TW>},
      {dot_block_erased<3, 1, TW>, dot_block_erased<3, 2, TW>, dot_block_erased<3, 3, TW>}};
};

template <class TW>
void dot_all(int64_t K, const float* a, int64_t lda, int64_t R, const TW* w, int64_t ldw,
             int64_t nw, float* out, int64_t ldo) {
  static const DotTable<TW> table;
  for (int64_t j0 = 0; j0 < nw; j0 += 3) {
    const int nb = int(std::min<int64_t>(3, nw - j0));
    for (int64_t r0 = 0; r0 < R; r0 += 3) {
      const int mb = int(std::min<int64_t>(3, R - r0));
      table.t[mb - 1][nb - 1](K, a + r0 * lda, lda, w + j0 * ldw, ldw, out + r0 * ldo + j0, ldo);
    }
  }
}

// out[r·ldo + j] = Σ_k a[r·lda + k]·b[k·ldb + j] for r < R, j < nw: the out tile (L1) is the
// accumulator and B is walked 4 rows of k at a time, as in gemm_skinny_avx512.cpp.
template <int KB, class TB>
FOVEA_AVX2 void axpy_kblock(int64_t k0, const float* a, int64_t lda, int64_t R, const TB* b,
                            int64_t ldb, int64_t nw, float* out, int64_t ldo) {
  for (int64_t j = 0; j < nw; j += 8) {
    const int64_t left = std::min<int64_t>(8, nw - j);
    __m256 bv[KB];
#pragma GCC unroll 4
    for (int i = 0; i < KB; ++i) {
      const TB* br = b + (k0 + i) * ldb + j;
      bv[i] = left == 8 ? load8(br) : load8_part(br, left);
    }
    for (int64_t r = 0; r < R; ++r) {
      float* o = out + r * ldo + j;
      const float* ar = a + r * lda + k0;
      float tmp[8];
      if (left < 8) {
        std::memset(tmp, 0, sizeof(tmp));
        std::memcpy(tmp, o, size_t(left) * sizeof(float));
      }
      __m256 acc = _mm256_loadu_ps(left == 8 ? o : tmp);
#pragma GCC unroll 4
      for (int i = 0; i < KB; ++i) acc = _mm256_fmadd_ps(_mm256_broadcast_ss(ar + i), bv[i], acc);
      if (left == 8) {
        _mm256_storeu_ps(o, acc);
      } else {
        _mm256_storeu_ps(tmp, acc);
        std::memcpy(o, tmp, size_t(left) * sizeof(float));
      }
    }
  }
}

template <class TB>
void axpy_all(int64_t K, const float* a, int64_t lda, int64_t R, const TB* b, int64_t ldb,
              int64_t nw, float* out, int64_t ldo) {
  for (int64_t r = 0; r < R; ++r) std::fill(out + r * ldo, out + r * ldo + nw, 0.f);
  int64_t k = 0;
  for (; k + 4 <= K; k += 4) axpy_kblock<4>(k, a, lda, R, b, ldb, nw, out, ldo);
  for (; k < K; ++k) axpy_kblock<1>(k, a, lda, R, b, ldb, nw, out, ldo);
}

template <class F> void by_type(DType t, F&& f) {
  switch (t) {
    case DType::BF16: f(bf16{}); break;
    case DType::F16: f(f16{}); break;
    default: f(float{}); break;  // the driver admits only f32/bf16/f16
  }
}

void dot_any(DType bt, int64_t K, const float* a, int64_t lda, int64_t R, const void* b,
             int64_t ldb, int64_t nw, float* out, int64_t ldo) {
  by_type(bt, [&](auto tag) {
    using T = decltype(tag);
    dot_all(K, a, lda, R, static_cast<const T*>(b), ldb, nw, out, ldo);
  });
}
void axpy_any(DType bt, int64_t K, const float* a, int64_t lda, int64_t R, const void* b,
              int64_t ldb, int64_t nw, float* out, int64_t ldo) {
  by_type(bt, [&](auto tag) {
    using T = decltype(tag);
    axpy_all(K, a, lda, R, static_cast<const T*>(b), ldb, nw, out, ldo);
  });
}

}  // namespace

SkinnyKernels skinny_avx2() { return {dot_any, axpy_any, "avx2"}; }
#else
SkinnyKernels skinny_avx2() { return skinny_portable(); }
#endif

}  // namespace gemm
}  // namespace fovea
