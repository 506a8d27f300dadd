// CPU paths of the fused GRPO loss (semantics in grpo_loss.h).
//
// grpo_loss_reference: one token at a time in f64 with a full logits row — obviously correct, slow.
// grpo_loss_cpu: tokens in chunks of `cn` rows. For each chunk the logits block (kept transposed,
// [V, cn]) is built by one GEMM (bias pre-filled, alpha = 1/T), reduced over V (max, Σexp, Σp·z)
// by per-thread partials, the per-token gradient g = w·∂ℓ/∂logp is formed, the block is
// overwritten in place with dlogits = g(onehot − softmax)/T, and two more GEMMs give
// dH[chunk] = dlogits·W and dW += dlogitsᵀ·H[chunk]. So the whole op is three N·V·H GEMMs (what an unfused framework does)
// and its extra memory is the one cn×V block, chosen ≤ ~128 MB and independent of N.
// Keeping the full-vocab row block (rather than recomputing vocabulary chunks in a second sweep)
// saves a fourth GEMM; O(chunk × V) memory is what the issue allows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/grpo_loss/grpo_loss.h"
#include "ops/matmul/matmul.h"
#include "ops/softmax/softmax.h"

namespace fovea {
namespace {

double load(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: throw Error("grpoLoss: unsupported dtype");
  }
}
// Per-token vectors and outputs use the accumulation dtype: f64 for f64 models, else f32.
DType acc_dtype(const GrpoLossParams& p) { return p.dtype == DType::F64 ? DType::F64 : DType::F32; }
void store_acc(void* p, DType acc, int64_t i, double v) {
  if (acc == DType::F64) static_cast<double*>(p)[i] = v;
  else static_cast<float*>(p)[i] = float(v);
}

void check_params(const GrpoLossParams& p) {
  FOVEA_CHECK(p.weight && (p.N == 0 || (p.hidden && p.targets && p.logprobs)),
              "grpoLoss: null input or output");
  FOVEA_CHECK(p.N >= 0 && p.H > 0 && p.V > 0, "grpoLoss: bad sizes N=", p.N, " H=", p.H, " V=", p.V);
  FOVEA_CHECK(p.temperature > 0, "grpoLoss: temperature must be > 0, got ", p.temperature);
  if (p.compute_grad) {
    FOVEA_CHECK(p.d_weight && (p.N == 0 || (p.advantages && p.mask && p.seq_index && p.d_hidden)),
                "grpoLoss: gradient outputs and per-token inputs are required");
    FOVEA_CHECK(!(p.beta > 0 && !p.ref_logprobs), "grpoLoss: beta > 0 needs refLogprobs");
  }
}

// The per-token inputs as doubles (old/ref empty when absent), for grpo_finish_tokens.
struct TokenInputs { std::vector<double> adv, mask, old, ref; };
TokenInputs token_inputs(const GrpoLossParams& p) {
  const DType acc = acc_dtype(p);
  TokenInputs t;
  auto get = [&](const void* src, std::vector<double>& dst) {
    if (!src) return;
    dst.resize(size_t(p.N));
    for (int64_t i = 0; i < p.N; ++i) dst[i] = load(src, acc, i);
  };
  get(p.advantages, t.adv); get(p.mask, t.mask); get(p.old_logprobs, t.old); get(p.ref_logprobs, t.ref);
  return t;
}
void finish_tokens(const GrpoLossParams& p, const TokenInputs& ti, const std::vector<double>& logp,
                   const std::vector<double>& ent, std::vector<double>* g) {
  if (g) g->assign(size_t(p.N), 0.0);
  grpo_finish_tokens(p, logp.data(), ent.data(), ti.adv.data(), ti.mask.data(), p.seq_index,
                     p.old_logprobs ? ti.old.data() : nullptr, p.ref_logprobs ? ti.ref.data() : nullptr,
                     g ? g->data() : nullptr);
}

// ---------------------------------------------------------------- fast path
// The block is kept TRANSPOSED, zt[v, i] (V rows of cn tokens), because then two of the three
// GEMMs have the big matrix as a row-major A with M = V (each thread packs its own slab of W or
// dlogitsᵀ once; the small operand is re-packed): logitsᵀ = W·hᵀ and dW += dlogitsᵀ·h. Only
// dH = dlogits·W has M = cn, with W as a row-major B. (With the [cn, V] layout the logits GEMM
// had M = cn and re-packed all of W, transposed, per chunk and per thread: 3× slower.)
// Row reductions then run across tokens: each v row is a contiguous vector over i.

// y[i] = exp(x[i]) for a contiguous run (vectorized for f32 through the softmax row kernels).
template <class T> void exp_run(const SoftmaxRowKernels& rk, T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>) rk.exp_scale(x, x, n, 0.f, 1.f);
  else for (int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}

template <class T>
void grpo_fast(const GrpoLossParams& p) {
  const int64_t N = p.N, H = p.H, V = p.V;
  const DType acc = acc_dtype(p);
  const double invT = 1.0 / p.temperature;
  int64_t cn = p.chunk_tokens;
  if (cn <= 0) {
    cn = std::max<int64_t>(16, (int64_t(256) << 20) / (V * int64_t(sizeof(T))));
    cn = cn / 16 * 16;
  }
  cn = std::max<int64_t>(1, std::min(cn, std::max<int64_t>(N, 1)));
  std::vector<T> zt(size_t(cn) * size_t(V));  // zt[v * m + i], m = rows in this chunk
  std::vector<T> ht(size_t(cn) * size_t(H));  // hᵀ of the chunk
  std::vector<double> logp(N), ent(N, 0.0), lse(N);
  std::vector<T> bias_t(p.bias ? V : 0);
  for (int64_t v = 0; v < int64_t(bias_t.size()); ++v) bias_t[v] = T(load(p.bias, p.dtype, v) * invT);
  const size_t es = dtype_size(p.dtype);
  const SoftmaxRowKernels& rk = softmax_row_kernels(isa());
  const bool want_ent = p.entropy != nullptr;
  const int nt = std::max(1, std::min<int>(num_threads(), int(V)));
  auto vrange = [&](int t, int64_t& a, int64_t& b) { a = V * t / nt; b = V * (t + 1) / nt; };

  auto logits_block = [&](int64_t n0, int64_t m) {  // zt[v, i] = (W[v]·h[n0+i] + b[v]) / T
    if (p.bias)
      parallel_for(0, V, 4096, [&](int64_t a, int64_t b) {
        for (int64_t v = a; v < b; ++v) std::fill(&zt[v * m], &zt[v * m] + m, bias_t[v]);
      });
    // hᵀ of the chunk, unit stride: the GEMM re-packs B for every block of A rows, and packing
    // straight from h would be a strided gather each time (measured ~2× slower overall).
    parallel_for(0, H, 64, [&](int64_t a, int64_t b) {
      for (int64_t i = 0; i < m; ++i) {
        const char* row = static_cast<const char*>(p.hidden) + (n0 + i) * p.hidden_rs * es;
        for (int64_t k = a; k < b; ++k) ht[k * m + i] = T(load(row, p.dtype, k));
      }
    });
    GemmParams gp;
    gp.a = p.weight; gp.a_dtype = p.dtype; gp.a_rs = p.weight_rs; gp.a_cs = 1;
    gp.b = ht.data(); gp.b_dtype = acc; gp.b_rs = m; gp.b_cs = 1;  // B[k, i] = h[n0 + i, k]
    gp.c = zt.data(); gp.c_dtype = acc; gp.c_rs = m; gp.c_cs = 1;
    gp.M = V; gp.N = m; gp.K = H;
    gp.alpha = float(invT); gp.beta = p.bias ? 1.f : 0.f;
    gemm_cpu(gp);
  };
  // lse, logp, entropy for the chunk: per-thread partials over a v range, merged in thread order.
  auto row_stats = [&](int64_t n0, int64_t m) {
    std::vector<T> pmax(size_t(nt) * m, T(-INFINITY)), psum(size_t(nt) * m, T(0)), pz(size_t(nt) * m, T(0));
    parallel_tasks(nt, [&](int t, int) {
      int64_t a, b;
      vrange(t, a, b);
      T* mx = &pmax[size_t(t) * m];
      for (int64_t v = a; v < b; ++v) {
        const T* z = &zt[v * m];
        for (int64_t i = 0; i < m; ++i) mx[i] = z[i] > mx[i] ? z[i] : mx[i];
      }
    });
    std::vector<T> gmax(m, T(-INFINITY));
    for (int t = 0; t < nt; ++t)
      for (int64_t i = 0; i < m; ++i) gmax[i] = std::max(gmax[i], pmax[size_t(t) * m + i]);
    parallel_tasks(nt, [&](int t, int) {
      int64_t a, b;
      vrange(t, a, b);
      T* s = &psum[size_t(t) * m];
      T* sz = &pz[size_t(t) * m];
      std::vector<T> e(m);
      for (int64_t v = a; v < b; ++v) {
        const T* z = &zt[v * m];
        for (int64_t i = 0; i < m; ++i) e[i] = z[i] - gmax[i];
        exp_run(rk, e.data(), m);
        for (int64_t i = 0; i < m; ++i) s[i] += e[i];
        if (want_ent) for (int64_t i = 0; i < m; ++i) sz[i] += e[i] * z[i];
      }
    });
    for (int64_t i = 0; i < m; ++i) {
      double s = 0, sz = 0;
      for (int t = 0; t < nt; ++t) { s += psum[size_t(t) * m + i]; sz += pz[size_t(t) * m + i]; }
      const int64_t n = n0 + i;
      lse[n] = double(gmax[i]) + std::log(s);
      logp[n] = double(zt[int64_t(p.targets[n]) * m + i]) - lse[n];
      if (want_ent) ent[n] = lse[n] - sz / s;
    }
  };

  if (!p.compute_grad) {
    for (int64_t n0 = 0; n0 < N; n0 += cn) {
      const int64_t m = std::min(cn, N - n0);
      logits_block(n0, m);
      row_stats(n0, m);
    }
  } else {
    // g_i needs only token i's logp and the aggregation weight w_i, which depends on the mask
    // and seqIndex alone: so each chunk's gradient is final as soon as its rows are reduced.
    const TokenInputs ti = token_inputs(p);
    std::vector<double> w(N);
    {
      std::vector<double> mk(ti.mask);
      grpo_token_weights(p, mk.data(), p.seq_index, w.data());
    }
    T* dH = static_cast<T*>(p.d_hidden);
    T* dW = static_cast<T*>(p.d_weight);
    T* db = static_cast<T*>(p.d_bias);
    std::vector<double> dbacc(p.d_bias ? V : 0, 0.0);
    std::vector<T> gs(cn), lz(cn);
    for (int64_t n0 = 0; n0 < N; n0 += cn) {
      const int64_t m = std::min(cn, N - n0);
      logits_block(n0, m);
      row_stats(n0, m);
      for (int64_t i = 0; i < m; ++i) {
        const int64_t n = n0 + i;
        const GrpoTokenTerms t = grpo_token_terms(
            logp[n], p.old_logprobs ? ti.old[n] : logp[n], p.ref_logprobs ? ti.ref[n] : 0.0,
            p.ref_logprobs != nullptr, ti.adv[n], p.eps_low, p.eps_high, p.dual_clip, p.beta, p.kl);
        gs[i] = T(w[n] * t.dlogp * invT);
        lz[i] = T(lse[n]);
      }
      // dlogitsᵀ in place: zt[v, i] = gs_i·(onehot − exp(z − lse_i))
      parallel_for(0, V, 256, [&](int64_t a, int64_t b) {
        for (int64_t v = a; v < b; ++v) {
          T* z = &zt[v * m];
          for (int64_t i = 0; i < m; ++i) z[i] -= lz[i];
          exp_run(rk, z, m);
          for (int64_t i = 0; i < m; ++i) z[i] *= -gs[i];
        }
      });
      for (int64_t i = 0; i < m; ++i) zt[int64_t(p.targets[n0 + i]) * m + i] += gs[i];
      GemmParams h;  // dH[chunk] = dlogits · W   (A[i, v] = zt[v, i])
      h.a = zt.data(); h.a_dtype = acc; h.a_rs = 1; h.a_cs = m;
      h.b = p.weight; h.b_dtype = p.dtype; h.b_rs = p.weight_rs; h.b_cs = 1;
      h.c = dH + n0 * H; h.c_dtype = acc; h.c_rs = H; h.c_cs = 1;
      h.M = m; h.N = H; h.K = V; h.beta = 0.f;
      gemm_cpu(h);
      GemmParams wp;  // dW += dlogitsᵀ · H[chunk]
      wp.a = zt.data(); wp.a_dtype = acc; wp.a_rs = m; wp.a_cs = 1;
      wp.b = static_cast<const char*>(p.hidden) + n0 * p.hidden_rs * es; wp.b_dtype = p.dtype;
      wp.b_rs = p.hidden_rs; wp.b_cs = 1;
      wp.c = dW; wp.c_dtype = acc; wp.c_rs = H; wp.c_cs = 1;
      wp.M = V; wp.N = H; wp.K = m; wp.beta = n0 == 0 ? 0.f : 1.f;
      gemm_cpu(wp);
      if (db)
        parallel_for(0, V, 1024, [&](int64_t a, int64_t b) {
          for (int64_t v = a; v < b; ++v) {
            double s = 0;
            for (int64_t i = 0; i < m; ++i) s += double(zt[v * m + i]);
            dbacc[v] += s;
          }
        });
    }
    if (N == 0) std::memset(dW, 0, size_t(V * H) * sizeof(T));
    if (db) for (int64_t v = 0; v < V; ++v) db[v] = T(dbacc[v]);
  }
  for (int64_t i = 0; i < N; ++i) {
    store_acc(p.logprobs, acc, i, logp[i]);
    if (p.entropy) store_acc(p.entropy, acc, i, ent[i]);
  }
  if (p.compute_grad) finish_tokens(p, token_inputs(p), logp, ent, nullptr);
}

}  // namespace

void grpo_loss_reference(const GrpoLossParams& p) {
  check_params(p);
  const int64_t N = p.N, H = p.H, V = p.V;
  const DType acc = acc_dtype(p);
  const size_t es = dtype_size(p.dtype);
  auto hval = [&](int64_t n, int64_t k) {
    return load(static_cast<const char*>(p.hidden) + n * p.hidden_rs * es, p.dtype, k);
  };
  auto wval = [&](int64_t v, int64_t k) {
    return load(static_cast<const char*>(p.weight) + v * p.weight_rs * es, p.dtype, k);
  };
  std::vector<double> z(V), logp(N), ent(N), lse(N);
  auto logits_row = [&](int64_t n) {
    for (int64_t v = 0; v < V; ++v) {
      double s = 0;
      for (int64_t k = 0; k < H; ++k) s += hval(n, k) * wval(v, k);
      if (p.bias) s += load(p.bias, p.dtype, v);
      z[v] = s / p.temperature;
    }
  };
  for (int64_t n = 0; n < N; ++n) {
    logits_row(n);
    double mx = -INFINITY;
    for (double x : z) mx = std::max(mx, x);
    double s = 0, sz = 0;
    for (double x : z) { s += std::exp(x - mx); sz += std::exp(x - mx) * x; }
    lse[n] = mx + std::log(s);
    logp[n] = z[p.targets[n]] - lse[n];
    ent[n] = p.entropy ? lse[n] - sz / s : 0.0;  // stats report entropy only when asked
    store_acc(p.logprobs, acc, n, logp[n]);
    if (p.entropy) store_acc(p.entropy, acc, n, ent[n]);
  }
  if (!p.compute_grad) return;
  std::vector<double> g;
  finish_tokens(p, token_inputs(p), logp, ent, &g);
  std::vector<double> dH(size_t(N * H), 0.0), dW(size_t(V * H), 0.0), db(V, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    if (g[n] == 0) continue;
    logits_row(n);
    for (int64_t v = 0; v < V; ++v) {
      const double dl = g[n] * ((v == p.targets[n] ? 1.0 : 0.0) - std::exp(z[v] - lse[n])) / p.temperature;
      for (int64_t k = 0; k < H; ++k) {
        dH[n * H + k] += dl * wval(v, k);
        dW[v * H + k] += dl * hval(n, k);
      }
      db[v] += dl;
    }
  }
  for (int64_t i = 0; i < N * H; ++i) store_acc(p.d_hidden, acc, i, dH[i]);
  for (int64_t i = 0; i < V * H; ++i) store_acc(p.d_weight, acc, i, dW[i]);
  if (p.d_bias) for (int64_t v = 0; v < V; ++v) store_acc(p.d_bias, acc, v, db[v]);
}

void grpo_loss_cpu(const GrpoLossParams& p) {
  check_params(p);
  if (p.dtype == DType::F64) grpo_fast<double>(p);
  else grpo_fast<float>(p);
}

}  // namespace fovea
