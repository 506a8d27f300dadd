// CUDA entry of the fused GRPO loss (FoveaCudaApi::grpo_loss; semantics in grpo_loss.h).
//
// Same chunked algorithm as grpo_loss_cpu.cpp, per chunk of cn tokens:
//   1. logits block [cn, V] f32 = (h·Wᵀ + b)/T through the sidecar's cuBLAS gemm (bias
//      pre-filled, alpha 1/T, beta 1); bf16/f16 operands accumulate in f32.
//   2. row kernel (one block per row): max, Σexp, Σexp·z → lse, logp, entropy.
//   3. grad kernel (one block per row): g_i = w_i ∂ℓ_i/∂logp_i (grpo_token_terms, shared with the
//      CPU), dlogits = g(onehot − softmax)/T written in f32 (for db) and, for 16-bit models, also
//      in the model dtype (cuBLAS needs A and B of one dtype — the same rounding Liger makes).
//   4. dH[chunk] = dlogits·W, dW += dlogitsᵀ·H[chunk] (f32 outputs), db += column sums (f32).
// The per-token weights w (aggregation) and the final loss/stats use the host helpers of
// grpo_loss.h on host copies of the [N] vectors — O(N) transfers, negligible next to N·V·H.
// Workspace: cn·V·(4 + 2) bytes from the caching allocator, returned at the end (one stream
// orders reuse). f64 models are refused (the CPU path serves gradcheck).
#include <cmath>
#include <cstring>
#include <vector>
#include "cuda/common.cuh"
#include "cuda/dtype.cuh"
#include "cuda/entries.h"
#include "ops/grpo_loss/grpo_loss.h"
#include "ops/matmul/matmul.h"

namespace fovea::cuda {
namespace {

constexpr int kRowThreads = 256;

// Block-wide reduction of (max) or (sum) in shared memory; every thread gets the result.
template <bool kMax> __device__ float block_reduce(float v, float* sh) {
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, u) : v + u;
  }
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  const int nw = blockDim.x >> 5;
  v = threadIdx.x < nw ? sh[threadIdx.x] : (kMax ? -INFINITY : 0.f);
  if (wid == 0)
    for (int o = 16; o > 0; o >>= 1) {
      const float u = __shfl_xor_sync(0xffffffffu, v, o);
      v = kMax ? fmaxf(v, u) : v + u;
    }
  if (threadIdx.x == 0) sh[32] = v;
  __syncthreads();
  return sh[32];
}

template <class T>
__global__ void fill_bias_rows(float* buf, const T* bias, int64_t rows, int64_t V, float invT) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * V; i += int64_t(gridDim.x) * blockDim.x)
    buf[i] = dload(bias + i % V) * invT;
}

// One block per row of the chunk: lse, logp (and entropy) of token n0 + row.
__global__ void row_stats_kernel(const float* buf, int64_t V, int64_t n0, const int32_t* targets,
                                 float* lse, float* logp, float* entropy) {
  __shared__ float sh[33];
  const float* z = buf + int64_t(blockIdx.x) * V;
  float mx = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, z[v]);
  mx = block_reduce<true>(mx, sh);
  float s = 0.f, sz = 0.f;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    const float e = __expf(z[v] - mx);
    s += e;
    sz += e * z[v];
  }
  s = block_reduce<false>(s, sh);
  if (entropy) sz = block_reduce<false>(sz, sh);
  if (threadIdx.x == 0) {
    const int64_t n = n0 + blockIdx.x;
    const float l = mx + logf(s);
    lse[n] = l;
    logp[n] = z[targets[n]] - l;
    if (entropy) entropy[n] = l - sz / s;
  }
}

struct TokenArgs {
  const float *adv, *old, *ref, *w;  // w: aggregation weights [N]
  double eps_low, eps_high, dual_clip, beta;
  GrpoKl kl;
};

// One block per row: dlogits = g(onehot − exp(z − lse))/T in place (f32), plus a copy in the
// model dtype T for the GEMMs when T is 16-bit.
template <class T>
__global__ void dlogits_kernel(float* buf, T* buf16, int64_t V, int64_t n0, const int32_t* targets,
                               const float* lse, const float* logp, TokenArgs a, float invT) {
  const int64_t n = n0 + blockIdx.x;
  const double lp = logp[n];
  const GrpoTokenTerms t = grpo_token_terms(lp, a.old ? double(a.old[n]) : lp, a.ref ? double(a.ref[n]) : 0.0,
                                            a.ref != nullptr, a.adv[n], a.eps_low, a.eps_high,
                                            a.dual_clip, a.beta, a.kl);
  const float gs = float(double(a.w[n]) * t.dlogp) * invT;
  const float l = lse[n];
  const int32_t tgt = targets[n];
  float* z = buf + int64_t(blockIdx.x) * V;
  T* z16 = buf16 ? buf16 + int64_t(blockIdx.x) * V : nullptr;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    const float d = gs == 0.f ? 0.f : gs * ((v == tgt ? 1.f : 0.f) - __expf(z[v] - l));
    z[v] = d;
    if (z16) dstore(z16 + v, d);
  }
}

// db[v] += Σ_rows buf[row, v]
__global__ void colsum_kernel(const float* buf, int64_t rows, int64_t V, float* db) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < V; v += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int64_t i = 0; i < rows; ++i) s += buf[i * V + v];
    db[v] += s;
  }
}

// Host copy of an [n] device vector.
template <class T> int to_host(std::vector<T>& dst, const void* src, int64_t n, int device) {
  dst.resize(size_t(n));
  if (!src || n == 0) return 0;
  return memcpy_d2h(device, dst.data(), src, size_t(n) * sizeof(T));
}

template <class T>
int run(const GrpoLossParams& p, cudaStream_t st) {
  const int64_t N = p.N, H = p.H, V = p.V;
  const int dev = p.device;
  const double invT = 1.0 / p.temperature;
  const bool is16 = p.dtype != DType::F32;
  int64_t cn = p.chunk_tokens > 0 ? p.chunk_tokens : std::max<int64_t>(16, (int64_t(256) << 20) / (V * 6));
  cn = std::max<int64_t>(1, std::min(cn, std::max<int64_t>(N, 1)));
  float* buf = static_cast<float*>(device_malloc(dev, size_t(cn * V) * 4));
  T* buf16 = is16 ? static_cast<T*>(device_malloc(dev, size_t(cn * V) * sizeof(T))) : nullptr;
  float* lse = static_cast<float*>(device_malloc(dev, size_t(std::max<int64_t>(N, 1)) * 4));
  float* wd = static_cast<float*>(device_malloc(dev, size_t(std::max<int64_t>(N, 1)) * 4));
  auto release = [&] {
    for (void* q : {static_cast<void*>(buf), static_cast<void*>(buf16), static_cast<void*>(lse), static_cast<void*>(wd)})
      if (q) device_free(dev, q);
  };
  if (!buf || (is16 && !buf16) || !lse || !wd) { release(); return 1; }
  int rc = 0;
  // Aggregation weights on the host (needs mask and seqIndex only).
  std::vector<float> maskf, advf, oldf, reff, lpf, entf;
  std::vector<int32_t> seq;
  std::vector<double> mask, w;
  if (p.compute_grad) {
    if ((rc = to_host(maskf, p.mask, N, dev)) || (rc = to_host(seq, p.seq_index, N, dev))) { release(); return rc; }
    mask.assign(maskf.begin(), maskf.end());
    w.resize(size_t(N));
    grpo_token_weights(p, mask.data(), seq.data(), w.data());
    std::vector<float> wf(w.begin(), w.end());
    if (N > 0 && (rc = memcpy_h2d(dev, wd, wf.data(), size_t(N) * 4))) { release(); return rc; }
    if (cudaMemsetAsync(p.d_weight, 0, size_t(V * H) * 4, st) != cudaSuccess ||
        (p.d_bias && cudaMemsetAsync(p.d_bias, 0, size_t(V) * 4, st) != cudaSuccess)) {
      release();
      return fail("grpoLoss (cuda): memset of the gradient outputs failed");
    }
  }
  const TokenArgs ta{static_cast<const float*>(p.advantages), static_cast<const float*>(p.old_logprobs),
                     static_cast<const float*>(p.ref_logprobs), wd, p.eps_low, p.eps_high, p.dual_clip,
                     p.beta, p.kl};
  const size_t es = dtype_size(p.dtype);
  float* logp = static_cast<float*>(p.logprobs);
  float* ent = static_cast<float*>(p.entropy);
  for (int64_t n0 = 0; n0 < N && rc == 0; n0 += cn) {
    const int64_t m = std::min(cn, N - n0);
    const char* hchunk = static_cast<const char*>(p.hidden) + n0 * p.hidden_rs * es;
    if (p.bias) fill_bias_rows<T><<<grid_for(m * V), kThreads, 0, st>>>(buf, static_cast<const T*>(p.bias), m, V, float(invT));
    GemmParams g;  // buf = (h Wᵀ (+ b)) / T
    g.device = dev;
    g.a = hchunk; g.a_dtype = p.dtype; g.a_rs = p.hidden_rs; g.a_cs = 1;
    g.b = p.weight; g.b_dtype = p.dtype; g.b_rs = 1; g.b_cs = p.weight_rs;
    g.c = buf; g.c_dtype = DType::F32; g.c_rs = V; g.c_cs = 1;
    g.M = m; g.N = V; g.K = H; g.alpha = float(invT); g.beta = p.bias ? 1.f : 0.f;
    if ((rc = gemm(&g))) break;
    row_stats_kernel<<<unsigned(m), kRowThreads, 0, st>>>(buf, V, n0, p.targets, lse, logp, ent);
    if ((rc = check_launch("grpoLoss row stats", dev))) break;
    if (!p.compute_grad) continue;
    dlogits_kernel<T><<<unsigned(m), kRowThreads, 0, st>>>(buf, buf16, V, n0, p.targets, lse, logp, ta, float(invT));
    if ((rc = check_launch("grpoLoss dlogits", dev))) break;
    const void* dl = is16 ? static_cast<const void*>(buf16) : static_cast<const void*>(buf);
    GemmParams h;  // dH[chunk] = dlogits · W
    h.device = dev;
    h.a = dl; h.a_dtype = p.dtype; h.a_rs = V; h.a_cs = 1;
    h.b = p.weight; h.b_dtype = p.dtype; h.b_rs = p.weight_rs; h.b_cs = 1;
    h.c = static_cast<float*>(p.d_hidden) + n0 * H; h.c_dtype = DType::F32; h.c_rs = H; h.c_cs = 1;
    h.M = m; h.N = H; h.K = V;
    if ((rc = gemm(&h))) break;
    GemmParams wg;  // dW += dlogitsᵀ · H[chunk]
    wg.device = dev;
    wg.a = dl; wg.a_dtype = p.dtype; wg.a_rs = 1; wg.a_cs = V;
    wg.b = hchunk; wg.b_dtype = p.dtype; wg.b_rs = p.hidden_rs; wg.b_cs = 1;
    wg.c = p.d_weight; wg.c_dtype = DType::F32; wg.c_rs = H; wg.c_cs = 1;
    wg.M = V; wg.N = H; wg.K = m; wg.beta = 1.f;
    if ((rc = gemm(&wg))) break;
    if (p.d_bias) {
      colsum_kernel<<<grid_for(V), kThreads, 0, st>>>(buf, m, V, static_cast<float*>(p.d_bias));
      if ((rc = check_launch("grpoLoss bias grad", dev))) break;
    }
  }
  if (rc == 0 && p.compute_grad) {
    // Loss and stats on the host from the per-token results (reads synchronize the stream).
    if ((rc = to_host(lpf, p.logprobs, N, dev)) || (rc = to_host(advf, p.advantages, N, dev)) ||
        (rc = to_host(entf, p.entropy, p.entropy ? N : 0, dev)) ||
        (rc = to_host(oldf, p.old_logprobs, p.old_logprobs ? N : 0, dev)) ||
        (rc = to_host(reff, p.ref_logprobs, p.ref_logprobs ? N : 0, dev))) {
      release();
      return rc;
    }
    std::vector<double> lp(lpf.begin(), lpf.end()), adv(advf.begin(), advf.end()), ent(size_t(N), 0.0);
    std::vector<double> old(oldf.begin(), oldf.end()), ref(reff.begin(), reff.end());
    if (p.entropy) ent.assign(entf.begin(), entf.end());
    grpo_finish_tokens(p, lp.data(), ent.data(), adv.data(), mask.data(), seq.data(),
                       p.old_logprobs ? old.data() : nullptr, p.ref_logprobs ? ref.data() : nullptr, nullptr);
  }
  release();
  return rc;
}

}  // namespace

int grpo_loss(const GrpoLossParams* pp) {
  if (!pp) return fail("grpoLoss (cuda): params are null");
  const GrpoLossParams& p = *pp;
  if (p.dtype == DType::F64)
    return fail("grpoLoss (cuda): f64 models are CPU-only (gradcheck); use f32, bf16 or f16 on cuda");
  if (p.N < 0 || p.H <= 0 || p.V <= 0) return fail("grpoLoss (cuda): bad sizes N=", p.N, " H=", p.H, " V=", p.V);
  if (p.N > (int64_t(1) << 31) - 1) return fail("grpoLoss (cuda): N = ", p.N, " exceeds the grid limit");
  if (use_device(p.device, "grpoLoss")) return 1;
  cudaStream_t st = stream_for(p.device);
  if (!st) return 1;
  switch (p.dtype) {
    case DType::F32: return run<float>(p, st);
    case DType::BF16: return run<__nv_bfloat16>(p, st);
    case DType::F16: return run<__half>(p, st);
    default: return fail("grpoLoss (cuda): unsupported dtype ", dtype_name(p.dtype));
  }
}

}  // namespace fovea::cuda
