// CUDA entries of the paged KV cache (FoveaCudaApi::paged_write / paged_copy_blocks /
// paged_attention; semantics and the cache layout in paged_attn.h and NOTES.md). The binding
// has validated every index (slots, block ids, context lengths, offsets) on the host.
//
// Attention (one kernel for decode and prefill-against-cache, vLLM v2's split-context idea,
// own code): grid (query row, partition, query head), 128 threads. The visible context of a
// query row (tokens 0 .. ctx − qlen + i) is cut into kPartition-token partitions; each block
//   1. stages scale·q in shared memory (f32),
//   2. computes the partition's logits, one warp per token (lanes stride over d, shuffle
//      reduction; a token's head vector is contiguous in the NHD layout, so loads coalesce),
//   3. block max, exp, block sum (f32),
//   4. P·V with thread c owning output column c (coalesced V rows),
// and writes out directly when the context fits one partition; otherwise it writes the
// normalized partial output, its max logit and exp-sum, and a reduce kernel merges the
// partitions by log-sum-exp: M = max m_p, w_p = l_p·e^(m_p − M), out = Σ w_p·o_p / Σ w_p.
// Kept simple on purpose (no tensor cores, K re-read per query head of a GQA group via L2);
// NOTES.md lists what a faster version would change. Not run on a GPU yet (none here).
#include <cfloat>
#include <cmath>
#include "cuda/common.cuh"
#include "cuda/dtype.cuh"
#include "cuda/entries.h"
#include "ops/paged_attn/paged_attn.h"

namespace fovea::cuda {
namespace {

constexpr int kPartition = 512;  // tokens per partition (logits live in shared memory)
constexpr int kAttnThreads = 128;
constexpr int kWarps = kAttnThreads / 32;

template <class T> __device__ __forceinline__ float ldf(const T* p) { return float(dload(p)); }

// ---------------------------------------------------------------- write / copy
template <class E>  // E: an unsigned integer of the element's size (raw copy, same dtype)
__global__ void write_kernel(PagedWriteParams p) {
  const int64_t t = blockIdx.x;
  const int64_t slot = p.slots[t];
  const int n = p.hkv * p.d;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int h = i / p.d, c = i % p.d;
    const int64_t dst = (slot * p.hkv + h) * p.d + c;
    static_cast<E*>(p.k_cache)[dst] = static_cast<const E*>(p.k)[t * p.k_row_stride + h * p.k_head_stride + c];
    static_cast<E*>(p.v_cache)[dst] = static_cast<const E*>(p.v)[t * p.v_row_stride + h * p.v_head_stride + c];
  }
}

template <class E>
__global__ void copy_kernel(PagedCopyParams p) {  // grid (pairs, 2 pools, chunks)
  E* pool = static_cast<E*>(blockIdx.y == 0 ? p.k_cache : p.v_cache);
  const int64_t src = int64_t(p.src[blockIdx.x]) * p.block_elems, dst = int64_t(p.dst[blockIdx.x]) * p.block_elems;
  for (int64_t i = int64_t(blockIdx.z) * blockDim.x + threadIdx.x; i < p.block_elems; i += int64_t(gridDim.z) * blockDim.x)
    pool[dst + i] = pool[src + i];
}

// ---------------------------------------------------------------- attention
__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
// Block-wide reduction through `red` (kWarps floats); every thread gets the result.
template <bool kMax>
__device__ float block_reduce(float x, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = kMax ? warp_max(x) : warp_sum(x);
  __syncthreads();  // red may still be read from a previous reduction
  if (lane == 0) red[warp] = x;
  __syncthreads();
  float r = red[0];
  for (int w = 1; w < kWarps; ++w) r = kMax ? fmaxf(r, red[w]) : r + red[w];
  return r;
}

struct Partials {  // [total_q, hq, num_partitions] (· d for the outputs), f32
  float* out = nullptr;
  float* max_logit = nullptr;
  float* exp_sum = nullptr;
  int num_partitions = 1;
};

template <class TQ, class TC>
__global__ void __launch_bounds__(kAttnThreads) attn_kernel(PagedAttnParams p, Partials part) {
  extern __shared__ float smem[];
  float* qs = smem;                 // [d]
  float* logits = qs + p.d;         // [kPartition]
  float* red = logits + kPartition; // [kWarps]
  const int64_t row = blockIdx.x;
  const int pi = blockIdx.y, h = blockIdx.z;
  // Segment of this row: the last b with cu[b] <= row (binary search; cu is non-decreasing).
  int lo = 0, hi = p.batch - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (p.cu_seqlens_q[mid] <= row) lo = mid; else hi = mid - 1;
  }
  const int b = lo;
  const int64_t qlen = p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b], i = row - p.cu_seqlens_q[b];
  const int64_t visible = int64_t(p.context_lens[b]) - qlen + i + 1;  // tokens [0, visible)
  const int64_t t0 = int64_t(pi) * kPartition, t1 = min(visible, t0 + kPartition);
  const int64_t pidx = (row * p.hq + h) * part.num_partitions + pi;
  if (t0 >= t1) {  // this partition lies past the row's diagonal: contributes nothing
    if (part.num_partitions > 1 && threadIdx.x == 0) { part.max_logit[pidx] = -FLT_MAX; part.exp_sum[pidx] = 0.f; }
    return;
  }
  const int g = h / (p.hq / p.hkv), d = p.d, bs = p.block_size;
  const int32_t* table = p.block_tables + int64_t(b) * p.max_blocks_per_seq;
  const TQ* q = static_cast<const TQ*>(p.q) + row * p.q_row_stride + int64_t(h) * p.q_head_stride;
  for (int c = threadIdx.x; c < d; c += blockDim.x) qs[c] = ldf(q + c) * p.scale;
  __syncthreads();
  const TC* kc = static_cast<const TC*>(p.k_cache);
  const TC* vc = static_cast<const TC*>(p.v_cache);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n = int(t1 - t0);
  for (int t = warp; t < n; t += kWarps) {
    const int64_t j = t0 + t;
    const TC* kr = kc + ((int64_t(table[j / bs]) * bs + j % bs) * p.hkv + g) * d;
    float acc = 0.f;
    for (int c = lane; c < d; c += 32) acc += qs[c] * ldf(kr + c);
    acc = warp_sum(acc);
    if (lane == 0) logits[t] = acc;
  }
  __syncthreads();
  float mx = -FLT_MAX;
  for (int t = threadIdx.x; t < n; t += blockDim.x) mx = fmaxf(mx, logits[t]);
  mx = block_reduce<true>(mx, red);
  float sum = 0.f;
  for (int t = threadIdx.x; t < n; t += blockDim.x) {
    const float e = expf(logits[t] - mx);
    logits[t] = e;
    sum += e;
  }
  sum = block_reduce<false>(sum, red);  // its barriers also publish logits
  const float inv = 1.f / sum;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float acc = 0.f;
    for (int t = 0; t < n; ++t) {
      const int64_t j = t0 + t;
      acc += logits[t] * ldf(vc + ((int64_t(table[j / bs]) * bs + j % bs) * p.hkv + g) * d + c);
    }
    if (part.num_partitions == 1) {
      dstore(static_cast<TQ*>(p.out) + row * p.o_row_stride + int64_t(h) * p.o_head_stride + c, acc * inv);
    } else {
      part.out[pidx * d + c] = acc * inv;
    }
  }
  if (part.num_partitions > 1 && threadIdx.x == 0) { part.max_logit[pidx] = mx; part.exp_sum[pidx] = sum; }
}

template <class TQ>
__global__ void reduce_kernel(PagedAttnParams p, Partials part) {  // grid (row, head)
  const int64_t row = blockIdx.x;
  const int h = blockIdx.y, np = part.num_partitions;
  const int64_t base = (row * p.hq + h) * np;
  float M = -FLT_MAX;
  for (int i = 0; i < np; ++i) M = fmaxf(M, part.max_logit[base + i]);
  float total = 0.f;
  for (int i = 0; i < np; ++i) total += part.exp_sum[base + i] * expf(part.max_logit[base + i] - M);
  const float inv = 1.f / total;
  for (int c = threadIdx.x; c < p.d; c += blockDim.x) {
    float acc = 0.f;
    for (int i = 0; i < np; ++i) {
      const float w = part.exp_sum[base + i] * expf(part.max_logit[base + i] - M);
      if (w > 0.f) acc += w * part.out[(base + i) * p.d + c];
    }
    dstore(static_cast<TQ*>(p.out) + row * p.o_row_stride + int64_t(h) * p.o_head_stride + c, acc * inv);
  }
}

template <class F>
bool dispatch_storage(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(Tag<float>{}); return true;
    case DType::BF16: f(Tag<__nv_bfloat16>{}); return true;
    case DType::F16: f(Tag<__half>{}); return true;
    default: return false;
  }
}

}  // namespace

int paged_write(const PagedWriteParams* p) {
  const char* op = "paged_write";
  if (!p) return fail(op, ": params is null");
  if (p->device < 0) return fail(op, " (CUDA): device is ", p->device, ", expected a cuda ordinal");
  if (p->num_tokens == 0) return 0;
  if (p->num_tokens > 0x7fffffff) return fail(op, ": too many tokens (", p->num_tokens, ")");
  if (use_device(p->device, op)) return 1;
  cudaStream_t s = stream_for(p->device);
  if (!s) return 1;
  const unsigned grid = unsigned(p->num_tokens);
  if (dtype_size(p->dtype) == 4) write_kernel<uint32_t><<<grid, 128, 0, s>>>(*p);
  else if (dtype_size(p->dtype) == 2) write_kernel<uint16_t><<<grid, 128, 0, s>>>(*p);
  else return fail(op, ": unsupported dtype ", dtype_name(p->dtype));
  return check_launch(op, p->device);
}

int paged_copy_blocks(const PagedCopyParams* p) {
  const char* op = "paged_copy_blocks";
  if (!p) return fail(op, ": params is null");
  if (p->device < 0) return fail(op, " (CUDA): device is ", p->device, ", expected a cuda ordinal");
  if (p->n == 0) return 0;
  if (p->n > 0x7fffffff) return fail(op, ": too many blocks");
  if (use_device(p->device, op)) return 1;
  cudaStream_t s = stream_for(p->device);
  if (!s) return 1;
  const dim3 grid(unsigned(p->n), 2, unsigned(std::min<int64_t>((p->block_elems + 255) / 256, 64)));
  if (dtype_size(p->dtype) == 4) copy_kernel<uint32_t><<<grid, 256, 0, s>>>(*p);
  else if (dtype_size(p->dtype) == 2) copy_kernel<uint16_t><<<grid, 256, 0, s>>>(*p);
  else return fail(op, ": unsupported dtype ", dtype_name(p->dtype));
  return check_launch(op, p->device);
}

int paged_attention(const PagedAttnParams* pp) {
  const char* op = "paged_attention";
  if (!pp) return fail(op, ": params is null");
  const PagedAttnParams& p = *pp;
  if (p.device < 0) return fail(op, " (CUDA): device is ", p.device, ", expected a cuda ordinal");
  if (p.hq <= 0 || p.hkv <= 0 || p.hq % p.hkv != 0)
    return fail(op, ": hq (", p.hq, ") must be a positive multiple of hkv (", p.hkv, ")");
  if (p.hq > 65535) return fail(op, " (CUDA): at most 65535 query heads, got ", p.hq);
  if (p.d < 1 || p.d > 1024) return fail(op, " (CUDA): head dim ", p.d, " outside [1, 1024]");
  if (p.total_q == 0 || p.batch == 0) return 0;
  if (p.total_q > 0x7fffffff) return fail(op, ": too many query rows (", p.total_q, ")");
  if (use_device(p.device, op)) return 1;
  cudaStream_t s = stream_for(p.device);
  if (!s) return 1;
  Partials part;
  part.num_partitions = std::max(1, (p.max_context_len + kPartition - 1) / kPartition);
  if (part.num_partitions > 65535) return fail(op, " (CUDA): context too long (", p.max_context_len, " tokens)");
  const int dev = p.device;
  float* ws = nullptr;
  if (part.num_partitions > 1) {
    const size_t rows = size_t(p.total_q) * p.hq * part.num_partitions;
    ws = static_cast<float*>(device_malloc(dev, rows * (size_t(p.d) + 2) * sizeof(float)));
    if (!ws) return 1;
    part.out = ws;
    part.max_logit = ws + rows * p.d;
    part.exp_sum = part.max_logit + rows;
  }
  const dim3 grid(unsigned(p.total_q), unsigned(part.num_partitions), unsigned(p.hq));
  const size_t smem = (size_t(p.d) + kPartition + kWarps) * sizeof(float);
  int rc = 0;
  const bool ok = dispatch_storage(p.q_dtype, [&](auto tq) {
    using TQ = typename decltype(tq)::type;
    const bool ok2 = dispatch_storage(p.cache_dtype, [&](auto tc) {
      using TC = typename decltype(tc)::type;
      attn_kernel<TQ, TC><<<grid, kAttnThreads, smem, s>>>(p, part);
      rc = check_launch("paged_attention", dev);
      if (!rc && part.num_partitions > 1) {
        reduce_kernel<TQ><<<dim3(unsigned(p.total_q), unsigned(p.hq)), 128, 0, s>>>(p, part);
        rc = check_launch("paged_attention: partition merge", dev);
      }
    });
    if (!ok2) rc = fail(op, ": unsupported cache dtype ", dtype_name(p.cache_dtype));
  });
  if (!ok) rc = fail(op, ": unsupported q dtype ", dtype_name(p.q_dtype));
  if (ws) device_free(dev, ws);  // the stream orders the next user of this memory after us
  return rc;
}

}  // namespace fovea::cuda
