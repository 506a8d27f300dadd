// Paged KV cache kernels (vLLM's PagedAttention idea, own code): the cache is a pool of
// fixed-size blocks per layer; a sequence owns a block table mapping its logical block i
// (tokens [i·bs, (i+1)·bs)) to a physical block. Bookkeeping (tables, refcounts, free list)
// lives in TypeScript (packages/core-ts/src/kvcache/); these kernels only move and read data.
//
// Cache layout (NOTES.md): per layer one K pool and one V pool, each contiguous
//   [num_blocks, block_size, hkv, d]   (NHD, like vLLM v1 / FlashAttention's paged layout)
// so slot s = block·block_size + offset holds the token's K (or V) for head h at
//   (s·hkv + h)·d + [0, d).
// A token's head vector is contiguous (one SIMD dot / axpy), and a block of one head is a
// strided run of block_size vectors.
//
// Attention, per segment b of the packed queries q [total_q, hq, d] (rows cu_seqlens_q[b] ..
// cu_seqlens_q[b+1], qlen = their count) against the ctx = context_lens[b] cached tokens of
// its sequence (the queries' own keys are the last qlen of them, written before the call):
// query i (0-based in the segment) sees cached tokens j <= ctx - qlen + i (causal, bottom-
// right aligned, as flash_attn). Query head h reads KV head h / (hq / hkv). Scores are
// scale·q·k, softmax in f32 (f64 in the reference), out in q's dtype. Not differentiable.
#pragma once
#include <cstdint>
#include "core/dtype.h"

namespace fovea {

struct PagedAttnParams {
  const void* q = nullptr;  // [total_q, hq, d], last dim contiguous; f32, bf16 or f16
  void* out = nullptr;      // like q (q's dtype)
  DType q_dtype = DType::F32;
  const void* k_cache = nullptr;  // [num_blocks, block_size, hkv, d] contiguous
  const void* v_cache = nullptr;
  DType cache_dtype = DType::F32;  // f32, bf16 or f16
  const int32_t* block_tables = nullptr;  // [batch, max_blocks_per_seq] row-major
  const int32_t* context_lens = nullptr;  // [batch]
  const int32_t* cu_seqlens_q = nullptr;  // [batch + 1]
  int batch = 0, max_blocks_per_seq = 0;
  int64_t total_q = 0, num_blocks = 0;
  int hq = 0, hkv = 0, d = 0, block_size = 16;
  int max_context_len = 0, max_qlen = 0;  // upper bounds (CUDA grid sizes)
  int64_t q_row_stride = 0, q_head_stride = 0, o_row_stride = 0, o_head_stride = 0;
  float scale = 1.f;
  int device = -1;
};

// k, v [num_tokens, hkv, d] (last dim contiguous, cache dtype) scattered to their slots.
struct PagedWriteParams {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t k_row_stride = 0, k_head_stride = 0, v_row_stride = 0, v_head_stride = 0;
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  DType dtype = DType::F32;
  const int32_t* slots = nullptr;  // [num_tokens], each in [0, num_blocks·block_size)
  int64_t num_tokens = 0;
  int hkv = 0, d = 0;
  int device = -1;
};

// Copies whole blocks src[i] -> dst[i] in one layer's K and V pools (copy-on-write).
struct PagedCopyParams {
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  DType dtype = DType::F32;
  const int32_t* src = nullptr;  // [n] block ids
  const int32_t* dst = nullptr;  // [n] block ids, distinct from every src
  int n = 0;
  int64_t block_elems = 0;  // block_size · hkv · d
  int device = -1;
};

// Plain, obviously-correct reference: one query row at a time, f64 scores and sums.
void paged_attn_reference(const PagedAttnParams& p);
// CPU fast path: work item = (segment, KV head, query tile); all query heads of the KV head's
// group share each packed key/value tile; online softmax over 64-token tiles in f32.
void paged_attn_cpu(const PagedAttnParams& p);
void paged_write_cpu(const PagedWriteParams& p);
void paged_copy_blocks_cpu(const PagedCopyParams& p);

}  // namespace fovea
