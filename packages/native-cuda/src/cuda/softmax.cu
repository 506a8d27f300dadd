// Softmax and log-softmax over the last dimension of contiguous rows (x and out [rows, n],
// same float dtype); the CUDA side of ops/softmax/softmax.h. Numerically stable: the row max m is subtracted before exp, so
//   softmax(x)_j     = exp(x_j - m) · (1 / Σ exp(x_k - m))
//   log_softmax(x)_j = (x_j - m) - log Σ exp(x_k - m)
// Computes in float (double for f64). A row containing NaN gives NaN; a row of all -inf gives
// NaN (as PyTorch does). Short rows get a warp each, long rows a block (row_reduce.cuh).
#include "cuda/common.cuh"
#include "cuda/entries.h"
#include "cuda/row_reduce.cuh"

namespace fovea::cuda {
namespace {

template <class T, int G, bool Log>
__global__ void softmax_kernel(const T* x, T* out, int64_t rows, int64_t n) {
  using A = acc_t<T>;
  using L = RowLayout<G>;
  const int lane = L::lane();
  for (int64_t row = L::first_row(); row < rows; row += L::row_step()) {
    const T* xr = x + row * n;
    T* yr = out + row * n;
    A m = -INFINITY;
    for (int64_t j = lane; j < n; j += G) m = nan_max(m, dload(xr + j));
    m = group_allreduce<G>(m, [](A a, A b) { return nan_max(a, b); });
    A s = A(0);
    for (int64_t j = lane; j < n; j += G) s += m_exp(dload(xr + j) - m);
    s = group_allreduce<G>(s, [](A a, A b) { return a + b; });
    if (Log) {
      const A log_s = m_log(s);
      for (int64_t j = lane; j < n; j += G) dstore(yr + j, (dload(xr + j) - m) - log_s);
    } else {
      const A inv = A(1) / s;  // multiply by 1/s, as softmax_reference does
      for (int64_t j = lane; j < n; j += G) dstore(yr + j, m_exp(dload(xr + j) - m) * inv);
    }
  }
}

}  // namespace

int softmax_last(int log, const TensorView* x, const TensorView* out) {
  if (check_view(x, "softmax_last", "x") || check_view(out, "softmax_last", "out")) return 1;
  if (check_same_device(*x, *out, "softmax_last") ||
      check_same_shape(*out, *x, "softmax_last", "out"))
    return 1;
  if (!dtype_is_float(x->dtype))
    return fail("softmax_last: needs a float dtype, got ", dtype_name(x->dtype));
  if (out->dtype != x->dtype)
    return fail("softmax_last: out is ", dtype_name(out->dtype), ", expected ",
                dtype_name(x->dtype));
  if (!x->contiguous() || !out->contiguous())
    return fail("softmax_last: x and out must be contiguous");
  const int64_t n = x->ndim ? x->shape[x->ndim - 1] : 1;
  const int64_t total = x->numel();
  if (n == 0 || total == 0) return 0;
  const int64_t rows = total / n;
  if (use_device(x->device, "softmax_last")) return 1;
  cudaStream_t s = stream_for(x->device);
  if (!s) return 1;
  dispatch_dtype(x->dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_floating_point_v<acc_t<T>>) {
      const T* px = static_cast<const T*>(x->data);
      T* po = static_cast<T*>(out->data);
      const bool small = n <= 1024;
      if (small && log)
        softmax_kernel<T, 32, true><<<row_grid<32>(rows), kRowBlock, 0, s>>>(px, po, rows, n);
      else if (small)
        softmax_kernel<T, 32, false><<<row_grid<32>(rows), kRowBlock, 0, s>>>(px, po, rows, n);
      else if (log)
        softmax_kernel<T, kRowBlock, true><<<row_grid<kRowBlock>(rows), kRowBlock, 0, s>>>(
            px, po, rows, n);
      else
        softmax_kernel<T, kRowBlock, false><<<row_grid<kRowBlock>(rows), kRowBlock, 0, s>>>(
            px, po, rows, n);
    }
  });
  return check_launch("softmax_last", x->device);
}

}  // namespace fovea::cuda
