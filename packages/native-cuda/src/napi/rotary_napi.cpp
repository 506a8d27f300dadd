// Binding for the rotate-half rotary embedding (ops/rotary/rotary.h), CPU only for now:
//   rotary(x, cos, sin, out, inverse)
// x, out [B, S, H, D] contiguous, same float dtype, D even; cos, sin [B or 1, S, D]
// contiguous, f32 or x's dtype; inverse = 1 applies the transpose (the backward).
#include "core/error.h"
#include "napi/binding.h"
#include "ops/rotary/rotary.h"

namespace fovea::napi {
namespace {

Napi::Value rotary_js(const Napi::CallbackInfo& info) {
  const char* op = "rotary";
  TensorView x = get_view(info, 0, op, "x");
  TensorView c = get_view(info, 1, op, "cos");
  TensorView s = get_view(info, 2, op, "sin");
  TensorView out = get_view(info, 3, op, "out");
  const int64_t inverse = get_int(info, 4, op, "inverse");
  if (inverse != 0 && inverse != 1) fail(op, ": inverse must be 0 or 1, got ", inverse);
  check_float(op, "x", x);
  if (x.ndim != 4) fail(op, ": x ", shape_str(x), " must be 4-D [B, S, H, D]");
  const int64_t B = x.shape[0], S = x.shape[1], D = x.shape[3];
  if (D % 2) fail(op, ": the head dim D of x ", shape_str(x), " must be even");
  check_same_shape(op, "x", x, "out", out);
  if (out.dtype != x.dtype)
    fail(op, ": out is ", dtype_name(out.dtype), " but x is ", dtype_name(x.dtype));
  for (const TensorView* t : {&c, &s}) {
    const char* name = t == &c ? "cos" : "sin";
    if (t->ndim != 3 || (t->shape[0] != B && t->shape[0] != 1) || t->shape[1] != S || t->shape[2] != D)
      fail(op, ": ", name, " ", shape_str(*t), " must be [", B, " or 1, ", S, ", ", D, "] for x ",
           shape_str(x));
    if (t->dtype != DType::F32 && t->dtype != x.dtype)
      fail(op, ": ", name, " must be f32 or ", dtype_name(x.dtype), " (x's dtype), got ",
           dtype_name(t->dtype));
    check_contiguous(op, name, *t);
  }
  if (c.dtype != s.dtype || c.shape[0] != s.shape[0])
    fail(op, ": cos ", shape_str(c), " ", dtype_name(c.dtype), " and sin ", shape_str(s), " ",
         dtype_name(s.dtype), " must match");
  check_contiguous(op, "x", x);
  check_contiguous(op, "out", out);
  check_same_device(op, {&x, &c, &s, &out});
  if (x.device >= 0) fail(op, ": cuda is not supported for this op yet");
  rotary_cpu(x, c, s, out, inverse == 1);
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("rotary", rotary_js);

}  // namespace fovea::napi
