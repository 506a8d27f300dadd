// Bindings for RMSNorm (ops/rmsnorm/rmsnorm.h), CPU only for now:
//   rmsNorm(x, weight, eps, y, rstd)
//   rmsNormBackward(x, weight, rstd, dy, dx, dw)
// x [..., H] contiguous float; weight [H] any float dtype; y, dy, dx like x; rstd [rows] and
// dw [H] are f32 (f64 is also accepted when x is f64, for gradchecks).
#include <cmath>
#include "core/error.h"
#include "napi/binding.h"
#include "ops/rmsnorm/rmsnorm.h"

namespace fovea::napi {
namespace {

void check_like_x(const char* op, const TensorView& x, const char* name, const TensorView& t) {
  check_same_shape(op, "x", x, name, t);
  if (t.dtype != x.dtype)
    fail(op, ": ", name, " is ", dtype_name(t.dtype), " but x is ", dtype_name(x.dtype));
  check_contiguous(op, name, t);
}

// f32, or f64 when x is f64; contiguous with `n` elements.
void check_stat(const char* op, const TensorView& x, const char* name, const TensorView& t,
                int64_t n, const char* expected_shape) {
  if (t.dtype != DType::F32 && !(t.dtype == DType::F64 && x.dtype == DType::F64))
    fail(op, ": ", name, " must be f32", x.dtype == DType::F64 ? " or f64" : "", ", got ",
         dtype_name(t.dtype));
  if (t.numel() != n)
    fail(op, ": ", name, " ", shape_str(t), " must have ", n, " elements ", expected_shape,
         " for x ", shape_str(x));
  check_contiguous(op, name, t);
}

// Validates x and weight; returns H and the row count.
void check_x_weight(const char* op, const TensorView& x, const TensorView& w, int64_t& h,
                    int64_t& rows) {
  check_float(op, "x", x);
  check_float(op, "weight", w);
  check_contiguous(op, "x", x);
  check_contiguous(op, "weight", w);
  if (x.ndim < 1) fail(op, ": x must have at least one dimension");
  h = x.shape[x.ndim - 1];
  rows = 1;
  for (int d = 0; d < x.ndim - 1; ++d) rows *= x.shape[d];
  if (w.ndim != 1 || w.shape[0] != h)
    fail(op, ": weight ", shape_str(w), " must be [", h, "] for x ", shape_str(x));
}

Napi::Value rmsnorm_js(const Napi::CallbackInfo& info) {
  const char* op = "rmsNorm";
  TensorView x = get_view(info, 0, op, "x");
  TensorView w = get_view(info, 1, op, "weight");
  const double eps = get_double(info, 2, op, "eps");
  TensorView y = get_view(info, 3, op, "y");
  TensorView rstd = get_view(info, 4, op, "rstd");
  int64_t h, rows;
  check_x_weight(op, x, w, h, rows);
  if (!(eps >= 0) || !std::isfinite(eps)) fail(op, ": eps must be a finite number >= 0, got ", eps);
  check_like_x(op, x, "y", y);
  check_stat(op, x, "rstd", rstd, rows, "(one per row)");
  check_same_device(op, {&x, &w, &y, &rstd});
  if (x.device >= 0) fail(op, ": cuda is not supported for this op yet");
  rmsnorm_cpu(x, w, eps, y, rstd);
  return info.Env().Undefined();
}

Napi::Value rmsnorm_backward_js(const Napi::CallbackInfo& info) {
  const char* op = "rmsNormBackward";
  TensorView x = get_view(info, 0, op, "x");
  TensorView w = get_view(info, 1, op, "weight");
  TensorView rstd = get_view(info, 2, op, "rstd");
  TensorView dy = get_view(info, 3, op, "dy");
  TensorView dx = get_view(info, 4, op, "dx");
  TensorView dw = get_view(info, 5, op, "dw");
  int64_t h, rows;
  check_x_weight(op, x, w, h, rows);
  check_stat(op, x, "rstd", rstd, rows, "(one per row)");
  check_like_x(op, x, "dy", dy);
  check_like_x(op, x, "dx", dx);
  check_stat(op, x, "dw", dw, h, "(one per weight)");
  check_same_device(op, {&x, &w, &rstd, &dy, &dx, &dw});
  if (x.device >= 0) fail(op, ": cuda is not supported for this op yet");
  rmsnorm_backward_cpu(x, w, rstd, dy, dx, dw);
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("rmsNorm", rmsnorm_js);
FOVEA_BIND("rmsNormBackward", rmsnorm_backward_js);

}  // namespace fovea::napi
