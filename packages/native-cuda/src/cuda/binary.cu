// Binary elementwise ops with broadcasting on the device: the CUDA side of binary_cpu in
// ops/elementwise/elementwise.h. a and b have out's shape (broadcast dims carry stride 0)
// and one dtype; comparisons write bool, every other op writes the inputs' dtype (a bool
// out is also accepted for any op: it stores result != 0).
//
// Float dtypes compute in float (double for f64); integer dtypes in int64, where Div
// truncates toward zero (x / 0 gives 0 rather than trapping, as on the CPU) and Pow is exact
// (the CPU truncates a double pow: equal while results stay below 2^53).
#include "cuda/common.cuh"
#include "cuda/dtype.cuh"
#include "cuda/entries.h"
#include "cuda/indexing.cuh"
#include "ops/elementwise/elementwise.h"

namespace fovea::cuda {
namespace {

template <class C> __device__ __forceinline__ C binary_float(BinaryOp op, C a, C b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Pow: return m_pow(a, b);
    // NaN in either input propagates (as torch.maximum/minimum do).
    case BinaryOp::Maximum: return (a > b || a != a) ? a : b;
    case BinaryOp::Minimum: return (a < b || a != a) ? a : b;
    case BinaryOp::Eq: return C(a == b);
    case BinaryOp::Ne: return C(a != b);
    case BinaryOp::Lt: return C(a < b);
    case BinaryOp::Le: return C(a <= b);
    case BinaryOp::Gt: return C(a > b);
    case BinaryOp::Ge: return C(a >= b);
    case BinaryOp::SiluBackward: {  // (x, dy): dy · s·(1 + x·(1 - s)), s = sigmoid(x)
      const C s = C(1) / (C(1) + m_exp(-a));
      return b * s * (C(1) + a * (C(1) - s));
    }
    case BinaryOp::GeluBackward: {  // (x, dy): dy · (Φ(x) + x·φ(x)), erf form
      const C cdf = C(0.5) * (C(1) + m_erf(a * C(0.70710678118654752440)));
      const C pdf = m_exp(C(-0.5) * a * a) * C(0.39894228040143267794);  // 1/√(2π)
      return b * (cdf + a * pdf);
    }
    case BinaryOp::SigmoidBackward: return b * a * (C(1) - a);  // (y, dy)
    case BinaryOp::TanhBackward: return b * (C(1) - a * a);     // (y, dy)
    case BinaryOp::ReluBackward: return a > C(0) ? b : C(0);    // (x, dy)
    case BinaryOp::LogicalAnd: return C(a != C(0) && b != C(0));
    case BinaryOp::LogicalOr: return C(a != C(0) || b != C(0));
    default: return a;
  }
}

// Wrapping add/sub/mul through uint64 (signed overflow is undefined in C++).
__device__ __forceinline__ int64_t binary_int(BinaryOp op, int64_t a, int64_t b) {
  switch (op) {
    case BinaryOp::Add: return int64_t(uint64_t(a) + uint64_t(b));
    case BinaryOp::Sub: return int64_t(uint64_t(a) - uint64_t(b));
    case BinaryOp::Mul: return int64_t(uint64_t(a) * uint64_t(b));
    case BinaryOp::Div: return b == 0 ? 0 : (b == -1 ? int64_t(0ull - uint64_t(a)) : a / b);
    case BinaryOp::Pow: return int_pow(a, b);
    case BinaryOp::Maximum: return a > b ? a : b;
    case BinaryOp::Minimum: return a < b ? a : b;
    case BinaryOp::Eq: return a == b;
    case BinaryOp::Ne: return a != b;
    case BinaryOp::Lt: return a < b;
    case BinaryOp::Le: return a <= b;
    case BinaryOp::Gt: return a > b;
    case BinaryOp::Ge: return a >= b;
    case BinaryOp::ReluBackward: return a > 0 ? b : 0;
    case BinaryOp::LogicalAnd: return a != 0 && b != 0;
    case BinaryOp::LogicalOr: return a != 0 || b != 0;
    default: return int64_t(binary_float<double>(op, double(a), double(b)));
  }
}

template <class T, class O, bool Contig>
__global__ void binary_kernel(BinaryOp op, Iter<3> it, int64_t n, const T* a, const T* b,
                              O* out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3] = {i, i, i};
    if (!Contig) it.offsets(i, off);
    const acc_t<T> va = dload(a + off[0]), vb = dload(b + off[1]);
    if constexpr (std::is_integral_v<acc_t<T>>) dstore(out + off[2], binary_int(op, va, vb));
    else dstore(out + off[2], binary_float(op, va, vb));
  }
}

}  // namespace

int binary(int op_code, const TensorView* a, const TensorView* b, const TensorView* out) {
  if (op_code < 0 || op_code >= int(BinaryOp::Count))
    return fail("binary: unknown op code ", op_code);
  if (check_view(a, "binary", "a") || check_view(b, "binary", "b") ||
      check_view(out, "binary", "out"))
    return 1;
  if (check_same_device(*a, *out, "binary") || check_same_device(*b, *out, "binary") ||
      check_same_shape(*a, *out, "binary", "a") || check_same_shape(*b, *out, "binary", "b"))
    return 1;
  const BinaryOp op = BinaryOp(op_code);
  if (a->dtype != b->dtype)
    return fail("binary: a is ", dtype_name(a->dtype), " and b is ", dtype_name(b->dtype),
                "; cast them to one dtype first");
  if (binary_op_is_comparison(op) ? out->dtype != DType::Bool
                                  : (out->dtype != a->dtype && out->dtype != DType::Bool))
    return fail("binary: out is ", dtype_name(out->dtype), ", expected ",
                binary_op_is_comparison(op) ? "bool (comparisons write bool)"
                                            : dtype_name(a->dtype));
  const int64_t n = out->numel();
  if (n == 0) return 0;
  if (use_device(out->device, "binary")) return 1;
  cudaStream_t s = stream_for(out->device);
  if (!s) return 1;
  const TensorView* views[3] = {a, b, out};
  const Iter<3> it = make_iter(*out, views);
  const bool contig = it.contiguous();
  dispatch_dtype(a->dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(a->data);
    const T* pb = static_cast<const T*>(b->data);
    auto launch = [&](auto otag) {
      using O = typename decltype(otag)::type;
      O* po = static_cast<O*>(out->data);
      if (contig) binary_kernel<T, O, true><<<grid_for(n), kThreads, 0, s>>>(op, it, n, pa, pb, po);
      else binary_kernel<T, O, false><<<grid_for(n), kThreads, 0, s>>>(op, it, n, pa, pb, po);
    };
    if (out->dtype == DType::Bool) launch(Tag<bool>{});
    else launch(Tag<T>{});
  });
  return check_launch("binary", out->device);
}

}  // namespace fovea::cuda
