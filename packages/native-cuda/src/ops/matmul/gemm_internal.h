// Internals of the CPU GEMM shared by the driver (gemm_blocked.cpp), the micro-kernels
// (gemm_kernels_*.cpp) and the lab (bench/gemm_lab.cpp). Not part of the op's interface:
// callers use gemm_cpu / gemm_reference from matmul.h.
//
// Packed layouts (BLIS/GotoBLAS style, vectors run along N):
//   packed A micro-panel: MR rows × kc, stored k-major: ap[k*MR + i] = alpha · A(i, k)
//   packed B micro-panel: kc × NR,      stored k-major: bp[k*NR + j] = B(k, j)
// Rows/columns past the matrix edge are zero-filled, so the micro-kernel always runs a full
// MR×NR tile; the driver routes edge tiles through a small buffer.
#pragma once
#include <cstdint>
#include "core/cpu_features.h"
#include "ops/matmul/matmul.h"

namespace fovea {
namespace gemm {

// C[0:MR, 0:NR] (row stride ldc, unit column stride) = acc + beta·C, where
// acc = Σ_k ap[k*MR + i] · bp[k*NR + j]. beta == 0 means C is write-only (never read, so
// garbage/NaN in C does not propagate); beta == 1 is a plain +=.
using MicroKernel = void (*)(int64_t kc, const float* ap, const float* bp, float* c,
                             int64_t ldc, float beta);

struct KernelInfo {
  MicroKernel fn;
  int mr, nr;
  const char* name;
};

// The micro-kernels, one per ISA. Each file compiles its SIMD code with a target attribute,
// so calling the AVX-512 kernel on a CPU without AVX-512 is the caller's bug (see isa()).
KernelInfo kernel_portable();
KernelInfo kernel_avx2();
KernelInfo kernel_avx512();
KernelInfo kernel_for(Isa isa);

// Cache blocking: kc × nc of B packed per (jc, pc) iteration (nc a multiple of nr), mc × kc
// of A packed per ic iteration (mc a multiple of mr). With rows_outer (the default, see
// gemm_blocked.cpp) one mr × kc A micro-panel stays in L1 while B's panel streams from L2;
// without it, BLIS's order: one kc × nr B micro-panel in L1, the A block in L2.
struct Blocking {
  int64_t mc, kc, nc;
  bool rows_outer = false;  // ir loop outside the jr loop
};
Blocking blocking_for(const KernelInfo& k);
// Lab/test hook: force the blocking (0 = keep the cache-derived value; rows_outer -1 = keep).
void set_blocking_override(int64_t mc, int64_t kc, int64_t nc, int rows_outer = -1);

// Serial packed GEMM of one sub-problem whose inputs are f32/bf16/f16 (any strides) and
// whose C is any float dtype / any strides. Thread-safe: packing buffers are thread-local.
void gemm_blocked_serial(const GemmParams& p, const KernelInfo& k);

// Below this many flops (2·M·N·K summed over the batch) gemm_cpu stays on one thread.
constexpr double kParallelMinFlops = 1.2e7;  // measured crossover: NOTES.md

}  // namespace gemm
}  // namespace fovea
