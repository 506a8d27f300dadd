// GEMM: C[b] = alpha · A[b]·B[b] + beta · C[b], batched, with arbitrary element strides so
// that transposed and broadcast (stride-0 batch) operands need no copies.
//   A[b] is M×K: element (m, k) at a + b·a_batch + m·a_rs + k·a_cs
//   B[b] is K×N: element (k, n) at b + b·b_batch + k·b_rs + n·b_cs
//   C[b] is M×N: element (m, n) at c + b·c_batch + m·c_rs + n·c_cs
// Inputs f32, bf16, f16 or f64; accumulation in f32 (f64 for f64); C is f32, bf16, f16 or
// f64. The CPU path packs panels of A and B (converting to f32 while packing) and runs a
// register-blocked micro-kernel (AVX-512, AVX2/FMA or portable, chosen at run time); few-row
// products (decoding) with B unit-stride along k or n skip the packing (gemm_skinny.cpp).
#pragma once
#include <cstdint>
#include "core/dtype.h"

namespace fovea {

struct GemmParams {
  const void* a = nullptr;
  const void* b = nullptr;
  void* c = nullptr;
  DType a_dtype = DType::F32, b_dtype = DType::F32, c_dtype = DType::F32;
  int64_t batch = 1, M = 0, N = 0, K = 0;
  int64_t a_batch = 0, a_rs = 0, a_cs = 0;
  int64_t b_batch = 0, b_rs = 0, b_cs = 0;
  int64_t c_batch = 0, c_rs = 0, c_cs = 1;
  float alpha = 1.f, beta = 0.f;
  int device = -1;
};

// Plain triple loop in f64: the reference every fast path is tested against.
void gemm_reference(const GemmParams& p);
// The CPU fast path (packed, threaded, SIMD).
void gemm_cpu(const GemmParams& p);

}  // namespace fovea
