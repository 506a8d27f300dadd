// Cross entropy over rows of logits, with per-row losses (the TS side reduces them, and folds
// the reduction's scale into dlosses for the backward).
//   logits [N, V] contiguous, any float dtype; targets [N] i32 or i64
//   lse_r    = log Σ_j exp(logits_rj)                       (stable: max-shifted)
//   losses_r = lse_r - logits_r,t_r,   0 where t_r == ignore_index
//   losses, lse: f32 [N] (f64 allowed when logits are f64, for gradchecks)
// Backward: dlogits_rj = dlosses_r · (exp(logits_rj - lse_r) - [j == t_r]), a zero row where
// t_r == ignore_index; dlogits has logits' dtype; dlosses f32 [N] (f64 with f64 logits).
// A target outside [0, V) that is not ignore_index throws (naming the row and the value)
// before anything is written. ignore_index may lie inside [0, V): such rows are ignored.
#pragma once
#include <cstdint>
#include "core/tensor_view.h"

namespace fovea {

void cross_entropy_cpu(const TensorView& logits, const TensorView& targets, int64_t ignore_index,
                       const TensorView& losses, const TensorView& lse);
void cross_entropy_reference(const TensorView& logits, const TensorView& targets,
                             int64_t ignore_index, const TensorView& losses, const TensorView& lse);
void cross_entropy_backward_cpu(const TensorView& logits, const TensorView& targets,
                                const TensorView& lse, const TensorView& dlosses,
                                int64_t ignore_index, const TensorView& dlogits);
void cross_entropy_backward_reference(const TensorView& logits, const TensorView& targets,
                                      const TensorView& lse, const TensorView& dlosses,
                                      int64_t ignore_index, const TensorView& dlogits);

}  // namespace fovea
