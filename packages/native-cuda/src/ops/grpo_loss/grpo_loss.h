// Fused GRPO loss: lm_head → log-probabilities → clipped surrogate + KL → aggregation, forward
// and backward in one chunked pass that never builds the [N, V] logits (issue 4).
//
// Per token i (mask m_i ≥ 0, advantage A_i, temperature T):
//   z = (h_i·Wᵀ + b)/T, logp_i = z[target_i] − logsumexp(z), entropy_i = lse − Σ softmax(z)·z
//   r_i = exp(clamp(logp_i − old_i, ±20))           (old = logp detached when absent: r = 1)
//   pg_i = max(−A r, −A clip(r, 1−εlow, 1+εhigh)); with dual clip c > 0 and A < 0: min(pg_i, −A c)
//   kl_i = k1: logp − ref | k2: ½(logp − ref)² | k3: clamp(exp(d) − d − 1, ±10), d = clamp(ref − logp, ±20)
//   ℓ_i = pg_i + β kl_i
// Aggregation (w_i below is the weight of ℓ_i in the loss, so loss = Σ w_i ℓ_i):
//   token-mean               w = m_i / Σm
//   seq-mean-token-mean      w = m_i / (count_s · S),   count_s = Σ m over sequence s
//   seq-mean-token-sum       w = m_i / S
//   seq-mean-token-sum-norm  w = m_i / normLength       (verl: no division by S)
// where S = number of sequences with count_s > 0 (fully masked sequences do not count).
// Gradient: g_i = w_i ∂ℓ_i/∂logp_i with torch's rules for max/min/clamp (ties split ½/½, a clamp
// passes gradient on its closed interval), then dz = g_i (onehot − softmax(z)), dlogits = dz/T,
// dH = dlogits·W, dW = dlogitsᵀ·H, db = Σ_i dlogits. Upstream gradient 1: the TS backward scales.
//
// Layout: hidden [N, H] (row stride hidden_rs, unit column stride), weight [V, H] (row stride
// weight_rs), bias [V] contiguous or null; per-token vectors contiguous [N]. hidden/weight/bias
// share one dtype (f32, bf16, f16 on both devices; f64 on the CPU for gradcheck). Per-token
// inputs/outputs and gradients are f32 (f64 when hidden is f64): gradients are accumulated in f32
// even for 16-bit weights. The kernel writes (overwrites) d_hidden, d_weight, d_bias.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>
#include "core/dtype.h"

namespace fovea {

enum class GrpoKl : int32_t { K1 = 0, K2 = 1, K3 = 2 };
enum class GrpoAgg : int32_t { TokenMean = 0, SeqMeanTokenMean = 1, SeqMeanTokenSum = 2, SeqMeanTokenSumNorm = 3 };

// Indices into GrpoLossParams::stats (all means are over tokens, weighted by the mask).
enum GrpoStat : int {
  kGrpoLoss = 0,      // the aggregated loss (same as *loss)
  kGrpoPgLoss,        // aggregated surrogate alone
  kGrpoKlLoss,        // aggregated KL alone (0 without ref)
  kGrpoClipFracLow,   // A < 0 and r < 1 − εlow
  kGrpoClipFracHigh,  // A > 0 and r > 1 + εhigh
  kGrpoClipFracDual,  // A < 0 and the dual clip bound is active
  kGrpoApproxKl,      // mean ½(logp − old)²
  kGrpoKlRef,         // mean kl(logp, ref) (0 without ref)
  kGrpoMeanRatio,     // mean r
  kGrpoEntropy,       // mean entropy (0 unless compute_entropy)
  kGrpoTokens,        // Σ mask
  kGrpoNumStats
};

struct GrpoLossParams {
  // Inputs.
  const void* hidden = nullptr;  // [N, H]
  const void* weight = nullptr;  // [V, H]
  const void* bias = nullptr;    // [V] or null
  DType dtype = DType::F32;      // of hidden, weight, bias
  int64_t hidden_rs = 0, weight_rs = 0;
  const int32_t* targets = nullptr;    // [N], each in [0, V)
  const void* advantages = nullptr;    // [N] acc dtype (f32, or f64 when dtype is f64)
  const void* mask = nullptr;          // [N] acc dtype
  const int32_t* seq_index = nullptr;  // [N], each in [0, num_seqs)
  const void* old_logprobs = nullptr;  // [N] acc dtype or null (ratio 1)
  const void* ref_logprobs = nullptr;  // [N] acc dtype or null (required when beta > 0)
  int64_t N = 0, H = 0, V = 0, num_seqs = 0;
  // Config.
  double eps_low = 0.2, eps_high = 0.2, dual_clip = 0.0, beta = 0.0, temperature = 1.0;
  double norm_length = 1.0;
  GrpoKl kl = GrpoKl::K3;
  GrpoAgg aggregation = GrpoAgg::TokenMean;
  bool compute_entropy = false;
  bool compute_grad = true;     // false: tokenLogprobs (logprobs/entropy only)
  int64_t chunk_tokens = 0;     // 0: choose (rows of logits kept per chunk)
  // Outputs (acc dtype: f32, or f64 when dtype is f64).
  void* logprobs = nullptr;     // [N] (required)
  void* entropy = nullptr;      // [N] or null
  double* stats = nullptr;      // [kGrpoNumStats] host memory, or null (loss-only callers)
  void* d_hidden = nullptr;     // [N, H] contiguous
  void* d_weight = nullptr;     // [V, H] contiguous
  void* d_bias = nullptr;       // [V] or null
  int device = -1;
};

// Plain reference: one token at a time, f64 everywhere, full-vocab logits row. Slow; tests only.
void grpo_loss_reference(const GrpoLossParams& p);
// CPU fast path: token chunks, GEMM micro-kernels for the three products, threaded row passes.
void grpo_loss_cpu(const GrpoLossParams& p);

// ∂ℓ/∂logp and ℓ, pg, kl for one token (torch's max/min/clamp gradient rules).
struct GrpoTokenTerms { double loss, pg, kl, ratio, dlogp; bool clip_low, clip_high, clip_dual; };
#if defined(__CUDACC__)
__host__ __device__
#endif
inline GrpoTokenTerms grpo_token_terms(double logp, double old, double ref, bool has_ref, double A,
                                       double eps_low, double eps_high, double dual_clip,
                                       double beta, GrpoKl kl) {
  GrpoTokenTerms t{};
  const double lr_raw = logp - old;
  const double lr = lr_raw < -20.0 ? -20.0 : (lr_raw > 20.0 ? 20.0 : lr_raw);
  const double dlr = (lr_raw >= -20.0 && lr_raw <= 20.0) ? 1.0 : 0.0;
  const double r = exp(lr);
  const double lo = 1.0 - eps_low, hi = 1.0 + eps_high;
  const double rc = r < lo ? lo : (r > hi ? hi : r);
  const double in_range = (r >= lo && r <= hi) ? 1.0 : 0.0;
  const double pg1 = -A * r, pg2 = -A * rc;
  double clip1, d1;  // value and d/dr of max(pg1, pg2)
  if (pg1 > pg2) { clip1 = pg1; d1 = -A; }
  else if (pg2 > pg1) { clip1 = pg2; d1 = -A * in_range; }
  else { clip1 = pg1; d1 = 0.5 * (-A) + 0.5 * (-A * in_range); }
  double pg = clip1, dpg = d1;
  if (dual_clip > 0.0 && A < 0.0) {
    const double pg3 = -A * dual_clip;
    if (pg3 < clip1) { pg = pg3; dpg = 0.0; t.clip_dual = true; }
    else if (pg3 == clip1) { dpg = 0.5 * d1; }
  }
  t.clip_low = A < 0.0 && r < lo;
  t.clip_high = A > 0.0 && r > hi;
  double klv = 0.0, dkl = 0.0;
  if (has_ref) {
    if (kl == GrpoKl::K1) { klv = logp - ref; dkl = 1.0; }
    else if (kl == GrpoKl::K2) { klv = 0.5 * (logp - ref) * (logp - ref); dkl = logp - ref; }
    else {
      const double d_raw = ref - logp;
      const double d = d_raw < -20.0 ? -20.0 : (d_raw > 20.0 ? 20.0 : d_raw);
      const double dd = (d_raw >= -20.0 && d_raw <= 20.0) ? -1.0 : 0.0;  // dd/dlogp
      const double e = exp(d);
      const double k_raw = e - d - 1.0;
      klv = k_raw < -10.0 ? -10.0 : (k_raw > 10.0 ? 10.0 : k_raw);
      dkl = (k_raw >= -10.0 && k_raw <= 10.0) ? (e - 1.0) * dd : 0.0;
    }
  }
  t.pg = pg; t.kl = klv; t.ratio = r;
  t.loss = pg + beta * klv;
  t.dlogp = dpg * r * dlr + beta * dkl;
  return t;
}

// Host side, shared by the CPU paths and the CUDA sidecar (which cannot link the core library):
// w_i for every token (the aggregation, see the top of this file). mask and seq_index on the host.
inline void grpo_token_weights(const GrpoLossParams& p, const double* mask, const int32_t* seq_index,
                               double* w) {
  const int64_t N = p.N;
  if (p.aggregation == GrpoAgg::TokenMean) {
    double tot = 0;
    for (int64_t i = 0; i < N; ++i) tot += mask[i];
    for (int64_t i = 0; i < N; ++i) w[i] = tot > 0 ? mask[i] / tot : 0.0;
    return;
  }
  if (p.aggregation == GrpoAgg::SeqMeanTokenSumNorm) {  // verl: Σ token sums / normLength
    for (int64_t i = 0; i < N; ++i) w[i] = mask[i] / p.norm_length;
    return;
  }
  std::vector<double> cnt(size_t(p.num_seqs), 0.0);
  for (int64_t i = 0; i < N; ++i) cnt[seq_index[i]] += mask[i];
  int64_t S = 0;
  for (double c : cnt) S += c > 0;  // fully masked sequences do not count
  for (int64_t i = 0; i < N; ++i) {
    const double c = cnt[seq_index[i]];
    if (S == 0 || c <= 0) { w[i] = 0; continue; }
    w[i] = p.aggregation == GrpoAgg::SeqMeanTokenMean ? mask[i] / (c * double(S)) : mask[i] / double(S);
  }
}

// Host side: given every token's logp (and entropy, zeros when not computed) and the per-token
// inputs as doubles (old/ref may be null), fills p.stats (when non-null) and, when g is non-null,
// g_i = w_i ∂ℓ_i/∂logp_i.
inline void grpo_finish_tokens(const GrpoLossParams& p, const double* logp, const double* ent,
                               const double* adv, const double* mask, const int32_t* seq_index,
                               const double* old, const double* ref, double* g) {
  const int64_t N = p.N;
  std::vector<double> w(static_cast<size_t>(N));
  grpo_token_weights(p, mask, seq_index, w.data());
  double loss = 0, pgl = 0, kll = 0, lo = 0, hi = 0, du = 0, akl = 0, klr = 0, rat = 0, en = 0, cnt = 0;
  for (int64_t i = 0; i < N; ++i) {
    const double o = old ? old[i] : logp[i];
    const GrpoTokenTerms t = grpo_token_terms(logp[i], o, ref ? ref[i] : 0.0, ref != nullptr, adv[i],
                                              p.eps_low, p.eps_high, p.dual_clip, p.beta, p.kl);
    if (g) g[i] = w[i] * t.dlogp;
    loss += w[i] * t.loss; pgl += w[i] * t.pg; kll += w[i] * t.kl;
    const double m = mask[i];
    lo += m * t.clip_low; hi += m * t.clip_high; du += m * t.clip_dual;
    akl += m * 0.5 * (logp[i] - o) * (logp[i] - o);
    klr += m * t.kl; rat += m * t.ratio; en += m * ent[i]; cnt += m;
  }
  if (!p.stats) return;
  const double inv = cnt > 0 ? 1.0 / cnt : 0.0;
  double* s = p.stats;
  s[kGrpoLoss] = loss; s[kGrpoPgLoss] = pgl; s[kGrpoKlLoss] = kll;
  s[kGrpoClipFracLow] = lo * inv; s[kGrpoClipFracHigh] = hi * inv; s[kGrpoClipFracDual] = du * inv;
  s[kGrpoApproxKl] = akl * inv; s[kGrpoKlRef] = klr * inv; s[kGrpoMeanRatio] = rat * inv;
  s[kGrpoEntropy] = en * inv; s[kGrpoTokens] = cnt;
}

}  // namespace fovea
