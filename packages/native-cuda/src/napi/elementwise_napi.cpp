// Bindings for elementwise ops, copies and reductions: validate, then dispatch to the CPU
// kernel or, for CUDA tensors, to the sidecar.
#include "core/cuda_api.h"
#include "core/error.h"
#include "napi/binding.h"
#include "ops/elementwise/elementwise.h"
#include "ops/reduce/reduce.h"

namespace fovea::napi {
namespace {

void check_cuda(int rc, const char* op) {
  if (rc) fail(op, " (cuda): ", cuda_api()->last_error());
}

// fill(out, value)
Napi::Value fill_js(const Napi::CallbackInfo& info) {
  TensorView out = get_view(info, 0, "fill", "out");
  double value = get_double(info, 1, "fill", "value");
  if (out.device >= 0) check_cuda(cuda_api()->fill(&out, value), "fill");
  else fill_cpu(out, value);
  return info.Env().Undefined();
}

// copy(src, dst): same shape, any strides and dtypes, same device.
Napi::Value copy_js(const Napi::CallbackInfo& info) {
  TensorView src = get_view(info, 0, "copy", "src");
  TensorView dst = get_view(info, 1, "copy", "dst");
  check_same_shape("copy", "src", src, "dst", dst);
  check_same_device("copy", {&src, &dst});
  if (dst.device >= 0) check_cuda(cuda_api()->copy(&src, &dst), "copy");
  else copy_cpu(src, dst);
  return info.Env().Undefined();
}

// unary(op, x, out, alpha, beta)
Napi::Value unary_js(const Napi::CallbackInfo& info) {
  int64_t op = get_int(info, 0, "unary", "op");
  if (op < 0 || op >= int64_t(UnaryOp::Count)) fail("unary: unknown op code ", op);
  TensorView x = get_view(info, 1, "unary", "x");
  TensorView out = get_view(info, 2, "unary", "out");
  double alpha = get_double(info, 3, "unary", "alpha");
  double beta = get_double(info, 4, "unary", "beta");
  check_same_shape("unary", "x", x, "out", out);
  check_same_device("unary", {&x, &out});
  if (out.dtype != x.dtype) fail("unary: out dtype ", dtype_name(out.dtype), " != x dtype ", dtype_name(x.dtype));
  if (out.device >= 0) check_cuda(cuda_api()->unary(int(op), &x, &out, alpha, beta), "unary");
  else unary_cpu(UnaryOp(op), x, out, alpha, beta);
  return info.Env().Undefined();
}

// binary(op, a, b, out): a and b already broadcast to out's shape (stride 0).
Napi::Value binary_js(const Napi::CallbackInfo& info) {
  int64_t op = get_int(info, 0, "binary", "op");
  if (op < 0 || op >= int64_t(BinaryOp::Count)) fail("binary: unknown op code ", op);
  TensorView a = get_view(info, 1, "binary", "a");
  TensorView b = get_view(info, 2, "binary", "b");
  TensorView out = get_view(info, 3, "binary", "out");
  check_same_shape("binary", "a", a, "out", out);
  check_same_shape("binary", "b", b, "out", out);
  check_same_device("binary", {&a, &b, &out});
  if (a.dtype != b.dtype) fail("binary: a is ", dtype_name(a.dtype), " but b is ", dtype_name(b.dtype));
  DType want = binary_op_is_comparison(BinaryOp(op)) ? DType::Bool : a.dtype;
  check_dtype("binary", "out", out, want);
  if (out.device >= 0) check_cuda(cuda_api()->binary(int(op), &a, &b, &out), "binary");
  else binary_cpu(BinaryOp(op), a, b, out);
  return info.Env().Undefined();
}

// where(cond, a, b, out)
Napi::Value where_js(const Napi::CallbackInfo& info) {
  TensorView c = get_view(info, 0, "where", "cond");
  TensorView a = get_view(info, 1, "where", "a");
  TensorView b = get_view(info, 2, "where", "b");
  TensorView out = get_view(info, 3, "where", "out");
  check_dtype("where", "cond", c, DType::Bool);
  check_same_shape("where", "cond", c, "out", out);
  check_same_shape("where", "a", a, "out", out);
  check_same_shape("where", "b", b, "out", out);
  check_same_device("where", {&c, &a, &b, &out});
  if (a.dtype != b.dtype || a.dtype != out.dtype) fail("where: a, b and out must share a dtype");
  if (out.device >= 0) fail("where: not yet implemented on cuda");
  where_cpu(c, a, b, out);
  return info.Env().Undefined();
}

// reduceLast(op, x, out | null, idx | null): x contiguous [.., n]; out/idx [..].
Napi::Value reduce_last_js(const Napi::CallbackInfo& info) {
  int64_t op = get_int(info, 0, "reduce", "op");
  if (op < 0 || op >= int64_t(ReduceOp::Count)) fail("reduce: unknown op code ", op);
  TensorView x = get_view(info, 1, "reduce", "x");
  check_contiguous("reduce", "x", x);
  if (x.ndim < 1) fail("reduce: x must have at least one dimension");
  TensorView out, idx;
  int64_t rows = 1;
  for (int d = 0; d < x.ndim - 1; ++d) rows *= x.shape[d];
  if (!is_null_or_undefined(info, 2)) {
    out = get_view(info, 2, "reduce", "out");
    check_contiguous("reduce", "out", out);
    if (out.numel() != rows) fail("reduce: out has ", out.numel(), " elements, expected ", rows);
    check_dtype("reduce", "out", out, x.dtype);
    check_same_device("reduce", {&x, &out});
  }
  if (!is_null_or_undefined(info, 3)) {
    idx = get_view(info, 3, "reduce", "indices");
    check_contiguous("reduce", "indices", idx);
    check_dtype("reduce", "indices", idx, DType::I64);
    if (idx.numel() != rows) fail("reduce: indices has ", idx.numel(), " elements, expected ", rows);
    check_same_device("reduce", {&x, &idx});
  }
  ReduceOp rop = ReduceOp(op);
  bool needs_idx = rop == ReduceOp::Max || rop == ReduceOp::Min || rop == ReduceOp::Argmax ||
                   rop == ReduceOp::Argmin;
  if ((rop != ReduceOp::Argmax && rop != ReduceOp::Argmin) && !out.data && rows > 0)
    fail("reduce: out is required");
  if ((rop == ReduceOp::Argmax || rop == ReduceOp::Argmin) && !idx.data && rows > 0)
    fail("reduce: indices are required");
  if (needs_idx && x.shape[x.ndim - 1] == 0 && rows > 0)
    fail("reduce: max/min/argmax over an empty dimension");
  if (x.device >= 0) check_cuda(cuda_api()->reduce_last(int(op), &x, &out, &idx), "reduce");
  else reduce_last_cpu(rop, x, out, idx);
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("fill", fill_js);
FOVEA_BIND("copy", copy_js);
FOVEA_BIND("unary", unary_js);
FOVEA_BIND("binary", binary_js);
FOVEA_BIND("where", where_js);
FOVEA_BIND("reduceLast", reduce_last_js);

}  // namespace fovea::napi
