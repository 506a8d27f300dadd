// Flash attention CPU: the tiled fast path (flash_attn_fwd_cpu / flash_attn_bwd_cpu) against
// the f64 reference on fresh random packed batches, for every ISA cap and for f32 and bf16.
// Tolerance rule (STYLE.md habit 4): the forward's error must be at most about twice that of
// a naive f32 attention (full score row, plain softmax) against the same f64 reference; the
// gradients use a fixed bound scaled by the reference's magnitude (no naive f32 backward
// here). Also: masks (causal, windows, prefix), empty sequences and rows that see no key.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "harness.h"
#include "ops/flash_attn/flash_attn.h"

using namespace fovea;

namespace {

std::mt19937& fa_rng() { static std::mt19937 r(9001); return r; }

struct Case {
  std::vector<int> sq, sk;
  int hq, hkv, d;
  bool causal;
  int wl, wr;
};

struct Problem {
  Case c;
  std::vector<int32_t> cuq, cuk;
  int64_t tq = 0, tk = 0;
  std::vector<float> q, k, v, dout;  // f32 values (exactly representable in bf16 when bf16)
  FlashAttnParams params(DType dt) const {
    FlashAttnParams p;
    p.dtype = dt;
    p.cu_seqlens_q = cuq.data(); p.cu_seqlens_k = cuk.data();
    p.batch = int(c.sq.size());
    p.total_q = tq; p.total_k = tk;
    p.hq = c.hq; p.hkv = c.hkv; p.d = c.d;
    p.q_row_stride = int64_t(c.hq) * c.d; p.q_head_stride = c.d;
    p.k_row_stride = int64_t(c.hkv) * c.d; p.k_head_stride = c.d;
    p.v_row_stride = p.k_row_stride; p.v_head_stride = c.d;
    p.o_row_stride = p.q_row_stride; p.o_head_stride = c.d;
    p.causal = c.causal; p.window_left = c.wl; p.window_right = c.wr;
    p.scale = float(1.0 / std::sqrt(double(c.d)));
    return p;
  }
};

Problem make(const Case& c, bool bf16_exact) {
  Problem pr;
  pr.c = c;
  pr.cuq = {0}; pr.cuk = {0};
  for (size_t b = 0; b < c.sq.size(); ++b) {
    pr.cuq.push_back(pr.cuq.back() + c.sq[b]);
    pr.cuk.push_back(pr.cuk.back() + c.sk[b]);
  }
  pr.tq = pr.cuq.back(); pr.tk = pr.cuk.back();
  std::normal_distribution<float> nd(0.f, 1.f);
  auto fill = [&](std::vector<float>& x, int64_t n, float s) {
    x.resize(size_t(n));
    for (float& e : x) {
      e = nd(fa_rng()) * s;
      if (bf16_exact) e = bf16_to_f32(f32_to_bf16(e));
    }
  };
  fill(pr.q, pr.tq * c.hq * c.d, 1.5f);  // peaky enough that the online max matters
  fill(pr.k, pr.tk * c.hkv * c.d, 1.5f);
  fill(pr.v, pr.tk * c.hkv * c.d, 1.f);
  fill(pr.dout, pr.tq * c.hq * c.d, 1.f);
  return pr;
}

// Outputs of one run, as f64 for comparison.
struct Result { std::vector<double> out, lse, dq, dk, dv; };

template <class T>
std::vector<T> cast(const std::vector<float>& x) {
  std::vector<T> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) store(&y[i], x[i]);
  return y;
}
template <class T>
std::vector<double> widen(const std::vector<T>& x) {
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = double(load(&x[i]));
  return y;
}

template <class T>
Result run(const Problem& pr, DType dt, bool fast) {
  std::vector<T> q = cast<T>(pr.q), k = cast<T>(pr.k), v = cast<T>(pr.v), g = cast<T>(pr.dout);
  std::vector<T> out(q.size()), dq(q.size()), dk(k.size()), dv(v.size());
  std::vector<float> lse(size_t(pr.c.hq) * pr.tq, -1.f);
  FlashAttnParams p = pr.params(dt);
  p.q = q.data(); p.k = k.data(); p.v = v.data(); p.out = out.data(); p.lse = lse.data();
  (fast ? flash_attn_fwd_cpu : flash_attn_fwd_reference)(p);
  p.dout = g.data(); p.dq = dq.data(); p.dk = dk.data(); p.dv = dv.data();
  (fast ? flash_attn_bwd_cpu : flash_attn_bwd_reference)(p);
  Result r{widen(out), {}, widen(dq), widen(dk), widen(dv)};
  r.lse.assign(lse.begin(), lse.end());
  return r;
}

// Naive f32 forward: full score row in f32, plain softmax. The same-precision baseline.
std::vector<double> naive_f32_out(const Problem& pr) {
  const Case& c = pr.c;
  const float scale = float(1.0 / std::sqrt(double(c.d)));
  std::vector<double> out(pr.q.size(), 0.0);
  for (size_t b = 0; b < c.sq.size(); ++b)
    for (int h = 0; h < c.hq; ++h)
      for (int i = 0; i < c.sq[b]; ++i) {
        const int64_t diag = i + c.sk[b] - c.sq[b];
        std::vector<float> s(size_t(c.sk[b]), -std::numeric_limits<float>::infinity());
        float m = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < c.sk[b]; ++j) {
          if ((c.causal && j > diag) || (c.wl >= 0 && j < diag - c.wl) || (c.wr >= 0 && j > diag + c.wr)) continue;
          float dot = 0;
          for (int e = 0; e < c.d; ++e)
            dot += pr.q[((pr.cuq[b] + i) * c.hq + h) * c.d + e] *
                   pr.k[((pr.cuk[b] + j) * c.hkv + h / (c.hq / c.hkv)) * c.d + e];
          s[j] = dot * scale;
          m = std::max(m, s[j]);
        }
        if (m == -std::numeric_limits<float>::infinity()) continue;
        float l = 0;
        for (float& x : s) l += (x = std::exp(x - m));
        for (int e = 0; e < c.d; ++e) {
          float acc = 0;
          for (int j = 0; j < c.sk[b]; ++j)
            acc += s[j] * pr.v[((pr.cuk[b] + j) * c.hkv + h / (c.hq / c.hkv)) * c.d + e];
          out[((pr.cuq[b] + i) * c.hq + h) * c.d + e] = acc / l;
        }
      }
  return out;
}

double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::fabs(x));
  return m;
}
double max_err(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isinf(a[i]) || std::isinf(b[i])) {
      if (a[i] != b[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    m = std::max(m, std::fabs(a[i] - b[i]));
  }
  return m;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> cs = {
      {{17, 0, 130, 1}, {17, 0, 130, 1}, 4, 2, 64, false, -1, -1},
      {{17, 0, 130, 1}, {17, 0, 130, 1}, 4, 2, 64, true, -1, -1},
      {{70, 2}, {150, 5}, 7, 1, 80, true, -1, -1},          // prefix: sk > sq
      {{150, 5}, {70, 2}, 2, 2, 128, true, -1, -1},         // sq > sk: leading rows see nothing
      {{200}, {200}, 8, 1, 64, false, 63, 64},
      {{129, 3}, {129, 3}, 2, 1, 48, true, 4, 0},
      {{90}, {90}, 1, 1, 32, false, 0, 0},
      {{0, 0}, {5, 0}, 2, 1, 16, false, -1, -1},            // no queries at all
      {{6}, {0}, 2, 2, 16, false, -1, -1},                  // queries with no keys
      {{300, 40}, {300, 45}, 4, 1, 64, true, -1, -1},       // several 256-key blocks in the backward
      {{290}, {290}, 2, 1, 32, false, 63, 64},
  };
  return cs;
}

template <class F> void for_each_isa(F&& body) {
  const Isa saved = isa();
  for (Isa i : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
    set_isa_cap(i);
    body();
  }
  set_isa_cap(saved);
}

}  // namespace

FOVEA_TEST(flash_attn_cpu_f32_matches_reference) {
  for (const Case& c : cases()) {
    const Problem pr = make(c, false);
    const Result ref = run<float>(pr, DType::F32, false);
    const double naive = max_err(naive_f32_out(pr), ref.out);
    for_each_isa([&] {
      const Result got = run<float>(pr, DType::F32, true);
      EXPECT_TRUE(max_err(got.out, ref.out) <= 2 * naive + 1e-6);
      EXPECT_TRUE(max_err(got.lse, ref.lse) <= 2e-5 * (1 + max_abs(ref.lse)));
      EXPECT_TRUE(max_err(got.dq, ref.dq) <= 2e-5 * (1 + max_abs(ref.dq)));
      EXPECT_TRUE(max_err(got.dk, ref.dk) <= 2e-5 * (1 + max_abs(ref.dk)));
      EXPECT_TRUE(max_err(got.dv, ref.dv) <= 2e-5 * (1 + max_abs(ref.dv)));
      if (max_err(got.out, ref.out) > 2 * naive + 1e-6)
        std::printf("    case d=%d causal=%d: out err %g, naive f32 %g (isa %s)\n", c.d, c.causal,
                    max_err(got.out, ref.out), naive, isa_name(isa()));
    });
  }
}

FOVEA_TEST(flash_attn_cpu_bf16_matches_reference) {
  // bf16 inputs computed in f32, outputs rounded to bf16: error is the final rounding.
  for (const Case& c : cases()) {
    const Problem pr = make(c, true);
    const Result ref = run<bf16>(pr, DType::BF16, false);  // f64 math, bf16 stores
    for_each_isa([&] {
      const Result got = run<bf16>(pr, DType::BF16, true);
      EXPECT_TRUE(max_err(got.out, ref.out) <= 1.6e-2 * (1 + max_abs(ref.out)));
      EXPECT_TRUE(max_err(got.lse, ref.lse) <= 1e-4 * (1 + max_abs(ref.lse)));
      EXPECT_TRUE(max_err(got.dq, ref.dq) <= 1.6e-2 * (1 + max_abs(ref.dq)));
      EXPECT_TRUE(max_err(got.dk, ref.dk) <= 1.6e-2 * (1 + max_abs(ref.dk)));
      EXPECT_TRUE(max_err(got.dv, ref.dv) <= 1.6e-2 * (1 + max_abs(ref.dv)));
    });
  }
}

FOVEA_TEST(flash_attn_masked_rows_are_zero_with_inf_lse) {
  // sq = 5 > sk = 2, causal: query i sees keys j <= i - 3, so rows 0..2 see nothing.
  const Problem pr = make({{5}, {2}, 2, 1, 16, true, -1, -1}, false);
  for_each_isa([&] {
    const Result r = run<float>(pr, DType::F32, true);
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 5; ++i) {
        const bool empty = i < 3;
        EXPECT_TRUE(std::isinf(r.lse[h * 5 + i]) == empty);
        for (int e = 0; e < 16; ++e) {
          if (!empty) continue;
          EXPECT_TRUE(r.out[(i * 2 + h) * 16 + e] == 0.0);
          EXPECT_TRUE(r.dq[(i * 2 + h) * 16 + e] == 0.0);
        }
      }
  });
}

FOVEA_TEST(flash_attn_f64_uses_reference) {
  const Problem pr = make({{9, 4}, {9, 6}, 4, 2, 8, true, 3, -1}, false);
  const Result a = run<double>(pr, DType::F64, true), b = run<double>(pr, DType::F64, false);
  EXPECT_TRUE(max_err(a.out, b.out) == 0.0);
  EXPECT_TRUE(max_err(a.dk, b.dk) == 0.0);
}
