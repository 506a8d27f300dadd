// AVX-512 kernels of the skinny GEMM path (contract in gemm_internal.h, driver and portable
// versions in gemm_skinny.cpp). bf16 B is widened on the fly (zero-extend, shift left 16),
// f16 with vcvtph2ps; accumulation is f32.
//   dot:  blocks of up to 4 W rows × 4 A rows = 16 zmm accumulators; per 16 k: 4 loads of W
//         (from memory) and up to 4 loads of A (L1), 16 FMAs. W rows are loaded once per
//         block and reused for every A row group while they sit in L1; the next block's rows
//         are software-prefetched. Each output's order:
//         16 lane sums over k (k ≡ lane mod 16, the K tail masked), then reduce16 (a fixed tree).
//   axpy: the f32 out tile (all rows × the chunk's columns, L1-resident) is the accumulator;
//         4 rows of B (k..k+3) are loaded per 16 columns and FMA'd into every row in k order,
//         so each output accumulates k = 0..K-1 in sequence.
// Both orders depend on K only, so the chunking of rows/columns never changes a result.
#include <algorithm>
#include "ops/matmul/gemm_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fovea {
namespace gemm {

#if defined(__x86_64__)
namespace {

#define FOVEA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))

// 16 elements of B widened to f32; the masked form reads only lanes set in m.
FOVEA_AVX512 inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
FOVEA_AVX512 inline __m512 load16(const bf16* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
FOVEA_AVX512 inline __m512 load16(const f16* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
FOVEA_AVX512 inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
FOVEA_AVX512 inline __m512 load16(const bf16* p, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
FOVEA_AVX512 inline __m512 load16(const f16* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

// Fixed-order horizontal sum: lanes i + (i ^ 8), then ^ 4, ^ 2, ^ 1 (a butterfly; lane 0
// holds the total). The masked shuffle forms are used because the unmasked ones (and
// _mm512_reduce_add_ps / _mm512_castps512_ps256) trip GCC 12's -Wuninitialized inside its
// own header through _mm512_undefined_ps.
FOVEA_AVX512 inline float reduce16(__m512 v) {
  v = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, 0xffff, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, 0xffff, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_add_ps(v, _mm512_mask_permute_ps(v, 0xffff, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_mask_permute_ps(v, 0xffff, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// Software prefetch of the W rows kPrefetchRows ahead (the next block), at the same k: the
// hardware prefetchers lose track when a block of short rows ends. +35% for bf16 W at
// N = 151,936 (16.6 → 12.1 ms at M = 1), neutral for f32; 8 rows ahead measured the same.
// Prefetching past the end of W is harmless (prefetches never fault).
constexpr int kPrefetchRows = 4;

// out[r·ldo + j] = Σ_k a[r·lda + k]·w[j·ldw + k] for r < MB, j < NB.
template <int MB, int NB, class TW>
FOVEA_AVX512 void dot_block(int64_t K, const float* a, int64_t lda, const TW* w, int64_t ldw,
                            float* out, int64_t ldo) {
  __m512 acc[NB][MB];
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j)
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) acc[j][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 wv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) wv[j] = load16(w + j * ldw + k);
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j)
      _mm_prefetch(reinterpret_cast<const char*>(w + (kPrefetchRows + j) * ldw + k), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) {
      const __m512 av = _mm512_loadu_ps(a + r * lda + k);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[j][r] = _mm512_fmadd_ps(av, wv[j], acc[j][r]);
    }
  }
  if (k < K) {  // A is zero-padded past K; W is not, so its tail load is masked
    const __mmask16 m = __mmask16((1u << (K - k)) - 1);
    __m512 wv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) wv[j] = load16(w + j * ldw + k, m);
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) {
      const __m512 av = _mm512_loadu_ps(a + r * lda + k);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[j][r] = _mm512_fmadd_ps(av, wv[j], acc[j][r]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j)
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) out[r * ldo + j] = reduce16(acc[j][r]);
}

using DotBlock = void (*)(int64_t, const float*, int64_t, const void*, int64_t, float*, int64_t);
template <int MB, int NB, class TW>
void dot_block_erased(int64_t K, const float* a, int64_t lda, const void* w, int64_t ldw,
                      float* out, int64_t ldo) {
  dot_block<MB, NB, TW>(K, a, lda, static_cast<const TW*>(w), ldw, out, ldo);
}
template <class TW> struct DotTable {
  // table[mb-1][nb-1]
  DotBlock t[4][4] = {
      {dot_block_erased<1, 1, TW>, dot_block_erased<1, 2, TW>, dot_block_erased<1, 3, TW>, dot_block_erased<1, 4, TW>},
      {dot_block_erased<2, 1, TW>, dot_block_erased<2, 2, TW>, dot_block_erased<2, 3, TW>, dot_block_erased<2, 4, TW>},
      {dot_block_erased<3, 1, TW>, dot_block_erased<3, 2, TW>, dot_block_erased<3, 3, TW>, dot_block_erased<3, 4, TW>},
      {dot_block_erased<4, 1, TW>, dot_block_erased<4, 2, TW>, dot_block_erased<4, 3, TW>, dot_block_erased<4, 4, TW>}};
};

template <class TW>
void dot_all(int64_t K, const float* a, int64_t lda, int64_t R, const TW* w, int64_t ldw,
             int64_t nw, float* out, int64_t ldo) {
  static const DotTable<TW> table;
  for (int64_t j0 = 0; j0 < nw; j0 += 4) {  // W rows outer: loaded once, reused across A rows
    const int nb = int(std::min<int64_t>(4, nw - j0));
    for (int64_t r0 = 0; r0 < R; r0 += 4) {
      const int mb = int(std::min<int64_t>(4, R - r0));
      table.t[mb - 1][nb - 1](K, a + r0 * lda, lda, w + j0 * ldw, ldw, out + r0 * ldo + j0, ldo);
    }
  }
}

// out[r·ldo + j] = Σ_k a[r·lda + k]·b[k·ldb + j] for r < R, j < nw. The out rows (≤ 16 ×
// a 256-column chunk = 16 KiB) stay in L1 as the accumulator; B is walked 4 rows of k at a
// time so that 4 contiguous row segments stream together (one row at a time jumped a whole
// row stride per 256 bytes, which the prefetchers did not follow: 2-3× slower, NOTES.md).
// Each output still accumulates k = 0, 1, ..., K-1 in sequence.
template <int KB, class TB>
FOVEA_AVX512 void axpy_kblock(int64_t k0, const float* a, int64_t lda, int64_t R, const TB* b,
                              int64_t ldb, int64_t nw, float* out, int64_t ldo) {
  for (int64_t j = 0; j < nw; j += 16) {
    const int64_t left = std::min<int64_t>(16, nw - j);
    const __mmask16 m = __mmask16(left == 16 ? 0xffffu : (1u << left) - 1);
    __m512 bv[KB];
#pragma GCC unroll 4
    for (int i = 0; i < KB; ++i) bv[i] = load16(b + (k0 + i) * ldb + j, m);
    for (int64_t r = 0; r < R; ++r) {
      float* o = out + r * ldo + j;
      const float* ar = a + r * lda + k0;
      __m512 acc = _mm512_maskz_loadu_ps(m, o);
#pragma GCC unroll 4
      for (int i = 0; i < KB; ++i) acc = _mm512_fmadd_ps(_mm512_set1_ps(ar[i]), bv[i], acc);
      _mm512_mask_storeu_ps(o, m, acc);
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

SkinnyKernels skinny_avx512() { return {dot_any, axpy_any, "avx512"}; }
#else
SkinnyKernels skinny_avx512() { return skinny_portable(); }
#endif

}  // namespace gemm
}  // namespace fovea
