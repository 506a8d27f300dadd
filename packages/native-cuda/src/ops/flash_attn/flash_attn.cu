// CUDA entries of flash attention (FoveaCudaApi::flash_attn_fwd / flash_attn_bwd): validate
// the params struct (semantics in flash_attn.h), pick the kernel instance for (dtype, D) and
// launch on the device's one stream. Kernels: flash_attn_fwd_kernel.cuh and
// flash_attn_bwd_kernel.cuh; design, resource use and what is verified: CUDA_NOTES.md.
//
// Supported: bf16 and f16 (f32 math on tensor cores), D ∈ {64, 80, 96, 128}. f32/f64 inputs
// are refused with a message pointing at the CPU path (or a cast to bf16). Workspace
// (Dsum, the f32 dQ accumulator in atomic mode, the f32 dK/dV partials of a GQA split) comes from the caching allocator and is
// returned right after the launches: the single stream orders its next user after us.
#include <cmath>
#include "cuda/common.cuh"
#include "cuda/dtype.cuh"
#include "cuda/entries.h"
#include "ops/flash_attn/flash_attn.h"
#include "ops/flash_attn/flash_attn_bwd_kernel.cuh"
#include "ops/flash_attn/flash_attn_fwd_kernel.cuh"

namespace fovea::cuda {
namespace {

using fa::FaArgs;

int check_ptr(const void* ptr, int device, const char* op, const char* name) {
  if (!ptr) return fail(op, ": ", name, " is null");
  cudaPointerAttributes at{};
  cudaError_t e = cudaPointerGetAttributes(&at, ptr);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return fail(op, ": ", name, " is not a CUDA pointer (", cudaGetErrorString(e), ")");
  }
  if (at.type != cudaMemoryTypeDevice && at.type != cudaMemoryTypeManaged)
    return fail(op, ": ", name, " is host memory, expected memory on cuda:", device);
  if (at.device != device)
    return fail(op, ": ", name, " is on cuda:", at.device, ", expected cuda:", device);
  return 0;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Shared checks of both directions; fills the kernel arguments.
int prepare(const FlashAttnParams& p, const char* op, bool bwd, FaArgs* a) {
  if (p.dtype != DType::BF16 && p.dtype != DType::F16)
    return fail(op, " (CUDA): dtype ", dtype_name(p.dtype),
                " is not supported; use bf16 or f16 on the GPU (or the CPU path for f32)");
  if (p.d != 64 && p.d != 80 && p.d != 96 && p.d != 128)
    return fail(op, " (CUDA): head dim ", p.d, " is not supported; expected 64, 80, 96 or 128");
  if (p.hq <= 0 || p.hkv <= 0 || p.hq % p.hkv != 0)
    return fail(op, ": hq (", p.hq, ") must be a positive multiple of hkv (", p.hkv, ")");
  if (p.batch < 0 || p.batch > 65535 || p.hq > 65535)
    return fail(op, " (CUDA): batch (", p.batch, ") and hq (", p.hq,
                ") must lie in [0, 65535] (grid y/z limits)");
  if (p.total_q < 0 || p.total_k < 0 || p.max_seqlen_q < 0 || p.max_seqlen_k < 0)
    return fail(op, ": negative total or max_seqlen");
  if (!std::isfinite(p.scale)) return fail(op, ": scale is not finite");
  if (p.device < 0) return fail(op, " (CUDA): device is ", p.device, ", expected a cuda ordinal");
  if (use_device(p.device, op)) return 1;
  const int dev = p.device;
  if (check_ptr(p.cu_seqlens_q, dev, op, "cu_seqlens_q") ||
      check_ptr(p.cu_seqlens_k, dev, op, "cu_seqlens_k"))
    return 1;
  if (p.total_q > 0 && (check_ptr(p.q, dev, op, "q") || check_ptr(p.out, dev, op, "out") ||
                        check_ptr(p.lse, dev, op, "lse")))
    return 1;
  if (p.total_k > 0 && (check_ptr(p.k, dev, op, "k") || check_ptr(p.v, dev, op, "v"))) return 1;
  if (bwd) {
    if (p.total_q > 0 && (check_ptr(p.dout, dev, op, "dout") || check_ptr(p.dq, dev, op, "dq")))
      return 1;
    if (p.total_k > 0 && (check_ptr(p.dk, dev, op, "dk") || check_ptr(p.dv, dev, op, "dv")))
      return 1;
    // Gradients are stored as aligned pairs of 16-bit elements.
    for (const void* g : {p.dq, p.dk, p.dv})
      if (reinterpret_cast<uintptr_t>(g) & 3)
        return fail(op, " (CUDA): dq/dk/dv must be 4-byte aligned (even element offset)");
  }

  *a = FaArgs{};
  a->q = p.q; a->k = p.k; a->v = p.v; a->out = p.out; a->dout = p.dout;
  a->o_w = p.out; a->lse = p.lse;
  a->dq = p.dq; a->dk = p.dk; a->dv = p.dv;
  a->cu_q = p.cu_seqlens_q; a->cu_k = p.cu_seqlens_k;
  a->total_q = p.total_q; a->total_k = p.total_k;
  a->q_rs = p.q_row_stride; a->q_hs = p.q_head_stride;
  a->k_rs = p.k_row_stride; a->k_hs = p.k_head_stride;
  a->v_rs = p.v_row_stride; a->v_hs = p.v_head_stride;
  a->o_rs = p.o_row_stride; a->o_hs = p.o_head_stride;
  a->hq = p.hq; a->hkv = p.hkv; a->group = p.hq / p.hkv;
  a->causal = p.causal ? 1 : 0;
  a->wl = p.window_left < 0 ? -1 : p.window_left;
  a->wr = p.window_right < 0 ? -1 : p.window_right;
  a->scale = p.scale;
  a->scale_log2 = p.scale * fa::kLog2e;
  // uint4 tile loads need every row start 16-byte aligned: base pointers and strides.
  bool vec = true;
  for (const void* ptr : {p.q, p.k, p.v}) vec = vec && aligned16(ptr);
  if (bwd) vec = vec && aligned16(p.dout);
  for (int64_t st : {p.q_row_stride, p.q_head_stride, p.k_row_stride, p.k_head_stride,
                     p.v_row_stride, p.v_head_stride, p.o_row_stride, p.o_head_stride})
    vec = vec && st % 8 == 0;
  a->vec = vec ? 1 : 0;
  return 0;
}

template <class K>
int set_smem(K kernel, size_t bytes, const char* op, int dev) {
  // Above 48 KB a block gets dynamic shared memory only after raising the limit.
  FOVEA_CU(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
           op, dev);
  return 0;
}

unsigned tiles(int n, int tile) { return unsigned((n + tile - 1) / tile); }

template <class T, int D>
int run_fwd(const FaArgs& a, const FlashAttnParams& p, cudaStream_t s) {
  const size_t smem = fa::fwd_smem_bytes<D>();
  if (set_smem(fa::fwd_kernel<T, D>, smem, "flash_attn_fwd: setting the shared-memory limit", p.device))
    return 1;
  dim3 grid(tiles(p.max_seqlen_q, fa::kBM), unsigned(p.hq), unsigned(p.batch));
  fa::fwd_kernel<T, D><<<grid, fa::kThreads, smem, s>>>(a);
  return check_launch("flash_attn_fwd", p.device);
}

template <class T, int D>
int run_bwd(FaArgs a, const FlashAttnParams& p, cudaStream_t s) {
  const int dev = p.device;
  const bool atomic = !p.deterministic;
  float* dsum = nullptr;
  float* dq_acc = nullptr;
  float* dkv_ws = nullptr;
  const size_t nq = size_t(p.total_q) * p.hq;
  auto release = [&] {
    if (dsum) device_free(dev, dsum);
    if (dq_acc) device_free(dev, dq_acc);
    if (dkv_ws) device_free(dev, dkv_ws);
  };
  int rc = 0;
  do {
    if (nq) {
      dsum = static_cast<float*>(device_malloc(dev, nq * sizeof(float)));
      if (!dsum) { rc = 1; break; }
      a.dsum = dsum;
      const int64_t threads = int64_t(nq) * 32;
      const unsigned blocks = unsigned(std::min<int64_t>((threads + 255) / 256, 65535));
      fa::dsum_kernel<T><<<blocks, 256, 0, s>>>(a, D);
      if ((rc = check_launch("flash_attn_bwd: rowsum(dO*O)", dev))) break;
    }
    if (atomic && nq) {
      dq_acc = static_cast<float*>(device_malloc(dev, nq * D * sizeof(float)));
      if (!dq_acc) { rc = 1; break; }
      a.dq_acc = dq_acc;
      cudaError_t e = cudaMemsetAsync(dq_acc, 0, nq * D * sizeof(float), s);
      if (e != cudaSuccess) { rc = cuda_fail(e, "flash_attn_bwd: clearing the dQ workspace", dev); break; }
    }
    if (p.max_seqlen_k > 0 && p.total_k > 0) {
      // GQA: with too few (key tile, KV head) blocks to fill the GPU, split each head group
      // over blocks; the f32 partials are added in split order (still deterministic).
      const int group = p.hq / p.hkv;
      const int64_t blocks = int64_t(tiles(p.max_seqlen_k, fa::kBN)) * p.hkv * p.batch;
      int sms = 0;
      if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
        cudaGetLastError();
        sms = 1;
      }
      const size_t plane = size_t(p.total_k) * p.hkv * D;
      int nsplit = 1;
      if (group > 1 && blocks < 2 * int64_t(sms)) {
        nsplit = int(std::min<int64_t>(group, (2 * int64_t(sms) + blocks - 1) / blocks));
        // Keep the workspace (2 · nsplit · plane floats) under 1 GiB.
        while (nsplit > 1 && 2 * size_t(nsplit) * plane * sizeof(float) > (size_t(1) << 30)) --nsplit;
      }
      const int per_split = (group + nsplit - 1) / nsplit;
      nsplit = (group + per_split - 1) / per_split;  // no empty splits
      if (nsplit > 1) {
        dkv_ws = static_cast<float*>(device_malloc(dev, 2 * size_t(nsplit) * plane * sizeof(float)));
        if (!dkv_ws) { rc = 1; break; }
      }
      const size_t smem = fa::dkdv_smem_bytes<D>();
      if ((rc = set_smem(fa::dkdv_kernel<T, D>, smem, "flash_attn_bwd: setting the shared-memory limit", dev)))
        break;
      dim3 grid(tiles(p.max_seqlen_k, fa::kBN), unsigned(p.hkv * nsplit), unsigned(p.batch));
      fa::dkdv_kernel<T, D><<<grid, fa::kThreads, smem, s>>>(a, atomic && nq ? 1 : 0, nsplit,
                                                             per_split, dkv_ws);
      if ((rc = check_launch("flash_attn_bwd: dK/dV", dev))) break;
      if (nsplit > 1) {
        const unsigned rb = unsigned(std::min<size_t>((plane + 255) / 256, size_t(1) << 20));
        fa::dkdv_reduce_kernel<T><<<rb, 256, 0, s>>>(a, dkv_ws, nsplit, int64_t(plane));
        if ((rc = check_launch("flash_attn_bwd: dK/dV split reduction", dev))) break;
      }
    }
    if (nq && p.max_seqlen_q > 0) {
      if (atomic) {
        const int64_t n = int64_t(nq) * D;
        const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 1 << 20));
        fa::dq_convert_kernel<T><<<blocks, 256, 0, s>>>(a, n);
        if ((rc = check_launch("flash_attn_bwd: dQ convert", dev))) break;
      } else {
        const size_t smem = fa::dq_smem_bytes<D>();
        if ((rc = set_smem(fa::dq_kernel<T, D>, smem, "flash_attn_bwd: setting the shared-memory limit", dev)))
          break;
        dim3 grid(tiles(p.max_seqlen_q, fa::kBM), unsigned(p.hq), unsigned(p.batch));
        fa::dq_kernel<T, D><<<grid, fa::kThreads, smem, s>>>(a);
        if ((rc = check_launch("flash_attn_bwd: dQ", dev))) break;
      }
    }
  } while (false);
  release();
  return rc;
}

// Calls f(tag<T>, int_constant<D>) for the (dtype, D) pair validated by prepare().
template <class F> int dispatch(const FlashAttnParams& p, F&& f) {
  auto by_d = [&](auto tag) {
    switch (p.d) {
      case 64: return f(tag, std::integral_constant<int, 64>{});
      case 80: return f(tag, std::integral_constant<int, 80>{});
      case 96: return f(tag, std::integral_constant<int, 96>{});
      default: return f(tag, std::integral_constant<int, 128>{});
    }
  };
  if (p.dtype == DType::BF16) return by_d(Tag<__nv_bfloat16>{});
  return by_d(Tag<__half>{});
}

}  // namespace

int flash_attn_fwd(const FlashAttnParams* p) {
  if (!p) return fail("flash_attn_fwd: params is null");
  FaArgs a;
  if (prepare(*p, "flash_attn_fwd", false, &a)) return 1;
  if (p->total_q == 0 || p->batch == 0 || p->max_seqlen_q == 0) return 0;
  cudaStream_t s = stream_for(p->device);
  if (!s) return 1;
  return dispatch(*p, [&](auto tag, auto d) {
    return run_fwd<typename decltype(tag)::type, decltype(d)::value>(a, *p, s);
  });
}

int flash_attn_bwd(const FlashAttnParams* p) {
  if (!p) return fail("flash_attn_bwd: params is null");
  FaArgs a;
  if (prepare(*p, "flash_attn_bwd", true, &a)) return 1;
  if (p->batch == 0 || (p->total_q == 0 && p->total_k == 0)) return 0;
  cudaStream_t s = stream_for(p->device);
  if (!s) return 1;
  return dispatch(*p, [&](auto tag, auto d) {
    return run_bwd<typename decltype(tag)::type, decltype(d)::value>(a, *p, s);
  });
}

}  // namespace fovea::cuda
