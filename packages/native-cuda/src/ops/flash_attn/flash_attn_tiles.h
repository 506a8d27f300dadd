// f32 tile primitives of the CPU flash attention (flash_attn_cpu.cpp), one table per ISA
// (flash_attn_tiles.cpp). Tiles live in the kernel's own scratch buffers, so layouts are
// fixed: a packed transposed key/value tile is [d][kTileK] floats (zero-padded columns), a
// score tile is [rows][kTileK], row tiles of q/k/v/dO and accumulators are [rows][dp] with
// dp = d rounded up to 16 (zero-padded), all 64-byte aligned.
#pragma once
#include <cstdint>
#include "core/cpu_features.h"

namespace fovea {

constexpr int kTileQ = 64;  // query rows per tile
constexpr int kTileK = 64;  // keys per tile (score tile width)

struct FlashTileKernels {
  // S[r][0:kTileK] = Σ_c A[r·lda + c] · Bt[c·kTileK + 0:kTileK], r < rows, c < d.
  void (*qk)(const float* A, int64_t lda, int rows, const float* Bt, int d, float* S);
  // C[m][0:dp] = alpha[m]·C[m][0:dp] (alpha null: 1) + Σ_{k<kdim} A[m·a_rs + k·a_cs] · B[k·ldb + 0:dp]
  // for m < rows; dp is a multiple of 16, ldc/ldb multiples of 16.
  void (*acc)(float* C, int64_t ldc, int rows, const float* alpha, const float* A, int64_t a_rs,
              int64_t a_cs, int kdim, const float* B, int64_t ldb, int dp);
  const char* name;
};

const FlashTileKernels& flash_tile_kernels(Isa isa);

}  // namespace fovea
