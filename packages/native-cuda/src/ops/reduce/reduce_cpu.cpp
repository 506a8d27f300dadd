// CPU reductions over the last dimension of a contiguous [rows, n] input, one row per task
// chunk. Sums accumulate in double for f64 and in float otherwise with pairwise blocks of
// 8 partial sums (the compiler vectorizes them) to keep rounding error near a tree sum's.
#include "ops/reduce/reduce.h"
#include <cmath>
#include <limits>
#include "core/error.h"
#include "core/thread_pool.h"

namespace fovea {
namespace {

template <class T, class A>
A row_sum(const T* x, int64_t n) {
  A part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) part[k] += A(load(x + i + k));
  A s = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (; i < n; ++i) s += A(load(x + i));
  return s;
}

template <class T>
void reduce_typed(ReduceOp op, const TensorView& x, const TensorView& out, const TensorView& idx) {
  using C = typename Compute<T>::type;
  // Integer sums accumulate exactly in int64; float sums in float (double for f64).
  using A = std::conditional_t<std::is_integral_v<C>, int64_t,
                               std::conditional_t<std::is_same_v<C, double>, double, float>>;
  const int64_t n = x.shape[x.ndim - 1];
  const int64_t rows = n == 0 ? x.numel() : x.numel() / n;
  int64_t real_rows = 1;
  for (int d = 0; d < x.ndim - 1; ++d) real_rows *= x.shape[d];
  const T* xp = x.ptr<T>();
  T* op_ = out.data ? out.ptr<T>() : nullptr;
  int64_t* ip = idx.data ? idx.ptr<int64_t>() : nullptr;
  (void)rows;
  parallel_for(0, real_rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)),
               [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const T* row = xp + r * n;
      switch (op) {
        case ReduceOp::Sum: store(op_ + r, row_sum<T, A>(row, n)); break;
        case ReduceOp::Mean:
          if constexpr (std::is_integral_v<C>) store(op_ + r, row_sum<T, A>(row, n) / std::max<int64_t>(n, 1));
          else store(op_ + r, n ? row_sum<T, A>(row, n) / A(n) : A(NAN));
          break;
        case ReduceOp::Prod: {
          A p = 1;
          for (int64_t i = 0; i < n; ++i) p *= A(load(row + i));
          store(op_ + r, p);
          break;
        }
        case ReduceOp::Max: case ReduceOp::Min: case ReduceOp::Argmax: case ReduceOp::Argmin: {
          const bool is_max = op == ReduceOp::Max || op == ReduceOp::Argmax;
          C best = load(row);
          int64_t bi = 0;
          bool nan_seen = best != best;
          for (int64_t i = 1; i < n && !nan_seen; ++i) {
            C v = load(row + i);
            if (v != v) { best = v; bi = i; nan_seen = true; break; }
            if (is_max ? v > best : v < best) { best = v; bi = i; }
          }
          if (op_ && (op == ReduceOp::Max || op == ReduceOp::Min)) store(op_ + r, best);
          if (ip) ip[r] = bi;
          break;
        }
        case ReduceOp::LogSumExp: {
          if constexpr (std::is_integral_v<C>) {
            fail("logsumexp: integer input");
          } else {
            C m = -std::numeric_limits<C>::infinity();
            for (int64_t i = 0; i < n; ++i) { C v = load(row + i); if (v > m || v != v) m = v; }
            if (std::isinf(m) || m != m) { store(op_ + r, m); break; }
            A s = 0;
            for (int64_t i = 0; i < n; ++i) s += A(std::exp(load(row + i) - m));
            store(op_ + r, A(m) + std::log(s));
          }
          break;
        }
        default: fail("reduce: unknown op code ", int(op));
      }
    }
  });
}

}  // namespace

void reduce_last_cpu(ReduceOp op, const TensorView& x, const TensorView& out,
                     const TensorView& idx) {
  dispatch_all(x.dtype, [&](auto t) { reduce_typed<decltype(t)>(op, x, out, idx); });
}

}  // namespace fovea
