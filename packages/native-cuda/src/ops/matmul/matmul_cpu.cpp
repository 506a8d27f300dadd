// CPU GEMM entry points: gemm_reference (the plain f64 triple loop every fast path is tested
// against) and gemm_cpu (the fast path). gemm_cpu handles the degenerate cases (empty C,
// K == 0 or alpha == 0: C = beta·C), sends f64 inputs through a simple double loop, few-row
// products with a unit-stride B to the unpacked skinny path (gemm_skinny.cpp), and
// otherwise splits the batch/M/N space into independent sub-problems for the thread pool,
// each run by the packed, cache-blocked loop nest in gemm_blocked.cpp with the micro-kernel
// chosen from isa(). Semantics shared by every path: beta == 0 means C is never read.
#include <algorithm>
#include <cmath>
#include <vector>
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/matmul/gemm_internal.h"
#include "ops/matmul/matmul.h"

namespace fovea {
namespace {

// Element (index) of a strided operand of dtype t, as double.
inline double load_f64(const void* base, DType t, int64_t index) {
  double v = 0;
  dispatch_float(t, [&](auto tag) {
    using T = decltype(tag);
    v = double(load(static_cast<const T*>(base) + index));
  });
  return v;
}
inline void store_f64(void* base, DType t, int64_t index, double v) {
  dispatch_float(t, [&](auto tag) {
    using T = decltype(tag);
    store(static_cast<T*>(base) + index, v);
  });
}

void check_params(const GemmParams& p, const char* op) {
  FOVEA_CHECK(dtype_is_float(p.a_dtype) && dtype_is_float(p.b_dtype) &&
                  dtype_is_float(p.c_dtype),
              op, ": dtypes must be f32/f64/bf16/f16, got a=", dtype_name(p.a_dtype),
              " b=", dtype_name(p.b_dtype), " c=", dtype_name(p.c_dtype));
  FOVEA_CHECK(p.batch >= 0 && p.M >= 0 && p.N >= 0 && p.K >= 0, op,
              ": negative size (batch=", p.batch, " M=", p.M, " N=", p.N, " K=", p.K, ")");
}

// C = beta·C over the whole batch (K == 0 or alpha == 0); beta == 0 writes zeros.
void scale_c(const GemmParams& p) {
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t m = 0; m < p.M; ++m)
      for (int64_t n = 0; n < p.N; ++n) {
        const int64_t ci = b * p.c_batch + m * p.c_rs + n * p.c_cs;
        const double old = p.beta == 0.f ? 0.0 : load_f64(p.c, p.c_dtype, ci);
        store_f64(p.c, p.c_dtype, ci, p.beta == 0.f ? 0.0 : double(p.beta) * old);
      }
}

// f64 (or mixed with f64) inputs: rows of C accumulate in double against a contiguous
// double copy of B[b]. Correct and cache-friendly enough; not tuned.
void gemm_f64(const GemmParams& p) {
  std::vector<double> bbuf(size_t(p.K) * size_t(p.N));
  for (int64_t bi = 0; bi < p.batch; ++bi) {
    for (int64_t k = 0; k < p.K; ++k)
      for (int64_t n = 0; n < p.N; ++n)
        bbuf[k * p.N + n] = load_f64(p.b, p.b_dtype, bi * p.b_batch + k * p.b_rs + n * p.b_cs);
    const double flops = 2.0 * double(p.M) * double(p.N) * double(p.K);
    const int64_t grain = flops < gemm::kParallelMinFlops ? p.M : 1;
    parallel_for(0, p.M, grain, [&](int64_t m0, int64_t m1) {
      std::vector<double> acc(size_t(p.N));
      for (int64_t m = m0; m < m1; ++m) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t k = 0; k < p.K; ++k) {
          const double a = load_f64(p.a, p.a_dtype, bi * p.a_batch + m * p.a_rs + k * p.a_cs);
          const double* brow = bbuf.data() + k * p.N;
          for (int64_t n = 0; n < p.N; ++n) acc[n] += a * brow[n];
        }
        for (int64_t n = 0; n < p.N; ++n) {
          const int64_t ci = bi * p.c_batch + m * p.c_rs + n * p.c_cs;
          double v = double(p.alpha) * acc[n];
          if (p.beta != 0.f) v += double(p.beta) * load_f64(p.c, p.c_dtype, ci);
          store_f64(p.c, p.c_dtype, ci, v);
        }
      }
    });
  }
}

// The transposed problem C^T = B^T·A^T: same memory, roles of M/N and A/B swapped.
GemmParams transposed(const GemmParams& p) {
  GemmParams t = p;
  t.a = p.b; t.a_dtype = p.b_dtype; t.a_batch = p.b_batch; t.a_rs = p.b_cs; t.a_cs = p.b_rs;
  t.b = p.a; t.b_dtype = p.a_dtype; t.b_batch = p.a_batch; t.b_rs = p.a_cs; t.b_cs = p.a_rs;
  t.c_rs = p.c_cs; t.c_cs = p.c_rs;
  t.M = p.N; t.N = p.M;
  return t;
}

// Sub-problem: batch items [b0, b1), rows [m0, m1), columns [n0, n1) of p.
GemmParams slice(const GemmParams& p, int64_t b0, int64_t b1, int64_t m0, int64_t m1,
                 int64_t n0, int64_t n1) {
  GemmParams s = p;
  const int64_t ea = dtype_size(p.a_dtype), eb = dtype_size(p.b_dtype), ec = dtype_size(p.c_dtype);
  s.a = static_cast<const char*>(p.a) + (b0 * p.a_batch + m0 * p.a_rs) * ea;
  s.b = static_cast<const char*>(p.b) + (b0 * p.b_batch + n0 * p.b_cs) * eb;
  s.c = static_cast<char*>(p.c) + (b0 * p.c_batch + m0 * p.c_rs + n0 * p.c_cs) * ec;
  s.batch = b1 - b0; s.M = m1 - m0; s.N = n1 - n0;
  return s;
}

}  // namespace

void gemm_reference(const GemmParams& p) {
  check_params(p, "gemm_reference");
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t m = 0; m < p.M; ++m)
      for (int64_t n = 0; n < p.N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < p.K; ++k)
          acc += load_f64(p.a, p.a_dtype, b * p.a_batch + m * p.a_rs + k * p.a_cs) *
                 load_f64(p.b, p.b_dtype, b * p.b_batch + k * p.b_rs + n * p.b_cs);
        const int64_t ci = b * p.c_batch + m * p.c_rs + n * p.c_cs;
        double v = double(p.alpha) * acc;
        if (p.beta != 0.f) v += double(p.beta) * load_f64(p.c, p.c_dtype, ci);  // beta 0: C unread
        store_f64(p.c, p.c_dtype, ci, v);
      }
}

void gemm_cpu(const GemmParams& p) {
  check_params(p, "gemm_cpu");
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;
  if (p.K == 0 || p.alpha == 0.f) return scale_c(p);
  if (p.a_dtype == DType::F64 || p.b_dtype == DType::F64) return gemm_f64(p);
  // Few rows against a B contiguous along k or n (decoding's x·Wᵀ): stream B, no packing.
  if (gemm::gemm_skinny(p, isa())) return;

  // The micro-kernel wants C's columns contiguous; a column-major C becomes row-major in the
  // transposed problem, which costs nothing since packing takes any strides.
  const GemmParams q = (p.c_cs != 1 && p.c_rs == 1) ? transposed(p) : p;
  const gemm::KernelInfo kern = gemm::kernel_for(isa());

  const double flops = 2.0 * double(q.batch) * double(q.M) * double(q.N) * double(q.K);
  const int nt = num_threads();
  if (nt == 1 || flops < gemm::kParallelMinFlops) return gemm::gemm_blocked_serial(q, kern);

  // Many batch items: one sub-problem per item (parallel_for balances the chunks).
  if (q.batch >= 2 * int64_t(nt) || q.batch % nt == 0) {
    parallel_for(0, q.batch, 1, [&](int64_t b0, int64_t b1) {
      gemm::gemm_blocked_serial(slice(q, b0, b1, 0, q.M, 0, q.N), kern);
    });
    return;
  }
  // Otherwise cut every batch item into nt slabs of whole micro-tiles. Rows are preferred:
  // each slab then packs only its own A and re-packs B, which is the cheaper (contiguous)
  // copy. Columns are cut when there are too few rows to give every thread a few tiles.
  const bool by_rows = q.M >= int64_t(nt) * kern.mr * 4 || q.M >= q.N;
  const int64_t extent = by_rows ? q.M : q.N, unit = by_rows ? kern.mr : kern.nr;
  const int64_t tiles = (extent + unit - 1) / unit;
  const int64_t parts = std::min<int64_t>(nt, tiles);
  const int64_t step = (tiles + parts - 1) / parts * unit;
  const int64_t nslabs = (extent + step - 1) / step;
  parallel_for(0, q.batch * nslabs, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / nslabs, s0 = (t % nslabs) * step, s1 = std::min(extent, s0 + step);
      gemm::gemm_blocked_serial(by_rows ? slice(q, b, b + 1, s0, s1, 0, q.N)
                                        : slice(q, b, b + 1, 0, q.M, s0, s1),
                                kern);
    }
  });
}

}  // namespace fovea
