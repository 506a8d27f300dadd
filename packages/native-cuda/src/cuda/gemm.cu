// GEMM on the device through cuBLAS (loaded at run time, cublas_dyn.h): the CUDA side of
// GemmParams (ops/matmul/matmul.h): C[b] = alpha·A[b]·B[b] + beta·C[b], row/column strides
// per operand, batch strides (0 broadcasts A or B across the batch).
//
// cuBLAS is column-major: it wants each operand as op(X) with X stored column-major with a
// leading dimension ld (element (r, c) of X at r + c·ld). A strided matrix fits when one of
// its strides is 1: rs == 1 is X itself (op N, ld = cs), cs == 1 is Xᵀ stored column-major
// (op T, ld = rs). C cannot be transposed by cuBLAS, so when C is row-major (c_cs == 1, the
// usual case) we compute Cᵀ = Bᵀ·Aᵀ instead: swap A and B, swap M and N, and swap every
// operand's row and column strides. Operands with no unit stride are rejected with a message
// asking the caller to make them contiguous (no hidden copies).
//
// Types: f32 × f32 -> f32 with CUBLAS_COMPUTE_32F (true f32, no TF32, matching the CPU);
// bf16 or f16 inputs -> same type or f32 output, f32 compute; f64 with CUBLAS_COMPUTE_64F.
#include <climits>
#include "cuda/common.cuh"
#include "cuda/cublas_dyn.h"
#include "cuda/dtype.cuh"
#include "cuda/entries.h"
#include "cuda/indexing.cuh"
#include "ops/matmul/matmul.h"

namespace fovea::cuda {
namespace {

struct Mat {
  const void* data;
  int64_t rows, cols, rs, cs, batch_stride;
  const char* name;  // the caller's name for it (A, B or C), for messages
};

struct ColMajor {
  cublasOperation_t op;
  int64_t ld;
};

// Describes m as op(X) with X column-major (see the top comment). Size-1 dims have no
// meaningful stride, so they never disqualify a layout; ld stays >= max(1, rows of X), as
// cuBLAS requires.
bool as_col_major(const Mat& m, bool allow_transpose, ColMajor* out) {
  const int64_t R = m.rows, C = m.cols;
  if ((m.rs == 1 || R == 1) && (C == 1 || m.cs >= std::max<int64_t>(1, R))) {
    *out = {CUBLAS_OP_N, C == 1 ? std::max<int64_t>(1, R) : m.cs};
    return true;
  }
  if (allow_transpose && (m.cs == 1 || C == 1) && (R == 1 || m.rs >= std::max<int64_t>(1, C))) {
    *out = {CUBLAS_OP_T, R == 1 ? std::max<int64_t>(1, C) : m.rs};
    return true;
  }
  return false;
}

int layout_error(const Mat& m) {
  return fail("gemm: ", m.name, " (", m.rows, "x", m.cols, ") has element strides (", m.rs, ", ",
              m.cs, "); cuBLAS needs one of them to be 1 and the other at least the matching "
              "size. Make ", m.name, " contiguous first");
}

bool to_cuda_type(DType t, cudaDataType_t* out) {
  switch (t) {
    case DType::F32: *out = CUDA_R_32F; return true;
    case DType::F64: *out = CUDA_R_64F; return true;
    case DType::BF16: *out = CUDA_R_16BF; return true;
    case DType::F16: *out = CUDA_R_16F; return true;
    default: return false;
  }
}

// The cuBLAS-supported combinations we use (cublasGemmEx's table, 32F and 64F compute).
bool supported_types(DType a, DType b, DType c) {
  if (a != b) return false;
  switch (a) {
    case DType::F32: return c == DType::F32;
    case DType::F64: return c == DType::F64;
    case DType::BF16:
    case DType::F16: return c == a || c == DType::F32;
    default: return false;
  }
}

// K == 0: A·B is an empty sum, so C = beta·C (and exactly 0 when beta == 0, even where C
// held NaN, as BLAS defines it).
template <class T, bool Contig>
__global__ void scale_kernel(Iter<1> it, int64_t n, T* c, float beta) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1] = {i};
    if (!Contig) it.offsets(i, off);
    if (beta == 0.f) dstore(c + off[0], 0.f);
    else dstore(c + off[0], acc_t<T>(beta) * dload(c + off[0]));
  }
}

int scale_c(const GemmParams& p, cudaStream_t s) {
  TensorView c;
  c.data = p.c;
  c.dtype = p.c_dtype;
  c.device = p.device;
  c.ndim = 3;
  c.shape[0] = p.batch; c.shape[1] = p.M; c.shape[2] = p.N;
  c.strides[0] = p.c_batch; c.strides[1] = p.c_rs; c.strides[2] = p.c_cs;
  const TensorView* views[1] = {&c};
  const Iter<1> it = make_iter(c, views);
  const int64_t n = c.numel();
  dispatch_dtype(p.c_dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_floating_point_v<acc_t<T>>) {
      T* pc = static_cast<T*>(p.c);
      if (it.contiguous()) scale_kernel<T, true><<<grid_for(n), kThreads, 0, s>>>(it, n, pc, p.beta);
      else scale_kernel<T, false><<<grid_for(n), kThreads, 0, s>>>(it, n, pc, p.beta);
    }
  });
  return check_launch("gemm (K = 0)", p.device);
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

}  // namespace

int gemm(const GemmParams* pp) {
  if (!pp) return fail("gemm: params are null");
  const GemmParams& p = *pp;
  if (p.device < 0) return fail("gemm: params are for the cpu, expected a cuda device");
  if (p.batch < 0 || p.M < 0 || p.N < 0 || p.K < 0)
    return fail("gemm: negative size (batch ", p.batch, ", M ", p.M, ", N ", p.N, ", K ", p.K, ")");
  if (!supported_types(p.a_dtype, p.b_dtype, p.c_dtype))
    return fail("gemm on cuda: A ", dtype_name(p.a_dtype), " x B ", dtype_name(p.b_dtype), " -> C ",
                dtype_name(p.c_dtype), " is not supported; A and B must share a dtype (f32 -> f32, "
                "bf16/f16 -> same or f32, f64 -> f64): cast first");
  if (p.batch == 0 || p.M == 0 || p.N == 0) return 0;
  if (p.batch > 1 && p.c_batch == 0)
    return fail("gemm: C has batch stride 0 with batch ", p.batch, "; every batch would write the "
                "same C");
  if (use_device(p.device, "gemm")) return 1;
  cudaStream_t s = stream_for(p.device);
  if (!s) return 1;
  if (p.K == 0) return scale_c(p, s);

  Mat a{p.a, p.M, p.K, p.a_rs, p.a_cs, p.a_batch, "A"};
  Mat b{p.b, p.K, p.N, p.b_rs, p.b_cs, p.b_batch, "B"};
  Mat c{p.c, p.M, p.N, p.c_rs, p.c_cs, p.c_batch, "C"};
  ColMajor lc;
  if (!as_col_major(c, false, &lc)) {
    // Row-major C: compute Cᵀ (N×M) = Bᵀ (N×K) · Aᵀ (K×M).
    Mat ct{c.data, c.cols, c.rows, c.cs, c.rs, c.batch_stride, "C"};
    if (!as_col_major(ct, false, &lc)) return layout_error(c);
    Mat bt{b.data, b.cols, b.rows, b.cs, b.rs, b.batch_stride, "B"};
    Mat at{a.data, a.cols, a.rows, a.cs, a.rs, a.batch_stride, "A"};
    a = bt;
    b = at;
    c = ct;
  }
  ColMajor la, lb;
  if (!as_col_major(a, true, &la)) return layout_error(a);
  if (!as_col_major(b, true, &lb)) return layout_error(b);
  // After a swap, a is the caller's B; the dtypes match (supported_types), so no swap needed.
  const int64_t m = c.rows, n = c.cols, k = a.cols;
  if (!fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(la.ld) || !fits_int(lb.ld) ||
      !fits_int(lc.ld) || !fits_int(p.batch))
    return fail("gemm: sizes or strides exceed cuBLAS's 32-bit int (M ", p.M, ", N ", p.N, ", K ",
                p.K, ", batch ", p.batch, "); split the product");

  cudaDataType_t ab_type, c_type;
  to_cuda_type(p.a_dtype, &ab_type);
  to_cuda_type(p.c_dtype, &c_type);
  const bool f64 = p.a_dtype == DType::F64;
  const double alpha64 = p.alpha, beta64 = p.beta;
  const float alpha32 = p.alpha, beta32 = p.beta;
  const void* alpha = f64 ? static_cast<const void*>(&alpha64) : &alpha32;
  const void* beta = f64 ? static_cast<const void*>(&beta64) : &beta32;

  const CublasFns* f = cublas();
  if (!f) return 1;
  std::lock_guard<std::mutex> lock(cublas_mutex(p.device));
  cublasHandle_t h = cublas_handle(p.device);
  if (!h) return 1;
  const cublasStatus_t st = f->gemm_strided_batched_ex(
      h, la.op, lb.op, int(m), int(n), int(k), alpha, a.data, ab_type, int(la.ld),
      a.batch_stride, b.data, ab_type, int(lb.ld), b.batch_stride, beta, p.c, c_type,
      int(lc.ld), c.batch_stride, int(p.batch), f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F,
      CUBLAS_GEMM_DEFAULT);
  if (st != kCublasSuccess)
    return fail("gemm on cuda:", p.device, ": cublasGemmStridedBatchedEx failed: ",
                cublas_status_name(st), " (", m, "x", n, "x", k, ", batch ", p.batch, ", ",
                dtype_name(p.a_dtype), " -> ", dtype_name(p.c_dtype), ", ", f->path, ")");
  return check_launch("gemm", p.device);
}

}  // namespace fovea::cuda
