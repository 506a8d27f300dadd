// Registration table, argument parsing and boundary validation for the Node-API layer.
#include "napi/binding.h"
#include <sstream>
#include <vector>
#include "core/error.h"

namespace fovea::napi {
namespace {
struct Entry { const char* name; BindingFn fn; };
std::vector<Entry>& entries() { static std::vector<Entry> e; return e; }

// Runs a binding, converting every C++ exception into a JavaScript Error.
Napi::Value call_guarded(const Napi::CallbackInfo& info) {
  auto fn = reinterpret_cast<BindingFn>(info.Data());
  try {
    return fn(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  } catch (...) {
    throw Napi::Error::New(info.Env(), "fovea: unknown native error");
  }
}
}  // namespace

Registration::Registration(const char* name, BindingFn fn) { entries().push_back({name, fn}); }

void export_all(Napi::Env env, Napi::Object exports) {
  for (auto& e : entries())
    exports.Set(e.name, Napi::Function::New(env, call_guarded, e.name,
                                            reinterpret_cast<void*>(e.fn)));
}

Storage* get_storage(const Napi::Value& v, const char* op, const char* what) {
  if (!v.IsExternal()) fail(op, ": ", what, " is not a native storage handle");
  auto* s = v.As<Napi::External<Storage>>().Data();
  if (!s) fail(op, ": ", what, " has a null storage");
  if (s->freed) fail(op, ": ", what, " was disposed (its storage has been freed)");
  return s;
}

std::string shape_str(const TensorView& v) {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < v.ndim; ++i) os << (i ? ", " : "") << v.shape[i];
  os << "]";
  return os.str();
}

bool is_null_or_undefined(const Napi::CallbackInfo& info, size_t i) {
  return i >= info.Length() || info[i].IsNull() || info[i].IsUndefined();
}

int64_t get_int(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) fail(op, ": ", name, " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != d || d != double(int64_t(d))) fail(op, ": ", name, " must be an integer, got ", d);
  return int64_t(d);
}

double get_double(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) fail(op, ": ", name, " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

static int64_t int_prop(const Napi::Array& a, uint32_t i, const char* op, const char* name,
                        const char* field) {
  Napi::Value v = a.Get(i);
  if (!v.IsNumber()) fail(op, ": ", name, ".", field, "[", i, "] is not a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != d || d != double(int64_t(d)) || d > 9e15 || d < -9e15)
    fail(op, ": ", name, ".", field, "[", i, "] must be an integer, got ", d);
  return int64_t(d);
}

TensorView get_view(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  if (i >= info.Length() || !info[i].IsObject()) fail(op, ": ", name, " must be a tensor view");
  Napi::Object o = info[i].As<Napi::Object>();
  Storage* s = get_storage(o.Get("storage"), op, name);
  TensorView v;
  Napi::Value dt = o.Get("dtype");
  if (!dt.IsNumber()) fail(op, ": ", name, ".dtype must be a dtype code");
  int code = dt.As<Napi::Number>().Int32Value();
  if (code < 0 || code >= kNumDTypes) fail(op, ": ", name, " has unknown dtype code ", code);
  v.dtype = DType(code);
  v.device = s->device;
  Napi::Value shv = o.Get("shape"), stv = o.Get("strides");
  if (!shv.IsArray() || !stv.IsArray()) fail(op, ": ", name, " needs shape and strides arrays");
  auto sh = shv.As<Napi::Array>(), st = stv.As<Napi::Array>();
  if (sh.Length() != st.Length()) fail(op, ": ", name, " shape and strides differ in length");
  if (sh.Length() > uint32_t(kMaxDims))
    fail(op, ": ", name, " has ", sh.Length(), " dims; at most ", kMaxDims, " are supported");
  v.ndim = int(sh.Length());
  int64_t offset = 0;
  Napi::Value ov = o.Get("offset");
  if (ov.IsNumber()) offset = int64_t(ov.As<Napi::Number>().DoubleValue());
  // Reachable element range [lo, hi] relative to the storage start.
  int64_t lo = offset, hi = offset;
  bool empty = false;
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = int_prop(sh, d, op, name, "shape");
    v.strides[d] = int_prop(st, d, op, name, "strides");
    if (v.shape[d] < 0) fail(op, ": ", name, " has a negative dimension ", v.shape[d]);
    if (v.shape[d] == 0) empty = true;
    int64_t span = (v.shape[d] - 1) * v.strides[d];
    if (span < 0) lo += span; else hi += span;
  }
  int64_t capacity = int64_t(s->nbytes / dtype_size(v.dtype));
  if (!empty && (lo < 0 || hi >= capacity))
    fail(op, ": ", name, " view ", shape_str(v), " (offset ", offset,
         ") reaches outside its storage of ", capacity, " ", dtype_name(v.dtype), " elements");
  v.data = static_cast<char*>(s->data) + offset * int64_t(dtype_size(v.dtype));
  return v;
}

void check_same_device(const char* op, std::initializer_list<const TensorView*> views) {
  int dev = (*views.begin())->device;
  for (auto* v : views)
    if (v->device != dev)
      fail(op, ": tensors are on different devices (", dev < 0 ? "cpu" : "cuda", " and ",
           v->device < 0 ? "cpu" : "cuda", "); move them to one device first");
}
void check_dtype(const char* op, const char* name, const TensorView& v, DType expected) {
  if (v.dtype != expected)
    fail(op, ": ", name, " must be ", dtype_name(expected), ", got ", dtype_name(v.dtype));
}
void check_float(const char* op, const char* name, const TensorView& v) {
  if (!dtype_is_float(v.dtype))
    fail(op, ": ", name, " must be a float tensor (f32, f64, bf16, f16), got ",
         dtype_name(v.dtype));
}
void check_contiguous(const char* op, const char* name, const TensorView& v) {
  if (!v.contiguous()) fail(op, ": ", name, " must be contiguous");
}
void check_same_shape(const char* op, const char* na, const TensorView& a, const char* nb,
                      const TensorView& b) {
  bool same = a.ndim == b.ndim;
  for (int i = 0; same && i < a.ndim; ++i) same = a.shape[i] == b.shape[i];
  if (!same)
    fail(op, ": ", na, " ", shape_str(a), " and ", nb, " ", shape_str(b),
         " must have the same shape");
}

}  // namespace fovea::napi
