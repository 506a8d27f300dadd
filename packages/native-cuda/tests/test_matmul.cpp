// Tests for the CPU GEMM (src/ops/matmul): gemm_cpu against gemm_reference on fresh random
// inputs, over shapes (1, odd, edge tiles, K = 0, empty), layouts (transposed, gapped and
// negative strides, stride-0 broadcast batch, column-major C), alpha/beta (beta = 0 with NaN
// in C), dtypes (f32/bf16/f16/f64 in and out) and every micro-kernel (ISA capped per run).
//
// Error bound: the reference runs in f64 into an f64 C; a sum of K f32 products has error
// at most about K·2^-24·Σ|a·b| (the "abs reference", the same GEMM on |A|, |B|, |C|), so we
// allow (2K + 8)·2^-24·absref plus half an ulp of the output dtype on |ref|. Elements of
// C's buffer that are not part of C (gaps between strided rows) must stay bit-identical.
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "harness.h"
#include "ops/matmul/gemm_internal.h"
#include "ops/matmul/matmul.h"

using namespace fovea;

namespace {

std::mt19937& rng() { static std::mt19937 r(1234); return r; }

// Strided operand layouts. Rows × cols of a [rows, cols] matrix per batch item.
enum class Layout { RowMajor, ColMajor, Gapped, Flipped };  // Flipped: rows reversed (rs < 0)

struct Operand {
  DType dtype = DType::F32;
  std::vector<unsigned char> bytes;
  int64_t batch_stride = 0, rs = 0, cs = 0, elems = 0;
  int64_t base = 0;  // element (0, 0) of batch item 0 (non-zero when a stride is negative)
};

// Allocates an operand of [batch, rows, cols] with the layout; broadcast → batch stride 0.
Operand make_operand(DType t, int64_t batch, int64_t rows, int64_t cols, Layout l, bool broadcast) {
  Operand o;
  o.dtype = t;
  int64_t per = 0;
  switch (l) {
    case Layout::RowMajor: o.rs = cols; o.cs = 1; per = rows * cols; break;
    case Layout::ColMajor: o.rs = 1; o.cs = rows; per = rows * cols; break;
    case Layout::Gapped:  // every other column, rows padded by 3: untouched gaps in between
      o.cs = 2; o.rs = 2 * cols + 3; per = rows * o.rs; break;
    case Layout::Flipped: o.rs = -cols; o.cs = 1; per = rows * cols; o.base = (rows - 1) * cols; break;
  }
  o.batch_stride = broadcast ? 0 : per + 5;  // +5: batch items are not packed back to back
  o.elems = (broadcast ? 1 : batch) * (per + 5);
  o.bytes.resize(size_t(o.elems) * dtype_size(t) + 8);
  return o;
}

void set_elem(Operand& o, int64_t i, double v) {
  dispatch_float(o.dtype, [&](auto tag) { using T = decltype(tag); store(reinterpret_cast<T*>(o.bytes.data()) + i, v); });
}
double get_elem(const Operand& o, int64_t i) {
  double v = 0;
  dispatch_float(o.dtype, [&](auto tag) { using T = decltype(tag); v = double(load(reinterpret_cast<const T*>(o.bytes.data()) + i)); });
  return v;
}
// Fills every element of the buffer (gaps too) with U(-1, 1), or with NaN.
void fill(Operand& o, bool nan = false) {
  std::uniform_real_distribution<double> u(-1, 1);
  for (int64_t i = 0; i < o.elems; ++i) set_elem(o, i, nan ? std::nan("") : u(rng()));
}
// The same buffer with every value replaced by its absolute value.
Operand abs_of(const Operand& o) {
  Operand r = o;
  for (int64_t i = 0; i < o.elems; ++i) set_elem(r, i, std::fabs(get_elem(o, i)));
  return r;
}

struct Case {
  int64_t batch = 1, M = 1, N = 1, K = 1;
  DType a_t = DType::F32, b_t = DType::F32, c_t = DType::F32;
  Layout la = Layout::RowMajor, lb = Layout::RowMajor, lc = Layout::RowMajor;
  bool bcast_a = false, bcast_b = false;
  float alpha = 1.f, beta = 0.f;
};

std::string describe(const Case& c) {
  static const char* L[] = {"row", "col", "gap", "flip"};
  return "batch=" + std::to_string(c.batch) + " M=" + std::to_string(c.M) + " N=" +
         std::to_string(c.N) + " K=" + std::to_string(c.K) + " a=" + dtype_name(c.a_t) + "/" +
         L[int(c.la)] + (c.bcast_a ? "/bcast" : "") + " b=" + dtype_name(c.b_t) + "/" +
         L[int(c.lb)] + (c.bcast_b ? "/bcast" : "") + " c=" + dtype_name(c.c_t) + "/" +
         L[int(c.lc)] + " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta) +
         " isa=" + isa_name(isa());
}

GemmParams params(const Case& c, const Operand& a, const Operand& b, Operand& out) {
  GemmParams p;
  p.a = a.bytes.data() + a.base * int64_t(dtype_size(a.dtype));
  p.b = b.bytes.data() + b.base * int64_t(dtype_size(b.dtype));
  p.c = out.bytes.data() + out.base * int64_t(dtype_size(out.dtype));
  p.a_dtype = a.dtype; p.b_dtype = b.dtype; p.c_dtype = out.dtype;
  p.batch = c.batch; p.M = c.M; p.N = c.N; p.K = c.K;
  p.a_batch = a.batch_stride; p.a_rs = a.rs; p.a_cs = a.cs;
  p.b_batch = b.batch_stride; p.b_rs = b.rs; p.b_cs = b.cs;
  p.c_batch = out.batch_stride; p.c_rs = out.rs; p.c_cs = out.cs;
  p.alpha = c.alpha; p.beta = c.beta;
  return p;
}

// Half an ulp (relative) of the output dtype's rounding on store.
double out_rounding(DType t) {
  switch (t) {
    case DType::BF16: return std::ldexp(1.0, -8);
    case DType::F16: return std::ldexp(1.0, -11);
    case DType::F64: return std::ldexp(1.0, -52);
    default: return std::ldexp(1.0, -24);
  }
}

// Runs gemm_cpu on one case and checks it against the f64 reference; returns #bad elements.
int check_case(const Case& c) {
  Operand a = make_operand(c.a_t, c.batch, c.M, c.K, c.la, c.bcast_a);
  Operand b = make_operand(c.b_t, c.batch, c.K, c.N, c.lb, c.bcast_b);
  Operand out = make_operand(c.c_t, c.batch, c.M, c.N, c.lc, false);
  fill(a);
  fill(b);
  fill(out, c.beta == 0.f);  // beta == 0: C must not be read, so NaN must not leak
  const Operand c0 = out;

  // Reference into a dense f64 C preloaded with C0 (read only when beta != 0).
  Operand ref = make_operand(DType::F64, c.batch, c.M, c.N, Layout::RowMajor, false);
  Operand absref = ref;
  for (int64_t bi = 0; bi < c.batch; ++bi)
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        const double v = get_elem(c0, c0.base + bi * out.batch_stride + m * out.rs + n * out.cs);
        set_elem(ref, bi * ref.batch_stride + m * ref.rs + n * ref.cs, v);
        set_elem(absref, bi * ref.batch_stride + m * ref.rs + n * ref.cs, std::fabs(v));
      }
  gemm_reference(params(c, a, b, ref));
  Case ca = c;
  ca.alpha = std::fabs(c.alpha);
  ca.beta = std::fabs(c.beta);
  gemm_reference(params(ca, abs_of(a), abs_of(b), absref));

  gemm_cpu(params(c, a, b, out));

  const bool f64_math = c.a_t == DType::F64 || c.b_t == DType::F64;
  const double unit = std::ldexp(1.0, f64_math ? -52 : -24);
  int bad = 0;
  std::vector<bool> is_c(size_t(out.elems), false);
  for (int64_t bi = 0; bi < c.batch; ++bi)
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        const int64_t ci = out.base + bi * out.batch_stride + m * out.rs + n * out.cs;
        const int64_t ri = bi * ref.batch_stride + m * ref.rs + n * ref.cs;
        is_c[size_t(ci)] = true;
        const double got = get_elem(out, ci), want = get_elem(ref, ri);
        const double tol = (2.0 * double(c.K) + 8) * unit * get_elem(absref, ri) +
                           out_rounding(c.c_t) * std::fabs(want) +
                           (c.c_t == DType::F16 ? 3e-8 : 1e-30);  // f16 subnormal spacing
        if (!(std::fabs(got - want) <= tol) && bad++ < 3)
          std::printf("    %s: C[%ld,%ld,%ld] = %.9g, want %.9g (tol %.3g)\n", describe(c).c_str(),
                      long(bi), long(m), long(n), got, want, tol);
      }
  // Gaps between C's elements are not C: they must come back untouched.
  const size_t es = dtype_size(c.c_t);
  for (int64_t i = 0; i < out.elems; ++i)
    if (!is_c[size_t(i)] && std::memcmp(&out.bytes[size_t(i) * es], &c0.bytes[size_t(i) * es], es) != 0) {
      if (bad++ < 3) std::printf("    %s: wrote outside C at element %ld\n", describe(c).c_str(), long(i));
      break;
    }
  return bad;
}

#define EXPECT_CASE(c) \
  do { if (check_case(c)) fovea_test::report(__FILE__, __LINE__, "gemm_cpu mismatch: " + describe(c)); } while (0)

// Caps the skinny path's row threshold for one scope (0 = off), then restores the default.
struct SkinnyRows {
  explicit SkinnyRows(int64_t rows) { gemm::set_skinny_max_rows(rows); }
  ~SkinnyRows() { gemm::set_skinny_max_rows(-1); }
};

// Runs body once per micro-kernel (portable, AVX2, AVX-512), capping the ISA, then restores;
// each time twice: with the skinny path on (few-row cases take it) and off (so the packed
// path keeps its coverage of few-row shapes).
template <class F> void for_each_isa(F&& body) {
  const Isa saved = isa();
  for (Isa i : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
    set_isa_cap(i);
    body();
    SkinnyRows off(0);
    body();
  }
  set_isa_cap(saved);
}

// Forces small cache blocks so that multi-block paths (several kc passes with beta applied
// once, several mc/nc blocks, scratch tiles) are exercised on small problems.
struct SmallBlocks {
  SmallBlocks() { gemm::set_blocking_override(30, 24, 70, -1); }
  ~SmallBlocks() { gemm::set_blocking_override(0, 0, 0, -1); }
};

}  // namespace

FOVEA_TEST(matmul_shapes_f32) {
  const int64_t shapes[][3] = {{1, 1, 1},   {1, 7, 1},   {1, 33, 40}, {40, 33, 1}, {13, 17, 19},
                               {14, 5, 32}, {15, 9, 33}, {29, 31, 65}, {6, 100, 16}, {7, 3, 17},
                               {64, 64, 64}, {97, 300, 130}};
  for_each_isa([&] {
    for (auto& s : shapes) {
      Case c;
      c.M = s[0]; c.K = s[1]; c.N = s[2];
      EXPECT_CASE(c);
    }
  });
}

FOVEA_TEST(matmul_layouts_and_scalars) {
  const Layout ls[] = {Layout::RowMajor, Layout::ColMajor, Layout::Gapped, Layout::Flipped};
  const float ab[][2] = {{1.f, 0.f}, {0.5f, 1.f}, {-2.f, 0.25f}};
  for_each_isa([&] {
    for (Layout la : ls)
      for (Layout lb : ls)
        for (Layout lc : ls)
          for (auto& s : ab) {
            Case c;
            c.M = 23; c.K = 37; c.N = 41;
            c.la = la; c.lb = lb; c.lc = lc;
            c.alpha = s[0]; c.beta = s[1];
            EXPECT_CASE(c);
          }
  });
}

FOVEA_TEST(matmul_multi_block) {
  SmallBlocks small;
  for_each_isa([&] {
    for (float beta : {0.f, 1.f, 0.75f})
      for (Layout lc : {Layout::RowMajor, Layout::ColMajor, Layout::Gapped}) {
        Case c;
        c.M = 75; c.K = 101; c.N = 150;
        c.beta = beta; c.lc = lc; c.alpha = 1.5f;
        EXPECT_CASE(c);
        c.c_t = DType::BF16;
        EXPECT_CASE(c);
      }
  });
}

FOVEA_TEST(matmul_empty_and_k0) {
  for (float beta : {0.f, 1.f, -0.5f}) {
    Case c;
    c.M = 9; c.N = 11; c.K = 0; c.beta = beta;
    EXPECT_CASE(c);  // C = beta·C; beta == 0 writes zeros over the NaN
    c.c_t = DType::F16;
    EXPECT_CASE(c);
  }
  for (auto mnb : {std::vector<int64_t>{0, 5, 1}, {5, 0, 1}, {5, 5, 0}}) {
    Case c;
    c.M = mnb[0]; c.N = mnb[1]; c.batch = mnb[2]; c.K = 4;
    EXPECT_CASE(c);  // nothing to do, and nothing outside C may be written
  }
  Case z;  // alpha == 0: C = beta·C without touching A·B
  z.M = 8; z.N = 8; z.K = 8; z.alpha = 0.f; z.beta = 2.f;
  EXPECT_CASE(z);
}

FOVEA_TEST(matmul_batched_broadcast) {
  for_each_isa([&] {
    for (int64_t batch : {1, 2, 3, 5})
      for (int bc = 0; bc < 3; ++bc) {
        Case c;
        c.batch = batch; c.M = 19; c.K = 21; c.N = 35;
        c.bcast_a = bc == 1; c.bcast_b = bc == 2;
        c.lb = Layout::ColMajor;
        c.beta = 0.5f;
        EXPECT_CASE(c);
      }
  });
}

FOVEA_TEST(matmul_half_dtypes) {
  const DType ts[] = {DType::F32, DType::BF16, DType::F16};
  const Layout ls[] = {Layout::RowMajor, Layout::ColMajor, Layout::Gapped};
  for_each_isa([&] {
    for (DType ta : ts)
      for (DType tb : ts)
        for (DType tc : ts) {
          Case c;
          c.M = 17; c.K = 45; c.N = 34;
          c.a_t = ta; c.b_t = tb; c.c_t = tc;
          c.la = ls[(int(ta) + int(tc)) % 3];
          c.lb = ls[(int(tb) + 1) % 3];
          c.lc = ls[int(tc) % 3];
          c.alpha = -1.25f;  // folded into A while packing, after the conversion
          c.beta = tc == DType::F32 ? 0.f : 0.5f;
          EXPECT_CASE(c);
        }
    // Long K: the packing converts unit-stride runs in chunks; cross a chunk boundary.
    for (DType t : {DType::BF16, DType::F16}) {
      Case c;
      c.M = 9; c.K = 600; c.N = 40;
      c.a_t = t; c.b_t = t; c.c_t = t;
      c.lb = Layout::ColMajor;
      EXPECT_CASE(c);
      c.la = Layout::ColMajor; c.lb = Layout::RowMajor; c.beta = 1.f;
      EXPECT_CASE(c);
    }
  });
}

FOVEA_TEST(matmul_f64) {
  for (DType tc : {DType::F64, DType::F32, DType::BF16}) {
    Case c;
    c.M = 21; c.K = 33; c.N = 18; c.batch = 2; c.bcast_b = true;
    c.a_t = DType::F64; c.b_t = DType::F64; c.c_t = tc; c.beta = 0.25f; c.lb = Layout::Gapped;
    EXPECT_CASE(c);
    c.b_t = DType::F32;  // mixed: still f64 math
    EXPECT_CASE(c);
  }
  Case out64;  // f32 inputs, f64 output: f32 math, stored wide
  out64.M = 20; out64.K = 50; out64.N = 40; out64.c_t = DType::F64; out64.lc = Layout::ColMajor;
  EXPECT_CASE(out64);
}

// Big enough to cross the threading threshold: row slabs, column slabs, batch split, and an
// odd thread count so slabs come out uneven.
FOVEA_TEST(matmul_threaded) {
  const int saved = num_threads();
  for (int nt : {2, 3}) {
    set_num_threads(nt);
    for_each_isa([&] {
      Case rows;
      rows.M = 230; rows.K = 300; rows.N = 190; rows.beta = 1.f;
      EXPECT_CASE(rows);
      Case cols;
      cols.M = 5; cols.K = 400; cols.N = 1500; cols.lc = Layout::Gapped;
      EXPECT_CASE(cols);
      Case batched;
      batched.batch = 6; batched.M = 70; batched.K = 90; batched.N = 80; batched.bcast_a = true;
      EXPECT_CASE(batched);
      Case odd_batch;
      odd_batch.batch = 3; odd_batch.M = 120; odd_batch.K = 100; odd_batch.N = 100;
      odd_batch.c_t = DType::BF16; odd_batch.beta = 0.5f;
      EXPECT_CASE(odd_batch);
    });
  }
  set_num_threads(saved);
}

FOVEA_TEST(matmul_rejects_bad_params) {
  GemmParams p;
  p.a_dtype = DType::I32;
  EXPECT_THROWS(gemm_cpu(p));
  p.a_dtype = DType::F32;
  p.M = -1;
  EXPECT_THROWS(gemm_cpu(p));
}

// ── Skinny path (gemm_skinny*.cpp): few rows against a B contiguous along k (Wᵀ, "dot") or
// along n (row-major B, "axpy"); everything else must fall back to the packed path.

namespace {
// Whether gemm_skinny takes case c (it runs it; the result is discarded).
bool skinny_takes(const Case& c) {
  Operand a = make_operand(c.a_t, c.batch, c.M, c.K, c.la, c.bcast_a);
  Operand b = make_operand(c.b_t, c.batch, c.K, c.N, c.lb, c.bcast_b);
  Operand out = make_operand(c.c_t, c.batch, c.M, c.N, c.lc, false);
  fill(a); fill(b); fill(out);
  return gemm::gemm_skinny(params(c, a, b, out), isa());
}
}  // namespace

FOVEA_TEST(matmul_skinny_dispatch) {
  Case c;
  c.M = 4; c.K = 33; c.N = 20; c.lb = Layout::ColMajor;
  EXPECT_TRUE(skinny_takes(c));   // dot form
  c.lb = Layout::RowMajor;
  EXPECT_TRUE(skinny_takes(c));   // axpy form
  c.lb = Layout::Flipped;
  EXPECT_TRUE(skinny_takes(c));   // axpy, negative row stride
  c.lb = Layout::Gapped;
  EXPECT_TRUE(!skinny_takes(c));  // neither stride is 1
  c.lb = Layout::RowMajor; c.M = gemm::kSkinnyAxpyMaxRows;
  EXPECT_TRUE(skinny_takes(c));
  c.M = gemm::kSkinnyAxpyMaxRows + 1;
  EXPECT_TRUE(!skinny_takes(c));  // too many rows for the axpy form
  c.lb = Layout::ColMajor;
  EXPECT_TRUE(skinny_takes(c));   // but not for the dot form
  c.M = gemm::kSkinnyMaxRows + 1;
  EXPECT_TRUE(!skinny_takes(c));  // too many rows
  c.M = 2; c.batch = 3; c.bcast_b = true;  // 6 rows share one broadcast B
  EXPECT_TRUE(skinny_takes(c));
  c.batch = gemm::kSkinnyMaxRows / 2 + 1;  // over the threshold in shared rows
  EXPECT_TRUE(!skinny_takes(c));
  c.bcast_b = false;  // per-item B: 2 rows each
  EXPECT_TRUE(skinny_takes(c));
  SkinnyRows off(0);
  c.batch = 1; c.M = 1;
  EXPECT_TRUE(!skinny_takes(c));
}

FOVEA_TEST(matmul_skinny_shapes) {
  // (K, N) pairs: odd sizes, SIMD tails on both axes, the decode widths (895/896, 4864+3).
  const int64_t kn[][2] = {{1, 1}, {7, 7}, {33, 33}, {1, 4867}, {895, 7}, {896, 33}, {895, 1},
                           {33, 4867}, {16, 65}, {17, 64}};
  for_each_isa([&] {
    for (int64_t M : {1, 2, 3, 5, 8, 16, 32})
      for (auto& s : kn)
        for (Layout lb : {Layout::ColMajor, Layout::RowMajor}) {
          Case c;
          c.M = M; c.K = s[0]; c.N = s[1]; c.lb = lb;
          EXPECT_CASE(c);
        }
    Case big;  // the MLP width: a full decode-sized W, both forms
    big.M = 3; big.K = 895; big.N = 4864 + 3; big.lb = Layout::ColMajor; big.beta = 0.5f;
    EXPECT_CASE(big);
    big.lb = Layout::RowMajor; big.M = 5;
    EXPECT_CASE(big);
  });
}

FOVEA_TEST(matmul_skinny_layouts_dtypes) {
  const Layout ls[] = {Layout::RowMajor, Layout::ColMajor, Layout::Gapped, Layout::Flipped};
  const DType ts[] = {DType::F32, DType::BF16, DType::F16};
  for_each_isa([&] {
    for (Layout la : ls)
      for (Layout lc : ls)
        for (Layout lb : {Layout::ColMajor, Layout::RowMajor, Layout::Flipped}) {
          Case c;
          c.M = 3; c.K = 37; c.N = 70; c.la = la; c.lb = lb; c.lc = lc;
          c.alpha = -1.5f; c.beta = 0.75f;
          EXPECT_CASE(c);
        }
    for (DType ta : ts)
      for (DType tb : ts)
        for (DType tc : {DType::F32, DType::BF16, DType::F16, DType::F64})
          for (Layout lb : {Layout::ColMajor, Layout::RowMajor}) {
            Case c;
            c.M = 5; c.K = 51; c.N = 67; c.a_t = ta; c.b_t = tb; c.c_t = tc; c.lb = lb;
            c.alpha = 0.5f; c.beta = tc == DType::F32 ? 0.f : -0.5f;
            EXPECT_CASE(c);
          }
    // Batches: broadcast W shared by batch·M rows (decoding [B, 1, K]·Wᵀ), per-item B,
    // broadcast A.
    for (int bc = 0; bc < 3; ++bc) {
      Case c;
      c.batch = 4; c.M = bc == 0 ? 1 : 3; c.K = 45; c.N = 77; c.lb = Layout::ColMajor;
      c.bcast_b = bc == 0; c.bcast_a = bc == 2; c.beta = 1.f; c.b_t = DType::BF16;
      EXPECT_CASE(c);
      c.lb = Layout::RowMajor;
      EXPECT_CASE(c);
    }
  });
}

// Results must be bit-identical whatever the thread count (fixed chunks, fixed sum order).
FOVEA_TEST(matmul_skinny_thread_invariant) {
  const int saved = num_threads();
  for (Layout lb : {Layout::ColMajor, Layout::RowMajor}) {
    Case c;
    c.M = 5; c.K = 895; c.N = 4867; c.lb = lb; c.b_t = DType::BF16;  // 8.7 MB of B: threaded
    Operand a = make_operand(c.a_t, 1, c.M, c.K, c.la, false);
    Operand b = make_operand(c.b_t, 1, c.K, c.N, c.lb, false);
    fill(a); fill(b);
    std::vector<unsigned char> first;
    for (int nt : {1, 2, 3}) {
      set_num_threads(nt);
      Operand out = make_operand(DType::F32, 1, c.M, c.N, c.lc, false);
      gemm_cpu(params(c, a, b, out));
      if (first.empty()) first = out.bytes;
      else EXPECT_TRUE(out.bytes == first);
    }
    // And the threaded run is correct, with the packed path as a second opinion.
    set_num_threads(2);
    EXPECT_CASE(c);
    SkinnyRows off(0);
    EXPECT_CASE(c);
  }
  set_num_threads(saved);
}
