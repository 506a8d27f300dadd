// The C ABI between the core library and the optional CUDA sidecar (libfovea_cuda.so).
// The sidecar exports one symbol, fovea_cuda_api(), returning this table; the core dlopen()s
// the sidecar on first use (core/cuda_loader.cpp). Every entry returns 0 on success and
// nonzero on failure, with last_error() describing it. Bump FOVEA_CUDA_ABI_VERSION whenever
// the table changes; the loader refuses a sidecar built against another version.
//
// Adding a CUDA op: add an entry at the end of the table, implement it in src/ops/<op>/<op>.cu
// (or src/cuda/), fill it in src/cuda/api.cu, bump the version, and dispatch to it from the
// op's Node-API binding when the tensors' device is >= 0.
#pragma once
#include <cstddef>
#include <cstdint>
#include "core/tensor_view.h"

#define FOVEA_CUDA_ABI_VERSION 4

namespace fovea {

struct GemmParams;       // ops/matmul/matmul.h
struct FlashAttnParams;  // ops/flash_attn/flash_attn.h
struct GrpoLossParams;   // ops/grpo_loss/grpo_loss.h
struct PagedAttnParams;  // ops/paged_attn/paged_attn.h
struct PagedWriteParams;
struct PagedCopyParams;
struct AdamWScalars;     // ops/adamw/adamw.h

struct FoveaCudaApi {
  int abi_version;
  const char* (*last_error)();
  // Driver and device discovery. Fails (with a message saying which) when the driver library
  // is missing, the driver is too old for the runtime, or there is no device.
  int (*probe)(int* device_count, int* driver_version, int* runtime_version);
  int (*device_info)(int device, char* name, int name_len, size_t* total_bytes, int* cc_major,
                     int* cc_minor, int* sm_count);
  // Caching allocator over cudaMalloc (never managed memory). free returns the block to the
  // cache; empty_cache gives cached blocks back to the driver.
  void* (*malloc)(int device, size_t nbytes);
  int (*free)(int device, void* ptr);
  int (*empty_cache)(int device);
  int (*memory_stats)(int device, size_t* allocated, size_t* reserved);
  // Copies on the device's stream. d2h synchronizes the stream (reading data back is the only
  // synchronizing operation, as in PyTorch's eager mode).
  int (*memcpy_h2d)(int device, void* dst, const void* src, size_t nbytes);
  int (*memcpy_d2h)(int device, void* dst, const void* src, size_t nbytes);
  int (*memcpy_d2d)(int device, void* dst, const void* src, size_t nbytes);
  int (*synchronize)(int device);
  // Kernels. Views describe device memory of one device; shapes were validated by the caller.
  int (*fill)(const TensorView* out, double value);
  int (*copy)(const TensorView* src, const TensorView* dst);  // strided copy with dtype cast
  int (*unary)(int op, const TensorView* x, const TensorView* out, double alpha, double beta);
  int (*binary)(int op, const TensorView* a, const TensorView* b, const TensorView* out);
  int (*reduce_last)(int op, const TensorView* x, const TensorView* out, const TensorView* idx);
  int (*softmax_last)(int log, const TensorView* x, const TensorView* out);
  int (*gemm)(const GemmParams* p);  // through cuBLAS(Lt), loaded at run time
  // ABI 2: flash attention (src/ops/flash_attn/flash_attn.cu) and the fused GRPO loss
  // (src/ops/grpo_loss/grpo_loss.cu).
  int (*flash_attn_fwd)(const FlashAttnParams* p);
  int (*flash_attn_bwd)(const FlashAttnParams* p);
  int (*grpo_loss)(const GrpoLossParams* p);
  // ABI 3: the paged KV cache (src/ops/paged_attn/paged_attn.cu): slot-mapping scatter,
  // copy-on-write block copies, paged attention (split-context decode + prefill).
  int (*paged_write)(const PagedWriteParams* p);
  int (*paged_copy_blocks)(const PagedCopyParams* p);
  int (*paged_attention)(const PagedAttnParams* p);
  // ABI 4: the fused AdamW step (src/ops/adamw/adamw.cu); master is null for f32 params.
  int (*adamw_step)(const TensorView* p, const TensorView* g, const TensorView* m,
                    const TensorView* v, const TensorView* master, const AdamWScalars* s);
};

using FoveaCudaApiFn = const FoveaCudaApi* (*)();

// Loader (core/cuda_loader.cpp). cuda_api() returns the table or throws fovea::Error saying
// what is missing: the sidecar library, the driver, or a GPU.
const FoveaCudaApi* cuda_api();
// Non-throwing status for diagnostics: "" when CUDA is usable, else the reason.
const char* cuda_unavailable_reason();
// Directory the sidecar is looked up in (defaults to the addon's directory).
void set_cuda_sidecar_dir(const char* dir);

}  // namespace fovea
