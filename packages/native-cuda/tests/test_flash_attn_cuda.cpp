// GPU tests of the CUDA flash attention (src/ops/flash_attn/flash_attn.cu) through the sidecar
// table. They SKIP when CUDA is unavailable (no sidecar, driver or device).
//
// Each case is a fresh random packed batch (seed printed on failure). Truth is the f64
// reference (flash_attn_fwd_reference / flash_attn_bwd_reference) run on the very same
// rounded bf16/f16 values. The tolerance comes from a same-precision baseline, as in
// FlashAttention's tests: a naive attention that rounds to the input dtype after every
// stage (scores, probabilities, products) is measured against the same truth, and the kernel
// may be at most twice as far off (plus a small floor for tensors that are exactly 0 in
// exact arithmetic but not in f32). Outputs are poisoned with NaN before each call, so an
// element the kernels forget to write fails. Deterministic dQ/dK/dV must repeat bitwise;
// the atomic dQ variant gets the same tolerance.
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>
#include "core/cuda_api.h"
#include "core/dtype.h"
#include "core/error.h"
#include "harness.h"
#include "ops/flash_attn/flash_attn.h"

using namespace fovea;

namespace {

unsigned fa_seed() {
  static unsigned s = std::random_device{}();
  return s;
}
std::mt19937& fa_rng() {
  static std::mt19937 r(fa_seed());
  return r;
}

const FoveaCudaApi* fa_need_cuda() {
  const char* why = cuda_unavailable_reason();
  if (*why) FOVEA_SKIP(why);
  return cuda_api();
}

// Device buffer through the sidecar's allocator, freed on scope exit.
struct DBuf {
  const FoveaCudaApi* api;
  void* p = nullptr;
  size_t n;
  DBuf(const FoveaCudaApi* a, size_t nbytes) : api(a), n(std::max<size_t>(nbytes, 4)) {
    p = api->malloc(0, n);
    if (!p) throw Error(std::string("cuda malloc: ") + api->last_error());
  }
  ~DBuf() { api->free(0, p); }
  DBuf(const DBuf&) = delete;
  DBuf& operator=(const DBuf&) = delete;
  void up(const void* src, size_t bytes) {
    if (bytes && api->memcpy_h2d(0, p, src, bytes)) throw Error(api->last_error());
  }
  void poison() {  // 0xFF bytes: NaN in bf16, f16 and f32
    std::vector<unsigned char> nan(n, 0xFF);
    up(nan.data(), n);
  }
  template <class T> std::vector<T> down(size_t count) const {
    std::vector<T> out(count);
    if (count && api->memcpy_d2h(0, out.data(), p, count * sizeof(T))) throw Error(api->last_error());
    return out;
  }
};

struct FaCase {
  DType dt;
  int d, hq, hkv;
  std::vector<int> sq, sk;
  bool causal;
  int wl, wr;
  int q_pad = 0;  // extra elements per q/out/dout row: unaligned, strided views
};

double to_f(DType dt, uint16_t b) { return dt == DType::BF16 ? bf16_to_f32(b) : f16_to_f32(b); }
uint16_t to_bits(DType dt, double x) {
  return dt == DType::BF16 ? f32_to_bf16(float(x)) : f32_to_f16(float(x));
}

// Naive attention in the input precision: round (R) after each stage, f32 sums, the way an
// unfused bf16 PyTorch implementation computes. Dense rows of [total, heads, d] doubles.
struct Grads { std::vector<double> out, dq, dk, dv; };
Grads naive_rounded(const FaCase& c, const std::vector<int32_t>& cq, const std::vector<int32_t>& ck,
                    const std::vector<double>& q, const std::vector<double>& k,
                    const std::vector<double>& v, const std::vector<double>& dout, float scale) {
  const int D = c.d, group = c.hq / c.hkv;
  auto R = [&](double x) { return to_f(c.dt, to_bits(c.dt, x)); };
  Grads g;
  g.out.assign(q.size(), 0.0);
  g.dq.assign(q.size(), 0.0);
  std::vector<double> dk(k.size(), 0.0), dv(k.size(), 0.0);
  for (size_t b = 0; b + 1 < cq.size(); ++b) {
    const int q0 = cq[b], sq = cq[b + 1] - q0, k0 = ck[b], sk = ck[b + 1] - k0;
    for (int h = 0; h < c.hq; ++h) {
      const int hk = h / group;
      for (int i = 0; i < sq; ++i) {
        const double* qi = &q[(size_t(q0 + i) * c.hq + h) * D];
        const double* gi = &dout[(size_t(q0 + i) * c.hq + h) * D];
        std::vector<int> js;
        for (int j = 0; j < sk; ++j) {
          const int dd = j - (i + sk - sq);
          if ((c.causal && dd > 0) || (c.wl >= 0 && dd < -c.wl) || (c.wr >= 0 && dd > c.wr)) continue;
          js.push_back(j);
        }
        if (js.empty()) continue;
        std::vector<double> s(js.size()), p(js.size()), dp(js.size());
        double m = -INFINITY, l = 0;
        for (size_t t = 0; t < js.size(); ++t) {
          const double* kj = &k[(size_t(k0 + js[t]) * c.hkv + hk) * D];
          float dot = 0;
          for (int e = 0; e < D; ++e) dot += float(qi[e] * kj[e]);
          s[t] = R(R(dot) * scale);
          m = std::max(m, s[t]);
        }
        for (size_t t = 0; t < js.size(); ++t) l += float(std::exp(float(s[t] - m)));
        double* oi = &g.out[(size_t(q0 + i) * c.hq + h) * D];
        std::vector<float> acc(D, 0.f);
        float dsum = 0;
        for (size_t t = 0; t < js.size(); ++t) {
          p[t] = R(std::exp(float(s[t] - m)) / float(l));
          const double* vj = &v[(size_t(k0 + js[t]) * c.hkv + hk) * D];
          float dot = 0;
          for (int e = 0; e < D; ++e) { acc[e] += float(p[t] * vj[e]); dot += float(gi[e] * vj[e]); }
          dp[t] = R(dot);
          dsum += float(p[t] * dp[t]);
        }
        for (int e = 0; e < D; ++e) oi[e] = R(acc[e]);
        std::vector<float> dqa(D, 0.f);
        for (size_t t = 0; t < js.size(); ++t) {
          const double ds = R(R(p[t] * (dp[t] - dsum)) * scale);
          const size_t kr = (size_t(k0 + js[t]) * c.hkv + hk) * D;
          for (int e = 0; e < D; ++e) {
            dqa[e] += float(ds * k[kr + e]);
            dk[kr + e] += ds * qi[e];
            dv[kr + e] += p[t] * gi[e];
          }
        }
        for (int e = 0; e < D; ++e) g.dq[(size_t(q0 + i) * c.hq + h) * D + e] = R(dqa[e]);
      }
    }
  }
  g.dk.resize(k.size());
  g.dv.resize(k.size());
  for (size_t e = 0; e < k.size(); ++e) { g.dk[e] = R(dk[e]); g.dv[e] = R(dv[e]); }
  return g;
}

// Max |got - want| and max |want| over the dense rows; non-finite got counts as a failure.
struct Err { double err = 0, ref = 0; int64_t nonfinite = 0; };
Err measure(const std::vector<double>& got, const std::vector<double>& want) {
  Err e;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) { ++e.nonfinite; continue; }
    e.err = std::max(e.err, std::fabs(got[i] - want[i]));
    e.ref = std::max(e.ref, std::fabs(want[i]));
  }
  return e;
}

void expect_within(const std::string& what, const std::vector<double>& got,
                   const std::vector<double>& naive, const std::vector<double>& truth) {
  const Err k = measure(got, truth), n = measure(naive, truth);
  const double tol = 2 * n.err + 1e-4 * std::max(n.ref, 1.0);
  if (k.nonfinite || !(k.err <= tol)) {
    std::printf("    %s: kernel err %.3g (%ld non-finite, never written?), naive bf16/f16 err %.3g, "
                "tol %.3g, max|ref| %.3g (seed %u)\n",
                what.c_str(), k.err, long(k.nonfinite), n.err, tol, n.ref, fa_seed());
    EXPECT_TRUE(k.nonfinite == 0 && k.err <= tol);
  }
}

void run_case(const FaCase& c) {
  const FoveaCudaApi* api = fa_need_cuda();
  const int B = int(c.sq.size()), D = c.d;
  std::vector<int32_t> cq(B + 1, 0), ck(B + 1, 0);
  int msq = 0, msk = 0;
  for (int b = 0; b < B; ++b) {
    cq[b + 1] = cq[b] + c.sq[b];
    ck[b + 1] = ck[b] + c.sk[b];
    msq = std::max(msq, c.sq[b]);
    msk = std::max(msk, c.sk[b]);
  }
  const int64_t tq = cq[B], tk = ck[B];
  const int64_t qrs = int64_t(c.hq) * D + c.q_pad;  // q, out and dout rows (possibly padded)
  std::normal_distribution<double> nd(0.0, 1.0);
  auto rnd = [&](int64_t n) {
    std::vector<uint16_t> x(size_t(std::max<int64_t>(n, 1)));
    for (auto& e : x) e = to_bits(c.dt, nd(fa_rng()));
    return x;
  };
  std::vector<uint16_t> hq_ = rnd(tq * qrs), hk = rnd(tk * c.hkv * D), hv = rnd(tk * c.hkv * D),
                        hdo = rnd(tq * qrs);
  // Dense f64 copies of the values the GPU sees.
  auto dense = [&](const std::vector<uint16_t>& x, int64_t rows, int heads, int64_t rs) {
    std::vector<double> r(size_t(rows) * heads * D);
    for (int64_t i = 0; i < rows; ++i)
      for (int h = 0; h < heads; ++h)
        for (int e = 0; e < D; ++e) r[(size_t(i) * heads + h) * D + e] = to_f(c.dt, x[i * rs + h * D + e]);
    return r;
  };
  const auto Q = dense(hq_, tq, c.hq, qrs), K = dense(hk, tk, c.hkv, int64_t(c.hkv) * D),
             V = dense(hv, tk, c.hkv, int64_t(c.hkv) * D), DO = dense(hdo, tq, c.hq, qrs);
  const float scale = 1.f / std::sqrt(float(D));

  // Truth: the f64 reference on dense f64 copies.
  std::vector<double> ro(Q.size()), rdq(Q.size()), rdk(K.size()), rdv(K.size());
  std::vector<float> rl(size_t(tq) * c.hq);
  FlashAttnParams r;
  r.q = Q.data(); r.k = K.data(); r.v = V.data(); r.out = ro.data(); r.lse = rl.data();
  r.dtype = DType::F64; r.cu_seqlens_q = cq.data(); r.cu_seqlens_k = ck.data(); r.batch = B;
  r.total_q = tq; r.total_k = tk; r.hq = c.hq; r.hkv = c.hkv; r.d = D;
  r.max_seqlen_q = msq; r.max_seqlen_k = msk;
  r.q_row_stride = r.o_row_stride = int64_t(c.hq) * D; r.q_head_stride = r.o_head_stride = D;
  r.k_row_stride = r.v_row_stride = int64_t(c.hkv) * D; r.k_head_stride = r.v_head_stride = D;
  r.causal = c.causal; r.window_left = c.wl; r.window_right = c.wr; r.scale = scale;
  r.dout = DO.data(); r.dq = rdq.data(); r.dk = rdk.data(); r.dv = rdv.data();
  flash_attn_fwd_reference(r);
  flash_attn_bwd_reference(r);
  const Grads nv = naive_rounded(c, cq, ck, Q, K, V, DO, scale);

  // GPU.
  const size_t es = 2;
  DBuf dq_in(api, hq_.size() * es), dk_in(api, hk.size() * es), dv_in(api, hv.size() * es),
      ddo(api, hdo.size() * es), dout(api, hq_.size() * es), dlse(api, rl.size() * 4),
      dcq(api, cq.size() * 4), dck(api, ck.size() * 4), gq(api, Q.size() * es),
      gk(api, K.size() * es), gv(api, K.size() * es);
  dq_in.up(hq_.data(), hq_.size() * es);
  dk_in.up(hk.data(), hk.size() * es);
  dv_in.up(hv.data(), hv.size() * es);
  ddo.up(hdo.data(), hdo.size() * es);
  dcq.up(cq.data(), cq.size() * 4);
  dck.up(ck.data(), ck.size() * 4);
  dout.poison();
  dlse.poison();
  FlashAttnParams p = r;
  p.dtype = c.dt; p.device = 0;
  p.q = dq_in.p; p.k = dk_in.p; p.v = dv_in.p; p.out = dout.p; p.lse = static_cast<float*>(dlse.p);
  p.cu_seqlens_q = static_cast<const int32_t*>(dcq.p);
  p.cu_seqlens_k = static_cast<const int32_t*>(dck.p);
  p.q_row_stride = p.o_row_stride = qrs;
  p.dout = ddo.p; p.dq = gq.p; p.dk = gk.p; p.dv = gv.p;
  if (api->flash_attn_fwd(&p)) throw Error(std::string("flash_attn_fwd: ") + api->last_error());

  const auto out_bits = dout.down<uint16_t>(hq_.size());
  const auto lse = dlse.down<float>(rl.size());
  expect_within("out", dense(out_bits, tq, c.hq, qrs), nv.out, ro);
  int64_t lse_bad = 0;
  for (size_t i = 0; i < rl.size(); ++i) {
    const bool ok = std::isinf(rl[i]) ? (std::isinf(lse[i]) && lse[i] > 0)
                                      : std::fabs(double(lse[i]) - rl[i]) <= 1e-3 * (1 + std::fabs(rl[i]));
    lse_bad += !ok;
  }
  if (lse_bad) std::printf("    lse: %ld rows off (seed %u)\n", long(lse_bad), fa_seed());
  EXPECT_TRUE(lse_bad == 0);

  std::vector<uint16_t> first_dq, first_dk, first_dv;
  for (int pass = 0; pass < 3; ++pass) {  // deterministic twice, then atomic dQ
    p.deterministic = pass < 2;
    gq.poison(); gk.poison(); gv.poison();
    if (api->flash_attn_bwd(&p)) throw Error(std::string("flash_attn_bwd: ") + api->last_error());
    const auto bq = gq.down<uint16_t>(Q.size()), bk = gk.down<uint16_t>(K.size()),
               bv = gv.down<uint16_t>(K.size());
    const std::string tag = pass < 2 ? " (deterministic)" : " (atomic dQ)";
    expect_within("dq" + tag, dense(bq, tq, c.hq, int64_t(c.hq) * D), nv.dq, rdq);
    expect_within("dk" + tag, dense(bk, tk, c.hkv, int64_t(c.hkv) * D), nv.dk, rdk);
    expect_within("dv" + tag, dense(bv, tk, c.hkv, int64_t(c.hkv) * D), nv.dv, rdv);
    if (pass == 0) { first_dq = bq; first_dk = bk; first_dv = bv; }
    if (pass == 1) {
      EXPECT_TRUE(bq == first_dq);  // deterministic: bitwise repeatable
      EXPECT_TRUE(bk == first_dk);
      EXPECT_TRUE(bv == first_dv);
    }
  }
}

}  // namespace

FOVEA_TEST(flash_attn_cuda_varlen_noncausal_d64) {
  run_case({DType::BF16, 64, 2, 1, {0, 1, 17, 128}, {0, 1, 17, 128}, false, -1, -1});
}
FOVEA_TEST(flash_attn_cuda_causal_long_gqa_d128) {
  run_case({DType::BF16, 128, 8, 2, {1000, 17}, {1000, 17}, true, -1, -1});
}
FOVEA_TEST(flash_attn_cuda_prefix_window_f16_d80) {
  // totalK > totalQ (a query block after a cached prefix), window (63, 64), 7 heads on 1 KV head.
  run_case({DType::F16, 80, 7, 1, {17, 128, 1, 0}, {64, 200, 0, 5}, true, 63, 64});
}
FOVEA_TEST(flash_attn_cuda_local_window_d96) {
  run_case({DType::BF16, 96, 7, 7, {130, 0, 2}, {130, 9, 2}, false, 4, 0});
}
FOVEA_TEST(flash_attn_cuda_diagonal_window_f16_d64) {
  run_case({DType::F16, 64, 8, 1, {65, 3}, {65, 3}, false, 0, 0});
}
FOVEA_TEST(flash_attn_cuda_rows_without_keys_d80) {
  // Causal with sq > sk: the first sq - sk rows see nothing (out 0, lse +inf, zero grads).
  run_case({DType::BF16, 80, 2, 2, {50, 3}, {20, 0}, true, -1, -1});
}
FOVEA_TEST(flash_attn_cuda_unaligned_strided_d128) {
  // q/out/dout rows padded by one element: no 16-byte row alignment, scalar tile loads.
  FaCase c{DType::F16, 128, 2, 1, {70, 33}, {70, 90}, true, -1, -1};
  c.q_pad = 1;
  run_case(c);
}

FOVEA_TEST(flash_attn_cuda_rejects_unsupported) {
  const FoveaCudaApi* api = fa_need_cuda();
  DBuf buf(api, 1 << 16), cu(api, 8);
  std::vector<int32_t> zeros = {0, 4};
  cu.up(zeros.data(), 8);
  FlashAttnParams p;
  p.q = p.k = p.v = buf.p; p.out = buf.p; p.lse = static_cast<float*>(buf.p);
  p.cu_seqlens_q = p.cu_seqlens_k = static_cast<const int32_t*>(cu.p);
  p.batch = 1; p.total_q = p.total_k = 4; p.hq = p.hkv = 1; p.max_seqlen_q = p.max_seqlen_k = 4;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = 64; p.device = 0;
  p.dtype = DType::F32; p.d = 64;
  EXPECT_TRUE(api->flash_attn_fwd(&p) != 0 && std::strstr(api->last_error(), "bf16"));
  p.dtype = DType::BF16; p.d = 72;
  EXPECT_TRUE(api->flash_attn_fwd(&p) != 0 && std::strstr(api->last_error(), "head dim"));
  p.d = 64; p.hq = 3; p.hkv = 2;
  EXPECT_TRUE(api->flash_attn_fwd(&p) != 0 && std::strstr(api->last_error(), "multiple"));
}

// Timing (prints; asserts nothing beyond success): the benchmark shape on the GPU.
FOVEA_TEST(flash_attn_cuda_timing) {
  const FoveaCudaApi* api = fa_need_cuda();
  for (int S : {2048, 8192}) {
    for (bool causal : {false, true}) {
      const int hq = 16, hkv = 2, D = 128;
      DBuf q(api, size_t(S) * hq * D * 2), k(api, size_t(S) * hkv * D * 2),
          v(api, size_t(S) * hkv * D * 2), o(api, size_t(S) * hq * D * 2), lse(api, size_t(S) * hq * 4),
          go(api, size_t(S) * hq * D * 2), dq(api, size_t(S) * hq * D * 2),
          dk(api, size_t(S) * hkv * D * 2), dv(api, size_t(S) * hkv * D * 2), cu(api, 8);
      std::vector<uint16_t> ones(size_t(S) * hq * D, f32_to_bf16(0.01f));
      q.up(ones.data(), q.n); k.up(ones.data(), k.n); v.up(ones.data(), v.n); go.up(ones.data(), go.n);
      std::vector<int32_t> c = {0, S};
      cu.up(c.data(), 8);
      FlashAttnParams p;
      p.q = q.p; p.k = k.p; p.v = v.p; p.out = o.p; p.lse = static_cast<float*>(lse.p);
      p.dtype = DType::BF16; p.cu_seqlens_q = p.cu_seqlens_k = static_cast<const int32_t*>(cu.p);
      p.batch = 1; p.total_q = p.total_k = S; p.hq = hq; p.hkv = hkv; p.d = D;
      p.max_seqlen_q = p.max_seqlen_k = S;
      p.q_row_stride = p.o_row_stride = hq * D; p.q_head_stride = p.o_head_stride = D;
      p.k_row_stride = p.v_row_stride = hkv * D; p.k_head_stride = p.v_head_stride = D;
      p.causal = causal; p.scale = 1.f / std::sqrt(float(D)); p.device = 0;
      p.dout = go.p; p.dq = dq.p; p.dk = dk.p; p.dv = dv.p;
      auto time_ms = [&](auto&& f) {
        f();
        if (api->synchronize(0)) throw Error(api->last_error());
        const int iters = 5;
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < iters; ++i) f();
        if (api->synchronize(0)) throw Error(api->last_error());
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
      };
      const double fwd = time_ms([&] { EXPECT_TRUE(api->flash_attn_fwd(&p) == 0); });
      const double bwd = time_ms([&] { EXPECT_TRUE(api->flash_attn_bwd(&p) == 0); });
      const double flops = 4.0 * S * S * hq * D * (causal ? 0.5 : 1.0);
      std::printf("    S=%d causal=%d: fwd %.3f ms (%.1f TFLOP/s), bwd %.3f ms (%.1f TFLOP/s)\n", S,
                  int(causal), fwd, flops / fwd * 1e-9, bwd, 2.5 * flops / bwd * 1e-9);
    }
  }
}
