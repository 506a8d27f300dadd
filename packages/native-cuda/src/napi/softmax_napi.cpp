// Bindings for softmax / log-softmax over the last dim (ops/softmax/softmax.h):
//   softmax(x, out, log)                 x, out contiguous, same shape and float dtype
//   softmaxBackward(y, dy, dx, log)      y = the forward's output; all same shape and dtype
// log: 0 = softmax, 1 = log-softmax. The forward runs on CUDA through the sidecar's
// softmax_last; the backward is CPU-only for now.
#include "core/cuda_api.h"
#include "core/error.h"
#include "napi/binding.h"
#include "ops/softmax/softmax.h"

namespace fovea::napi {
namespace {

bool get_flag(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  int64_t v = get_int(info, i, op, name);
  if (v != 0 && v != 1) fail(op, ": ", name, " must be 0 or 1, got ", v);
  return v == 1;
}

// Two tensors with the same shape, the same float dtype, both contiguous.
void check_pair(const char* op, const char* na, const TensorView& a, const char* nb,
                const TensorView& b) {
  check_float(op, na, a);
  check_same_shape(op, na, a, nb, b);
  if (a.dtype != b.dtype)
    fail(op, ": ", nb, " is ", dtype_name(b.dtype), " but ", na, " is ", dtype_name(a.dtype),
         "; they must match");
  check_contiguous(op, na, a);
  check_contiguous(op, nb, b);
}

Napi::Value softmax_js(const Napi::CallbackInfo& info) {
  const char* op = "softmax";
  TensorView x = get_view(info, 0, op, "x");
  TensorView out = get_view(info, 1, op, "out");
  const bool log = get_flag(info, 2, op, "log");
  check_pair(op, "x", x, "out", out);
  check_same_device(op, {&x, &out});
  if (x.device >= 0) {
    if (cuda_api()->softmax_last(log ? 1 : 0, &x, &out))
      fail(op, " (cuda): ", cuda_api()->last_error());
  } else {
    softmax_cpu(x, out, log);
  }
  return info.Env().Undefined();
}

Napi::Value softmax_backward_js(const Napi::CallbackInfo& info) {
  const char* op = "softmaxBackward";
  TensorView y = get_view(info, 0, op, "y");
  TensorView dy = get_view(info, 1, op, "dy");
  TensorView dx = get_view(info, 2, op, "dx");
  const bool log = get_flag(info, 3, op, "log");
  check_pair(op, "y", y, "dy", dy);
  check_pair(op, "y", y, "dx", dx);
  check_same_device(op, {&y, &dy, &dx});
  if (y.device >= 0) fail(op, ": cuda is not supported for this op yet");
  softmax_backward_cpu(y, dy, dx, log);
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("softmax", softmax_js);
FOVEA_BIND("softmaxBackward", softmax_backward_js);

}  // namespace fovea::napi
