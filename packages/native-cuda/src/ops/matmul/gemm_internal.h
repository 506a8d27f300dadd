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

// ── Skinny path (gemm_skinny*.cpp): few rows of A against a B whose rows (k) or columns (n)
// are contiguous, computed without packing B (see NOTES.md, "Skinny M").
//   dot form  (B(k, n) at stride 1 along k, i.e. a weight stored [N, K] and passed as Wᵀ):
//             out[r·ldo + j] = Σ_k a[r·lda + k] · w[j·ldb + k]
//   axpy form (B(k, n) at stride 1 along n, a row-major [K, N] B):
//             out[r·ldo + j] = Σ_k a[r·lda + k] · b[k·ldb + j]
// for rows r < R and columns j < nw. A is f32, pre-scaled by alpha, zero-padded to
// lda ≥ round_up(K, 16); B is f32/bf16/f16 (`bt`). Every kernel sums each output in an order
// fixed by K alone (not by R, nw or the caller's chunking), so results do not depend on
// the thread count.
using SkinnyKernel = void (*)(DType bt, int64_t K, const float* a, int64_t lda, int64_t R,
                              const void* b, int64_t ldb, int64_t nw, float* out, int64_t ldo);
struct SkinnyKernels {
  SkinnyKernel dot, axpy;
  const char* name;
};
SkinnyKernels skinny_portable();
SkinnyKernels skinny_avx2();
SkinnyKernels skinny_avx512();

// Runs p on the skinny path if it qualifies (B unit-stride along k with rows sharing one B
// ≤ skinny_max_rows(), or unit-stride along n with rows ≤ min(that, kSkinnyAxpyMaxRows));
// returns false, doing nothing, otherwise. Inputs f32/bf16/f16;
// gemm_cpu has already handled empty problems, K == 0 and alpha == 0.
bool gemm_skinny(const GemmParams& p, Isa isa);
// Most rows (batch·M when B is shared across the batch, M otherwise) the skinny path takes.
// Default kSkinnyMaxRows; FOVEA_GEMM_SKINNY=<rows> overrides (0 disables the path);
// set_skinny_max_rows(n) overrides both (tests, lab), -1 restores.
constexpr int64_t kSkinnyMaxRows = 32;      // dot form; measured: NOTES.md "Skinny M"
constexpr int64_t kSkinnyAxpyMaxRows = 8;   // axpy form; measured: NOTES.md "Skinny M"
int64_t skinny_max_rows();
void set_skinny_max_rows(int64_t rows);

// Below this many flops (2·M·N·K summed over the batch) gemm_cpu stays on one thread.
constexpr double kParallelMinFlops = 1.2e7;  // measured crossover: NOTES.md

}  // namespace gemm
}  // namespace fovea
