// Reductions over the last dimension on the device: the CUDA side of reduce_last_cpu
// (ops/reduce/reduce.h), with the same contract:
//   - x is a contiguous [rows, n] view (any ndim; the last dim is reduced);
//   - Sum, Mean, Prod, LogSumExp write out[rows], accumulating in f32 (f64 for f64, int64 for
//     integer dtypes); Max, Min write values to out (if given) and i64 indices to idx (if
//     given); Argmax, Argmin write idx only. Indices are the first occurrence; NaN propagates.
//   - n == 0: Sum 0, Mean NaN, Prod 1, LogSumExp -inf; Max/Min/Arg* are rejected.
//   - integer Mean truncates (int64 sum / n), as reduce_cpu.cpp does.
// Short rows (n <= 1024) get a warp each, long rows a 256-thread block (row_reduce.cuh).
#include "cuda/common.cuh"
#include "cuda/entries.h"
#include "cuda/row_reduce.cuh"
#include "ops/reduce/reduce.h"

namespace fovea::cuda {
namespace {

template <int G, bool IsMax, class T>
__device__ __forceinline__ ValIdx<acc_t<T>> row_pick(const T* xr, int64_t n, int lane) {
  ValIdx<acc_t<T>> c{acc_t<T>(0), -1};
  for (int64_t j = lane; j < n; j += G) c = pick<IsMax>(c, ValIdx<acc_t<T>>{dload(xr + j), j});
  return group_allreduce_pick<G, IsMax>(c);
}

template <class T, int G>
__global__ void reduce_kernel(ReduceOp op, const T* x, int64_t rows, int64_t n, void* out,
                              DType out_dtype, int64_t* idx) {
  using A = acc_t<T>;
  using L = RowLayout<G>;
  const int lane = L::lane();
  for (int64_t row = L::first_row(); row < rows; row += L::row_step()) {
    const T* xr = x + row * n;
    switch (op) {
      case ReduceOp::Sum:
      case ReduceOp::Mean: {
        A s = A(0);
        for (int64_t j = lane; j < n; j += G) s += dload(xr + j);
        s = group_allreduce<G>(s, [](A a, A b) { return a + b; });
        if (lane != 0) break;
        if (op == ReduceOp::Sum) dstore_any(out, row, out_dtype, s);
        else if constexpr (std::is_integral_v<A>) dstore_any(out, row, out_dtype, s / (n > 0 ? n : 1));
        else dstore_any(out, row, out_dtype, s / A(n));  // n == 0: 0/0 = NaN
        break;
      }
      case ReduceOp::Prod: {
        A p = A(1);
        for (int64_t j = lane; j < n; j += G) p *= dload(xr + j);
        p = group_allreduce<G>(p, [](A a, A b) { return a * b; });
        if (lane == 0) dstore_any(out, row, out_dtype, p);
        break;
      }
      case ReduceOp::Max:
      case ReduceOp::Argmax:
      case ReduceOp::Min:
      case ReduceOp::Argmin: {
        const bool is_max = op == ReduceOp::Max || op == ReduceOp::Argmax;
        const ValIdx<A> c = is_max ? row_pick<G, true>(xr, n, lane) : row_pick<G, false>(xr, n, lane);
        if (lane != 0) break;
        if (out) dstore_any(out, row, out_dtype, c.v);
        if (idx) idx[row] = c.i;
        break;
      }
      case ReduceOp::LogSumExp: {
        if constexpr (!std::is_integral_v<A>) {  // the host rejects integer dtypes
          A m = -INFINITY;
          for (int64_t j = lane; j < n; j += G) m = nan_max(m, dload(xr + j));
          m = group_allreduce<G>(m, [](A a, A b) { return nan_max(a, b); });
          // ±inf or NaN max decides the result (and would turn x - m into NaN). m is the
          // same in every thread of the group, so skipping the second reduction is uniform.
          if (isinf(m) || m != m) {
            if (lane == 0) dstore_any(out, row, out_dtype, m);
            break;
          }
          A s = A(0);
          for (int64_t j = lane; j < n; j += G) s += m_exp(dload(xr + j) - m);
          s = group_allreduce<G>(s, [](A a, A b) { return a + b; });
          if (lane == 0) dstore_any(out, row, out_dtype, m + m_log(s));
        }
        break;
      }
      default: break;
    }
  }
}

bool needs_idx(ReduceOp op) { return op == ReduceOp::Argmax || op == ReduceOp::Argmin; }
bool writes_out(ReduceOp op) { return !needs_idx(op); }
bool is_pick(ReduceOp op) {
  return op == ReduceOp::Max || op == ReduceOp::Min || needs_idx(op);
}

// A [rows] output view is usable when present, on x's device and contiguous with >= rows
// elements.
int check_row_output(const TensorView* v, const TensorView& x, int64_t rows, const char* name) {
  if (check_view(v, "reduce_last", name) || check_same_device(*v, x, "reduce_last")) return 1;
  if (v->numel() < rows || !v->contiguous())
    return fail("reduce_last: ", name, " must be contiguous with ", rows, " elements");
  return 0;
}

}  // namespace

int reduce_last(int op_code, const TensorView* x, const TensorView* out, const TensorView* idx) {
  if (op_code < 0 || op_code >= int(ReduceOp::Count))
    return fail("reduce_last: unknown op code ", op_code);
  const ReduceOp op = ReduceOp(op_code);
  if (check_view(x, "reduce_last", "x")) return 1;
  if (!x->contiguous())
    return fail("reduce_last: x must be contiguous (the caller permutes and copies first)");
  const int64_t n = x->ndim ? x->shape[x->ndim - 1] : 1;
  int64_t rows = 1;
  for (int d = 0; d + 1 < x->ndim; ++d) rows *= x->shape[d];
  if (rows == 0) return 0;
  if (n == 0 && is_pick(op))
    return fail("reduce_last: max/min/argmax/argmin of an empty dimension is undefined");
  if (op == ReduceOp::LogSumExp && !dtype_is_float(x->dtype))
    return fail("reduce_last: logsumexp needs a float dtype, got ", dtype_name(x->dtype));

  const bool have_out = out && out->data && out->numel() > 0;
  const bool have_idx = idx && idx->data && idx->numel() > 0;
  if (writes_out(op) && !have_out) return fail("reduce_last: this op writes out, which is empty");
  if (needs_idx(op) && !have_idx) return fail("reduce_last: this op writes idx, which is empty");
  if (have_out && writes_out(op) && check_row_output(out, *x, rows, "out")) return 1;
  if (have_idx && is_pick(op)) {
    if (check_row_output(idx, *x, rows, "idx")) return 1;
    if (idx->dtype != DType::I64)
      return fail("reduce_last: idx must be i64, got ", dtype_name(idx->dtype));
  }
  if (use_device(x->device, "reduce_last")) return 1;
  cudaStream_t s = stream_for(x->device);
  if (!s) return 1;

  void* out_ptr = have_out && writes_out(op) ? out->data : nullptr;
  const DType out_dtype = out_ptr ? out->dtype : x->dtype;
  int64_t* idx_ptr = have_idx && is_pick(op) ? static_cast<int64_t*>(idx->data) : nullptr;
  dispatch_dtype(x->dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x->data);
    if (n <= 1024)
      reduce_kernel<T, 32><<<row_grid<32>(rows), kRowBlock, 0, s>>>(op, px, rows, n, out_ptr,
                                                                    out_dtype, idx_ptr);
    else
      reduce_kernel<T, kRowBlock><<<row_grid<kRowBlock>(rows), kRowBlock, 0, s>>>(
          op, px, rows, n, out_ptr, out_dtype, idx_ptr);
  });
  return check_launch("reduce_last", x->device);
}

}  // namespace fovea::cuda
