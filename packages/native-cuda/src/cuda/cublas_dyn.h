// cuBLAS loaded at run time. The build machine need not have cuBLAS (its headers or
// libraries), so the few C API types and entry points gemm.cu uses are declared here with the
// numeric values documented in cublas_api.h, and the library is dlopen()ed on first use:
// libcublas.so.<this runtime's major>, .13, .12, then unversioned, from $FOVEA_CUBLAS_DIR
// (':'-separated), the dynamic loader's search path, $CUDA_HOME/lib64 and
// /usr/local/cuda/lib64. libcublasLt from the same place is loaded first so libcublas's
// dependency on it resolves even outside the loader's search path (e.g. PyTorch's pip
// nvidia-cublas wheel).
#pragma once
#include <cuda_runtime.h>
#include <library_types.h>  // cudaDataType_t: part of the CUDA runtime headers
#include <mutex>

namespace fovea::cuda {

struct cublasContext;
using cublasHandle_t = cublasContext*;
using cublasStatus_t = int;  // CUBLAS_STATUS_SUCCESS = 0
constexpr cublasStatus_t kCublasSuccess = 0;

enum cublasOperation_t : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasComputeType_t : int { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_64F = 70 };
enum cublasGemmAlgo_t : int { CUBLAS_GEMM_DEFAULT = -1 };

struct CublasFns {
  cublasStatus_t (*create)(cublasHandle_t*);                  // cublasCreate_v2
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);  // cublasSetStream_v2
  cublasStatus_t (*gemm_strided_batched_ex)(
      cublasHandle_t, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
      const void* alpha, const void* A, cudaDataType_t Atype, int lda, long long strideA,
      const void* B, cudaDataType_t Btype, int ldb, long long strideB, const void* beta,
      void* C, cudaDataType_t Ctype, int ldc, long long strideC, int batchCount,
      cublasComputeType_t computeType, cublasGemmAlgo_t algo);
  const char* path;  // the libcublas that was loaded
};

// The loaded library, or nullptr with last_error naming the library, the versions and the
// directories tried, and the fix. Loads once; later calls return the cached outcome.
const CublasFns* cublas();

// The device's cuBLAS handle, bound to its stream (stream.cu); created on first use. The
// caller holds cublas_mutex(device) while using it (a handle is not for concurrent use) and
// has made the device current. Returns nullptr with last_error set on failure.
cublasHandle_t cublas_handle(int device);
std::mutex& cublas_mutex(int device);

// "CUBLAS_STATUS_NOT_SUPPORTED (15)" and the like.
const char* cublas_status_name(cublasStatus_t s);

}  // namespace fovea::cuda
