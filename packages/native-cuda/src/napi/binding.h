// Helpers every Node-API binding uses: registration, argument parsing and validation.
//
// A binding file (src/napi/<op>_napi.cpp) defines functions `Napi::Value fn(const
// Napi::CallbackInfo&)` and registers each with FOVEA_BIND("jsName", fn). module.cpp exports
// them all. Bindings validate once at the boundary (storage alive, the view's reachable
// elements inside its storage, dtypes, devices, shapes), then fill a TensorView or params
// struct and call the kernel. Any C++ exception becomes a JavaScript Error: nothing passed
// from JavaScript may crash the process or read out of bounds.
//
// A view travels from JS as {storage, dtype, shape, strides, offset} (strides and offset in
// elements), built by packages/core-ts/src/native/views.ts.
#pragma once
#include <napi.h>
#include <string>
#include "core/storage.h"
#include "core/tensor_view.h"

namespace fovea::napi {

using BindingFn = Napi::Value (*)(const Napi::CallbackInfo&);
struct Registration {
  Registration(const char* name, BindingFn fn);
};
#define FOVEA_BIND(js_name, fn) \
  static ::fovea::napi::Registration FOVEA_NAPI_CAT(fovea_reg_, __LINE__)(js_name, fn)
#define FOVEA_NAPI_CAT2(a, b) a##b
#define FOVEA_NAPI_CAT(a, b) FOVEA_NAPI_CAT2(a, b)

void export_all(Napi::Env env, Napi::Object exports);

// Storage handles are Napi::External<Storage>. Throws if not a storage or already freed.
Storage* get_storage(const Napi::Value& v, const char* op, const char* what);
Napi::Value make_storage_handle(Napi::Env env, Storage* s);

// Parses and validates a view argument. `op` and `name` go into error messages.
TensorView get_view(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name);
bool is_null_or_undefined(const Napi::CallbackInfo& info, size_t i);

int64_t get_int(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name);
double get_double(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name);

std::string shape_str(const TensorView& v);

// Checks shared by many bindings; each throws fovea::Error naming op and the tensors.
void check_same_device(const char* op, std::initializer_list<const TensorView*> views);
void check_dtype(const char* op, const char* name, const TensorView& v, DType expected);
void check_float(const char* op, const char* name, const TensorView& v);
void check_contiguous(const char* op, const char* name, const TensorView& v);
void check_same_shape(const char* op, const char* na, const TensorView& a, const char* nb,
                      const TensorView& b);

}  // namespace fovea::napi
