// Bindings for the indexing ops (ops/index/index.h), CPU only for now. dim may be negative
// (counted from the end); index values may not (they are range-checked by the kernels).
//   indexSelect(x, dim, index, out)    index 1-D [L]; out = x's shape with dim -> L
//   gather(x, dim, index, out)         index.ndim == x.ndim; out.shape == index.shape
//   scatterAdd(dst, dim, index, src)   in place on dst; index.ndim == src.ndim == dst.ndim
//   indexAdd(dst, dim, index, src)     in place on dst; index 1-D [L]; src = dst with dim -> L
// All tensors contiguous; index i32 or i64; x/out and dst/src share a dtype.
#include <string>
#include "core/error.h"
#include "napi/binding.h"
#include "ops/index/index.h"

namespace fovea::napi {
namespace {

int get_dim(const Napi::CallbackInfo& info, size_t i, const char* op, const TensorView& t,
            const char* tname) {
  const int64_t d = get_int(info, i, op, "dim");
  if (t.ndim < 1) fail(op, ": ", tname, " must have at least one dimension");
  if (d < -t.ndim || d >= t.ndim)
    fail(op, ": dim ", d, " is out of range for ", tname, " ", shape_str(t), " (", t.ndim, " dims)");
  return int(d < 0 ? d + t.ndim : d);
}

void check_index(const char* op, const TensorView& index) {
  if (index.dtype != DType::I32 && index.dtype != DType::I64)
    fail(op, ": index must be i32 or i64, got ", dtype_name(index.dtype));
  check_contiguous(op, "index", index);
}

void check_same_dtype(const char* op, const char* na, const TensorView& a, const char* nb,
                      const TensorView& b) {
  if (a.dtype != b.dtype)
    fail(op, ": ", nb, " is ", dtype_name(b.dtype), " but ", na, " is ", dtype_name(a.dtype));
}

void check_cpu(const char* op, std::initializer_list<const TensorView*> views) {
  check_same_device(op, views);
  if ((*views.begin())->device >= 0) fail(op, ": cuda is not supported for this op yet");
}

// `b` must be `a` with dimension `dim` replaced by `len`.
void check_replaced(const char* op, const char* na, const TensorView& a, const char* nb,
                    const TensorView& b, int dim, int64_t len) {
  bool ok = a.ndim == b.ndim;
  for (int d = 0; ok && d < a.ndim; ++d) ok = b.shape[d] == (d == dim ? len : a.shape[d]);
  if (!ok)
    fail(op, ": ", nb, " ", shape_str(b), " must be ", na, " ", shape_str(a), " with dim ", dim,
         " of size ", len);
}

Napi::Value index_select_js(const Napi::CallbackInfo& info) {
  const char* op = "indexSelect";
  TensorView x = get_view(info, 0, op, "x");
  const int dim = get_dim(info, 1, op, x, "x");
  TensorView index = get_view(info, 2, op, "index");
  TensorView out = get_view(info, 3, op, "out");
  check_index(op, index);
  if (index.ndim != 1) fail(op, ": index ", shape_str(index), " must be 1-D");
  check_replaced(op, "x", x, "out", out, dim, index.shape[0]);
  check_same_dtype(op, "x", x, "out", out);
  check_contiguous(op, "x", x);
  check_contiguous(op, "out", out);
  check_cpu(op, {&x, &index, &out});
  index_select_cpu(x, dim, index, out);
  return info.Env().Undefined();
}

Napi::Value gather_js(const Napi::CallbackInfo& info) {
  const char* op = "gather";
  TensorView x = get_view(info, 0, op, "x");
  const int dim = get_dim(info, 1, op, x, "x");
  TensorView index = get_view(info, 2, op, "index");
  TensorView out = get_view(info, 3, op, "out");
  check_index(op, index);
  if (index.ndim != x.ndim)
    fail(op, ": index ", shape_str(index), " must have as many dims as x ", shape_str(x));
  for (int d = 0; d < x.ndim; ++d)
    if (d != dim && index.shape[d] > x.shape[d])
      fail(op, ": index ", shape_str(index), " is larger than x ", shape_str(x), " in dim ", d,
           " (only dim ", dim, " may differ)");
  check_same_shape(op, "index", index, "out", out);
  check_same_dtype(op, "x", x, "out", out);
  check_contiguous(op, "x", x);
  check_contiguous(op, "out", out);
  check_cpu(op, {&x, &index, &out});
  gather_cpu(x, dim, index, out);
  return info.Env().Undefined();
}

Napi::Value scatter_add_js(const Napi::CallbackInfo& info) {
  const char* op = "scatterAdd";
  TensorView dst = get_view(info, 0, op, "dst");
  const int dim = get_dim(info, 1, op, dst, "dst");
  TensorView index = get_view(info, 2, op, "index");
  TensorView src = get_view(info, 3, op, "src");
  check_index(op, index);
  if (index.ndim != dst.ndim || src.ndim != dst.ndim)
    fail(op, ": dst ", shape_str(dst), ", index ", shape_str(index), " and src ", shape_str(src),
         " must have the same number of dims");
  for (int d = 0; d < dst.ndim; ++d) {
    if (index.shape[d] > src.shape[d])
      fail(op, ": index ", shape_str(index), " is larger than src ", shape_str(src), " in dim ", d);
    if (d != dim && index.shape[d] > dst.shape[d])
      fail(op, ": index ", shape_str(index), " is larger than dst ", shape_str(dst), " in dim ", d,
           " (only dim ", dim, " may differ)");
  }
  check_same_dtype(op, "dst", dst, "src", src);
  check_contiguous(op, "dst", dst);
  check_contiguous(op, "src", src);
  check_cpu(op, {&dst, &index, &src});
  scatter_add_cpu(dst, dim, index, src);
  return info.Env().Undefined();
}

Napi::Value index_add_js(const Napi::CallbackInfo& info) {
  const char* op = "indexAdd";
  TensorView dst = get_view(info, 0, op, "dst");
  const int dim = get_dim(info, 1, op, dst, "dst");
  TensorView index = get_view(info, 2, op, "index");
  TensorView src = get_view(info, 3, op, "src");
  check_index(op, index);
  if (index.ndim != 1) fail(op, ": index ", shape_str(index), " must be 1-D");
  check_replaced(op, "dst", dst, "src", src, dim, index.shape[0]);
  check_same_dtype(op, "dst", dst, "src", src);
  check_contiguous(op, "dst", dst);
  check_contiguous(op, "src", src);
  check_cpu(op, {&dst, &index, &src});
  index_add_cpu(dst, dim, index, src);
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("indexSelect", index_select_js);
FOVEA_BIND("gather", gather_js);
FOVEA_BIND("scatterAdd", scatter_add_js);
FOVEA_BIND("indexAdd", index_add_js);

}  // namespace fovea::napi
