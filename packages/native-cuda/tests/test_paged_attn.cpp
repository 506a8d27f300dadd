// Paged KV cache kernels: the CPU fast paged attention against the f64 reference on random
// caches with shuffled block tables (decode, prefill chunks after a prefix, GQA, head dims
// 64/80/128, a block size that is not 16, f32/bf16/f16 storage, every ISA cap); the slot
// scatter and the copy-on-write block copy; and the CUDA kernels against the CPU reference
// (skipped without a GPU). Tolerance rule (STYLE.md habit 4): the fast path's error is at most
// about twice that of a naive f32 attention (full score row, plain softmax) over the same data.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>
#include "core/cpu_features.h"
#include "core/cuda_api.h"
#include "core/dtype.h"
#include "core/error.h"
#include "harness.h"
#include "ops/paged_attn/paged_attn.h"

using namespace fovea;

namespace {

std::mt19937& pa_rng() { static std::mt19937 r(4242); return r; }

struct Case {
  std::vector<int> ctx, qlen;  // per segment: cached tokens, queries (the last qlen of ctx)
  int hq, hkv, d, bs;
};

// A cache of num_blocks blocks (f32 values; rounded to the storage dtype when it is 16-bit),
// each segment's table a random permutation slice, q [total_q, hq, d].
struct Problem {
  Case c;
  int64_t num_blocks = 0, total_q = 0;
  int maxb = 0;
  std::vector<int32_t> table, ctx, cuq;
  std::vector<float> kc, vc, q;
  PagedAttnParams params() const {
    PagedAttnParams p;
    p.block_tables = table.data(); p.context_lens = ctx.data(); p.cu_seqlens_q = cuq.data();
    p.batch = int(c.ctx.size()); p.max_blocks_per_seq = maxb;
    p.total_q = total_q; p.num_blocks = num_blocks;
    p.hq = c.hq; p.hkv = c.hkv; p.d = c.d; p.block_size = c.bs;
    p.q_row_stride = int64_t(c.hq) * c.d; p.q_head_stride = c.d;
    p.o_row_stride = p.q_row_stride; p.o_head_stride = c.d;
    p.scale = float(1.0 / std::sqrt(double(c.d)));
    for (size_t b = 0; b < c.ctx.size(); ++b) {
      p.max_context_len = std::max(p.max_context_len, c.ctx[b]);
      p.max_qlen = std::max(p.max_qlen, c.qlen[b]);
    }
    return p;
  }
};

Problem make(const Case& c, DType storage) {
  Problem pr;
  pr.c = c;
  int64_t need = 0;
  for (int n : c.ctx) { need += (n + c.bs - 1) / c.bs; pr.maxb = std::max(pr.maxb, (n + c.bs - 1) / c.bs); }
  pr.maxb = std::max(pr.maxb, 1);
  pr.num_blocks = need + 3;  // a few unused blocks
  std::vector<int32_t> perm(size_t(pr.num_blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), pa_rng());
  pr.table.assign(c.ctx.size() * size_t(pr.maxb), 0);
  size_t next = 0;
  pr.cuq = {0};
  for (size_t b = 0; b < c.ctx.size(); ++b) {
    for (int i = 0; i < (c.ctx[b] + c.bs - 1) / c.bs; ++i) pr.table[b * pr.maxb + i] = perm[next++];
    pr.ctx.push_back(c.ctx[b]);
    pr.cuq.push_back(pr.cuq.back() + c.qlen[b]);
  }
  pr.total_q = pr.cuq.back();
  std::normal_distribution<float> nd(0.f, 1.f);
  auto fill = [&](std::vector<float>& x, int64_t n, float s, bool round) {
    x.resize(size_t(n));
    for (float& e : x) {
      e = nd(pa_rng()) * s;
      if (round && storage == DType::BF16) e = bf16_to_f32(f32_to_bf16(e));
      if (round && storage == DType::F16) e = f16_to_f32(f32_to_f16(e));
    }
  };
  const int64_t cache = pr.num_blocks * c.bs * c.hkv * c.d;
  fill(pr.kc, cache, 1.5f, true);
  fill(pr.vc, cache, 1.f, true);
  fill(pr.q, pr.total_q * c.hq * c.d, 1.5f, false);
  return pr;
}

template <class T>
std::vector<T> cast(const std::vector<float>& x) {
  std::vector<T> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) store(&y[i], x[i]);
  return y;
}

// Runs one path with q/out f32 and the cache stored as TC; returns out.
template <class TC>
std::vector<double> run(const Problem& pr, DType storage, bool fast) {
  std::vector<TC> kc = cast<TC>(pr.kc), vc = cast<TC>(pr.vc);
  std::vector<float> out(pr.q.size(), -7.f);
  PagedAttnParams p = pr.params();
  p.q = pr.q.data(); p.out = out.data(); p.q_dtype = DType::F32;
  p.k_cache = kc.data(); p.v_cache = vc.data(); p.cache_dtype = storage;
  (fast ? paged_attn_cpu : paged_attn_reference)(p);
  return std::vector<double>(out.begin(), out.end());
}

// Naive f32 attention over the same (already rounded) values: the same-precision baseline.
std::vector<double> naive_f32(const Problem& pr) {
  const Case& c = pr.c;
  const int group = c.hq / c.hkv;
  const float scale = float(1.0 / std::sqrt(double(c.d)));
  std::vector<double> out(pr.q.size(), 0.0);
  for (size_t b = 0; b < c.ctx.size(); ++b)
    for (int i = 0; i < c.qlen[b]; ++i)
      for (int h = 0; h < c.hq; ++h) {
        const int last = c.ctx[b] - c.qlen[b] + i;
        const float* q = pr.q.data() + ((pr.cuq[b] + i) * int64_t(c.hq) + h) * c.d;
        auto at = [&](int j) {
          return ((int64_t(pr.table[b * pr.maxb + j / c.bs]) * c.bs + j % c.bs) * c.hkv + h / group) * c.d;
        };
        std::vector<float> s(size_t(last + 1));
        float m = -INFINITY, l = 0;
        for (int j = 0; j <= last; ++j) {
          float dot = 0;
          for (int e = 0; e < c.d; ++e) dot += q[e] * pr.kc[size_t(at(j) + e)];
          m = std::max(m, s[size_t(j)] = dot * scale);
        }
        for (float& x : s) l += (x = std::exp(x - m));
        for (int e = 0; e < c.d; ++e) {
          float acc = 0;
          for (int j = 0; j <= last; ++j) acc += s[size_t(j)] * pr.vc[size_t(at(j) + e)];
          out[size_t(((pr.cuq[b] + i) * int64_t(c.hq) + h) * c.d + e)] = acc / l;
        }
      }
  return out;
}

double max_err(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> cs = {
      {{1, 17, 16, 1200, 33}, {1, 1, 1, 1, 1}, 14, 2, 64, 16},   // decode, GQA 7
      {{40, 1100, 5}, {40, 30, 5}, 4, 2, 80, 16},                 // prefill, chunk after prefix
      {{300, 77}, {64, 77}, 4, 4, 128, 16},                       // MHA, D 128
      {{130, 9}, {1, 9}, 14, 2, 128, 8},                          // block size 8
      {{70, 0 + 3}, {0, 3}, 2, 1, 64, 32},                        // an empty query segment
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

template <class TC>
void check_storage(DType storage) {
  for (const Case& c : cases()) {
    const Problem pr = make(c, storage);
    const std::vector<double> ref = run<TC>(pr, storage, false);
    const double naive = max_err(naive_f32(pr), ref);
    for_each_isa([&] {
      const double err = max_err(run<TC>(pr, storage, true), ref);
      EXPECT_TRUE(err <= 2 * naive + 1e-6);
      if (err > 2 * naive + 1e-6)
        std::printf("    %s hq=%d hkv=%d d=%d: err %g, naive f32 %g (isa %s)\n", dtype_name(storage),
                    c.hq, c.hkv, c.d, err, naive, isa_name(isa()));
    });
  }
}

}  // namespace

FOVEA_TEST(paged_attn_cpu_f32_matches_reference) { check_storage<float>(DType::F32); }
FOVEA_TEST(paged_attn_cpu_bf16_matches_reference) { check_storage<bf16>(DType::BF16); }
FOVEA_TEST(paged_attn_cpu_f16_matches_reference) { check_storage<f16>(DType::F16); }

// bf16 q and out: the fast path rounds once on store, like the reference.
FOVEA_TEST(paged_attn_cpu_bf16_queries) {
  const Problem pr = make(cases()[0], DType::BF16);
  std::vector<bf16> kc = cast<bf16>(pr.kc), vc = cast<bf16>(pr.vc), q = cast<bf16>(pr.q);
  std::vector<bf16> a(q.size()), b(q.size());
  PagedAttnParams p = pr.params();
  p.q = q.data(); p.q_dtype = DType::BF16; p.k_cache = kc.data(); p.v_cache = vc.data();
  p.cache_dtype = DType::BF16;
  p.out = a.data(); paged_attn_reference(p);
  p.out = b.data(); paged_attn_cpu(p);
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = bf16_to_f32(a[i].bits), y = bf16_to_f32(b[i].bits);
    m = std::max(m, std::fabs(x - y) / (1 + std::fabs(x)));
  }
  EXPECT_TRUE(m <= 1.6e-2);  // at most ~2 bf16 ulps apart
}

FOVEA_TEST(paged_write_and_copy_blocks) {
  const int nb = 5, bs = 4, hkv = 2, d = 3;
  std::vector<float> kc(size_t(nb) * bs * hkv * d, 0.f), vc(kc.size(), 0.f);
  // k [T=3, hkv, d] with a row stride of 8 (padded rows) to exercise strides.
  std::vector<float> k(3 * 8), v(3 * 8);
  for (size_t i = 0; i < k.size(); ++i) { k[i] = float(i + 1); v[i] = -float(i + 1); }
  std::vector<int32_t> slots = {5, 19, 0};
  PagedWriteParams w;
  w.k = k.data(); w.v = v.data(); w.k_row_stride = 8; w.k_head_stride = d;
  w.v_row_stride = 8; w.v_head_stride = d; w.k_cache = kc.data(); w.v_cache = vc.data();
  w.slots = slots.data(); w.num_tokens = 3; w.hkv = hkv; w.d = d;
  paged_write_cpu(w);
  for (int t = 0; t < 3; ++t)
    for (int h = 0; h < hkv; ++h)
      for (int c = 0; c < d; ++c) {
        EXPECT_NEAR(kc[size_t((slots[t] * hkv + h) * d + c)], k[size_t(t * 8 + h * d + c)], 0);
        EXPECT_NEAR(vc[size_t((slots[t] * hkv + h) * d + c)], v[size_t(t * 8 + h * d + c)], 0);
      }
  EXPECT_NEAR(kc[size_t((1 * hkv) * d)], 0, 0);  // slot 1 untouched
  std::vector<int32_t> src = {1, 4}, dst = {3, 2};
  PagedCopyParams cp;
  cp.k_cache = kc.data(); cp.v_cache = vc.data(); cp.src = src.data(); cp.dst = dst.data();
  cp.n = 2; cp.block_elems = int64_t(bs) * hkv * d;
  std::vector<float> k0 = kc, v0 = vc;
  paged_copy_blocks_cpu(cp);
  const int64_t be = cp.block_elems;
  for (int i = 0; i < 2; ++i)
    for (int64_t e = 0; e < be; ++e) {
      EXPECT_NEAR(kc[size_t(dst[i] * be + e)], k0[size_t(src[i] * be + e)], 0);
      EXPECT_NEAR(vc[size_t(dst[i] * be + e)], v0[size_t(src[i] * be + e)], 0);
    }
  EXPECT_NEAR(kc[0], k0[0], 0);  // block 0 untouched
}

// ---------------------------------------------------------------- CUDA (skipped without a GPU)
namespace {

const FoveaCudaApi* pa_need_cuda() {
  const char* why = cuda_unavailable_reason();
  if (*why) FOVEA_SKIP(why);
  return cuda_api();
}

struct PaBuf {  // device buffer through the sidecar's allocator
  const FoveaCudaApi* api;
  void* p = nullptr;
  PaBuf(const FoveaCudaApi* a, const void* src, size_t bytes) : api(a) {
    p = api->malloc(0, std::max<size_t>(bytes, 4));
    if (!p) throw Error(std::string("cuda malloc: ") + api->last_error());
    if (src && bytes && api->memcpy_h2d(0, p, src, bytes)) throw Error(api->last_error());
  }
  ~PaBuf() { api->free(0, p); }
  PaBuf(const PaBuf&) = delete;
  PaBuf& operator=(const PaBuf&) = delete;
  template <class T> std::vector<T> down(size_t n) const {
    std::vector<T> out(n);
    if (n && api->memcpy_d2h(0, out.data(), p, n * sizeof(T))) throw Error(api->last_error());
    return out;
  }
};

// GPU attention (f32 q/out, cache stored as TC) against the f64 CPU reference; the context
// lengths include several 512-token partitions, so the log-sum-exp merge is exercised.
template <class TC>
void cuda_case(const FoveaCudaApi* api, const Case& c, DType storage, double tol) {
  const Problem pr = make(c, storage);
  const std::vector<double> ref = run<TC>(pr, storage, false);
  std::vector<TC> kc = cast<TC>(pr.kc), vc = cast<TC>(pr.vc);
  PaBuf dk(api, kc.data(), kc.size() * sizeof(TC)), dv(api, vc.data(), vc.size() * sizeof(TC));
  PaBuf dq(api, pr.q.data(), pr.q.size() * 4), dout(api, nullptr, pr.q.size() * 4);
  PaBuf dt(api, pr.table.data(), pr.table.size() * 4), dc(api, pr.ctx.data(), pr.ctx.size() * 4),
      dcu(api, pr.cuq.data(), pr.cuq.size() * 4);
  PagedAttnParams p = pr.params();
  p.q = dq.p; p.out = dout.p; p.q_dtype = DType::F32;
  p.k_cache = dk.p; p.v_cache = dv.p; p.cache_dtype = storage;
  p.block_tables = static_cast<const int32_t*>(dt.p);
  p.context_lens = static_cast<const int32_t*>(dc.p);
  p.cu_seqlens_q = static_cast<const int32_t*>(dcu.p);
  p.device = 0;
  if (api->paged_attention(&p)) throw Error(api->last_error());
  const std::vector<float> got = dout.down<float>(pr.q.size());
  const double err = max_err(std::vector<double>(got.begin(), got.end()), ref);
  EXPECT_TRUE(err <= tol);
  if (!(err <= tol)) std::printf("    cuda %s hq=%d d=%d: err %g > %g\n", dtype_name(storage), c.hq, c.d, err, tol);
}

}  // namespace

FOVEA_TEST(paged_attn_cuda_matches_reference) {
  const FoveaCudaApi* api = pa_need_cuda();
  for (const Case& c : cases()) {
    cuda_case<float>(api, c, DType::F32, 2e-5);
    cuda_case<bf16>(api, c, DType::BF16, 2e-5);  // values already bf16-exact; f32 math
  }
  cuda_case<f16>(api, {{2000, 1537}, {1, 40}, 14, 2, 64, 16}, DType::F16, 2e-5);  // 4 partitions
}

FOVEA_TEST(paged_write_and_copy_cuda) {
  const FoveaCudaApi* api = pa_need_cuda();
  const int nb = 6, bs = 4, hkv = 2, d = 5;
  const size_t pool = size_t(nb) * bs * hkv * d;
  std::vector<uint16_t> zero(pool, 0), k(3 * hkv * d), v(k.size());
  for (size_t i = 0; i < k.size(); ++i) { k[i] = uint16_t(i + 1); v[i] = uint16_t(1000 + i); }
  std::vector<int32_t> slots = {7, 0, 23}, src = {1, 5}, dst = {2, 4};
  PaBuf kc(api, zero.data(), pool * 2), vc(api, zero.data(), pool * 2), dkb(api, k.data(), k.size() * 2),
      dvb(api, v.data(), v.size() * 2), ds(api, slots.data(), 12), dsrc(api, src.data(), 8), ddst(api, dst.data(), 8);
  PagedWriteParams w;
  w.k = dkb.p; w.v = dvb.p; w.k_row_stride = hkv * d; w.k_head_stride = d;
  w.v_row_stride = hkv * d; w.v_head_stride = d; w.k_cache = kc.p; w.v_cache = vc.p;
  w.dtype = DType::BF16; w.slots = static_cast<const int32_t*>(ds.p); w.num_tokens = 3; w.hkv = hkv; w.d = d; w.device = 0;
  if (api->paged_write(&w)) throw Error(api->last_error());
  PagedCopyParams cp;
  cp.k_cache = kc.p; cp.v_cache = vc.p; cp.dtype = DType::BF16; cp.src = static_cast<const int32_t*>(dsrc.p);
  cp.dst = static_cast<const int32_t*>(ddst.p); cp.n = 2; cp.block_elems = int64_t(bs) * hkv * d; cp.device = 0;
  if (api->paged_copy_blocks(&cp)) throw Error(api->last_error());
  // The same on the CPU, then compare the pools bit for bit.
  std::vector<uint16_t> hk(pool, 0), hv(pool, 0);
  PagedWriteParams hw = w;
  hw.k = k.data(); hw.v = v.data(); hw.k_cache = hk.data(); hw.v_cache = hv.data(); hw.slots = slots.data(); hw.device = -1;
  paged_write_cpu(hw);
  PagedCopyParams hc = cp;
  hc.k_cache = hk.data(); hc.v_cache = hv.data(); hc.src = src.data(); hc.dst = dst.data(); hc.device = -1;
  paged_copy_blocks_cpu(hc);
  EXPECT_TRUE(kc.down<uint16_t>(pool) == hk);
  EXPECT_TRUE(vc.down<uint16_t>(pool) == hv);
}
