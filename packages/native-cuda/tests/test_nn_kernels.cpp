// Tests for the NN kernels: softmax, rmsnorm, rotary, index ops, cross entropy, random fill.
//  - Fast paths against their references on fresh random inputs, once per ISA the CPU has
//    (set_isa_cap). Tolerance rule (STYLE.md habit 4): with the f64 result as truth, the fast
//    kernel's max error is at most twice the same-dtype reference's error plus a few ulp of
//    the output dtype at the output's scale.
//  - Backward passes against central finite differences in f64.
//  - Index range errors throw (and leave in-place destinations untouched); accumulating ops
//    and random fills give identical bits for any thread count.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "harness.h"
#include "ops/cross_entropy/cross_entropy.h"
#include "ops/index/index.h"
#include "ops/random/random.h"
#include "ops/rmsnorm/rmsnorm.h"
#include "ops/rotary/rotary.h"
#include "ops/softmax/softmax.h"
#include "ops/softmax/vec_exp.h"

using namespace fovea;

namespace {

std::mt19937& rng() { static std::mt19937 r(4321); return r; }

// A contiguous host tensor of any dtype, read and written as doubles.
struct Buf {
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
  Buf(DType t, std::vector<int64_t> s) : dtype(t), shape(std::move(s)) {
    bytes.assign(size_t(numel()) * dtype_size(t) + 8, 0);
  }
  int64_t numel() const { int64_t n = 1; for (auto d : shape) n *= d; return n; }
  TensorView view() const {
    TensorView v;
    v.data = const_cast<unsigned char*>(bytes.data());
    v.dtype = dtype;
    v.ndim = int(shape.size());
    int64_t st = 1;
    for (int d = v.ndim - 1; d >= 0; --d) { v.shape[d] = shape[d]; v.strides[d] = st; st *= shape[d]; }
    return v;
  }
  double get(int64_t i) const {
    double r = 0;
    dispatch_all(dtype, [&](auto t) { using T = decltype(t); r = double(load(reinterpret_cast<const T*>(bytes.data()) + i)); });
    return r;
  }
  void set(int64_t i, double v) {
    dispatch_all(dtype, [&](auto t) {
      using T = decltype(t);
      using C = typename Compute<T>::type;
      store(reinterpret_cast<T*>(bytes.data()) + i, C(v));
    });
  }
  Buf as(DType t) const { Buf b(t, shape); for (int64_t i = 0; i < numel(); ++i) b.set(i, get(i)); return b; }
};

Buf randn(DType t, std::vector<int64_t> shape, double scale = 1.0) {
  Buf b(t, std::move(shape));
  std::normal_distribution<double> nd(0.0, scale);
  for (int64_t i = 0; i < b.numel(); ++i) b.set(i, nd(rng()));
  return b;
}

double max_err(const Buf& a, const Buf& truth) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double d = std::fabs(a.get(i) - truth.get(i));
    if (d != d) d = std::isnan(a.get(i)) && std::isnan(truth.get(i)) ? 0 : INFINITY;
    m = std::max(m, d);
  }
  return m;
}
double max_abs(const Buf& a) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) if (std::isfinite(a.get(i))) m = std::max(m, std::fabs(a.get(i)));
  return m;
}
double unit_roundoff(DType t) {
  switch (t) {
    case DType::BF16: return 0x1p-8;
    case DType::F16: return 0x1p-11;
    case DType::F64: return 0x1p-53;
    default: return 0x1p-24;
  }
}
bool bits_equal(const Buf& a, const Buf& b) { return a.bytes == b.bytes; }

// The ISA levels this CPU supports, each left as the cap while f runs.
template <class F> void for_each_isa(F f) {
  for (Isa cap : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
    set_isa_cap(cap);
    if (isa() == cap) f(cap);
  }
  set_isa_cap(Isa::Avx512);
}

// The rule: fast error <= 2 · reference error + 4 ulp of the output dtype at `scale`.
void expect_within_baseline(const char* what, Isa cap, double fast_err, double ref_err, double scale,
                            DType t) {
  const double bound = 2 * ref_err + 4 * unit_roundoff(t) * std::max(scale, 1e-30);
  if (!(fast_err <= bound))
    fovea_test::report(__FILE__, __LINE__, std::string(what) + " [" + isa_name(cap) + ", " +
                       dtype_name(t) + "]: fast error " + std::to_string(fast_err) +
                       " > bound " + std::to_string(bound) + " (reference error " +
                       std::to_string(ref_err) + ")");
}

}  // namespace

// ------------------------------------------------------------------------------ vectorized exp

FOVEA_TEST(nn_vec_exp_ulp_and_specials) {
  std::vector<float> x;
  for (float v = -105.f; v < 89.f; v += 0.000731f * (1.f + std::fabs(v))) x.push_back(v);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int i = 0; i < 20000; ++i) x.push_back(u(rng()) * 0.35f);  // around the polynomial's center
  const float specials[] = {NAN, -INFINITY, INFINITY, 89.f, 88.7f, -104.f, -87.5f, 0.f, -0.f};
  for (float s : specials) x.push_back(s);
  std::vector<float> y(x.size());
  for_each_isa([&](Isa cap) {
    vec_exp_f32(cap, x.data(), y.data(), int64_t(x.size()));
    double worst = 0;
    int twin_mismatch = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double want = std::exp(double(x[i]));
      if (std::isnan(x[i])) { EXPECT_TRUE(std::isnan(y[i])); continue; }
      if (want > double(std::numeric_limits<float>::max())) { EXPECT_TRUE(std::isinf(y[i]) && y[i] > 0); continue; }
      if (cap == Isa::Portable) {  // std::exp: just check it is close
        EXPECT_NEAR(y[i], want, 2e-7 * want + 1e-45);
        continue;
      }
      int e;
      std::frexp(want, &e);
      const double ulp = std::ldexp(1.0, std::max(e - 24, -149));
      worst = std::max(worst, std::fabs(double(y[i]) - want) / ulp);
      const float twin = vexp::exp_poly_scalar(x[i]);
      if (std::memcmp(&twin, &y[i], 4) != 0) ++twin_mismatch;
    }
    if (cap != Isa::Portable) {
      EXPECT_TRUE(worst <= 2.0);
      EXPECT_TRUE(twin_mismatch == 0);  // the SIMD code is exactly the documented algorithm
    }
  });
}

// ------------------------------------------------------------------------------ softmax

FOVEA_TEST(nn_softmax_fast_vs_reference) {
  // [rows, n]: tails of every length, one 16 KB row, a vocabulary-sized row, and an output
  // over kStreamingStoreBytes with odd n (unaligned rows through the streaming stores).
  const std::vector<std::vector<int64_t>> shapes = {{1, 1}, {3, 7}, {5, 17}, {4, 100}, {2, 4096},
                                                    {2, 3, 33}, {1, 40000}, {1030, 4097}};
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (const auto& shape : shapes) {
      if (t != DType::F32 && shape[0] == 1030) continue;
      Buf x = randn(t, shape, 3.0);
      if (x.numel() > 20) { x.set(3, -INFINITY); x.set(11, 9.5); }
      const Buf x64 = x.as(DType::F64);
      for (int log = 0; log < 2; ++log) {
        Buf truth(DType::F64, shape), ref(t, shape);
        softmax_reference(x64.view(), truth.view(), log);
        softmax_reference(x.view(), ref.view(), log);
        const double ref_err = max_err(ref, truth), scale = max_abs(truth);
        for_each_isa([&](Isa cap) {
          Buf fast(t, shape);
          softmax_cpu(x.view(), fast.view(), log);
          expect_within_baseline(log ? "log_softmax" : "softmax", cap, max_err(fast, truth), ref_err, scale, t);
        });
      }
    }
  }
}

FOVEA_TEST(nn_softmax_nonfinite_rows_and_inplace) {
  for_each_isa([&](Isa cap) {
    Buf x(DType::F32, {3, 20});
    for (int64_t i = 0; i < 60; ++i) x.set(i, double(i % 7) - 3.0);
    x.set(5, NAN);                                    // row 0: NaN -> all NaN
    for (int64_t i = 20; i < 40; ++i) x.set(i, -INFINITY);  // row 1: all -inf -> NaN (as torch)
    Buf y(DType::F32, {3, 20});
    softmax_cpu(x.view(), y.view(), false);
    for (int64_t i = 0; i < 40; ++i) EXPECT_TRUE(std::isnan(y.get(i)));
    double s = 0;
    for (int64_t i = 40; i < 60; ++i) s += y.get(i);
    EXPECT_NEAR(s, 1.0, 1e-6);
    Buf ref(DType::F32, {3, 20});  // in place: out aliases x
    softmax_reference(x.view(), ref.view(), true);
    softmax_cpu(x.view(), x.view(), true);
    for (int64_t i = 40; i < 60; ++i) EXPECT_NEAR(x.get(i), ref.get(i), 1e-5);
  });
}

// Central differences of L(x) = Σ g·f(x) in f64, compared with the analytic dx.
template <class Fwd>
void expect_fd_grad(const char* what, Buf& x, const Buf& g, Fwd fwd, const Buf& dx, double tol) {
  const double h = 1e-6;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double x0 = x.get(i);
    x.set(i, x0 + h); const double lp = fwd();
    x.set(i, x0 - h); const double lm = fwd();
    x.set(i, x0);
    const double num = (lp - lm) / (2 * h);
    if (!(std::fabs(num - dx.get(i)) <= tol * (1 + std::fabs(num))))
      fovea_test::report(__FILE__, __LINE__, std::string(what) + ": d/dx[" + std::to_string(i) +
                         "] analytic " + std::to_string(dx.get(i)) + " vs numeric " + std::to_string(num));
  }
  (void)g;
}
double dot(const Buf& a, const Buf& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += a.get(i) * b.get(i);
  return s;
}

FOVEA_TEST(nn_softmax_backward_gradcheck_f64) {
  for (int log = 0; log < 2; ++log) {
    Buf x = randn(DType::F64, {3, 9}, 2.0), g = randn(DType::F64, {3, 9});
    Buf y(DType::F64, {3, 9}), dx(DType::F64, {3, 9});
    softmax_cpu(x.view(), y.view(), log);
    softmax_backward_cpu(y.view(), g.view(), dx.view(), log);
    expect_fd_grad(log ? "log_softmax" : "softmax", x, g, [&] {
      Buf yy(DType::F64, {3, 9});
      softmax_cpu(x.view(), yy.view(), log);
      return dot(yy, g);
    }, dx, 1e-7);
    // f32 backward agrees with the f64 one.
    Buf y32 = y.as(DType::F32), g32 = g.as(DType::F32), dx32(DType::F32, {3, 9});
    softmax_backward_cpu(y32.view(), g32.view(), dx32.view(), log);
    EXPECT_TRUE(max_err(dx32, dx) <= 1e-5 * (1 + max_abs(dx)));
  }
}

// ------------------------------------------------------------------------------ rmsnorm

FOVEA_TEST(nn_rmsnorm_fast_vs_reference) {
  const std::vector<std::vector<int64_t>> shapes = {{1, 1}, {3, 17}, {2, 4096}, {2, 3, 1000}, {2050, 2049}};
  for (const auto& shape : shapes) {
    const int64_t h = shape.back(), rows = Buf(DType::F32, shape).numel() / h;
    Buf x = randn(DType::F32, shape, 2.0), w = randn(DType::F32, {h});
    Buf x64 = x.as(DType::F64), w64 = w.as(DType::F64);
    Buf truth(DType::F64, shape), rtruth(DType::F64, {rows}), ref(DType::F32, shape), rref(DType::F32, {rows});
    rmsnorm_reference(x64.view(), w64.view(), 1e-6, truth.view(), rtruth.view());
    rmsnorm_reference(x.view(), w.view(), 1e-6, ref.view(), rref.view());
    const double ref_err = max_err(ref, truth), rref_err = max_err(rref, rtruth);
    for_each_isa([&](Isa cap) {
      Buf y(DType::F32, shape), r(DType::F32, {rows});
      rmsnorm_cpu(x.view(), w.view(), 1e-6, y.view(), r.view());
      expect_within_baseline("rmsnorm y", cap, max_err(y, truth), ref_err, max_abs(truth), DType::F32);
      expect_within_baseline("rmsnorm rstd", cap, max_err(r, rtruth), rref_err, max_abs(rtruth), DType::F32);
    });
  }
}

FOVEA_TEST(nn_rmsnorm_hf_rounding_and_mixed_weight) {
  // bf16 x, bf16 weight: y = round(w · round(x · rstd)), as HF's `weight * h.to(bf16)`.
  Buf x = randn(DType::BF16, {4, 64}, 3.0), w = randn(DType::BF16, {64});
  Buf y(DType::BF16, {4, 64}), r(DType::F32, {4});
  rmsnorm_cpu(x.view(), w.view(), 1e-6, y.view(), r.view());
  for (int64_t row = 0; row < 4; ++row) {
    float ss = 0;
    for (int64_t j = 0; j < 64; ++j) ss += float(x.get(row * 64 + j)) * float(x.get(row * 64 + j));
    EXPECT_NEAR(r.get(row), 1.0 / std::sqrt(ss / 64.0 + 1e-6), 1e-6 * r.get(row));
    for (int64_t j = 0; j < 64; ++j) {
      const float n = bf16_to_f32(f32_to_bf16(float(x.get(row * 64 + j)) * float(r.get(row))));
      const float want = bf16_to_f32(f32_to_bf16(float(w.get(j)) * n));
      EXPECT_NEAR(y.get(row * 64 + j), want, 0.0);
    }
  }
  // f16 x with an f32 weight runs and matches the f64 result to f16 precision.
  Buf xh = randn(DType::F16, {3, 40}), wf = randn(DType::F32, {40}), yh(DType::F16, {3, 40}), rh(DType::F32, {3});
  Buf t(DType::F64, {3, 40}), rt(DType::F64, {3});
  rmsnorm_cpu(xh.view(), wf.view(), 1e-5, yh.view(), rh.view());
  rmsnorm_reference(xh.as(DType::F64).view(), wf.as(DType::F64).view(), 1e-5, t.view(), rt.view());
  EXPECT_TRUE(max_err(yh, t) <= 3 * unit_roundoff(DType::F16) * max_abs(t));
}

FOVEA_TEST(nn_rmsnorm_backward_gradcheck_f64) {
  const int64_t rows = 5, h = 8;
  Buf x = randn(DType::F64, {rows, h}), w = randn(DType::F64, {h}), g = randn(DType::F64, {rows, h});
  Buf y(DType::F64, {rows, h}), r(DType::F64, {rows}), dx(DType::F64, {rows, h}), dw(DType::F64, {h});
  auto loss = [&] {
    Buf yy(DType::F64, {rows, h}), rr(DType::F64, {rows});
    rmsnorm_cpu(x.view(), w.view(), 1e-3, yy.view(), rr.view());
    return dot(yy, g);
  };
  rmsnorm_cpu(x.view(), w.view(), 1e-3, y.view(), r.view());
  rmsnorm_backward_cpu(x.view(), w.view(), r.view(), g.view(), dx.view(), dw.view());
  expect_fd_grad("rmsnorm dx", x, g, loss, dx, 1e-7);
  expect_fd_grad("rmsnorm dw", w, g, loss, dw, 1e-7);
  // f32 with an f32 rstd: close to f64, and dw identical across repeated runs.
  Buf x32 = x.as(DType::F32), w32 = w.as(DType::F32), g32 = g.as(DType::F32), r32 = r.as(DType::F32);
  Buf dx32(DType::F32, {rows, h}), dw32(DType::F32, {h}), dw32b(DType::F32, {h});
  rmsnorm_backward_cpu(x32.view(), w32.view(), r32.view(), g32.view(), dx32.view(), dw32.view());
  rmsnorm_backward_cpu(x32.view(), w32.view(), r32.view(), g32.view(), dx32.view(), dw32b.view());
  EXPECT_TRUE(max_err(dx32, dx) <= 1e-5 * (1 + max_abs(dx)));
  EXPECT_TRUE(max_err(dw32, dw) <= 1e-5 * (1 + max_abs(dw)));
  EXPECT_TRUE(bits_equal(dw32, dw32b));
}

// ------------------------------------------------------------------------------ rotary

FOVEA_TEST(nn_rotary_forward_and_gradcheck) {
  const int64_t B = 2, S = 3, H = 2, D = 6, h = D / 2;
  for (int64_t bc : {int64_t(1), B}) {
    Buf x = randn(DType::F64, {B, S, H, D}), g = randn(DType::F64, {B, S, H, D});
    Buf cs(DType::F64, {bc, S, D}), sn(DType::F64, {bc, S, D});
    std::uniform_real_distribution<double> ang(-3, 3);
    for (int64_t p = 0; p < cs.numel() / D; ++p)  // HF's cos = cat(freqs, freqs): i and i+h share an angle
      for (int64_t i = 0; i < h; ++i) {
        const double a = ang(rng());
        for (int64_t k : {i, i + h}) { cs.set(p * D + k, std::cos(a)); sn.set(p * D + k, std::sin(a)); }
      }
    Buf y(DType::F64, {B, S, H, D});
    rotary_cpu(x.view(), cs.view(), sn.view(), y.view(), false);
    for (int64_t b = 0; b < B; ++b) for (int64_t s = 0; s < S; ++s) for (int64_t hd = 0; hd < H; ++hd)
      for (int64_t i = 0; i < D; ++i) {  // y = x·cos + rotate_half(x)·sin, straight from the formula
        const int64_t base = ((b * S + s) * H + hd) * D, cb = ((bc == 1 ? 0 : b) * S + s) * D;
        const double rot = i < h ? -x.get(base + i + h) : x.get(base + i - h);
        EXPECT_NEAR(y.get(base + i), x.get(base + i) * cs.get(cb + i) + rot * sn.get(cb + i), 1e-14);
      }
    Buf dx(DType::F64, {B, S, H, D});
    rotary_cpu(g.view(), cs.view(), sn.view(), dx.view(), true);
    expect_fd_grad("rotary", x, g, [&] {
      Buf yy(DType::F64, {B, S, H, D});
      rotary_cpu(x.view(), cs.view(), sn.view(), yy.view(), false);
      return dot(yy, g);
    }, dx, 1e-8);
    // A true rotation: the inverse undoes the forward. In place (out aliases x) works too.
    Buf z = y;
    rotary_cpu(z.view(), cs.view(), sn.view(), z.view(), true);
    EXPECT_TRUE(max_err(z, x) <= 1e-12);
  }
  // bf16 x with f32 cos/sin: one rounding of the f32 result.
  Buf xb = randn(DType::BF16, {1, 2, 1, 4}), c32(DType::F32, {1, 2, 4}), s32(DType::F32, {1, 2, 4});
  for (int64_t i = 0; i < 8; ++i) { c32.set(i, std::cos(0.3 * i)); s32.set(i, std::sin(0.3 * i)); }
  Buf yb(DType::BF16, {1, 2, 1, 4}), y64(DType::F64, {1, 2, 1, 4});
  rotary_cpu(xb.view(), c32.view(), s32.view(), yb.view(), false);
  rotary_cpu(xb.as(DType::F64).view(), c32.as(DType::F64).view(), s32.as(DType::F64).view(), y64.view(), false);
  EXPECT_TRUE(max_err(yb, y64) <= unit_roundoff(DType::BF16) * max_abs(y64));
}

// ------------------------------------------------------------------------------ cross entropy

FOVEA_TEST(nn_cross_entropy_fast_vs_reference) {
  const int64_t ignore = -100;
  for (DType t : {DType::F32, DType::BF16}) {
    for (int64_t v : {int64_t(1), int64_t(5), int64_t(2048), int64_t(5003)}) {
      const int64_t n = 6;
      Buf logits = randn(t, {n, v}, 4.0), targets(DType::I64, {n});
      std::uniform_int_distribution<int64_t> cls(0, v - 1);
      for (int64_t r = 0; r < n; ++r) targets.set(r, r == 2 ? ignore : cls(rng()));
      Buf l64 = logits.as(DType::F64);
      Buf loss_t(DType::F64, {n}), lse_t(DType::F64, {n}), loss_r(DType::F32, {n}), lse_r(DType::F32, {n});
      cross_entropy_reference(l64.view(), targets.view(), ignore, loss_t.view(), lse_t.view());
      cross_entropy_reference(logits.view(), targets.view(), ignore, loss_r.view(), lse_r.view());
      Buf dl = randn(DType::F32, {n}), dl64 = dl.as(DType::F64);
      Buf grad_t(DType::F64, {n, v}), grad_r(t, {n, v});
      cross_entropy_backward_reference(l64.view(), targets.view(), lse_t.view(), dl64.view(), ignore, grad_t.view());
      cross_entropy_backward_reference(logits.view(), targets.view(), lse_r.view(), dl.view(), ignore, grad_r.view());
      for_each_isa([&](Isa cap) {
        Buf loss(DType::F32, {n}), lse(DType::F32, {n}), grad(t, {n, v});
        cross_entropy_cpu(logits.view(), targets.view(), ignore, loss.view(), lse.view());
        expect_within_baseline("ce loss", cap, max_err(loss, loss_t), max_err(loss_r, loss_t), max_abs(lse_t), DType::F32);
        expect_within_baseline("ce lse", cap, max_err(lse, lse_t), max_err(lse_r, lse_t), max_abs(lse_t), DType::F32);
        EXPECT_TRUE(loss.get(2) == 0.0);
        cross_entropy_backward_cpu(logits.view(), targets.view(), lse.view(), dl.view(), ignore, grad.view());
        expect_within_baseline("ce dlogits", cap, max_err(grad, grad_t), max_err(grad_r, grad_t), max_abs(grad_t), t);
        for (int64_t j = 0; j < v; ++j) EXPECT_TRUE(grad.get(2 * v + j) == 0.0);
      });
    }
  }
}

FOVEA_TEST(nn_cross_entropy_gradcheck_and_errors) {
  const int64_t n = 4, v = 7;
  Buf logits = randn(DType::F64, {n, v}, 2.0), targets(DType::I32, {n}), dl = randn(DType::F64, {n});
  const int32_t tv[n] = {3, 0, 6, 5};  // ignore_index 5 lies inside [0, V): row 3 is ignored
  for (int64_t r = 0; r < n; ++r) targets.set(r, tv[r]);
  Buf loss(DType::F64, {n}), lse(DType::F64, {n}), grad(DType::F64, {n, v});
  cross_entropy_cpu(logits.view(), targets.view(), 5, loss.view(), lse.view());
  cross_entropy_backward_cpu(logits.view(), targets.view(), lse.view(), dl.view(), 5, grad.view());
  EXPECT_TRUE(loss.get(3) == 0.0);
  expect_fd_grad("cross entropy", logits, dl, [&] {
    Buf ll(DType::F64, {n}), ls(DType::F64, {n});
    cross_entropy_cpu(logits.view(), targets.view(), 5, ll.view(), ls.view());
    return dot(ll, dl);
  }, grad, 1e-7);
  Buf l32 = logits.as(DType::F32), loss32(DType::F32, {n}), lse32(DType::F32, {n});
  targets.set(1, 7);  // == V
  EXPECT_THROWS(cross_entropy_cpu(l32.view(), targets.view(), -100, loss32.view(), lse32.view()));
  targets.set(1, -1);
  EXPECT_THROWS(cross_entropy_cpu(l32.view(), targets.view(), -100, loss32.view(), lse32.view()));
  try {
    cross_entropy_cpu(l32.view(), targets.view(), -100, loss32.view(), lse32.view());
  } catch (const std::exception& e) {
    EXPECT_TRUE(std::string(e.what()).find("target -1 at row 1") != std::string::npos);
  }
}

// ------------------------------------------------------------------------------ index ops

FOVEA_TEST(nn_index_select_and_gather) {
  Buf x = randn(DType::F32, {3, 4, 5});
  Buf idx(DType::I32, {6});
  const int ids[6] = {3, 0, 0, 2, 3, 1};
  for (int i = 0; i < 6; ++i) idx.set(i, ids[i]);
  Buf out(DType::F32, {3, 6, 5});
  index_select_cpu(x.view(), 1, idx.view(), out.view());
  for (int64_t a = 0; a < 3; ++a) for (int64_t j = 0; j < 6; ++j) for (int64_t b = 0; b < 5; ++b)
    EXPECT_TRUE(out.get((a * 6 + j) * 5 + b) == x.get((a * 4 + ids[j]) * 5 + b));
  // gather along each dim with an index smaller than x in the other dims.
  for (int dim = 0; dim < 3; ++dim) {
    const int64_t xs[3] = {3, 4, 5};
    Buf gi(DType::I64, {2, 3, 4});
    std::uniform_int_distribution<int64_t> pick(0, xs[dim] - 1);
    for (int64_t i = 0; i < gi.numel(); ++i) gi.set(i, pick(rng()));
    Buf go(DType::F32, {2, 3, 4});
    gather_cpu(x.view(), dim, gi.view(), go.view());
    for (int64_t i = 0; i < 2; ++i) for (int64_t j = 0; j < 3; ++j) for (int64_t k = 0; k < 4; ++k) {
      int64_t c[3] = {i, j, k};
      c[dim] = int64_t(gi.get((i * 3 + j) * 4 + k));
      EXPECT_TRUE(go.get((i * 3 + j) * 4 + k) == x.get((c[0] * 4 + c[1]) * 5 + c[2]));
    }
  }
}

FOVEA_TEST(nn_scatter_add_and_index_add_deterministic) {
  const int saved = num_threads();
  // scatter_add along dim 0 with many collisions, src larger than index in dim 1.
  Buf dst0 = randn(DType::F32, {4, 300}), src = randn(DType::F32, {50, 310}), idx(DType::I64, {50, 300});
  std::uniform_int_distribution<int64_t> pick(0, 3);
  for (int64_t i = 0; i < idx.numel(); ++i) idx.set(i, pick(rng()));
  Buf want = dst0.as(DType::F64);
  for (int64_t j = 0; j < 50; ++j) for (int64_t b = 0; b < 300; ++b) {
    const int64_t d = int64_t(idx.get(j * 300 + b)) * 300 + b;
    want.set(d, double(float(want.get(d)) + float(src.get(j * 310 + b))));  // f32 adds in j order
  }
  // index_add (embedding backward): dst [V, H] += src [T, H] at rows idx [T], duplicates.
  Buf emb0 = randn(DType::F32, {10, 257}), grads = randn(DType::F32, {40, 257}), tok(DType::I32, {40});
  std::uniform_int_distribution<int> tpick(0, 9);
  for (int64_t i = 0; i < 40; ++i) tok.set(i, tpick(rng()));
  Buf ewant = emb0;
  for (int64_t j = 0; j < 40; ++j) for (int64_t b = 0; b < 257; ++b) {
    const int64_t d = int64_t(tok.get(j)) * 257 + b;
    ewant.set(d, double(float(ewant.get(d)) + float(grads.get(j * 257 + b))));
  }
  for (int threads : {1, 2, 3, 8}) {
    set_num_threads(threads);
    Buf d = dst0;
    scatter_add_cpu(d.view(), 0, idx.view(), src.view());
    EXPECT_TRUE(bits_equal(d, want.as(DType::F32)));
    Buf e = emb0;
    index_add_cpu(e.view(), 0, tok.view(), grads.view());
    EXPECT_TRUE(bits_equal(e, ewant));
  }
  set_num_threads(saved);
  // index_add on a middle dim, integer dtype.
  Buf di(DType::I32, {2, 3, 2}), si(DType::I32, {2, 4, 2}), ii(DType::I64, {4});
  const int64_t rows[4] = {2, 0, 2, 1};
  for (int64_t i = 0; i < 4; ++i) ii.set(i, rows[i]);
  for (int64_t i = 0; i < si.numel(); ++i) si.set(i, i);
  index_add_cpu(di.view(), 1, ii.view(), si.view());
  for (int64_t a = 0; a < 2; ++a) for (int64_t b = 0; b < 2; ++b) {
    double s2 = si.get((a * 4 + 0) * 2 + b) + si.get((a * 4 + 2) * 2 + b);
    EXPECT_TRUE(di.get((a * 3 + 2) * 2 + b) == s2);
    EXPECT_TRUE(di.get((a * 3 + 0) * 2 + b) == si.get((a * 4 + 1) * 2 + b));
  }
}

FOVEA_TEST(nn_index_errors_throw_and_leave_dst) {
  Buf x = randn(DType::F32, {4, 3}), out(DType::F32, {2, 3}), idx(DType::I64, {2});
  idx.set(0, 1); idx.set(1, 4);
  EXPECT_THROWS(index_select_cpu(x.view(), 0, idx.view(), out.view()));
  try {
    index_select_cpu(x.view(), 0, idx.view(), out.view());
  } catch (const std::exception& e) {
    const std::string m = e.what();
    EXPECT_TRUE(m.find("indexSelect") != std::string::npos && m.find("index value 4") != std::string::npos &&
                m.find("position [1]") != std::string::npos && m.find("0..3") != std::string::npos);
  }
  idx.set(1, -1);
  EXPECT_THROWS(index_select_cpu(x.view(), 0, idx.view(), out.view()));
  Buf gi(DType::I32, {4, 3});
  gi.set(7, 3);  // dim 1 has size 3
  EXPECT_THROWS(gather_cpu(x.view(), 1, gi.view(), Buf(DType::F32, {4, 3}).view()));
  Buf dst = randn(DType::F32, {4, 3}), before = dst;
  EXPECT_THROWS(scatter_add_cpu(dst.view(), 1, gi.view(), Buf(DType::F32, {4, 3}).view()));
  EXPECT_TRUE(bits_equal(dst, before));
  Buf ai(DType::I32, {2}), src(DType::F32, {2, 3});
  ai.set(0, 0); ai.set(1, 9);
  EXPECT_THROWS(index_add_cpu(dst.view(), 0, ai.view(), src.view()));
  EXPECT_TRUE(bits_equal(dst, before));
}

// ------------------------------------------------------------------------------ random

FOVEA_TEST(nn_philox_known_answers) {
  // Random123's kat_vectors for philox4x32_10.
  auto r = philox4x32_10({0, 0, 0, 0}, {0, 0});
  EXPECT_TRUE(r[0] == 0x6627e8d5u && r[1] == 0xe169c58du && r[2] == 0xbc57ac4cu && r[3] == 0x9b00dbd8u);
  r = philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  EXPECT_TRUE(r[0] == 0x408f276du && r[1] == 0x41c83b0eu && r[2] == 0xa20bc7c6u && r[3] == 0x6d5451fdu);
  r = philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
  EXPECT_TRUE(r[0] == 0xd16cfe09u && r[1] == 0x94fdccebu && r[2] == 0x5001e420u && r[3] == 0x24126ea1u);
}

FOVEA_TEST(nn_random_fill_deterministic_and_distributed) {
  const int saved = num_threads();
  const int64_t n = 100000;
  const uint64_t seed = (uint64_t(1) << 53) - 12345;  // a seed above 2^32 uses the key's high word
  for (int kind = 0; kind < 2; ++kind) {
    const double a = kind == 0 ? 2.0 : 1.0, b = kind == 0 ? 5.0 : 2.0;
    Buf first(DType::F32, {n});
    set_num_threads(1);
    random_fill_cpu(first.view(), RandomKind(kind), seed, 7, a, b);
    for (int threads : {2, 5}) {
      set_num_threads(threads);
      Buf again(DType::F32, {n});
      random_fill_cpu(again.view(), RandomKind(kind), seed, 7, a, b);
      EXPECT_TRUE(bits_equal(first, again));
    }
    Buf other(DType::F32, {n}), shifted(DType::F32, {n - 7});
    random_fill_cpu(other.view(), RandomKind(kind), seed + 1, 7, a, b);
    EXPECT_TRUE(!bits_equal(first, other));
    random_fill_cpu(shifted.view(), RandomKind(kind), seed, 14, a, b);  // counters 14.. = first[7..]
    EXPECT_TRUE(std::memcmp(shifted.bytes.data(), first.bytes.data() + 7 * 4, size_t(n - 7) * 4) == 0);
    double s = 0, s2 = 0, lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; ++i) {
      const double v = first.get(i);
      s += v; s2 += v * v; lo = std::min(lo, v); hi = std::max(hi, v);
    }
    const double mean = s / n, sd = std::sqrt(s2 / n - mean * mean);
    if (kind == 0) {
      EXPECT_NEAR(mean, 3.5, 0.02);
      EXPECT_NEAR(sd, 3.0 / std::sqrt(12.0), 0.01);
      EXPECT_TRUE(lo >= 2.0 && hi < 5.0);
    } else {
      EXPECT_NEAR(mean, 1.0, 0.03);
      EXPECT_NEAR(sd, 2.0, 0.03);
    }
  }
  set_num_threads(saved);
  // Other dtypes: f64 uniform stays below b; bf16 / f16 normals are the rounded f32 values.
  Buf u64(DType::F64, {1000}), nf(DType::F32, {1000}), nb(DType::BF16, {1000}), nh(DType::F16, {1000});
  random_fill_cpu(u64.view(), RandomKind::Uniform, 3, 0, -1.0, 1.0);
  for (int64_t i = 0; i < 1000; ++i) EXPECT_TRUE(u64.get(i) >= -1.0 && u64.get(i) < 1.0);
  random_fill_cpu(nf.view(), RandomKind::Normal, 3, 0, 0.0, 1.0);
  random_fill_cpu(nb.view(), RandomKind::Normal, 3, 0, 0.0, 1.0);
  random_fill_cpu(nh.view(), RandomKind::Normal, 3, 0, 0.0, 1.0);
  for (int64_t i = 0; i < 1000; ++i) {
    EXPECT_NEAR(nb.get(i), nf.get(i), unit_roundoff(DType::BF16) * std::fabs(nf.get(i)) * 1.01);
    EXPECT_NEAR(nh.get(i), nf.get(i), unit_roundoff(DType::F16) * std::fabs(nf.get(i)) * 1.01 + 1e-7);
  }
}
