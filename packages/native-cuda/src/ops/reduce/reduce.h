// Reductions over the last dimension of a contiguous [rows, n] view. The TypeScript side
// permutes the reduced dimensions to the end (and makes the input contiguous) so one kernel
// serves reductions over any set of dimensions.
//  - Sum, Mean, LogSumExp: out [rows] in the input's dtype (accumulated in f32/f64).
//  - Max, Min: out [rows] values and idx [rows] i64 (first occurrence, NaN propagates).
//  - Argmax, Argmin: idx [rows] i64 only (out may be empty).
//  - Prod: out [rows].
// n == 0: Sum 0, Mean NaN, LogSumExp -inf; Max/Min/Argmax are rejected by the caller.
#pragma once
#include "core/tensor_view.h"

namespace fovea {

enum class ReduceOp : int { Sum = 0, Mean, Max, Min, Argmax, Argmin, LogSumExp, Prod, Count };

void reduce_last_cpu(ReduceOp op, const TensorView& x, const TensorView& out,
                     const TensorView& idx);

}  // namespace fovea
