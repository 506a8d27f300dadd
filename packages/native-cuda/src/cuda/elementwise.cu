// fill, strided copy with dtype cast, and unary ops on the device: the CUDA side of
// ops/elementwise/elementwise.h (binary ops are in binary.cu). The CPU functions declared
// there are the reference; tests/test_cuda.cpp compares the two on random inputs.
//
// Layout: every kernel walks a row-major linear index over the output's shape with a
// grid-stride loop; Iter (indexing.cuh) turns it into per-view offsets, or the identity when
// all views are contiguous. Unary output is x's dtype or bool (for LogicalNot's bool form).
#include "cuda/common.cuh"
#include "cuda/dtype.cuh"
#include "cuda/entries.h"
#include "cuda/indexing.cuh"
#include "ops/elementwise/elementwise.h"

namespace fovea::cuda {
namespace {

#define FOVEA_GRID_LOOP(i, n)                                                     \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);       \
       i += int64_t(gridDim.x) * blockDim.x)

// ----------------------------------------------------------------------------- fill, copy

template <class T, bool Contig>
__global__ void fill_kernel(Iter<1> it, int64_t n, T* out, double value) {
  FOVEA_GRID_LOOP(i, n) {
    int64_t off[1] = {i};
    if (!Contig) it.offsets(i, off);
    dstore(out + off[0], acc_t<T>(value));  // via the compute type, as fill_cpu does
  }
}

template <class S, class D, bool Contig>
__global__ void copy_kernel(Iter<2> it, int64_t n, const S* src, D* dst) {
  FOVEA_GRID_LOOP(i, n) {
    int64_t off[2] = {i, i};
    if (!Contig) it.offsets(i, off);
    dstore(dst + off[1], dload(src + off[0]));
  }
}

// ----------------------------------------------------------------------------- unary math

// Float compute types (float, double). alpha/beta arrive as double and are used in the
// compute type, as the CPU path does; formulas follow elementwise_cpu.cpp term by term
// (silu = x·sigmoid(x), pow(x, 2) = x·x) so the two round alike.
template <class C> __device__ __forceinline__ C unary_float(UnaryOp op, C x, double alpha_d,
                                                            double beta_d) {
  const C alpha = C(alpha_d), beta = C(beta_d);
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return m_exp(x);
    case UnaryOp::Log: return m_log(x);
    case UnaryOp::Sqrt: return m_sqrt(x);
    case UnaryOp::Rsqrt: return C(1) / m_sqrt(x);
    case UnaryOp::Abs: return m_abs(x);
    case UnaryOp::Silu: return x * (C(1) / (C(1) + m_exp(-x)));
    case UnaryOp::Gelu:  // erf form: 0.5·x·(1 + erf(x/√2))
      return C(0.5) * x * (C(1) + m_erf(x * C(0.70710678118654752440)));
    case UnaryOp::Sigmoid: return C(1) / (C(1) + m_exp(-x));
    case UnaryOp::Tanh: return m_tanh(x);
    case UnaryOp::Relu: return x > C(0) ? x : C(0);
    case UnaryOp::PowScalar: return alpha_d == 2.0 ? x * x : m_pow(x, alpha);
    // Bounds compared in double (exactly as given); NaN stays NaN; ±inf bounds are no-ops.
    case UnaryOp::Clamp:
      if (x != x) return x;
      return double(x) < alpha_d ? alpha : (double(x) > beta_d ? beta : x);
    case UnaryOp::AddScalar: return x + alpha;
    case UnaryOp::MulScalar: return x * alpha;
    case UnaryOp::Sin: return m_sin(x);
    case UnaryOp::Cos: return m_cos(x);
    case UnaryOp::Reciprocal: return C(1) / x;
    case UnaryOp::Square: return x * x;
    case UnaryOp::Sign: return C((x > C(0)) - (x < C(0)));
    case UnaryOp::LogicalNot: return x == C(0) ? C(1) : C(0);
    default: return x;
  }
}

// Integer dtypes compute in int64 with the scalars truncated to int64 first (as the CPU's
// C(alpha) does: x + 0.5 adds 0). Ops that only make sense for floats go through double and
// truncate on the way back (the caller normally rejects or promotes them first).
__device__ __forceinline__ int64_t unary_int(UnaryOp op, int64_t x, double alpha, double beta) {
  const int64_t a = int64_t(alpha), b = int64_t(beta);
  switch (op) {
    case UnaryOp::Neg: return int64_t(0ull - uint64_t(x));
    case UnaryOp::Abs: return x < 0 ? int64_t(0ull - uint64_t(x)) : x;
    case UnaryOp::Relu: return x > 0 ? x : 0;
    case UnaryOp::Square: return int64_t(uint64_t(x) * uint64_t(x));
    case UnaryOp::Sign: return (x > 0) - (x < 0);
    case UnaryOp::LogicalNot: return x == 0 ? 1 : 0;
    case UnaryOp::AddScalar: return int64_t(uint64_t(x) + uint64_t(a));
    case UnaryOp::MulScalar: return int64_t(uint64_t(x) * uint64_t(a));
    case UnaryOp::Clamp: return double(x) < alpha ? a : (double(x) > beta ? b : x);
    case UnaryOp::PowScalar: return int_pow(x, a);
    default: return int64_t(unary_float<double>(op, double(x), alpha, beta));
  }
}

template <class Tin, class Tout, bool Contig>
__global__ void unary_kernel(UnaryOp op, Iter<2> it, int64_t n, const Tin* x, Tout* out,
                             double alpha, double beta) {
  FOVEA_GRID_LOOP(i, n) {
    int64_t off[2] = {i, i};
    if (!Contig) it.offsets(i, off);
    const acc_t<Tin> v = dload(x + off[0]);
    if constexpr (std::is_integral_v<acc_t<Tin>>) dstore(out + off[1], unary_int(op, v, alpha, beta));
    else dstore(out + off[1], unary_float(op, v, alpha, beta));
  }
}

}  // namespace

// ----------------------------------------------------------------------------- entries

int fill(const TensorView* out, double value) {
  if (check_view(out, "fill", "out")) return 1;
  const int64_t n = out->numel();
  if (n == 0) return 0;
  if (use_device(out->device, "fill")) return 1;
  cudaStream_t s = stream_for(out->device);
  if (!s) return 1;
  const TensorView* views[1] = {out};
  const Iter<1> it = make_iter(*out, views);
  const bool contig = it.contiguous();
  dispatch_dtype(out->dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = static_cast<T*>(out->data);
    if (contig) fill_kernel<T, true><<<grid_for(n), kThreads, 0, s>>>(it, n, p, value);
    else fill_kernel<T, false><<<grid_for(n), kThreads, 0, s>>>(it, n, p, value);
  });
  return check_launch("fill", out->device);
}

int copy(const TensorView* src, const TensorView* dst) {
  if (check_view(src, "copy", "src") || check_view(dst, "copy", "dst")) return 1;
  if (check_same_device(*src, *dst, "copy") || check_same_shape(*src, *dst, "copy", "src"))
    return 1;
  const int64_t n = dst->numel();
  if (n == 0) return 0;
  if (use_device(dst->device, "copy")) return 1;
  cudaStream_t s = stream_for(dst->device);
  if (!s) return 1;
  const TensorView* views[2] = {src, dst};
  const Iter<2> it = make_iter(*dst, views);
  const bool contig = it.contiguous();
  if (contig && src->dtype == dst->dtype) {  // plain memcpy: same bytes, no conversion
    FOVEA_CU(cudaMemcpyAsync(dst->data, src->data, size_t(n) * dtype_size(dst->dtype),
                             cudaMemcpyDeviceToDevice, s), "copy", dst->device);
    return 0;
  }
  dispatch_dtype(src->dtype, [&](auto stag) {
    using S = typename decltype(stag)::type;
    dispatch_dtype(dst->dtype, [&](auto dtag) {
      using D = typename decltype(dtag)::type;
      const S* ps = static_cast<const S*>(src->data);
      D* pd = static_cast<D*>(dst->data);
      if (contig) copy_kernel<S, D, true><<<grid_for(n), kThreads, 0, s>>>(it, n, ps, pd);
      else copy_kernel<S, D, false><<<grid_for(n), kThreads, 0, s>>>(it, n, ps, pd);
    });
  });
  return check_launch("copy", dst->device);
}

int unary(int op_code, const TensorView* x, const TensorView* out, double alpha, double beta) {
  if (op_code < 0 || op_code >= int(UnaryOp::Count))
    return fail("unary: unknown op code ", op_code);
  if (check_view(x, "unary", "x") || check_view(out, "unary", "out")) return 1;
  if (check_same_device(*x, *out, "unary") || check_same_shape(*x, *out, "unary", "x")) return 1;
  if (out->dtype != x->dtype && out->dtype != DType::Bool)
    return fail("unary: out is ", dtype_name(out->dtype), ", expected ", dtype_name(x->dtype),
                " (x's dtype) or bool");
  const int64_t n = out->numel();
  if (n == 0) return 0;
  if (use_device(out->device, "unary")) return 1;
  cudaStream_t s = stream_for(out->device);
  if (!s) return 1;
  const TensorView* views[2] = {x, out};
  const Iter<2> it = make_iter(*out, views);
  const bool contig = it.contiguous();
  const UnaryOp op = UnaryOp(op_code);
  dispatch_dtype(x->dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x->data);
    auto launch = [&](auto otag) {
      using O = typename decltype(otag)::type;
      O* po = static_cast<O*>(out->data);
      if (contig)
        unary_kernel<T, O, true><<<grid_for(n), kThreads, 0, s>>>(op, it, n, px, po, alpha, beta);
      else
        unary_kernel<T, O, false><<<grid_for(n), kThreads, 0, s>>>(op, it, n, px, po, alpha, beta);
    };
    if (out->dtype == DType::Bool) launch(Tag<bool>{});
    else launch(Tag<T>{});
  });
  return check_launch("unary", out->device);
}

}  // namespace fovea::cuda
