// Indexing ops (torch semantics, no negative-index wraparound). All views contiguous; index
// is i32 or i64. Every index value is checked before anything is written: an out-of-range
// or negative value throws fovea::Error naming the op, the value, its position and the valid
// range, and leaves the outputs (and, for the in-place ops, dst) untouched.
//   index_select(x, dim, index[L], out):  out = x with dim replaced by L;
//       out[.., j, ..] = x[.., index[j], ..]            (embedding = index_select on dim 0)
//   gather(x, dim, index, out):  index.ndim == x.ndim, index.size(d) <= x.size(d) for d != dim,
//       out.shape == index.shape;  out[i][j][k] = x[i][index[i][j][k]][k]  (dim = 1)
//   scatter_add(dst, dim, index, src):  in place, index.size(d) <= src.size(d) for all d and
//       <= dst.size(d) for d != dim;  dst[i][index[i][j][k]][k] += src[i][j][k]  (dim = 1)
//   index_add(dst, dim, index[L], src):  in place, src = dst with dim replaced by L;
//       dst[.., index[j], ..] += src[.., j, ..]         (embedding's backward)
// The accumulating ops are deterministic for any thread count: two contributions can only
// collide when they differ in their coordinate along dim alone, so the work is split over the
// other coordinates and each thread walks dim in order.
#pragma once
#include <string>
#include "core/tensor_view.h"

namespace fovea {

void index_select_cpu(const TensorView& x, int dim, const TensorView& index, const TensorView& out);
void gather_cpu(const TensorView& x, int dim, const TensorView& index, const TensorView& out);
void scatter_add_cpu(const TensorView& dst, int dim, const TensorView& index, const TensorView& src);
void index_add_cpu(const TensorView& dst, int dim, const TensorView& index, const TensorView& src);

// Throws unless every value of `index` is in [0, limit). `what` names the indexed dimension
// in the message (e.g. "dim 1 of x [4, 5]").
void check_index_range(const char* op, const TensorView& index, int64_t limit, const std::string& what);

}  // namespace fovea
