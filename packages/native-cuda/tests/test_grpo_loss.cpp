// CPU tests of the fused GRPO loss: the chunked fast path (grpo_loss_cpu) against the plain f64
// reference (grpo_loss_reference) on fresh random inputs, over every aggregation, KL type, dual
// clip, bias, temperature, chunk size (V and N not multiples of anything), every ISA cap, and
// f32 / bf16 / f64 models. Tolerances: the fast path's f32 error vs an f64 reference is about
// that of an f32 GEMM over K = H or K = V (relative ~1e-5 here); bf16 models are compared with
// the reference on the same bf16 values, so only f32 accumulation error remains.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>
#include "core/cpu_features.h"
#include "harness.h"
#include "ops/grpo_loss/grpo_loss.h"

using namespace fovea;

namespace {

struct Case {
  int64_t N, H, V, S;
  std::vector<float> h, w, b, adv, mask, old, ref;
  std::vector<int32_t> tgt, seq;
};

Case make_case(int64_t N, int64_t H, int64_t V, int64_t S, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Case c{N, H, V, S, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  for (int64_t i = 0; i < N * H; ++i) c.h.push_back(nd(g));
  for (int64_t i = 0; i < V * H; ++i) c.w.push_back(nd(g) * 2.f / std::sqrt(float(H)));
  for (int64_t i = 0; i < V; ++i) c.b.push_back(nd(g) * 0.5f);
  std::vector<float> advs(S);
  for (auto& a : advs) a = nd(g);
  for (int64_t i = 0; i < N; ++i) {
    c.tgt.push_back(int32_t(g() % V));
    c.seq.push_back(int32_t(i * S / std::max<int64_t>(N, 1)));
    c.adv.push_back(advs[c.seq.back()]);
    c.mask.push_back(u(g) < 0.75f || i == 0 ? 1.f : 0.f);
    c.ref.push_back(-std::log(float(V)) + nd(g));
  }
  // Fully mask the last sequence when there are several, so seq-mean sees a dead sequence.
  if (S > 2) for (int64_t i = 0; i < N; ++i) if (c.seq[i] == S - 1) c.mask[i] = 0.f;
  // Old log-probs around the current ones, spread so ratios hit both clip bounds and the dual
  // clip (needs the current logp: take it from the reference).
  std::vector<float> lp(N);
  GrpoLossParams p;
  p.hidden = c.h.data(); p.weight = c.w.data(); p.bias = c.b.data(); p.dtype = DType::F32;
  p.hidden_rs = H; p.weight_rs = H; p.targets = c.tgt.data(); p.N = N; p.H = H; p.V = V;
  p.num_seqs = S; p.compute_grad = false; p.logprobs = lp.data();
  grpo_loss_reference(p);
  const float shifts[] = {0.6f, -0.5f, 0.f, 0.1f, -0.1f, 0.4f, -0.35f, -1.4f, 1.6f};
  for (int64_t i = 0; i < N; ++i) c.old.push_back(lp[i] + shifts[i % 9]);
  return c;
}

struct Out {
  std::vector<float> lp, ent, dh, dw, db;
  double stats[kGrpoNumStats] = {};
};

// Runs one path on the case with the model in dtype `dt` (bf16 copies are made here).
Out run(const Case& c, const GrpoLossParams& cfg, bool bias, bool fast, DType dt = DType::F32) {
  Out o;
  o.lp.resize(c.N); o.ent.resize(c.N); o.dh.resize(c.N * c.H); o.dw.resize(c.V * c.H); o.db.resize(c.V);
  std::vector<uint16_t> h16, w16, b16;
  GrpoLossParams p = cfg;
  p.dtype = dt;
  if (dt == DType::BF16) {
    for (float x : c.h) h16.push_back(f32_to_bf16(x));
    for (float x : c.w) w16.push_back(f32_to_bf16(x));
    for (float x : c.b) b16.push_back(f32_to_bf16(x));
    p.hidden = h16.data(); p.weight = w16.data(); p.bias = bias ? b16.data() : nullptr;
  } else {
    p.hidden = c.h.data(); p.weight = c.w.data(); p.bias = bias ? c.b.data() : nullptr;
  }
  p.hidden_rs = c.H; p.weight_rs = c.H;
  p.targets = c.tgt.data(); p.advantages = c.adv.data(); p.mask = c.mask.data();
  p.seq_index = c.seq.data(); p.old_logprobs = cfg.old_logprobs ? c.old.data() : nullptr;
  p.ref_logprobs = cfg.ref_logprobs ? c.ref.data() : nullptr;
  p.N = c.N; p.H = c.H; p.V = c.V; p.num_seqs = c.S;
  p.logprobs = o.lp.data(); p.entropy = cfg.compute_entropy ? o.ent.data() : nullptr;
  p.stats = o.stats; p.d_hidden = o.dh.data(); p.d_weight = o.dw.data();
  p.d_bias = bias ? o.db.data() : nullptr;
  if (fast) grpo_loss_cpu(p);
  else grpo_loss_reference(p);
  return o;
}

double rel(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) { num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]); den += double(b[i]) * b[i]; }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

void compare(const Out& f, const Out& r, double tol) {
  EXPECT_TRUE(rel(f.lp, r.lp) < tol);
  EXPECT_TRUE(rel(f.ent, r.ent) < tol);
  EXPECT_TRUE(rel(f.dh, r.dh) < tol);
  EXPECT_TRUE(rel(f.dw, r.dw) < tol);
  EXPECT_TRUE(rel(f.db, r.db) < tol);
  for (int s = 0; s < kGrpoNumStats; ++s)
    EXPECT_NEAR(f.stats[s], r.stats[s], tol * std::max(1.0, std::fabs(r.stats[s])));
}

const void* kOn = reinterpret_cast<const void*>(1);  // marks "pass old/ref" in a config

}  // namespace

FOVEA_TEST(grpo_loss_fast_matches_reference_all_modes) {
  const Case c = make_case(37, 24, 301, 4, 7);
  int combos = 0;
  for (int agg = 0; agg < 4; ++agg)
    for (int kl = 0; kl < 3; ++kl)
      for (double dual : {0.0, 3.0}) {
        GrpoLossParams cfg;
        cfg.aggregation = GrpoAgg(agg); cfg.kl = GrpoKl(kl); cfg.dual_clip = dual;
        cfg.beta = kl == 1 ? 0.0 : 0.1; cfg.eps_low = 0.2; cfg.eps_high = 0.28;
        cfg.temperature = agg == 3 ? 0.7 : 1.0; cfg.norm_length = 20;
        cfg.old_logprobs = kOn; cfg.ref_logprobs = kOn; cfg.compute_entropy = agg % 2 == 0;
        cfg.chunk_tokens = 1 + (combos % 3) * 8;  // 1, 9, 17 rows per chunk
        const bool bias = combos % 2 == 0;
        const Out r = run(c, cfg, bias, false);
        const Out f = run(c, cfg, bias, true);
        compare(f, r, 2e-5);
        ++combos;
      }
  EXPECT_TRUE(combos == 24);
}

FOVEA_TEST(grpo_loss_every_isa_and_default_chunk) {
  const Case c = make_case(50, 33, 517, 3, 11);
  GrpoLossParams cfg;
  cfg.aggregation = GrpoAgg::SeqMeanTokenMean; cfg.beta = 0.05; cfg.dual_clip = 3.0;
  cfg.old_logprobs = kOn; cfg.ref_logprobs = kOn; cfg.compute_entropy = true;
  const Out r = run(c, cfg, true, false);
  for (Isa cap : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
    set_isa_cap(cap);
    compare(run(c, cfg, true, true), r, 2e-5);
  }
  set_isa_cap(Isa::Avx512);
}

FOVEA_TEST(grpo_loss_default_old_is_ratio_one) {
  // Without old log-probs r = 1 everywhere: no clipping, approx KL 0, mean ratio 1.
  const Case c = make_case(20, 16, 129, 2, 3);
  GrpoLossParams cfg;
  const Out f = run(c, cfg, false, true), r = run(c, cfg, false, false);
  compare(f, r, 2e-5);
  EXPECT_NEAR(f.stats[kGrpoMeanRatio], 1.0, 1e-12);
  EXPECT_NEAR(f.stats[kGrpoApproxKl], 0.0, 1e-12);
  EXPECT_NEAR(f.stats[kGrpoClipFracLow] + f.stats[kGrpoClipFracHigh], 0.0, 1e-12);
}

FOVEA_TEST(grpo_loss_bf16_and_f64_models) {
  const Case c = make_case(19, 40, 263, 2, 5);
  GrpoLossParams cfg;
  cfg.aggregation = GrpoAgg::TokenMean; cfg.beta = 0.04; cfg.old_logprobs = kOn; cfg.ref_logprobs = kOn;
  cfg.compute_entropy = true; cfg.chunk_tokens = 8;
  // bf16: the reference reads the same bf16 values, so the difference is f32 accumulation only.
  compare(run(c, cfg, true, true, DType::BF16), run(c, cfg, true, false, DType::BF16), 2e-5);
  // f64: the fast path runs the GEMM in f64 (gradcheck); per-token vectors are then f64 too.
  std::vector<double> h(c.h.begin(), c.h.end()), w(c.w.begin(), c.w.end()), b(c.b.begin(), c.b.end());
  std::vector<double> adv(c.adv.begin(), c.adv.end()), mask(c.mask.begin(), c.mask.end());
  std::vector<double> old(c.old.begin(), c.old.end()), ref(c.ref.begin(), c.ref.end());
  auto go = [&](bool fast, std::vector<double>& lp, std::vector<double>& dh, std::vector<double>& dw,
                std::vector<double>& db, double* st) {
    GrpoLossParams p = cfg;
    p.dtype = DType::F64; p.hidden = h.data(); p.weight = w.data(); p.bias = b.data();
    p.hidden_rs = c.H; p.weight_rs = c.H; p.targets = c.tgt.data(); p.advantages = adv.data();
    p.mask = mask.data(); p.seq_index = c.seq.data(); p.old_logprobs = old.data(); p.ref_logprobs = ref.data();
    p.N = c.N; p.H = c.H; p.V = c.V; p.num_seqs = c.S; p.entropy = nullptr;
    lp.assign(c.N, 0); dh.assign(c.N * c.H, 0); dw.assign(c.V * c.H, 0); db.assign(c.V, 0);
    p.logprobs = lp.data(); p.d_hidden = dh.data(); p.d_weight = dw.data(); p.d_bias = db.data(); p.stats = st;
    if (fast) grpo_loss_cpu(p); else grpo_loss_reference(p);
  };
  std::vector<double> lp1, dh1, dw1, db1, lp2, dh2, dw2, db2;
  double s1[kGrpoNumStats], s2[kGrpoNumStats];
  go(true, lp1, dh1, dw1, db1, s1);
  go(false, lp2, dh2, dw2, db2, s2);
  double worst = 0;
  for (size_t i = 0; i < dw1.size(); ++i) worst = std::max(worst, std::fabs(dw1[i] - dw2[i]));
  for (size_t i = 0; i < dh1.size(); ++i) worst = std::max(worst, std::fabs(dh1[i] - dh2[i]));
  for (int64_t i = 0; i < c.N; ++i) worst = std::max(worst, std::fabs(lp1[i] - lp2[i]));
  EXPECT_TRUE(worst < 1e-12);
  EXPECT_NEAR(s1[kGrpoLoss], s2[kGrpoLoss], 1e-12);
}

FOVEA_TEST(grpo_loss_n1_and_empty) {
  const Case c = make_case(1, 8, 97, 1, 9);
  GrpoLossParams cfg;
  cfg.beta = 0.3; cfg.kl = GrpoKl::K2; cfg.temperature = 1.3; cfg.old_logprobs = kOn; cfg.ref_logprobs = kOn;
  compare(run(c, cfg, true, true), run(c, cfg, true, false), 2e-5);
  // N = 0: loss 0, zero gradients, no crash.
  Case e = make_case(0, 8, 33, 1, 1);
  GrpoLossParams cfg0;
  const Out f = run(e, cfg0, true, true);
  EXPECT_NEAR(f.stats[kGrpoLoss], 0.0, 0.0);
  double s = 0;
  for (float x : f.dw) s += std::fabs(x);
  EXPECT_NEAR(s, 0.0, 0.0);
}

FOVEA_TEST(grpo_token_terms_clip_rules) {
  // A > 0, r above 1 + εhigh: clipped, zero gradient; A < 0, r below 1 − εlow: clipped, zero.
  GrpoTokenTerms t = grpo_token_terms(std::log(1.5), 0.0, 0, false, 1.0, 0.2, 0.28, 0, 0, GrpoKl::K3);
  EXPECT_NEAR(t.pg, -1.28, 1e-12); EXPECT_NEAR(t.dlogp, 0.0, 0.0); EXPECT_TRUE(t.clip_high);
  t = grpo_token_terms(std::log(0.5), 0.0, 0, false, -1.0, 0.2, 0.28, 0, 0, GrpoKl::K3);
  EXPECT_NEAR(t.pg, 0.8, 1e-12); EXPECT_NEAR(t.dlogp, 0.0, 0.0); EXPECT_TRUE(t.clip_low);
  // A > 0, r below 1 − εlow: the unclipped branch is the max, gradient −A·r.
  t = grpo_token_terms(std::log(0.5), 0.0, 0, false, 1.0, 0.2, 0.28, 0, 0, GrpoKl::K3);
  EXPECT_NEAR(t.dlogp, -0.5, 1e-12);
  // Dual clip: A = −1, r = 5 > c = 3: loss bounded at 3, zero gradient.
  t = grpo_token_terms(std::log(5.0), 0.0, 0, false, -1.0, 0.2, 0.28, 3.0, 0, GrpoKl::K3);
  EXPECT_NEAR(t.pg, 3.0, 1e-12); EXPECT_NEAR(t.dlogp, 0.0, 0.0); EXPECT_TRUE(t.clip_dual);
  // k3 clamped at 10 far from the reference: value 10, zero gradient.
  t = grpo_token_terms(-30.0, -30.0, 0.0, true, 0.0, 0.2, 0.2, 0, 1.0, GrpoKl::K3);
  EXPECT_NEAR(t.kl, 10.0, 0.0); EXPECT_NEAR(t.dlogp, 0.0, 0.0);
}
