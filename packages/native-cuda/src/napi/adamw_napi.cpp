// Bindings for the fused AdamW step and the gradient-norm reduction (ops/adamw/adamw.h):
//   adamwStep(p, g, expAvg, expAvgSq, master|null, lr, beta1, beta2, eps, weightDecay, step)
//       updates p, expAvg, expAvgSq (and master) in place; master is required (f32) for a
//       bf16/f16 parameter and must be null for an f32 one.
//   gradNormPow(x, normType) -> Σ|x|^normType in f64 (max |x| for normType = Infinity).
// adamwStep runs on CUDA through the sidecar's adamw_step (ABI 4); gradNormPow is CPU only
// for now (CUDA tensors get the standard "not supported for this op yet" error).
#include "core/cuda_api.h"
#include "core/error.h"
#include "napi/binding.h"
#include "ops/adamw/adamw.h"

namespace fovea::napi {
namespace {

Napi::Value adamw_step_js(const Napi::CallbackInfo& info) {
  const char* op = "adamwStep";
  TensorView p = get_view(info, 0, op, "param");
  TensorView g = get_view(info, 1, op, "grad");
  TensorView m = get_view(info, 2, op, "expAvg");
  TensorView v = get_view(info, 3, op, "expAvgSq");
  TensorView master;
  const bool has_master = !is_null_or_undefined(info, 4);
  if (has_master) master = get_view(info, 4, op, "master");
  AdamWHyper h;
  h.lr = get_double(info, 5, op, "lr");
  h.beta1 = get_double(info, 6, op, "beta1");
  h.beta2 = get_double(info, 7, op, "beta2");
  h.eps = get_double(info, 8, op, "eps");
  h.weight_decay = get_double(info, 9, op, "weightDecay");
  h.step = get_int(info, 10, op, "step");
  if (has_master) check_same_device(op, {&p, &g, &m, &v, &master});
  else check_same_device(op, {&p, &g, &m, &v});
  const TensorView* ms = has_master ? &master : nullptr;
  if (p.device >= 0) {
    adamw_check(h, p, g, m, v, ms);
    const AdamWScalars s = adamw_scalars(h);
    if (cuda_api()->adamw_step(&p, &g, &m, &v, ms, &s)) fail(op, " (cuda): ", cuda_api()->last_error());
  } else {
    adamw_cpu(h, p, g, m, v, ms);
  }
  return info.Env().Undefined();
}

Napi::Value grad_norm_pow_js(const Napi::CallbackInfo& info) {
  const char* op = "gradNormPow";
  TensorView x = get_view(info, 0, op, "x");
  const double p = get_double(info, 1, op, "normType");
  if (x.device >= 0) fail(op, ": cuda is not supported for this op yet");
  return Napi::Number::New(info.Env(), grad_norm_pow_cpu(x, p));
}

}  // namespace

FOVEA_BIND("adamwStep", adamw_step_js);
FOVEA_BIND("gradNormPow", grad_norm_pow_js);

}  // namespace fovea::napi
