// Engine-wide bindings: thread count, CPU ISA, CUDA availability and devices.
#include "core/cpu_features.h"
#include "core/cuda_api.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "napi/binding.h"

namespace fovea::napi {
namespace {

Napi::Value num_threads_js(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), num_threads());
}
Napi::Value set_num_threads_js(const Napi::CallbackInfo& info) {
  int64_t n = get_int(info, 0, "setNumThreads", "n");
  if (n < 1 || n > 1024) fail("setNumThreads: n must be in [1, 1024], got ", n);
  set_num_threads(int(n));
  return info.Env().Undefined();
}
Napi::Value isa_js(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), isa_name(isa()));
}
Napi::Value set_isa_cap_js(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) fail("setIsaCap: expected 'portable', 'avx2' or 'avx512'");
  std::string s = info[0].As<Napi::String>();
  if (s == "portable") set_isa_cap(Isa::Portable);
  else if (s == "avx2") set_isa_cap(Isa::Avx2);
  else if (s == "avx512") set_isa_cap(Isa::Avx512);
  else fail("setIsaCap: expected 'portable', 'avx2' or 'avx512', got '", s, "'");
  return info.Env().Undefined();
}

// cudaStatus() -> {available, reason, devices: [{name, totalBytes, cc, smCount}], driver, runtime}
Napi::Value cuda_status_js(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto o = Napi::Object::New(env);
  std::string reason = cuda_unavailable_reason();
  o.Set("available", reason.empty());
  o.Set("reason", reason);
  auto devs = Napi::Array::New(env);
  if (reason.empty()) {
    const FoveaCudaApi* api = cuda_api();
    int count = 0, drv = 0, rt = 0;
    if (api->probe(&count, &drv, &rt) == 0) {
      o.Set("driverVersion", drv);
      o.Set("runtimeVersion", rt);
      for (int d = 0; d < count; ++d) {
        char name[256] = {0};
        size_t total = 0;
        int maj = 0, min = 0, sms = 0;
        if (api->device_info(d, name, sizeof name, &total, &maj, &min, &sms) == 0) {
          auto dv = Napi::Object::New(env);
          dv.Set("name", name);
          dv.Set("totalBytes", double(total));
          dv.Set("computeCapability", std::to_string(maj) + "." + std::to_string(min));
          dv.Set("smCount", sms);
          devs.Set(uint32_t(d), dv);
        }
      }
    }
  }
  o.Set("devices", devs);
  return o;
}

// cudaCheckDevice(ordinal): throws with the loader's reason, or if the ordinal is out of range.
Napi::Value cuda_check_device_js(const Napi::CallbackInfo& info) {
  int64_t d = get_int(info, 0, "cuda", "device");
  const FoveaCudaApi* api = cuda_api();
  int count = 0, drv = 0, rt = 0;
  if (api->probe(&count, &drv, &rt)) fail("cuda: ", api->last_error());
  if (d < 0 || d >= count)
    fail("cuda:", d, " does not exist: this machine has ", count, " CUDA device(s)");
  return info.Env().Undefined();
}

Napi::Value cuda_synchronize_js(const Napi::CallbackInfo& info) {
  int64_t d = get_int(info, 0, "cudaSynchronize", "device");
  if (cuda_api()->synchronize(int(d))) fail("cudaSynchronize: ", cuda_api()->last_error());
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("numThreads", num_threads_js);
FOVEA_BIND("setNumThreads", set_num_threads_js);
FOVEA_BIND("isa", isa_js);
FOVEA_BIND("setIsaCap", set_isa_cap_js);
FOVEA_BIND("cudaStatus", cuda_status_js);
FOVEA_BIND("cudaCheckDevice", cuda_check_device_js);
FOVEA_BIND("cudaSynchronize", cuda_synchronize_js);

}  // namespace fovea::napi
