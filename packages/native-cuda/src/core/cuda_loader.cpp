// Loads the optional CUDA sidecar (libfovea_cuda.so) on first use and hands out its function
// table (core/cuda_api.h). Plain C++ with dlopen: the core never includes a CUDA header, so a
// CPU-only build compiles, links and runs everywhere.
//
// Where the sidecar is looked up, first match wins:
//   1. $FOVEA_CUDA_SIDECAR: the library file, or a directory holding libfovea_cuda.so (when
//      set, nothing else is tried);
//   2. the directory given to set_cuda_sidecar_dir();
//   3. the directory of the module this code is linked into (found with dladdr): the .node
//      addon's directory, or the test binary's, which is where CMake writes the sidecar;
//   4. the dynamic loader's search path (LD_LIBRARY_PATH etc.).
// The first attempt's outcome is cached for the process (std::call_once): success makes
// cuda_api() one atomic check; failure keeps one message that says exactly what is missing:
// the sidecar library itself, the NVIDIA driver, a new-enough driver, or a GPU (the last
// three come from the sidecar's probe()).
#include <dlfcn.h>
#include <unistd.h>
#include <sys/stat.h>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>
#include "core/cuda_api.h"
#include "core/error.h"

namespace fovea {
namespace {

constexpr const char* kSidecarName = "libfovea_cuda.so";

std::mutex g_dir_mutex;
std::string g_dir_override;  // set_cuda_sidecar_dir(); guarded by g_dir_mutex

std::once_flag g_once;
const FoveaCudaApi* g_api = nullptr;  // written once inside call_once, then read-only
std::string g_reason;                 // likewise; empty when g_api is usable

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Directory of the shared object (or executable) that contains this function.
std::string own_module_dir() {
  // dladdr reports the main program by the name it was started with (maybe relative, maybe
  // bare): make it absolute so a later chdir cannot change what we load.
  Dl_info info{};
  std::string path;
  char buf[PATH_MAX];
  if (dladdr(reinterpret_cast<void*>(&own_module_dir), &info) && info.dli_fname &&
      std::strchr(info.dli_fname, '/') && realpath(info.dli_fname, buf))
    path = buf;
  if (path.empty()) {
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) path.assign(buf, size_t(n));
  }
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

// Candidate sidecar paths with the reason each was chosen, in lookup order.
struct Candidate { std::string path, source; };
std::vector<Candidate> candidates() {
  std::vector<Candidate> out;
  // An explicit $FOVEA_CUDA_SIDECAR is the only candidate: silently falling back to another
  // copy would hide a typo in it.
  if (const char* env = std::getenv("FOVEA_CUDA_SIDECAR"); env && *env) {
    std::string p = env;
    out.push_back({is_dir(p) ? p + "/" + kSidecarName : p, "$FOVEA_CUDA_SIDECAR"});
    return out;
  }
  {
    std::lock_guard<std::mutex> lock(g_dir_mutex);
    if (!g_dir_override.empty())
      out.push_back({g_dir_override + "/" + kSidecarName, "set_cuda_sidecar_dir()"});
  }
  std::string own = own_module_dir();
  if (!own.empty()) out.push_back({own + "/" + kSidecarName, "next to the addon or binary"});
  out.push_back({kSidecarName, "the dynamic loader's search path"});
  return out;
}

std::string load_sidecar(const FoveaCudaApi** api_out) {
  std::string tried;
  void* handle = nullptr;
  std::string loaded_path;
  for (const Candidate& c : candidates()) {
    // dlerror() says whether the file is missing or exists but cannot load (a missing
    // dependency, a wrong architecture): both matter to whoever reads the message.
    handle = dlopen(c.path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle) {
      loaded_path = c.path;
      break;
    }
    const char* e = dlerror();
    tried += "\n  " + c.path + " (" + c.source + "): " + (e ? e : "dlopen failed");
  }
  if (!handle)
    return "the CUDA sidecar library (libfovea_cuda.so) could not be loaded. Tried:" + tried +
           "\nIt is built only when nvcc is found at build time and FOVEA_CUDA is not 0: "
           "install the CUDA toolkit and rebuild (npm run build:native), or point "
           "FOVEA_CUDA_SIDECAR at an existing libfovea_cuda.so";

  // The sidecar stays loaded for the life of the process (its static CUDA runtime must not
  // be torn down while other code may still run).
  auto entry = reinterpret_cast<FoveaCudaApiFn>(dlsym(handle, "fovea_cuda_api"));
  if (!entry) {
    const char* e = dlerror();
    return loaded_path + " is not a Fovea CUDA sidecar: no fovea_cuda_api symbol (" +
           (e ? e : "dlsym failed") + ")";
  }
  const FoveaCudaApi* api = entry();
  if (!api) return loaded_path + ": fovea_cuda_api() returned no table";
  if (api->abi_version != FOVEA_CUDA_ABI_VERSION)
    return loaded_path + " was built for CUDA ABI version " + std::to_string(api->abi_version) +
           " but this core expects version " + std::to_string(FOVEA_CUDA_ABI_VERSION) +
           ": rebuild the addon and the sidecar together";

  int devices = 0, driver = 0, runtime = 0;
  if (api->probe(&devices, &driver, &runtime) != 0) {
    const char* e = api->last_error();
    return std::string(e && *e ? e : "the sidecar's probe failed without a message") +
           " (sidecar: " + loaded_path + ")";
  }
  *api_out = api;
  return "";
}

void load_once() {
  std::call_once(g_once, [] {
    const FoveaCudaApi* api = nullptr;
    try {
      std::string reason = load_sidecar(&api);
      if (reason.empty()) g_api = api;
      else g_reason = "CUDA is unavailable: " + reason;
    } catch (const std::exception& e) {
      g_reason = std::string("CUDA is unavailable: loading the sidecar failed: ") + e.what();
    }
  });
}

}  // namespace

const FoveaCudaApi* cuda_api() {
  load_once();  // after the first call: one acquire load inside call_once
  if (!g_api) throw Error(g_reason);
  return g_api;
}

const char* cuda_unavailable_reason() {
  load_once();
  return g_api ? "" : g_reason.c_str();
}

void set_cuda_sidecar_dir(const char* dir) {
  // Only the first load looks at it (the outcome is cached), so the addon calls this when it
  // is initialized, before any CUDA use.
  std::lock_guard<std::mutex> lock(g_dir_mutex);
  g_dir_override = dir ? dir : "";
}

}  // namespace fovea
