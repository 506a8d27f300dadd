// The CPU flash attention (flash_attn.h): tiled online softmax in f32, never an [S, S] score
// matrix. Operands are converted to f32 and packed into 64-row tiles once per call (Packed);
// scratch per thread is a few 64×64 and 64×d tiles. Extra memory is therefore O(totalQ·Hq·D +
// totalK·Hkv·D) floats (packed K/V; backward also packed scale·Q, dO and an f32 [hq, total_q]
// row-sum buffer).
//
// Forward, work item = (sequence, query head, 64-row query tile), spread over the thread pool:
//   Qs = scale·Q tile (f32); for each 64-key tile the rows can see: pack Kᵀ and V (f32),
//   S = Qs·Kᵀ, mask, m' = max(m, rowmax S), P = exp(S − m'), l = l·e^(m−m') + ΣP,
//   O = e^(m−m')·O + P·V;  finally out = O / l, lse = m + log l (l = 0: out 0, lse +inf).
// Backward (recomputes P = exp(S − lse) from the saved lse; Dsum_i = dO_i·O_i first):
//   pass 1, item = (sequence, KV head, block of 4 key tiles): for each query head of the group
//     and query tile that sees a key tile of the block: dP = dO·Vᵀ, dS = P∘(dP − Dsum), dV += Pᵀ·dO, dK += dSᵀ·Qs
//     (Qs already holds scale·Q). Each item owns its dK/dV rows: no races, no atomics.
//   pass 2, item = (sequence, query head, query tile): the same P, dS; dQ += scale·dS·K.
// Every output element is computed by one thread in a fixed order: results do not depend on
// the thread count. f64 inputs take the reference (f64 math; used by gradcheck).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/flash_attn/flash_attn.h"
#include "ops/flash_attn/flash_attn_tiles.h"
#include "ops/softmax/softmax.h"

namespace fovea {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// 64-byte aligned float scratch (zero-filled on creation).
struct Scratch {
  float* p = nullptr;
  explicit Scratch(size_t n) {
    size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    p = static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64));
    if (!p) fail("flash_attn: out of memory for scratch (", n, " floats)");
    std::fill(p, p + n, 0.f);
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

struct Seq {
  int64_t q0, sq, k0, sk;
};
inline Seq seq(const FlashAttnParams& p, int b) {
  return {p.cu_seqlens_q[b], p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b], p.cu_seqlens_k[b],
          p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b]};
}

// Visible keys [lo, hi] of query i (sequence coordinates; empty if lo > hi).
inline void key_range(const FlashAttnParams& p, const Seq& s, int64_t i, int64_t& lo, int64_t& hi) {
  const int64_t diag = i + s.sk - s.sq;
  lo = 0;
  hi = s.sk - 1;
  if (p.causal) hi = std::min(hi, diag);
  if (p.window_left >= 0) lo = std::max<int64_t>(lo, diag - p.window_left);
  if (p.window_right >= 0) hi = std::min<int64_t>(hi, diag + p.window_right);
}

// Queries [qa, qb) that see at least one key of [ka, kb).
inline void query_range(const FlashAttnParams& p, const Seq& s, int64_t ka, int64_t kb,
                        int64_t& qa, int64_t& qb) {
  const int64_t off = s.sk - s.sq;  // diag = i + off
  qa = 0;
  qb = s.sq;
  if (p.causal) qa = std::max(qa, ka - off);                                   // diag >= ka
  if (p.window_right >= 0) qa = std::max<int64_t>(qa, ka - off - p.window_right);
  if (p.window_left >= 0) qb = std::min<int64_t>(qb, kb - 1 - off + p.window_left + 1);
  qa = std::min(qa, s.sq);
  qb = std::max(qb, qa);
}

// Rows [row0, row0 + n) of head h of a [total, heads, d] tensor → dst [n][dp] f32 · mul.
template <class T>
void load_rows(const void* base, int64_t rs, int64_t hs, int64_t row0, int h, int n, int d,
               int dp, float mul, float* dst) {
  for (int r = 0; r < n; ++r) {
    const T* src = static_cast<const T*>(base) + (row0 + r) * rs + int64_t(h) * hs;
    float* o = dst + int64_t(r) * dp;
    for (int c = 0; c < d; ++c) o[c] = float(load(src + c)) * mul;
    for (int c = d; c < dp; ++c) o[c] = 0.f;
  }
}
// The same rows transposed: dst [d][kTileK], columns >= n zero.
template <class T>
void load_rows_t(const void* base, int64_t rs, int64_t hs, int64_t row0, int h, int n, int d,
                 float* dst) {
  for (int r = 0; r < n; ++r) {
    const T* src = static_cast<const T*>(base) + (row0 + r) * rs + int64_t(h) * hs;
    for (int c = 0; c < d; ++c) dst[int64_t(c) * kTileK + r] = float(load(src + c));
  }
  for (int c = 0; c < d; ++c)
    for (int r = n; r < kTileK; ++r) dst[int64_t(c) * kTileK + r] = 0.f;
}

// Operands converted to f32 and laid out in 64-row tiles once per call, so that no work item
// re-packs them (a key tile is read by every query tile of every query head of its group).
// Tiles start at multiples of 64 within each sequence; tile t of head h begins at
// ((h · n_tiles) + t) · tile_floats. `transposed` tiles are [d][kTileK], others [kTileK][dp].
struct Packed {
  std::vector<int64_t> tile0;  // first global tile of each sequence
  int64_t n_tiles = 0, tile_floats = 0;
  int heads = 0;
  float* data = nullptr;
  const float* tile(int h, int b, int64_t row_in_seq) const {
    return data + (int64_t(h) * n_tiles + tile0[b] + row_in_seq / kTileK) * tile_floats;
  }
  Packed() = default;
  Packed(const Packed&) = delete;
  Packed& operator=(const Packed&) = delete;
  ~Packed() { std::free(data); }
};

// Packs rows of a [total, heads, d] tensor (times mul); `by_keys` picks cu_seqlens_k.
template <class T>
void pack(const FlashAttnParams& p, bool by_keys, const void* base, int64_t rs, int64_t hs, int heads,
          float mul, bool transposed, Packed& out) {
  const int d = p.d, dp = (d + 15) / 16 * 16;
  const int32_t* cu = by_keys ? p.cu_seqlens_k : p.cu_seqlens_q;
  out.heads = heads;
  out.tile0.assign(size_t(p.batch) + 1, 0);
  for (int b = 0; b < p.batch; ++b)
    out.tile0[b + 1] = out.tile0[b] + (int64_t(cu[b + 1] - cu[b]) + kTileK - 1) / kTileK;
  out.n_tiles = out.tile0[p.batch];
  out.tile_floats = transposed ? int64_t(d) * kTileK : int64_t(kTileK) * dp;
  const size_t bytes = size_t(std::max<int64_t>(heads * out.n_tiles * out.tile_floats, 16)) * 4;
  out.data = static_cast<float*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
  if (!out.data) fail("flash_attn: out of memory packing operands (", bytes, " bytes)");
  std::vector<std::pair<int, int64_t>> tiles;  // (sequence, first row in sequence)
  for (int b = 0; b < p.batch; ++b)
    for (int64_t r = 0; r < cu[b + 1] - cu[b]; r += kTileK) tiles.push_back({b, r});
  const int64_t n = int64_t(tiles.size());
  parallel_for(0, n * heads, 4, [&](int64_t a, int64_t e) {
    for (int64_t w = a; w < e; ++w) {
      const int h = int(w / n);
      const auto [b, r] = tiles[size_t(w % n)];
      const int rows = int(std::min<int64_t>(kTileK, cu[b + 1] - cu[b] - r));
      float* dst = const_cast<float*>(out.tile(h, b, r));
      if (transposed) {
        load_rows_t<T>(base, rs, hs, cu[b] + r, h, rows, d, dst);
      } else {
        load_rows<T>(base, rs, hs, cu[b] + r, h, rows, d, dp, mul, dst);
        std::fill(dst + int64_t(rows) * dp, dst + int64_t(kTileK) * dp, 0.f);
      }
    }
  });
}

// Sets S[r][j] = -inf for keys row r may not see; rows are queries i0 + r, columns keys
// kt + j, j < nk. Returns nothing; rows that see none of the tile become all -inf.
void mask_tile(const FlashAttnParams& p, const Seq& s, int64_t i0, int nq, int64_t kt, int nk,
               float* S) {
  for (int r = 0; r < nq; ++r) {
    int64_t lo, hi;
    key_range(p, s, i0 + r, lo, hi);
    float* row = S + int64_t(r) * kTileK;
    const int64_t a = std::max<int64_t>(lo - kt, 0), b = std::min<int64_t>(hi - kt, nk - 1);
    if (a > b) { std::fill(row, row + nk, -kInf); continue; }
    for (int64_t j = 0; j < a; ++j) row[j] = -kInf;
    for (int64_t j = b + 1; j < nk; ++j) row[j] = -kInf;
  }
}
// Whether every row of the tile sees every key of it (no mask needed).
bool tile_full(const FlashAttnParams& p, const Seq& s, int64_t i0, int nq, int64_t kt, int nk) {
  int64_t lo0, hi0, lo1, hi1;
  key_range(p, s, i0, lo0, hi0);            // hi grows and lo grows with i
  key_range(p, s, i0 + nq - 1, lo1, hi1);
  return hi0 >= kt + nk - 1 && lo1 <= kt;
}

template <class T>
void fwd_item(const FlashAttnParams& p, const FlashTileKernels& tk, const SoftmaxRowKernels& rk,
              const Packed& kt_all, const Packed& v_all, int b, int h, int64_t i0, float* buf) {
  const Seq s = seq(p, b);
  const int d = p.d, dp = (d + 15) / 16 * 16, g = h / (p.hq / p.hkv);
  const int nq = int(std::min<int64_t>(kTileQ, s.sq - i0));
  float *Qs = buf, *O = Qs + kTileQ * dp, *S = O + kTileQ * dp, *m = S + kTileQ * kTileK,
        *l = m + kTileQ, *alpha = l + kTileQ;
  load_rows<T>(p.q, p.q_row_stride, p.q_head_stride, s.q0 + i0, h, nq, d, dp, p.scale, Qs);
  std::fill(O, O + int64_t(nq) * dp, 0.f);
  std::fill(m, m + nq, -kInf);
  std::fill(l, l + nq, 0.f);
  int64_t lo, hi, lo1, hi1;
  key_range(p, s, i0, lo, hi);
  key_range(p, s, i0 + nq - 1, lo1, hi1);
  lo = std::max<int64_t>(lo, 0) / kTileK * kTileK;  // packed tiles start at multiples of 64
  hi = std::min<int64_t>(hi1, s.sk - 1);
  for (int64_t kt = lo; kt <= hi; kt += kTileK) {
    const int nk = int(std::min<int64_t>(kTileK, hi + 1 - kt));
    const float *Kt = kt_all.tile(g, b, kt), *Vs = v_all.tile(g, b, kt);
    tk.qk(Qs, dp, nq, Kt, d, S);
    if (!tile_full(p, s, i0, nq, kt, nk)) mask_tile(p, s, i0, nq, kt, nk, S);
    for (int r = 0; r < nq; ++r) {
      float* row = S + int64_t(r) * kTileK;
      const float mx = std::max(m[r], rk.max(row, nk));
      if (mx == -kInf) {  // nothing visible yet: P = 0, O stays 0
        std::fill(row, row + nk, 0.f);
        alpha[r] = 1.f;
        continue;
      }
      alpha[r] = std::exp(m[r] - mx);
      l[r] = l[r] * alpha[r] + rk.exp_store_sum(row, row, nk, mx, nullptr);
      m[r] = mx;
    }
    tk.acc(O, dp, nq, alpha, S, kTileK, 1, nk, Vs, dp, dp);
  }
  for (int r = 0; r < nq; ++r) {
    T* o = static_cast<T*>(p.out) + (s.q0 + i0 + r) * p.o_row_stride + int64_t(h) * p.o_head_stride;
    float* lse = p.lse + int64_t(h) * p.total_q + s.q0 + i0 + r;
    if (l[r] == 0.f) {
      for (int c = 0; c < d; ++c) store(o + c, 0.f);
      *lse = kInf;
      continue;
    }
    const float inv = 1.f / l[r];
    for (int c = 0; c < d; ++c) store(o + c, O[int64_t(r) * dp + c] * inv);
    *lse = m[r] + std::log(l[r]);
  }
}

// Work items (sequence, query head, query tile) in a flat list, so parallel_for balances them.
struct Item { int b, h; int64_t t0; };
std::vector<Item> query_items(const FlashAttnParams& p) {
  std::vector<Item> v;
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.hq; ++h)
      for (int64_t t = 0; t < seq(p, b).sq; t += kTileQ) v.push_back({b, h, t});
  return v;
}

template <class T>
void fwd(const FlashAttnParams& p) {
  const FlashTileKernels& tk = flash_tile_kernels(isa());
  const SoftmaxRowKernels& rk = softmax_row_kernels(isa());
  const int dp = (p.d + 15) / 16 * 16;
  const size_t scratch = size_t(kTileQ) * dp * 2 + kTileQ * kTileK + 3 * kTileQ;
  Packed kt_all, v_all;
  pack<T>(p, true, p.k, p.k_row_stride, p.k_head_stride, p.hkv, 1.f, true, kt_all);
  pack<T>(p, true, p.v, p.v_row_stride, p.v_head_stride, p.hkv, 1.f, false, v_all);
  const std::vector<Item> work = query_items(p);
  parallel_for(0, int64_t(work.size()), 1, [&](int64_t a, int64_t e) {
    Scratch buf(scratch);
    for (int64_t w = a; w < e; ++w)
      fwd_item<T>(p, tk, rk, kt_all, v_all, work[w].b, work[w].h, work[w].t0, buf.p);
  });
}

// One (query tile × key tile) step of the backward: S = Qs·Kᵀ, P = exp(S − lse) masked,
// dP = dOs·Vᵀ, dS = P∘(dP − Dsum). Leaves P in S and dS in dP.
void bwd_tile(const FlashAttnParams& p, const FlashTileKernels& tk, const SoftmaxRowKernels& rk,
              const Seq& s, int h, int64_t i0, int nq, int64_t kt, int nk, const float* Qs,
              const float* dOs, const float* Kt, const float* Vt, const float* dsum, float* S,
              float* dP) {
  tk.qk(Qs, (p.d + 15) / 16 * 16, nq, Kt, p.d, S);
  tk.qk(dOs, (p.d + 15) / 16 * 16, nq, Vt, p.d, dP);
  if (!tile_full(p, s, i0, nq, kt, nk)) mask_tile(p, s, i0, nq, kt, nk, S);
  const float* lse = p.lse + int64_t(h) * p.total_q + s.q0 + i0;
  for (int r = 0; r < nq; ++r) {
    float* pr = S + int64_t(r) * kTileK;
    float* dr = dP + int64_t(r) * kTileK;
    if (lse[r] == kInf) {  // the row saw no key: no gradient
      std::fill(pr, pr + nk, 0.f);
      std::fill(dr, dr + nk, 0.f);
      continue;
    }
    rk.exp_scale(pr, pr, nk, lse[r], 1.f);
    const float di = dsum[r];
    for (int j = 0; j < nk; ++j) dr[j] = pr[j] * (dr[j] - di);
  }
}

template <class T>
void bwd(const FlashAttnParams& p) {
  const FlashTileKernels& tk = flash_tile_kernels(isa());
  const SoftmaxRowKernels& rk = softmax_row_kernels(isa());
  const int d = p.d, dp = (d + 15) / 16 * 16, group = p.hq / p.hkv;
  // Dsum[h][r] = dO·O (f32, [hq, total_q]).
  std::vector<float> dsum(size_t(p.hq) * p.total_q, 0.f);
  parallel_for(0, p.total_q, 64, [&](int64_t a, int64_t e) {
    for (int64_t r = a; r < e; ++r)
      for (int h = 0; h < p.hq; ++h) {
        const T* o = static_cast<const T*>(p.out) + r * p.o_row_stride + int64_t(h) * p.o_head_stride;
        const T* g = static_cast<const T*>(p.dout) + r * p.o_row_stride + int64_t(h) * p.o_head_stride;
        float acc = 0.f;
        for (int c = 0; c < d; ++c) acc += float(load(o + c)) * float(load(g + c));
        dsum[size_t(h) * p.total_q + r] = acc;
      }
  });
  const size_t tile = size_t(kTileQ) * dp;
  const size_t scratch = 2 * size_t(kTileQ) * kTileK + 2 * tile;
  Packed qs_all, do_all, kt_all, vt_all, k_all;
  pack<T>(p, false, p.q, p.q_row_stride, p.q_head_stride, p.hq, p.scale, false, qs_all);  // scale·Q
  pack<T>(p, false, p.dout, p.o_row_stride, p.o_head_stride, p.hq, 1.f, false, do_all);
  pack<T>(p, true, p.k, p.k_row_stride, p.k_head_stride, p.hkv, 1.f, true, kt_all);
  pack<T>(p, true, p.v, p.v_row_stride, p.v_head_stride, p.hkv, 1.f, true, vt_all);
  pack<T>(p, true, p.k, p.k_row_stride, p.k_head_stride, p.hkv, 1.f, false, k_all);

  // Pass 1: dK, dV per (sequence, KV head, block of kKeyBlock key tiles). Each Q/dO tile read
  // serves the whole block, so the stream over Q and dO (which outgrows the caches at long S)
  // is kKeyBlock times shorter; the block's dK/dV accumulators (256 KB at d = 128) stay in L2.
  constexpr int kKeyBlock = 4;
  std::vector<Item> kwork;
  for (int b = 0; b < p.batch; ++b)
    for (int g = 0; g < p.hkv; ++g)
      for (int64_t t = 0; t < seq(p, b).sk; t += kTileK * kKeyBlock) kwork.push_back({b, g, t});
  parallel_for(0, int64_t(kwork.size()), 1, [&](int64_t a, int64_t e) {
    Scratch buf(scratch + 2 * (kKeyBlock - 1) * tile);
    float *S = buf.p, *dP = S + kTileQ * kTileK, *dK = dP + kTileQ * kTileK, *dV = dK + kKeyBlock * tile;
    for (int64_t w = a; w < e; ++w) {
      const int b = kwork[w].b, g = kwork[w].h;
      const int64_t kb0 = kwork[w].t0;
      const Seq s = seq(p, b);
      const int ntiles = int(std::min<int64_t>(kKeyBlock, (s.sk - kb0 + kTileK - 1) / kTileK));
      std::fill(dK, dK + kKeyBlock * tile, 0.f);
      std::fill(dV, dV + kKeyBlock * tile, 0.f);
      int64_t qa_t[kKeyBlock], qb_t[kKeyBlock];
      int nk_t[kKeyBlock];
      int64_t qa = s.sq, qb = 0;
      for (int t = 0; t < ntiles; ++t) {
        const int64_t kt = kb0 + int64_t(t) * kTileK;
        nk_t[t] = int(std::min<int64_t>(kTileK, s.sk - kt));
        query_range(p, s, kt, kt + nk_t[t], qa_t[t], qb_t[t]);
        if (qa_t[t] < qb_t[t]) { qa = std::min(qa, qa_t[t]); qb = std::max(qb, qb_t[t]); }
      }
      for (int h = g * group; h < (g + 1) * group; ++h)
        for (int64_t i0 = qa / kTileQ * kTileQ; i0 < qb; i0 += kTileQ) {
          const int nq = int(std::min<int64_t>(kTileQ, s.sq - i0));
          const float *Qs = qs_all.tile(h, b, i0), *dOs = do_all.tile(h, b, i0);
          for (int t = 0; t < ntiles; ++t) {
            if (i0 >= qb_t[t] || i0 + nq <= qa_t[t]) continue;  // no row of this q tile sees it
            const int64_t kt = kb0 + int64_t(t) * kTileK;
            const int nk = nk_t[t];
            bwd_tile(p, tk, rk, s, h, i0, nq, kt, nk, Qs, dOs, kt_all.tile(g, b, kt), vt_all.tile(g, b, kt),
                     dsum.data() + size_t(h) * p.total_q + s.q0 + i0, S, dP);
            // dV[j] += Σ_r P[r][j] dO[r];  dK[j] += Σ_r dS[r][j] (scale·Q[r])  (A read transposed)
            tk.acc(dV + t * tile, dp, nk, nullptr, S, 1, kTileK, nq, dOs, dp, dp);
            tk.acc(dK + t * tile, dp, nk, nullptr, dP, 1, kTileK, nq, Qs, dp, dp);
          }
        }
      for (int64_t j = 0; j < std::min<int64_t>(int64_t(kKeyBlock) * kTileK, s.sk - kb0); ++j) {
        T* dkr = static_cast<T*>(p.dk) + ((s.k0 + kb0 + j) * p.hkv + g) * d;
        T* dvr = static_cast<T*>(p.dv) + ((s.k0 + kb0 + j) * p.hkv + g) * d;
        for (int c = 0; c < d; ++c) {  // tile t = j / 64 starts at t·tile: row j sits at j·dp
          store(dkr + c, dK[j * dp + c]);
          store(dvr + c, dV[j * dp + c]);
        }
      }
    }
  });

  // Pass 2: dQ per (sequence, query head, query tile).
  const std::vector<Item> qwork = query_items(p);
  parallel_for(0, int64_t(qwork.size()), 1, [&](int64_t a, int64_t e) {
    Scratch buf(scratch);
    float *S = buf.p, *dP = S + kTileQ * kTileK, *dQ = dP + kTileQ * kTileK;
    for (int64_t w = a; w < e; ++w) {
      const int b = qwork[w].b, h = qwork[w].h, g = h / group;
      const int64_t i0 = qwork[w].t0;
      const Seq s = seq(p, b);
      const int nq = int(std::min<int64_t>(kTileQ, s.sq - i0));
      const float *Qs = qs_all.tile(h, b, i0), *dOs = do_all.tile(h, b, i0);
      std::fill(dQ, dQ + tile, 0.f);
      int64_t lo, hi, lo1, hi1;
      key_range(p, s, i0, lo, hi);
      key_range(p, s, i0 + nq - 1, lo1, hi1);
      lo = std::max<int64_t>(lo, 0) / kTileK * kTileK;
      hi = std::min<int64_t>(hi1, s.sk - 1);
      for (int64_t kt = lo; kt <= hi; kt += kTileK) {
        const int nk = int(std::min<int64_t>(kTileK, hi + 1 - kt));
        bwd_tile(p, tk, rk, s, h, i0, nq, kt, nk, Qs, dOs, kt_all.tile(g, b, kt), vt_all.tile(g, b, kt),
                 dsum.data() + size_t(h) * p.total_q + s.q0 + i0, S, dP);
        tk.acc(dQ, dp, nq, nullptr, dP, kTileK, 1, nk, k_all.tile(g, b, kt), dp, dp);  // dQ += dS·K
      }
      for (int r = 0; r < nq; ++r) {
        T* dqr = static_cast<T*>(p.dq) + ((s.q0 + i0 + r) * p.hq + h) * d;
        for (int c = 0; c < d; ++c) store(dqr + c, dQ[int64_t(r) * dp + c] * p.scale);
      }
    }
  });
}

}  // namespace

void flash_attn_fwd_cpu(const FlashAttnParams& p) {
  switch (p.dtype) {
    case DType::F32: fwd<float>(p); break;
    case DType::BF16: fwd<bf16>(p); break;
    case DType::F16: fwd<f16>(p); break;
    case DType::F64: flash_attn_fwd_reference(p); break;
    default: fail("flash_attn: q must be f32, bf16, f16 or f64, got ", dtype_name(p.dtype));
  }
}

void flash_attn_bwd_cpu(const FlashAttnParams& p) {
  switch (p.dtype) {
    case DType::F32: bwd<float>(p); break;
    case DType::BF16: bwd<bf16>(p); break;
    case DType::F16: bwd<f16>(p); break;
    case DType::F64: flash_attn_bwd_reference(p); break;
    default: fail("flash_attn: q must be f32, bf16, f16 or f64, got ", dtype_name(p.dtype));
  }
}

}  // namespace fovea
