// The f32 tile primitives of flash_attn_tiles.h, written once with GCC vector extensions
// (V = W floats) and compiled three times: inside an AVX-512, an AVX2/FMA and a portable
// (SSE2) wrapper. The templates are always_inline, so each wrapper's target attribute decides
// the instructions (GCC inlines a default-target callee into a wider-target caller).
// Register blocking: qk keeps 4 rows × 4 vectors of scores in registers while streaming the
// packed Bt; acc keeps up to 4 rows × 4 vectors of C while streaming B. Both read A one
// scalar at a time (a broadcast), so A may be read transposed (acc with a_rs = 1).
// Vector values never cross a non-inlined call; silence the ABI note for the inline helpers.
#pragma GCC diagnostic ignored "-Wpsabi"
#include "ops/flash_attn/flash_attn_tiles.h"
#include <cstring>

namespace fovea {
namespace {

#define FA_INLINE inline __attribute__((always_inline))

template <class V>
FA_INLINE V vload(const float* p) { V v; std::memcpy(&v, p, sizeof(V)); return v; }
template <class V>
FA_INLINE void vstore(float* p, V v) { std::memcpy(p, &v, sizeof(V)); }

// R rows × NV vectors of S at column c0.
template <class V, int W, int R, int NV>
FA_INLINE void qk_block(const float* A, int64_t lda, const float* Bt, int d, float* S, int c0) {
  V acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[r][j] = V{};
  for (int c = 0; c < d; ++c) {
    V b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) b[j] = vload<V>(Bt + int64_t(c) * kTileK + c0 + j * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float a = A[r * lda + c];
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[r][j] += a * b[j];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) vstore(S + r * kTileK + c0 + j * W, acc[r][j]);
}

template <class V, int W>
FA_INLINE void qk_t(const float* A, int64_t lda, int rows, const float* Bt, int d, float* S) {
  constexpr int NV = 4, CB = NV * W;
  static_assert(kTileK % CB == 0, "score tile width must be a multiple of the column block");
  for (int c0 = 0; c0 < kTileK; c0 += CB) {
    int r = 0;
    for (; r + 4 <= rows; r += 4) qk_block<V, W, 4, NV>(A + r * lda, lda, Bt, d, S + r * kTileK, c0);
    for (; r < rows; ++r) qk_block<V, W, 1, NV>(A + r * lda, lda, Bt, d, S + r * kTileK, c0);
  }
}

template <class V, int W, int R, int NV>
FA_INLINE void acc_block(float* C, int64_t ldc, const float* alpha, const float* A, int64_t a_rs,
                         int64_t a_cs, int kdim, const float* B, int64_t ldb, int c0) {
  V acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const float s = alpha ? alpha[r] : 1.f;
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[r][j] = vload<V>(C + r * ldc + c0 + j * W) * s;
  }
  for (int k = 0; k < kdim; ++k) {
    V b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) b[j] = vload<V>(B + k * ldb + c0 + j * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float a = A[r * a_rs + k * a_cs];
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[r][j] += a * b[j];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) vstore(C + r * ldc + c0 + j * W, acc[r][j]);
}

template <class V, int W, int NV>
FA_INLINE void acc_cols(float* C, int64_t ldc, int rows, const float* alpha, const float* A,
                        int64_t a_rs, int64_t a_cs, int kdim, const float* B, int64_t ldb, int c0) {
  int r = 0;
  for (; r + 4 <= rows; r += 4)
    acc_block<V, W, 4, NV>(C + r * ldc, ldc, alpha ? alpha + r : nullptr, A + r * a_rs, a_rs, a_cs,
                           kdim, B, ldb, c0);
  for (; r < rows; ++r)
    acc_block<V, W, 1, NV>(C + r * ldc, ldc, alpha ? alpha + r : nullptr, A + r * a_rs, a_rs, a_cs,
                           kdim, B, ldb, c0);
}

template <class V, int W>
FA_INLINE void acc_t(float* C, int64_t ldc, int rows, const float* alpha, const float* A,
                     int64_t a_rs, int64_t a_cs, int kdim, const float* B, int64_t ldb, int dp) {
  // dp is a multiple of 16, hence of W: column blocks of 4 vectors, then 1 vector at a time.
  int c0 = 0;
  for (; c0 + 4 * W <= dp; c0 += 4 * W)
    acc_cols<V, W, 4>(C, ldc, rows, alpha, A, a_rs, a_cs, kdim, B, ldb, c0);
  for (; c0 < dp; c0 += W) acc_cols<V, W, 1>(C, ldc, rows, alpha, A, a_rs, a_cs, kdim, B, ldb, c0);
}

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

#if defined(__x86_64__)
#define FA_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx2,fma")))
#define FA_AVX2 __attribute__((target("avx2,fma")))
FA_AVX512 void qk_avx512(const float* A, int64_t lda, int rows, const float* Bt, int d, float* S) {
  qk_t<v16, 16>(A, lda, rows, Bt, d, S);
}
FA_AVX512 void acc_avx512(float* C, int64_t ldc, int rows, const float* alpha, const float* A,
                          int64_t a_rs, int64_t a_cs, int kdim, const float* B, int64_t ldb, int dp) {
  acc_t<v16, 16>(C, ldc, rows, alpha, A, a_rs, a_cs, kdim, B, ldb, dp);
}
FA_AVX2 void qk_avx2(const float* A, int64_t lda, int rows, const float* Bt, int d, float* S) {
  qk_t<v8, 8>(A, lda, rows, Bt, d, S);
}
FA_AVX2 void acc_avx2(float* C, int64_t ldc, int rows, const float* alpha, const float* A,
                      int64_t a_rs, int64_t a_cs, int kdim, const float* B, int64_t ldb, int dp) {
  acc_t<v8, 8>(C, ldc, rows, alpha, A, a_rs, a_cs, kdim, B, ldb, dp);
}
#endif
void qk_portable(const float* A, int64_t lda, int rows, const float* Bt, int d, float* S) {
  qk_t<v4, 4>(A, lda, rows, Bt, d, S);
}
void acc_portable(float* C, int64_t ldc, int rows, const float* alpha, const float* A,
                  int64_t a_rs, int64_t a_cs, int kdim, const float* B, int64_t ldb, int dp) {
  acc_t<v4, 4>(C, ldc, rows, alpha, A, a_rs, a_cs, kdim, B, ldb, dp);
}

}  // namespace

const FlashTileKernels& flash_tile_kernels(Isa isa) {
  static const FlashTileKernels portable{qk_portable, acc_portable, "portable"};
#if defined(__x86_64__)
  static const FlashTileKernels avx2{qk_avx2, acc_avx2, "avx2"};
  static const FlashTileKernels avx512{qk_avx512, acc_avx512, "avx512"};
  if (isa == Isa::Avx512) return avx512;
  if (isa == Isa::Avx2) return avx2;
#endif
  return portable;
}

}  // namespace fovea
