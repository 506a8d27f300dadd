// Binding for batched GEMM: gemm(a, b, c, alpha, beta) with a [batch, M, K], b [batch, K, N],
// c [batch, M, N] as views with any strides (batch stride 0 broadcasts). The TS side (matmul,
// linear) builds these views so that transposes and broadcast batches cost no copies.
#include "core/cuda_api.h"
#include "core/error.h"
#include "napi/binding.h"
#include "ops/matmul/matmul.h"

namespace fovea::napi {
namespace {

Napi::Value gemm_js(const Napi::CallbackInfo& info) {
  const char* op = "matmul";
  TensorView a = get_view(info, 0, op, "a");
  TensorView b = get_view(info, 1, op, "b");
  TensorView c = get_view(info, 2, op, "out");
  double alpha = get_double(info, 3, op, "alpha");
  double beta = get_double(info, 4, op, "beta");
  if (a.ndim != 3 || b.ndim != 3 || c.ndim != 3) fail(op, ": gemm views must be 3-D [batch, rows, cols]");
  if (a.shape[0] != b.shape[0] || a.shape[0] != c.shape[0])
    fail(op, ": batch sizes differ: a ", shape_str(a), ", b ", shape_str(b), ", out ", shape_str(c));
  if (a.shape[2] != b.shape[1])
    fail(op, ": inner dimensions differ: a ", shape_str(a), " and b ", shape_str(b));
  if (c.shape[1] != a.shape[1] || c.shape[2] != b.shape[2])
    fail(op, ": out ", shape_str(c), " must be [", a.shape[0], ", ", a.shape[1], ", ", b.shape[2], "]");
  check_float(op, "a", a);
  check_float(op, "b", b);
  check_float(op, "out", c);
  check_same_device(op, {&a, &b, &c});
  if (a.dtype != b.dtype)
    fail(op, ": a is ", dtype_name(a.dtype), " but b is ", dtype_name(b.dtype), "; cast one first");
  GemmParams p;
  p.a = a.data; p.b = b.data; p.c = c.data;
  p.a_dtype = a.dtype; p.b_dtype = b.dtype; p.c_dtype = c.dtype;
  p.batch = a.shape[0]; p.M = a.shape[1]; p.K = a.shape[2]; p.N = b.shape[2];
  p.a_batch = a.strides[0]; p.a_rs = a.strides[1]; p.a_cs = a.strides[2];
  p.b_batch = b.strides[0]; p.b_rs = b.strides[1]; p.b_cs = b.strides[2];
  p.c_batch = c.strides[0]; p.c_rs = c.strides[1]; p.c_cs = c.strides[2];
  p.alpha = float(alpha); p.beta = float(beta);
  p.device = c.device;
  if (c.device >= 0) {
    if (cuda_api()->gemm(&p)) fail(op, " (cuda): ", cuda_api()->last_error());
  } else {
    gemm_cpu(p);
  }
  return info.Env().Undefined();
}

// gemmReference(...): the plain f64 triple loop, exposed for tests and benchmarks.
Napi::Value gemm_reference_js(const Napi::CallbackInfo& info) {
  TensorView a = get_view(info, 0, "gemmReference", "a");
  TensorView b = get_view(info, 1, "gemmReference", "b");
  TensorView c = get_view(info, 2, "gemmReference", "out");
  if (a.ndim != 2 || b.ndim != 2 || c.ndim != 2 || a.shape[1] != b.shape[0] ||
      c.shape[0] != a.shape[0] || c.shape[1] != b.shape[1] || a.device >= 0 || b.device >= 0 ||
      c.device >= 0)
    fail("gemmReference: expects 2-D CPU views a [M, K], b [K, N], out [M, N]");
  GemmParams p;
  p.a = a.data; p.b = b.data; p.c = c.data;
  p.a_dtype = a.dtype; p.b_dtype = b.dtype; p.c_dtype = c.dtype;
  p.M = a.shape[0]; p.K = a.shape[1]; p.N = b.shape[1];
  p.a_rs = a.strides[0]; p.a_cs = a.strides[1];
  p.b_rs = b.strides[0]; p.b_cs = b.strides[1];
  p.c_rs = c.strides[0]; p.c_cs = c.strides[1];
  gemm_reference(p);
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("gemm", gemm_js);
FOVEA_BIND("gemmReference", gemm_reference_js);

}  // namespace fovea::napi
