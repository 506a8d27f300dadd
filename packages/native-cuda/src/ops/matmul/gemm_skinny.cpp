// Skinny GEMM: C = alpha·A·B + beta·C when A has few rows (decoding: M = batch of tokens)
// and B is unit-stride along k (a weight stored [N, K], passed by linear() as Wᵀ) or along n
// (a row-major [K, N] B). The packed path (gemm_blocked.cpp) copies all of B into panels on
// every call and pads M up to 14-row tiles, so at M = 1 it moves B twice and wastes 13/14 of
// its FMAs; here B is streamed once, straight from where it lies:
//   dot form:  for each row n of W, load it once and dot it with all rows of A;
//   axpy form: for each k, load row k of B once and FMA it into all rows of C.
// A (small) is converted to f32 and scaled by alpha once per call; C is written through a
// small f32 tile with the same beta contract as everywhere (beta == 0: C is never read).
// Work is cut into fixed chunks of N (kDotChunk W rows / kAxpyChunk columns) and each output
// is summed in an order fixed by K alone, so results do not depend on the thread count.
// Also here: the portable kernels (plain C++, the same sums in a fixed order); the SIMD ones
// are in gemm_skinny_avx2.cpp / gemm_skinny_avx512.cpp. The reference is gemm_reference.
#include <algorithm>
#include <cstdlib>
#include <type_traits>
#include <vector>
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/matmul/gemm_convert.h"
#include "ops/matmul/gemm_internal.h"

namespace fovea {
namespace gemm {
namespace {

constexpr int64_t kDotChunk = 32;    // W rows per task (32 × K=896 × 4 B = 112 KiB of f32 W)
constexpr int64_t kAxpyChunk = 1024;  // B columns per task (4 KiB of an f32 row: one page)
// Below this many bytes of B a call stays on one thread (pool wake-up ≈ a few µs).
constexpr double kParallelMinBytes = 256 << 10;

int64_t g_max_rows_override = -1;

template <class F> void with_16bit_or_f32(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(float{}); break;
    case DType::BF16: f(bf16{}); break;
    case DType::F16: f(f16{}); break;
    default: fail("gemm_cpu: skinny path takes f32/bf16/f16 inputs, got ", dtype_name(t));
  }
}

// ── Portable kernels ─────────────────────────────────────────────────────────────────────
// Dot: 8 lane sums over k (k ≡ lane mod 8), then a fixed pairwise reduction.
template <class TW>
void dot_portable(int64_t K, const float* a, int64_t lda, int64_t R, const TW* w, int64_t ldw,
                  int64_t nw, float* out, int64_t ldo) {
  for (int64_t j = 0; j < nw; ++j) {
    const TW* wr = w + j * ldw;
    for (int64_t r = 0; r < R; ++r) {
      const float* ar = a + r * lda;
      float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t k = 0;
      for (; k + 8 <= K; k += 8)
        for (int l = 0; l < 8; ++l) s[l] += ar[k + l] * float(load(wr + k + l));
      for (int l = 0; k + l < K; ++l) s[l] += ar[k + l] * float(load(wr + k + l));
      out[r * ldo + j] = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
    }
  }
}

// Axpy: each output accumulates k = 0, 1, ..., K-1 in sequence.
template <class TB>
void axpy_portable(int64_t K, const float* a, int64_t lda, int64_t R, const TB* b, int64_t ldb,
                   int64_t nw, float* out, int64_t ldo) {
  std::vector<float> row(static_cast<size_t>(nw));
  for (int64_t r = 0; r < R; ++r) {
    float* o = out + r * ldo;
    std::fill(o, o + nw, 0.f);
    for (int64_t k = 0; k < K; ++k) {
      const float ak = a[r * lda + k];
      const TB* br = b + k * ldb;
      for (int64_t j = 0; j < nw; ++j) row[size_t(j)] = float(load(br + j));
      for (int64_t j = 0; j < nw; ++j) o[j] += ak * row[size_t(j)];
    }
  }
}

void dot_portable_any(DType bt, int64_t K, const float* a, int64_t lda, int64_t R,
                      const void* b, int64_t ldb, int64_t nw, float* out, int64_t ldo) {
  with_16bit_or_f32(bt, [&](auto tag) {
    using T = decltype(tag);
    dot_portable(K, a, lda, R, static_cast<const T*>(b), ldb, nw, out, ldo);
  });
}
void axpy_portable_any(DType bt, int64_t K, const float* a, int64_t lda, int64_t R,
                       const void* b, int64_t ldb, int64_t nw, float* out, int64_t ldo) {
  with_16bit_or_f32(bt, [&](auto tag) {
    using T = decltype(tag);
    axpy_portable(K, a, lda, R, static_cast<const T*>(b), ldb, nw, out, ldo);
  });
}

// ── Driver helpers ───────────────────────────────────────────────────────────────────────

// C[i, j] (i < R rows given by crow(i), j < nw at column stride cs) = tile + beta·C.
// f32/bf16/f16 C combine in float, f64 C in double (as merge_scratch in gemm_blocked.cpp).
template <class TC, class RowPtr>
void store_tile(const float* tile, int64_t ldt, int64_t R, int64_t nw, RowPtr crow, int64_t cs,
                float beta) {
  using Acc = typename std::conditional<std::is_same<TC, double>::value, double, float>::type;
  for (int64_t i = 0; i < R; ++i) {
    TC* c = static_cast<TC*>(crow(i));
    const float* t = tile + i * ldt;
    if (beta == 0.f) {
      for (int64_t j = 0; j < nw; ++j) store(c + j * cs, Acc(t[j]));
    } else {
      for (int64_t j = 0; j < nw; ++j) {
        TC* d = c + j * cs;
        store(d, Acc(t[j]) + Acc(beta) * Acc(load(d)));
      }
    }
  }
}

SkinnyKernels kernels_for(Isa isa, DType bt) {
  // The SIMD f16 loads need F16C (every AVX2 CPU we know has it; checked anyway).
  if (isa == Isa::Portable || (bt == DType::F16 && !have_f16c())) return skinny_portable();
  return isa == Isa::Avx512 ? skinny_avx512() : skinny_avx2();
}

}  // namespace

SkinnyKernels skinny_portable() { return {dot_portable_any, axpy_portable_any, "portable"}; }

int64_t skinny_max_rows() {
  static const int64_t env = [] {
    const char* s = std::getenv("FOVEA_GEMM_SKINNY");
    return (s && *s) ? std::max<int64_t>(0, std::atoll(s)) : int64_t(-1);
  }();
  if (g_max_rows_override >= 0) return g_max_rows_override;
  return env >= 0 ? env : kSkinnyMaxRows;
}
void set_skinny_max_rows(int64_t rows) { g_max_rows_override = rows < 0 ? -1 : rows; }

bool gemm_skinny(const GemmParams& p, Isa isa) {
  // Dot form needs W rows contiguous along k; axpy form B rows contiguous along n. A size-1
  // dimension's stride never matters, so K == 1 / N == 1 qualify for either.
  const bool dot = p.b_rs == 1 || p.K == 1;
  const bool axpy = !dot && (p.b_cs == 1 || p.N == 1);
  if (!dot && !axpy) return false;
  // Rows that share one B: the whole batch when B is broadcast (decoding [B, 1, K] · Wᵀ),
  // else one batch item's M rows. Global row q ↔ (batch item q / M, row q % M).
  const int64_t groups = p.b_batch == 0 ? 1 : p.batch;
  const int64_t rows = p.batch * p.M / groups;
  if (rows > (dot ? skinny_max_rows() : std::min(skinny_max_rows(), kSkinnyAxpyMaxRows))) return false;

  const int64_t K = p.K, N = p.N, M = p.M;
  const int64_t lda = (K + 15) / 16 * 16;  // zero-padded so SIMD kernels load A unmasked
  std::vector<float> apack(size_t(p.batch * M) * size_t(lda), 0.f);
  with_16bit_or_f32(p.a_dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* A = static_cast<const T*>(p.a);
    for (int64_t q = 0; q < p.batch * M; ++q) {
      const T* src = A + (q / M) * p.a_batch + (q % M) * p.a_rs;
      float* dst = apack.data() + q * lda;
      if (p.a_cs == 1) to_f32_run(src, dst, K, p.alpha);
      else for (int64_t k = 0; k < K; ++k) dst[k] = p.alpha * float(load(src + k * p.a_cs));
    }
  });

  const SkinnyKernels ks = kernels_for(isa, p.b_dtype);
  const SkinnyKernel kern = dot ? ks.dot : ks.axpy;
  const int64_t chunk = dot ? kDotChunk : kAxpyChunk;
  // Element offset of B(0, n0) and the stride the kernel walks: between W rows (dot) or
  // between rows k of B (axpy).
  const int64_t ldb = dot ? p.b_cs : p.b_rs;
  const int64_t nchunks = (N + chunk - 1) / chunk, tasks = groups * nchunks;
  const size_t eb = dtype_size(p.b_dtype), ec = dtype_size(p.c_dtype);
  const double bbytes = double(groups) * double(N) * double(K) * double(eb);
  const int64_t grain = (num_threads() == 1 || bbytes < kParallelMinBytes) ? tasks : 1;

  parallel_for(0, tasks, grain, [&](int64_t t0, int64_t t1) {
    std::vector<float> tile(static_cast<size_t>(rows * chunk));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t / nchunks, n0 = (t % nchunks) * chunk, nw = std::min(chunk, N - n0);
      const char* b = static_cast<const char*>(p.b) + (g * p.b_batch + n0 * p.b_cs) * int64_t(eb);
      kern(p.b_dtype, K, apack.data() + g * rows * lda, lda, rows, b, ldb, nw, tile.data(), chunk);
      auto crow = [&](int64_t i) {
        const int64_t q = g * rows + i;
        return static_cast<char*>(p.c) + ((q / M) * p.c_batch + (q % M) * p.c_rs + n0 * p.c_cs) * int64_t(ec);
      };
      dispatch_float(p.c_dtype, [&](auto tag) {
        using TC = decltype(tag);
        store_tile<TC>(tile.data(), chunk, rows, nw, [&](int64_t i) { return static_cast<void*>(crow(i)); },
                       p.c_cs, p.beta);
      });
    }
  });
  return true;
}

}  // namespace gemm
}  // namespace fovea
