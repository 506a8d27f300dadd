// The addon's entry point: exports every binding registered with FOVEA_BIND.
#include "napi/binding.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  fovea::napi::export_all(env, exports);
  return exports;
}

NODE_API_MODULE(fovea_native, Init)
