// Bindings for per-row cross entropy (ops/cross_entropy/cross_entropy.h), CPU only for now:
//   crossEntropy(logits, targets, ignoreIndex, losses, lse)
//   crossEntropyBackward(logits, targets, lse, dlosses, ignoreIndex, dlogits)
// logits [N, V] contiguous float; targets [N] i32/i64; losses, lse, dlosses [N] f32 (f64 also
// accepted when logits are f64); dlogits like logits. Targets are range-checked by the kernel.
#include "core/error.h"
#include "napi/binding.h"
#include "ops/cross_entropy/cross_entropy.h"

namespace fovea::napi {
namespace {

void check_logits_targets(const char* op, const TensorView& logits, const TensorView& targets) {
  check_float(op, "logits", logits);
  if (logits.ndim != 2) fail(op, ": logits ", shape_str(logits), " must be 2-D [N, V]");
  check_contiguous(op, "logits", logits);
  if (targets.dtype != DType::I32 && targets.dtype != DType::I64)
    fail(op, ": targets must be i32 or i64, got ", dtype_name(targets.dtype));
  if (targets.ndim != 1 || targets.shape[0] != logits.shape[0])
    fail(op, ": targets ", shape_str(targets), " must be [", logits.shape[0], "] for logits ",
         shape_str(logits));
  check_contiguous(op, "targets", targets);
}

// A per-row f32 vector [N] (f64 allowed with f64 logits), contiguous.
void check_row_stat(const char* op, const TensorView& logits, const char* name, const TensorView& t) {
  if (t.dtype != DType::F32 && !(t.dtype == DType::F64 && logits.dtype == DType::F64))
    fail(op, ": ", name, " must be f32", logits.dtype == DType::F64 ? " or f64" : "", ", got ",
         dtype_name(t.dtype));
  if (t.ndim != 1 || t.shape[0] != logits.shape[0])
    fail(op, ": ", name, " ", shape_str(t), " must be [", logits.shape[0], "] for logits ",
         shape_str(logits));
  check_contiguous(op, name, t);
}

Napi::Value cross_entropy_js(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropy";
  TensorView logits = get_view(info, 0, op, "logits");
  TensorView targets = get_view(info, 1, op, "targets");
  const int64_t ignore = get_int(info, 2, op, "ignoreIndex");
  TensorView losses = get_view(info, 3, op, "losses");
  TensorView lse = get_view(info, 4, op, "lse");
  check_logits_targets(op, logits, targets);
  check_row_stat(op, logits, "losses", losses);
  check_row_stat(op, logits, "lse", lse);
  if (losses.dtype != lse.dtype) fail(op, ": losses and lse must share a dtype");
  check_same_device(op, {&logits, &targets, &losses, &lse});
  if (logits.device >= 0) fail(op, ": cuda is not supported for this op yet");
  cross_entropy_cpu(logits, targets, ignore, losses, lse);
  return info.Env().Undefined();
}

Napi::Value cross_entropy_backward_js(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropyBackward";
  TensorView logits = get_view(info, 0, op, "logits");
  TensorView targets = get_view(info, 1, op, "targets");
  TensorView lse = get_view(info, 2, op, "lse");
  TensorView dlosses = get_view(info, 3, op, "dlosses");
  const int64_t ignore = get_int(info, 4, op, "ignoreIndex");
  TensorView dlogits = get_view(info, 5, op, "dlogits");
  check_logits_targets(op, logits, targets);
  check_row_stat(op, logits, "lse", lse);
  check_row_stat(op, logits, "dlosses", dlosses);
  if (dlosses.dtype != lse.dtype) fail(op, ": lse and dlosses must share a dtype");
  check_same_shape(op, "logits", logits, "dlogits", dlogits);
  if (dlogits.dtype != logits.dtype)
    fail(op, ": dlogits is ", dtype_name(dlogits.dtype), " but logits is ", dtype_name(logits.dtype));
  check_contiguous(op, "dlogits", dlogits);
  check_same_device(op, {&logits, &targets, &lse, &dlosses, &dlogits});
  if (logits.device >= 0) fail(op, ": cuda is not supported for this op yet");
  cross_entropy_backward_cpu(logits, targets, lse, dlosses, ignore, dlogits);
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("crossEntropy", cross_entropy_js);
FOVEA_BIND("crossEntropyBackward", cross_entropy_backward_js);

}  // namespace fovea::napi
