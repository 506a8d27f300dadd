// The sidecar's implementations of the FoveaCudaApi entries, one declaration per table slot,
// grouped by the file that defines them. api.cu puts them in the table (wrapped so that no
// C++ exception crosses the C ABI). Semantics are documented in core/cuda_api.h and in the
// op headers (ops/elementwise/elementwise.h, ops/reduce/reduce.h, ops/matmul/matmul.h).
#pragma once
#include <cstddef>
#include "core/cuda_api.h"

namespace fovea::cuda {

// probe.cu
int probe(int* device_count, int* driver_version, int* runtime_version);
int device_info(int device, char* name, int name_len, size_t* total_bytes, int* cc_major,
                int* cc_minor, int* sm_count);

// allocator.cu
void* device_malloc(int device, size_t nbytes);
int device_free(int device, void* ptr);
int empty_cache(int device);
int memory_stats(int device, size_t* allocated, size_t* reserved);

// stream.cu
int memcpy_h2d(int device, void* dst, const void* src, size_t nbytes);
int memcpy_d2h(int device, void* dst, const void* src, size_t nbytes);
int memcpy_d2d(int device, void* dst, const void* src, size_t nbytes);
int synchronize(int device);

// elementwise.cu, binary.cu
int fill(const TensorView* out, double value);
int copy(const TensorView* src, const TensorView* dst);
int unary(int op, const TensorView* x, const TensorView* out, double alpha, double beta);
int binary(int op, const TensorView* a, const TensorView* b, const TensorView* out);

// reduce.cu, softmax.cu
int reduce_last(int op, const TensorView* x, const TensorView* out, const TensorView* idx);
int softmax_last(int log, const TensorView* x, const TensorView* out);

// gemm.cu (cuBLAS through cublas_dyn.cu)
int gemm(const GemmParams* p);

// ops/flash_attn/flash_attn.cu
int flash_attn_fwd(const FlashAttnParams* p);
int flash_attn_bwd(const FlashAttnParams* p);

// ops/grpo_loss/grpo_loss.cu
int grpo_loss(const GrpoLossParams* p);

// ops/paged_attn/paged_attn.cu
int paged_write(const PagedWriteParams* p);
int paged_copy_blocks(const PagedCopyParams* p);
int paged_attention(const PagedAttnParams* p);

// ops/adamw/adamw.cu
int adamw_step(const TensorView* p, const TensorView* g, const TensorView* m, const TensorView* v,
               const TensorView* master, const AdamWScalars* s);

}  // namespace fovea::cuda
