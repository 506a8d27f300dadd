// CPU paths of the paged KV cache (paged_attn.h): the slot-mapping scatter, the block copy of
// copy-on-write, and the fast paged attention.
//
// Attention, work item = (segment b, KV head g, query tile of up to kTileQ / group query
// positions): the item's rows are every (query position, query head of g's group) pair, so
// one packed key/value tile serves all heads of the group (GQA reuse; decode has `group`
// rows per item). For each 64-token tile of the sequence's cache that a row can see: gather
// Kᵀ [d][64] and V [64][dp] through the block table (converting bf16/f16 to f32), S = Qs·Kᵀ
// with flash attention's register-blocked tile primitive, mask only tiles past the first
// row's diagonal, online softmax (m, l, the vectorized exp of the softmax row kernels),
// O = α·O + P·V. out = O / l. Results do not depend on the thread count (each output row is
// computed by one item in a fixed order).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/flash_attn/flash_attn_tiles.h"
#include "ops/paged_attn/paged_attn.h"
#include "ops/softmax/softmax.h"

namespace fovea {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct Scratch {  // 64-byte aligned, zero-filled float scratch
  float* p = nullptr;
  explicit Scratch(size_t n) {
    const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    p = static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64));
    if (!p) fail("pagedAttention: out of memory for scratch (", n, " floats)");
    std::fill(p, p + n, 0.f);
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

struct Item { int b, g; int64_t i0; };

// Gathers cached tokens [kt, kt + nk) of KV head g: Kt [d][kTileK] and V [kTileK][dp], f32;
// columns/rows >= nk are zero.
template <class TC>
void gather_tile(const PagedAttnParams& p, const int32_t* table, int g, int64_t kt, int nk,
                 float* Kt, float* V, int dp) {
  const int d = p.d, bs = p.block_size;
  const TC* kc = static_cast<const TC*>(p.k_cache);
  const TC* vc = static_cast<const TC*>(p.v_cache);
  for (int t = 0; t < nk; ++t) {
    const int64_t j = kt + t;
    const int64_t off = ((int64_t(table[j / bs]) * bs + j % bs) * p.hkv + g) * d;
    const TC *ks = kc + off, *vs = vc + off;
    float* vd = V + int64_t(t) * dp;
    for (int c = 0; c < d; ++c) {
      Kt[int64_t(c) * kTileK + t] = float(load(ks + c));
      vd[c] = float(load(vs + c));
    }
  }
  if (nk < kTileK) {
    for (int c = 0; c < d; ++c) std::fill(Kt + int64_t(c) * kTileK + nk, Kt + int64_t(c + 1) * kTileK, 0.f);
    std::fill(V + int64_t(nk) * dp, V + int64_t(kTileK) * dp, 0.f);
  }
}

template <class TQ, class TC>
void item_fwd(const PagedAttnParams& p, const FlashTileKernels& tk, const SoftmaxRowKernels& rk,
              const Item& it, int qt, float* buf) {
  const int d = p.d, dp = (d + 15) / 16 * 16, group = p.hq / p.hkv;
  const int64_t q0 = p.cu_seqlens_q[it.b], qlen = p.cu_seqlens_q[it.b + 1] - q0;
  const int64_t ctx = p.context_lens[it.b], diag0 = ctx - qlen;  // query i sees j <= diag0 + i
  const int np = int(std::min<int64_t>(qt, qlen - it.i0)), rows = np * group;
  const int32_t* table = p.block_tables + int64_t(it.b) * p.max_blocks_per_seq;
  float *Qs = buf, *O = Qs + kTileQ * dp, *S = O + kTileQ * dp, *Kt = S + kTileQ * kTileK,
        *V = Kt + int64_t(d) * kTileK, *m = V + kTileK * dp, *l = m + kTileQ, *alpha = l + kTileQ;
  // Row r = (position i0 + r / group, head g·group + r % group).
  for (int r = 0; r < rows; ++r) {
    const TQ* src = static_cast<const TQ*>(p.q) + (q0 + it.i0 + r / group) * p.q_row_stride +
                    int64_t(it.g * group + r % group) * p.q_head_stride;
    float* dst = Qs + int64_t(r) * dp;
    for (int c = 0; c < d; ++c) dst[c] = float(load(src + c)) * p.scale;
    std::fill(dst + d, dst + dp, 0.f);
  }
  std::fill(O, O + int64_t(rows) * dp, 0.f);
  std::fill(m, m + rows, -kInf);
  std::fill(l, l + rows, 0.f);
  const int64_t hi_first = diag0 + it.i0, hi_last = diag0 + it.i0 + np - 1;
  for (int64_t kt = 0; kt <= hi_last; kt += kTileK) {
    const int nk = int(std::min<int64_t>(kTileK, hi_last + 1 - kt));
    gather_tile<TC>(p, table, it.g, kt, nk, Kt, V, dp);
    tk.qk(Qs, dp, rows, Kt, d, S);
    if (kt + nk - 1 > hi_first) {  // some row stops inside this tile
      for (int r = 0; r < rows; ++r) {
        const int64_t vis = diag0 + it.i0 + r / group - kt + 1;  // visible columns of row r
        float* row = S + int64_t(r) * kTileK;
        for (int64_t j = std::max<int64_t>(vis, 0); j < nk; ++j) row[j] = -kInf;
      }
    }
    for (int r = 0; r < rows; ++r) {
      float* row = S + int64_t(r) * kTileK;
      const float mx = std::max(m[r], rk.max(row, nk));
      if (mx == -kInf) { std::fill(row, row + nk, 0.f); alpha[r] = 1.f; continue; }
      alpha[r] = std::exp(m[r] - mx);
      l[r] = l[r] * alpha[r] + rk.exp_store_sum(row, row, nk, mx, nullptr);
      m[r] = mx;
    }
    tk.acc(O, dp, rows, alpha, S, kTileK, 1, nk, V, dp, dp);
  }
  for (int r = 0; r < rows; ++r) {
    TQ* o = static_cast<TQ*>(p.out) + (q0 + it.i0 + r / group) * p.o_row_stride +
            int64_t(it.g * group + r % group) * p.o_head_stride;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    for (int c = 0; c < d; ++c) store(o + c, O[int64_t(r) * dp + c] * inv);
  }
}

template <class TQ, class TC>
void attn(const PagedAttnParams& p) {
  const FlashTileKernels& tk = flash_tile_kernels(isa());
  const SoftmaxRowKernels& rk = softmax_row_kernels(isa());
  const int group = p.hq / p.hkv, dp = (p.d + 15) / 16 * 16;
  const int qt = std::max(1, kTileQ / group);  // query positions per item: rows <= kTileQ
  if (group > kTileQ) fail("pagedAttention: at most ", kTileQ, " query heads per KV head, got ", group);
  std::vector<Item> work;
  for (int b = 0; b < p.batch; ++b) {
    const int64_t qlen = p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b];
    for (int g = 0; g < p.hkv; ++g)
      for (int64_t i = 0; i < qlen; i += qt) work.push_back({b, g, i});
  }
  const size_t scratch = size_t(kTileQ) * dp * 2 + size_t(kTileQ) * kTileK + size_t(p.d) * kTileK +
                         size_t(kTileK) * dp + 3 * kTileQ;
  parallel_for(0, int64_t(work.size()), 1, [&](int64_t a, int64_t e) {
    Scratch buf(scratch);
    for (int64_t w = a; w < e; ++w) item_fwd<TQ, TC>(p, tk, rk, work[size_t(w)], qt, buf.p);
  });
}

template <class F>
void dispatch_16_32(DType t, F&& f) {  // the storage dtypes of the cache and q
  switch (t) {
    case DType::F32: f(float{}); break;
    case DType::BF16: f(bf16{}); break;
    case DType::F16: f(f16{}); break;
    default: fail("paged attention: unsupported dtype ", dtype_name(t), " (f32, bf16 or f16)");
  }
}

}  // namespace

void paged_attn_cpu(const PagedAttnParams& p) {
  dispatch_16_32(p.q_dtype, [&](auto tq) {
    dispatch_16_32(p.cache_dtype, [&](auto tc) { attn<decltype(tq), decltype(tc)>(p); });
  });
}

// Token t's heads go to slot slots[t]; rows and heads of k/v may be strided, the cache is
// contiguous. Distinct slots are written by distinct threads (duplicate slots in one call
// are the caller's bug: which write wins is unspecified).
void paged_write_cpu(const PagedWriteParams& p) {
  const size_t es = dtype_size(p.dtype), row = size_t(p.d) * es;
  parallel_for(0, p.num_tokens, 64, [&](int64_t a, int64_t e) {
    for (int64_t t = a; t < e; ++t) {
      const int64_t slot = p.slots[t];
      for (int h = 0; h < p.hkv; ++h) {
        const int64_t dst = (slot * p.hkv + h) * p.d;
        std::memcpy(static_cast<char*>(p.k_cache) + dst * es,
                    static_cast<const char*>(p.k) + (t * p.k_row_stride + h * p.k_head_stride) * es, row);
        std::memcpy(static_cast<char*>(p.v_cache) + dst * es,
                    static_cast<const char*>(p.v) + (t * p.v_row_stride + h * p.v_head_stride) * es, row);
      }
    }
  });
}

void paged_copy_blocks_cpu(const PagedCopyParams& p) {
  const size_t bytes = size_t(p.block_elems) * dtype_size(p.dtype);
  for (int i = 0; i < p.n; ++i)
    for (void* pool : {p.k_cache, p.v_cache})
      std::memcpy(static_cast<char*>(pool) + size_t(p.dst[i]) * bytes,
                  static_cast<const char*>(pool) + size_t(p.src[i]) * bytes, bytes);
}

}  // namespace fovea
