// Elementwise and reduction kernels: SIMD fast paths vs the portable path on fresh random
// inputs for every ISA cap; broadcasting through stride-0 views; casts with rounding and
// saturation; reductions against plain double loops.
#include <cmath>
#include <random>
#include <vector>
#include "core/cpu_features.h"
#include "harness.h"
#include "ops/elementwise/elementwise.h"
#include "ops/reduce/reduce.h"

using namespace fovea;

namespace {
std::vector<float> randv(size_t n, uint32_t seed, float lo = -4.f, float hi = 4.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
const Isa kIsas[] = {Isa::Portable, Isa::Avx2, Isa::Avx512};
}  // namespace

FOVEA_TEST(elementwise_unary_simd_matches_portable) {
  const int64_t n = 1000 + 13;  // not a multiple of any vector width
  auto x = randv(n, 1);
  for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Sigmoid, UnaryOp::Silu, UnaryOp::Neg, UnaryOp::Abs,
                     UnaryOp::Square, UnaryOp::AddScalar, UnaryOp::MulScalar, UnaryOp::Relu}) {
    std::vector<float> ref(n), out(n);
    set_isa_cap(Isa::Portable);
    unary_cpu(op, make_view(x.data(), DType::F32, {n}), make_view(ref.data(), DType::F32, {n}), 0.75, 0);
    for (Isa cap : kIsas) {
      set_isa_cap(cap);
      std::fill(out.begin(), out.end(), NAN);
      unary_cpu(op, make_view(x.data(), DType::F32, {n}), make_view(out.data(), DType::F32, {n}), 0.75, 0);
      double worst = 0;
      for (int64_t i = 0; i < n; ++i)
        worst = std::max(worst, std::fabs(double(out[i]) - ref[i]) / std::max(1.0, std::fabs(double(ref[i]))));
      EXPECT_TRUE(worst <= 4e-7);  // ≤ 2 ulp of the vector exp; exact elsewhere
    }
  }
  set_isa_cap(Isa::Avx512);
}

FOVEA_TEST(elementwise_binary_broadcast_and_simd) {
  const int64_t R = 7, C = 37;
  auto a = randv(R * C, 2), b = randv(C, 3, 0.5f, 2.f);
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Maximum}) {
    for (Isa cap : kIsas) {
      set_isa_cap(cap);
      std::vector<float> out(R * C, NAN);
      TensorView bv = make_view(b.data(), DType::F32, {R, C});
      bv.strides[0] = 0;  // broadcast b over rows
      binary_cpu(op, make_view(a.data(), DType::F32, {R, C}), bv, make_view(out.data(), DType::F32, {R, C}));
      for (int64_t r = 0; r < R; ++r)
        for (int64_t c = 0; c < C; ++c) {
          float x = a[r * C + c], y = b[c];
          float want = op == BinaryOp::Add ? x + y : op == BinaryOp::Sub ? x - y
                     : op == BinaryOp::Mul ? x * y : op == BinaryOp::Div ? x / y : std::max(x, y);
          EXPECT_NEAR(out[r * C + c], want, 0);
        }
      // Scalar broadcast (every stride 0) takes the SIMD scalar path.
      std::vector<float> out2(R * C, NAN);
      TensorView sv = make_view(b.data(), DType::F32, {R, C});
      sv.strides[0] = sv.strides[1] = 0;
      binary_cpu(op, make_view(a.data(), DType::F32, {R, C}), sv, make_view(out2.data(), DType::F32, {R, C}));
      float y = b[0], x = a[5];
      float want = op == BinaryOp::Add ? x + y : op == BinaryOp::Sub ? x - y
                 : op == BinaryOp::Mul ? x * y : op == BinaryOp::Div ? x / y : std::max(x, y);
      EXPECT_NEAR(out2[5], want, 0);
    }
  }
  set_isa_cap(Isa::Avx512);
}

FOVEA_TEST(copy_casts_round_and_saturate) {
  std::vector<float> x = {1.5f, -1.5f, 3e9f, -3e9f, NAN, 1.f + 1.f / 256.f};
  std::vector<int32_t> i(x.size());
  copy_cpu(make_view(x.data(), DType::F32, {6}), make_view(i.data(), DType::I32, {6}));
  EXPECT_TRUE(i[0] == 1 && i[1] == -1 && i[2] == INT32_MAX && i[3] == INT32_MIN && i[4] == 0);
  std::vector<uint16_t> h(x.size());
  copy_cpu(make_view(x.data(), DType::F32, {6}), make_view(h.data(), DType::BF16, {6}));
  EXPECT_NEAR(bf16_to_f32(h[5]), 1.0, 0);  // ties round to even
  // Transposed (strided) source.
  std::vector<float> m = {1, 2, 3, 4, 5, 6}, t(6);
  TensorView src = make_view(m.data(), DType::F32, {3, 2});
  src.strides[0] = 1; src.strides[1] = 3;  // view of the [2, 3] matrix transposed
  copy_cpu(src, make_view(t.data(), DType::F32, {3, 2}));
  EXPECT_TRUE(t[0] == 1 && t[1] == 4 && t[2] == 2 && t[3] == 5 && t[4] == 3 && t[5] == 6);
}

FOVEA_TEST(reductions_match_double_loops) {
  const int64_t rows = 5, n = 1001;
  auto x = randv(rows * n, 4);
  std::vector<float> sum(rows), lse(rows), mx(rows);
  std::vector<int64_t> idx(rows);
  TensorView xv = make_view(x.data(), DType::F32, {rows, n}), none;
  reduce_last_cpu(ReduceOp::Sum, xv, make_view(sum.data(), DType::F32, {rows}), none);
  reduce_last_cpu(ReduceOp::LogSumExp, xv, make_view(lse.data(), DType::F32, {rows}), none);
  reduce_last_cpu(ReduceOp::Max, xv, make_view(mx.data(), DType::F32, {rows}),
                  make_view(idx.data(), DType::I64, {rows}));
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0, m = -1e300, e = 0;
    int64_t bi = 0;
    for (int64_t i = 0; i < n; ++i) { s += x[r * n + i]; if (x[r * n + i] > m) { m = x[r * n + i]; bi = i; } }
    for (int64_t i = 0; i < n; ++i) e += std::exp(x[r * n + i] - m);
    EXPECT_NEAR(sum[r], s, 1e-5 * n);
    EXPECT_NEAR(lse[r], m + std::log(e), 1e-5);
    EXPECT_NEAR(mx[r], m, 0);
    EXPECT_TRUE(idx[r] == bi);
  }
}
