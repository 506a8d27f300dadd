// Flash attention over packed variable-length sequences (FlashAttention's varlen semantics).
//
// Layout: q [total_q, hq, d], k and v [total_k, hkv, d], out like q; the last dimension is
// contiguous, rows and heads have the given element strides. Sequence b owns rows
// [cu_seqlens_q[b], cu_seqlens_q[b+1]) of q and [cu_seqlens_k[b], cu_seqlens_k[b+1]) of k/v.
// lse is f32 [hq, total_q]: the natural-log log-sum-exp of the scaled scores of each row.
//
// Masking, per sequence with sq queries and sk keys: query i sees key j iff
//   (!causal || j <= i + sk - sq) and
//   (window_left  < 0 || j >= i + sk - sq - window_left) and
//   (window_right < 0 || j <= i + sk - sq + window_right).
// The causal mask is bottom-right aligned so that a query block appended after a cached
// prefix sees the whole prefix. Query head h reads KV head h / (hq / hkv). A row that sees
// no key outputs zeros and lse = +inf (its gradient is zero). Zero-length sequences are fine.
#pragma once
#include <cstdint>
#include "core/dtype.h"

namespace fovea {

struct FlashAttnParams {
  // Forward inputs/outputs. q, k, v, out share one dtype: f32, bf16 or f16 (f32 math).
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  float* lse = nullptr;  // [hq, total_q]
  DType dtype = DType::F32;
  const int32_t* cu_seqlens_q = nullptr;  // [batch + 1], on the same device as q
  const int32_t* cu_seqlens_k = nullptr;
  int batch = 0;
  int64_t total_q = 0, total_k = 0;
  int hq = 0, hkv = 0, d = 0;
  int max_seqlen_q = 0, max_seqlen_k = 0;
  int64_t q_row_stride = 0, q_head_stride = 0;
  int64_t k_row_stride = 0, k_head_stride = 0;
  int64_t v_row_stride = 0, v_head_stride = 0;
  int64_t o_row_stride = 0, o_head_stride = 0;
  bool causal = false;
  int window_left = -1, window_right = -1;  // -1: unbounded
  float scale = 1.f;

  // Backward: dout like out (same strides as out); dq, dk, dv contiguous like q, k, v.
  // dq/dk/dv are written (not accumulated) in q's dtype.
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  bool deterministic = true;  // CUDA: false allows atomic dQ accumulation

  int device = -1;
};

// Plain, obviously-correct reference (f64 math, materializes one score row at a time).
void flash_attn_fwd_reference(const FlashAttnParams& p);
void flash_attn_bwd_reference(const FlashAttnParams& p);
// The CPU fast path: tiled online softmax, threaded over (sequence, head, query tile).
void flash_attn_fwd_cpu(const FlashAttnParams& p);
void flash_attn_bwd_cpu(const FlashAttnParams& p);

}  // namespace fovea
