// Tests for the fused AdamW step and the gradient-norm reduction (ops/adamw/adamw.h).
//  - The fast path against the scalar reference for every ISA the CPU has, f32 / bf16 / f16
//    parameters and f32 / bf16 gradients, sizes around the vector width and the block and
//    chunk sizes, five steps in a row: the results must be bit-identical (adamw_simd.cpp
//    mirrors the portable formula operation by operation).
//  - The reference against the formula in f64 (a few f32 ulp), bf16 masters rounded RNE.
//  - Bad input throws; the norm reduction matches an f64 loop and ignores the thread count.
//  - CUDA (skipped without a GPU): the sidecar's adamw_step gives the reference's bits.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <string>
#include <random>
#include <vector>
#include "core/cuda_api.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "harness.h"
#include "ops/adamw/adamw.h"

using namespace fovea;

namespace {

std::mt19937& rng() { static std::mt19937 r(97531); return r; }

std::vector<float> randn(int64_t n, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& e : x) e = d(rng());
  return x;
}

// One parameter's optimizer state and gradient in the dtypes under test.
struct Case {
  DType pt, gt;
  int64_t n;
  std::vector<float> master, m, v, g32;
  std::vector<uint16_t> p16, g16;
  Case(DType p_dtype, DType g_dtype, int64_t count) : pt(p_dtype), gt(g_dtype), n(count) {
    master = randn(n, 1.f);
    m.assign(size_t(n), 0.f);
    v.assign(size_t(n), 0.f);
    if (pt != DType::F32) {
      p16.resize(size_t(n));
      for (int64_t i = 0; i < n; ++i) {
        p16[i] = pt == DType::BF16 ? f32_to_bf16(master[i]) : f32_to_f16(master[i]);
        master[i] = pt == DType::BF16 ? bf16_to_f32(p16[i]) : f16_to_f32(p16[i]);
      }
    }
  }
  void new_grad() {
    g32 = randn(n, 0.1f);
    if (gt != DType::F32) {
      g16.resize(size_t(n));
      for (int64_t i = 0; i < n; ++i) g16[i] = gt == DType::BF16 ? f32_to_bf16(g32[i]) : f32_to_f16(g32[i]);
    }
  }
  TensorView pv() { return pt == DType::F32 ? make_view(master.data(), pt, {n}) : make_view(p16.data(), pt, {n}); }
  TensorView gv() { return gt == DType::F32 ? make_view(g32.data(), gt, {n}) : make_view(g16.data(), gt, {n}); }
  TensorView mv() { return make_view(m.data(), DType::F32, {n}); }
  TensorView vv() { return make_view(v.data(), DType::F32, {n}); }
  TensorView masterv() { return make_view(master.data(), DType::F32, {n}); }
};

void run(Case& c, const AdamWHyper& h, bool fast, Isa isa) {
  TensorView p = c.pv(), g = c.gv(), m = c.mv(), v = c.vv(), ms = c.masterv();
  const TensorView* master = c.pt == DType::F32 ? nullptr : &ms;
  if (fast) adamw_cpu_isa(isa, h, p, g, m, v, master);
  else adamw_reference(h, p, g, m, v, master);
}

bool same_bits(const void* a, const void* b, size_t n) { return std::memcmp(a, b, n) == 0; }

std::vector<Isa> isas() {
  std::vector<Isa> r = {Isa::Portable};
  if (isa() >= Isa::Avx2) r.push_back(Isa::Avx2);
  if (isa() >= Isa::Avx512) r.push_back(Isa::Avx512);
  return r;
}

}  // namespace

FOVEA_TEST(adamw_fast_matches_reference_every_isa) {
  const struct { DType p, g; } kinds[] = {
      {DType::F32, DType::F32}, {DType::F32, DType::BF16}, {DType::BF16, DType::BF16},
      {DType::BF16, DType::F32}, {DType::F16, DType::F32}};
  for (Isa i : isas()) {
    for (auto k : kinds) {
      for (int64_t n : {1, 7, 15, 16, 17, 1023, 1031, 70001}) {
        Case ref(k.p, k.g, n);
        Case fast = ref;
        AdamWHyper h;
        h.lr = 1e-2; h.beta1 = 0.85; h.beta2 = 0.995; h.eps = 1e-7; h.weight_decay = n % 2 ? 0.1 : 0.0;
        bool ok = true;
        for (int t = 1; t <= 5; ++t) {
          h.step = t;
          ref.new_grad();
          fast.g32 = ref.g32; fast.g16 = ref.g16;
          run(ref, h, false, i);
          run(fast, h, true, i);
          ok = ok && same_bits(ref.master.data(), fast.master.data(), size_t(n) * 4) &&
               same_bits(ref.m.data(), fast.m.data(), size_t(n) * 4) &&
               same_bits(ref.v.data(), fast.v.data(), size_t(n) * 4) &&
               same_bits(ref.p16.data(), fast.p16.data(), ref.p16.size() * 2);
        }
        if (!ok)
          fovea_test::report(__FILE__, __LINE__, std::string("mismatch: isa ") + isa_name(i) + " p " +
                             dtype_name(k.p) + " g " + dtype_name(k.g) + " n " + std::to_string(n));
      }
    }
  }
}

FOVEA_TEST(adamw_reference_matches_f64_formula) {
  const int64_t n = 257;
  Case c(DType::F32, DType::F32, n);
  std::vector<double> w(c.master.begin(), c.master.end()), m(size_t(n), 0.0), v(size_t(n), 0.0);
  AdamWHyper h;
  h.lr = 3e-3; h.beta1 = 0.9; h.beta2 = 0.999; h.eps = 1e-8; h.weight_decay = 0.05;
  double worst = 0;
  for (int t = 1; t <= 5; ++t) {
    h.step = t;
    c.new_grad();
    run(c, h, false, Isa::Portable);
    for (int64_t i = 0; i < n; ++i) {
      const double g = c.g32[i];
      w[i] *= 1 - h.lr * h.weight_decay;
      m[i] = h.beta1 * m[i] + (1 - h.beta1) * g;
      v[i] = h.beta2 * v[i] + (1 - h.beta2) * g * g;
      const double mh = m[i] / (1 - std::pow(h.beta1, t)), vh = v[i] / (1 - std::pow(h.beta2, t));
      w[i] -= h.lr * mh / (std::sqrt(vh) + h.eps);
      worst = std::max(worst, std::fabs(w[i] - c.master[i]) / std::max(1e-3, std::fabs(w[i])));
    }
  }
  EXPECT_TRUE(worst < 4e-6);
}

FOVEA_TEST(adamw_bf16_param_is_rounded_master) {
  Case c(DType::BF16, DType::BF16, 1031);
  AdamWHyper h;
  h.lr = 5e-2;
  for (int t = 1; t <= 3; ++t) { h.step = t; c.new_grad(); run(c, h, true, isa()); }
  int bad = 0;
  for (int64_t i = 0; i < c.n; ++i) bad += c.p16[i] != f32_to_bf16(c.master[i]);
  EXPECT_TRUE(bad == 0);
}

FOVEA_TEST(adamw_bad_input_throws) {
  Case c(DType::F32, DType::F32, 8);
  c.new_grad();
  AdamWHyper h;
  TensorView p = c.pv(), g = c.gv(), m = c.mv(), v = c.vv();
  EXPECT_THROWS(adamw_cpu(h, p, make_view(c.g32.data(), DType::F32, {7}), m, v, nullptr));
  EXPECT_THROWS(adamw_cpu(h, p, make_view(c.g32.data(), DType::F32, {2, 4}), m, v, nullptr));
  std::vector<int32_t> ints(8, 0);
  EXPECT_THROWS(adamw_cpu(h, make_view(ints.data(), DType::I32, {8}), g, m, v, nullptr));
  EXPECT_THROWS(adamw_cpu(h, p, g, make_view(c.m.data(), DType::F32, {4}), v, nullptr));
  EXPECT_THROWS(adamw_cpu(h, p, g, m, make_view(c.g16.data(), DType::BF16, {8}), nullptr));
  TensorView ms = c.masterv();
  EXPECT_THROWS(adamw_cpu(h, p, g, m, v, &ms));  // f32 param takes no master
  Case b(DType::BF16, DType::F32, 8);
  b.new_grad();
  EXPECT_THROWS(adamw_cpu(h, b.pv(), b.gv(), b.mv(), b.vv(), nullptr));  // bf16 needs one
  AdamWHyper bad = h; bad.lr = -1;
  EXPECT_THROWS(adamw_cpu(bad, p, g, m, v, nullptr));
  bad = h; bad.beta1 = 1.0;
  EXPECT_THROWS(adamw_cpu(bad, p, g, m, v, nullptr));
  bad = h; bad.beta2 = -0.1;
  EXPECT_THROWS(adamw_cpu(bad, p, g, m, v, nullptr));
  bad = h; bad.step = 0;
  EXPECT_THROWS(adamw_cpu(bad, p, g, m, v, nullptr));
  bad = h; bad.eps = NAN;
  EXPECT_THROWS(adamw_cpu(bad, p, g, m, v, nullptr));
}

FOVEA_TEST(grad_norm_pow_matches_f64_and_ignores_threads) {
  const int64_t n = 300007;
  std::vector<float> x = randn(n, 2.f);
  TensorView xv = make_view(x.data(), DType::F32, {n});
  double s2 = 0, s1 = 0, s3 = 0, mx = 0;
  for (float e : x) { const double a = std::fabs(double(e)); s2 += a * a; s1 += a; s3 += a * a * a; mx = std::max(mx, a); }
  EXPECT_NEAR(grad_norm_pow_cpu(xv, 2), s2, 1e-9 * s2);
  EXPECT_NEAR(grad_norm_pow_cpu(xv, 1), s1, 1e-9 * s1);
  EXPECT_NEAR(grad_norm_pow_cpu(xv, 3), s3, 1e-9 * s3);
  EXPECT_TRUE(grad_norm_pow_cpu(xv, INFINITY) == mx);
  const int saved = num_threads();
  const double a = grad_norm_pow_cpu(xv, 2);
  set_num_threads(1);
  const double b = grad_norm_pow_cpu(xv, 2);
  set_num_threads(saved);
  EXPECT_TRUE(a == b);
  x[12345] = NAN;
  EXPECT_TRUE(std::isnan(grad_norm_pow_cpu(xv, 2)));
  EXPECT_TRUE(std::isnan(grad_norm_pow_cpu(xv, INFINITY)));
  std::vector<int32_t> ints(4, 1);
  EXPECT_THROWS(grad_norm_pow_cpu(make_view(ints.data(), DType::I32, {4}), 2));
  EXPECT_THROWS(grad_norm_pow_cpu(xv, 0));
}

// ---------------------------------------------------------------- CUDA (skipped without a GPU)
namespace {

struct AwBuf {  // device copy of a host vector through the sidecar's allocator
  const FoveaCudaApi* api;
  void* p = nullptr;
  AwBuf(const FoveaCudaApi* a, const void* src, size_t bytes) : api(a) {
    p = api->malloc(0, std::max<size_t>(bytes, 4));
    if (!p) throw Error(std::string("cuda malloc: ") + api->last_error());
    if (bytes && api->memcpy_h2d(0, p, src, bytes)) throw Error(api->last_error());
  }
  ~AwBuf() { api->free(0, p); }
  AwBuf(const AwBuf&) = delete;
  AwBuf& operator=(const AwBuf&) = delete;
  void down(void* dst, size_t bytes) const {
    if (bytes && api->memcpy_d2h(0, dst, p, bytes)) throw Error(api->last_error());
  }
  TensorView view(const TensorView& like) const { TensorView v = like; v.data = p; v.device = 0; return v; }
};

}  // namespace

FOVEA_TEST(adamw_cuda_matches_reference_bits) {
  const char* why = cuda_unavailable_reason();
  if (*why) FOVEA_SKIP(why);
  const FoveaCudaApi* api = cuda_api();
  const struct { DType p, g; } kinds[] = {
      {DType::F32, DType::F32}, {DType::F32, DType::BF16}, {DType::BF16, DType::BF16}, {DType::F16, DType::F32}};
  for (auto k : kinds) {
    for (int64_t n : {1, 255, 1031, 300001}) {
      Case ref(k.p, k.g, n);
      Case dev = ref;
      AdamWHyper h;
      h.lr = 1e-2; h.weight_decay = 0.05;
      bool ok = true;
      for (int t = 1; t <= 3; ++t) {
        h.step = t;
        ref.new_grad();
        dev.g32 = ref.g32; dev.g16 = ref.g16;
        run(ref, h, false, Isa::Portable);
        const TensorView hp = dev.pv(), hg = dev.gv(), hm = dev.mv(), hv = dev.vv(), hms = dev.masterv();
        const size_t pb = size_t(n) * dtype_size(k.p), gb = size_t(n) * dtype_size(k.g), fb = size_t(n) * 4;
        AwBuf dp(api, hp.data, pb), dg(api, hg.data, gb), dm(api, hm.data, fb), dv(api, hv.data, fb),
            dms(api, hms.data, fb);
        const TensorView p = dp.view(hp), g = dg.view(hg), m = dm.view(hm), v = dv.view(hv), ms = dms.view(hms);
        adamw_check(h, p, g, m, v, k.p == DType::F32 ? nullptr : &ms);
        const AdamWScalars s = adamw_scalars(h);
        if (api->adamw_step(&p, &g, &m, &v, k.p == DType::F32 ? nullptr : &ms, &s)) throw Error(api->last_error());
        dp.down(hp.data, pb); dm.down(hm.data, fb); dv.down(hv.data, fb);
        if (k.p != DType::F32) dms.down(hms.data, fb);
        ok = ok && same_bits(ref.master.data(), dev.master.data(), fb) && same_bits(ref.m.data(), dev.m.data(), fb) &&
             same_bits(ref.v.data(), dev.v.data(), fb) && same_bits(ref.p16.data(), dev.p16.data(), ref.p16.size() * 2);
      }
      if (!ok)
        fovea_test::report(__FILE__, __LINE__, std::string("cuda mismatch: p ") + dtype_name(k.p) + " g " +
                           dtype_name(k.g) + " n " + std::to_string(n));
    }
  }
}
