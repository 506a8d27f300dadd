// GPU tests of the fused GRPO loss: the sidecar's grpo_loss against the CPU f64 reference on the
// same values, for f32 and bf16 models, several aggregations, bias, dual clip and KL. Skipped
// (with the reason) when CUDA is unavailable. Tolerances: f32 ~ TF32-free cuBLAS f32 GEMMs and
// __expf (rel 1e-4); bf16 models also round dlogits to bf16 for the backward GEMMs (rel 2e-2).
#include <cmath>
#include <cstring>
#include <random>
#include <vector>
#include "core/cuda_api.h"
#include "harness.h"
#include "ops/grpo_loss/grpo_loss.h"

using namespace fovea;

namespace {

const FoveaCudaApi* need_cuda() {
  const char* why = cuda_unavailable_reason();
  if (*why) FOVEA_SKIP(why);
  return cuda_api();
}

// A device copy of a host vector, freed on scope exit.
struct Dev {
  const FoveaCudaApi* api; void* p = nullptr; size_t n = 0;
  Dev(const FoveaCudaApi* a, const void* src, size_t bytes) : api(a), n(bytes) {
    p = api->malloc(0, std::max<size_t>(bytes, 4));
    if (src && bytes) api->memcpy_h2d(0, p, src, bytes);
  }
  ~Dev() { if (p) api->free(0, p); }
  template <class T> std::vector<T> get(size_t count) {
    std::vector<T> out(count);
    if (count) api->memcpy_d2h(0, out.data(), p, count * sizeof(T));
    return out;
  }
};

double rel(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

void check_case(DType dt, GrpoAgg agg, bool bias, double dual, double tol) {
  const FoveaCudaApi* api = need_cuda();
  const int64_t N = 67, H = 64, V = 1031, S = 5;
  std::mt19937 g(42);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> h(N * H), w(V * H), b(V), adv(N), mask(N), old(N), ref(N);
  std::vector<int32_t> tgt(N), seq(N);
  for (auto& x : h) x = nd(g);
  for (auto& x : w) x = nd(g) * 0.25f;
  for (auto& x : b) x = nd(g) * 0.5f;
  for (int64_t i = 0; i < N; ++i) {
    tgt[i] = int32_t(g() % V); seq[i] = int32_t(i * S / N); adv[i] = float(seq[i]) - 2.f;
    mask[i] = (g() % 4) ? 1.f : 0.f; ref[i] = -7.f + nd(g);
    old[i] = -7.f + nd(g) * 2.f;
  }
  // The model in dt (host), and the same values in f64 for the reference.
  std::vector<uint16_t> h16, w16, b16;
  std::vector<double> hd, wd, bd;
  auto round16 = [&](std::vector<float>& src, std::vector<uint16_t>& dst) {
    for (float& x : src) { dst.push_back(f32_to_bf16(x)); x = bf16_to_f32(dst.back()); }
  };
  if (dt == DType::BF16) { round16(h, h16); round16(w, w16); round16(b, b16); }
  hd.assign(h.begin(), h.end()); wd.assign(w.begin(), w.end()); bd.assign(b.begin(), b.end());
  std::vector<double> advd(adv.begin(), adv.end()), maskd(mask.begin(), mask.end());
  std::vector<double> oldd(old.begin(), old.end()), refd(ref.begin(), ref.end());
  GrpoLossParams cfg;
  cfg.aggregation = agg; cfg.dual_clip = dual; cfg.beta = 0.05; cfg.kl = GrpoKl::K3;
  cfg.temperature = 0.9; cfg.norm_length = 30; cfg.eps_high = 0.28;
  cfg.N = N; cfg.H = H; cfg.V = V; cfg.num_seqs = S; cfg.hidden_rs = H; cfg.weight_rs = H;
  cfg.chunk_tokens = 16;
  // Reference (f64).
  std::vector<double> rlp(N), rent(N), rdh(N * H), rdw(V * H), rdb(V);
  double rst[kGrpoNumStats];
  GrpoLossParams r = cfg;
  r.dtype = DType::F64; r.hidden = hd.data(); r.weight = wd.data(); r.bias = bias ? bd.data() : nullptr;
  r.targets = tgt.data(); r.advantages = advd.data(); r.mask = maskd.data(); r.seq_index = seq.data();
  r.old_logprobs = oldd.data(); r.ref_logprobs = refd.data(); r.logprobs = rlp.data(); r.entropy = rent.data();
  r.stats = rst; r.d_hidden = rdh.data(); r.d_weight = rdw.data(); r.d_bias = bias ? rdb.data() : nullptr;
  grpo_loss_reference(r);
  // Device.
  const size_t es = dt == DType::F32 ? 4 : 2;
  Dev dh_in(api, dt == DType::F32 ? static_cast<const void*>(h.data()) : h16.data(), N * H * es);
  Dev dw_in(api, dt == DType::F32 ? static_cast<const void*>(w.data()) : w16.data(), V * H * es);
  Dev db_in(api, dt == DType::F32 ? static_cast<const void*>(b.data()) : b16.data(), V * es);
  Dev dtgt(api, tgt.data(), N * 4), dseq(api, seq.data(), N * 4), dadv(api, adv.data(), N * 4);
  Dev dmask(api, mask.data(), N * 4), dold(api, old.data(), N * 4), dref(api, ref.data(), N * 4);
  Dev dlp(api, nullptr, N * 4), dent(api, nullptr, N * 4), ddh(api, nullptr, N * H * 4);
  Dev ddw(api, nullptr, V * H * 4), ddb(api, nullptr, V * 4);
  double st[kGrpoNumStats];
  GrpoLossParams p = cfg;
  p.device = 0; p.dtype = dt; p.hidden = dh_in.p; p.weight = dw_in.p; p.bias = bias ? db_in.p : nullptr;
  p.targets = static_cast<const int32_t*>(dtgt.p); p.seq_index = static_cast<const int32_t*>(dseq.p);
  p.advantages = dadv.p; p.mask = dmask.p; p.old_logprobs = dold.p; p.ref_logprobs = dref.p;
  p.logprobs = dlp.p; p.entropy = dent.p; p.stats = st; p.d_hidden = ddh.p; p.d_weight = ddw.p;
  p.d_bias = bias ? ddb.p : nullptr;
  if (api->grpo_loss(&p)) { fovea_test::report(__FILE__, __LINE__, api->last_error()); return; }
  EXPECT_TRUE(rel(dlp.get<float>(N), rlp) < tol);
  EXPECT_TRUE(rel(dent.get<float>(N), rent) < tol);
  EXPECT_TRUE(rel(ddh.get<float>(N * H), rdh) < tol);
  EXPECT_TRUE(rel(ddw.get<float>(V * H), rdw) < tol);
  if (bias) EXPECT_TRUE(rel(ddb.get<float>(V), rdb) < tol);
  EXPECT_NEAR(st[kGrpoLoss], rst[kGrpoLoss], tol * std::max(1.0, std::fabs(rst[kGrpoLoss])));
  EXPECT_NEAR(st[kGrpoTokens], rst[kGrpoTokens], 0.0);
}

}  // namespace

FOVEA_TEST(grpo_loss_cuda_f32_token_mean_bias) { check_case(DType::F32, GrpoAgg::TokenMean, true, 0.0, 1e-4); }
FOVEA_TEST(grpo_loss_cuda_f32_seq_mean_dual) { check_case(DType::F32, GrpoAgg::SeqMeanTokenMean, false, 3.0, 1e-4); }
FOVEA_TEST(grpo_loss_cuda_bf16_norm) { check_case(DType::BF16, GrpoAgg::SeqMeanTokenSumNorm, true, 3.0, 2e-2); }
FOVEA_TEST(grpo_loss_cuda_bf16_seq_sum) { check_case(DType::BF16, GrpoAgg::SeqMeanTokenSum, false, 0.0, 2e-2); }
