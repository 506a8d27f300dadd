// Rotary position embedding, rotate-half convention (HF Qwen2 / Qwen2.5-VL apply_rotary_pos_emb).
//   x, out [B, S, H, D] contiguous (the TS side reshapes [..., S, H, D] to 4-D), D even, h = D/2
//   cos, sin [Bc, S, D] contiguous with Bc == B or Bc == 1 (broadcast over B); f32 or x's dtype
//   forward:  out = x·cos + rotate_half(x)·sin,   rotate_half(x) = cat(-x[h:], x[:h])
//   inverse (the backward, i.e. the transpose of the forward's linear map in x):
//             dx = dy·cos + rotate_half_T(dy·sin), rotate_half_T(u) = cat(u[h:], -u[:h])
// Computed in f32 (f64 for f64), rounded once on store (HF rounds each product in bf16; we
// are at least as accurate). Elements i and i+h are read before either is written, so out
// may alias x (in-place).
#pragma once
#include "core/tensor_view.h"

namespace fovea {

void rotary_cpu(const TensorView& x, const TensorView& cos, const TensorView& sin,
                const TensorView& out, bool inverse);

}  // namespace fovea
