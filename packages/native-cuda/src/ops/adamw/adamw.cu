// CUDA AdamW step (the sidecar's adamw_step entry, ABI 4): one grid-stride pass per
// parameter, same per-element formula and operation order as adamw_core_portable (explicit
// fmaf, __fmul_rn/__fadd_rn where nvcc must not fuse; '/' and sqrtf are IEEE-rounded
// without --use_fast_math), so a GPU step should give the CPU reference's bits. The parameter (f32 / bf16 / f16) and gradient (f32 / bf16 / f16)
// dtypes are uniform branches on codes; m, v and the master are f32. Shapes, dtypes and
// hyper-parameters were validated by the caller (adamw_check).
#include <cuda_fp16.h>
#include "cuda/common.cuh"
#include "cuda/entries.h"
#include "ops/adamw/adamw.h"

namespace fovea::cuda {
namespace {

__device__ __forceinline__ float load_any(const void* x, int dt, int64_t i) {
  if (dt == int(DType::F32)) return static_cast<const float*>(x)[i];
  const uint16_t b = static_cast<const uint16_t*>(x)[i];
  if (dt == int(DType::BF16)) return __uint_as_float(uint32_t(b) << 16);
  return __half2float(__ushort_as_half(b));
}

// Round to nearest even, NaN kept quiet (as dtype.h's f32_to_bf16).
__device__ __forceinline__ uint16_t to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

__global__ void adamw_kernel(AdamWScalars s, void* p, int pdt, const void* g, int gdt, float* m,
                             float* v, float* master, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = load_any(g, gdt, i);
    const float w = master ? master[i] : static_cast<const float*>(p)[i];
    const float mi = fmaf(gi, s.one_minus_beta1, m[i] * s.beta1);
    const float vi = fmaf(s.one_minus_beta2 * gi, gi, v[i] * s.beta2);
    const float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
    const float wn = __fadd_rn(__fmul_rn(w, s.decay), (s.neg_step_size * mi) / denom);  // no fma
    m[i] = mi;
    v[i] = vi;
    if (!master) {
      static_cast<float*>(p)[i] = wn;
    } else {
      master[i] = wn;
      static_cast<uint16_t*>(p)[i] =
          pdt == int(DType::BF16) ? to_bf16(wn) : __half_as_ushort(__float2half_rn(wn));
    }
  }
}

}  // namespace

int adamw_step(const TensorView* p, const TensorView* g, const TensorView* m, const TensorView* v,
               const TensorView* master, const AdamWScalars* s) {
  const char* op = "adamw_step";
  if (int rc = use_device(p->device, op)) return rc;
  const int64_t n = p->numel();
  if (n == 0) return 0;
  cudaStream_t st = stream_for(p->device);
  if (!st) return 1;
  adamw_kernel<<<grid_for(n), kThreads, 0, st>>>(*s, p->data, int(p->dtype), g->data, int(g->dtype),
                                                  m->ptr<float>(), v->ptr<float>(),
                                                  master ? master->ptr<float>() : nullptr, n);
  return check_launch(op, p->device);
}

}  // namespace fovea::cuda
