// Finds and loads cuBLAS at run time, and keeps one handle per device (see cublas_dyn.h).
// A missing cuBLAS only disables gemm: the rest of the sidecar works without it, and gemm's
// error names the library, the versions and directories tried, and how to point us at it.
#include "cuda/cublas_dyn.h"
#include <dlfcn.h>
#include <unistd.h>
#include <cstdlib>
#include <string>
#include <vector>
#include "cuda/common.cuh"

namespace fovea::cuda {
namespace {

struct Loaded {
  CublasFns fns{};
  std::string path;
  std::string error;  // empty when loaded
};

std::vector<std::string> candidate_dirs() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("FOVEA_CUBLAS_DIR")) {
    std::string list = env;
    size_t start = 0;
    while (start <= list.size()) {
      size_t end = list.find(':', start);
      if (end == std::string::npos) end = list.size();
      if (end > start) dirs.push_back(list.substr(start, end - start));
      start = end + 1;
    }
  }
  dirs.push_back("");  // the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache)
  for (const char* var : {"CUDA_HOME", "CUDA_PATH"})
    if (const char* v = std::getenv(var)) dirs.push_back(std::string(v) + "/lib64");
  dirs.push_back("/usr/local/cuda/lib64");
  return dirs;
}

std::vector<std::string> candidate_suffixes() {  // ".so.13", ".so.12", ".so"
  std::vector<std::string> out;
  for (int major : {CUDART_VERSION / 1000, 13, 12}) {
    std::string s = ".so." + std::to_string(major);
    bool seen = false;
    for (auto& o : out) seen = seen || o == s;
    if (!seen) out.push_back(s);
  }
  out.push_back(".so");
  return out;
}

Loaded load() {
  Loaded r;
  std::vector<std::string> problems;  // dlerror()s worth showing (a file that exists but fails)
  const auto dirs = candidate_dirs();
  const auto suffixes = candidate_suffixes();
  for (const auto& dir : dirs) {
    for (const auto& suffix : suffixes) {
      const std::string prefix = dir.empty() ? "" : dir + "/";
      const std::string path = prefix + "libcublas" + suffix;
      if (!dir.empty() && access(path.c_str(), F_OK) != 0) continue;
      // Load libcublasLt first from the same place: libcublas needs it by soname, and an
      // already-loaded object with that soname satisfies the dependency.
      void* lt = dlopen((prefix + "libcublasLt" + suffix).c_str(), RTLD_NOW | RTLD_LOCAL);
      void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        const char* e = dlerror();
        if (!dir.empty() && e) problems.push_back(e);
        if (lt) dlclose(lt);
        continue;
      }
      auto sym = [&](const char* name) { return dlsym(h, name); };
      r.fns.create = reinterpret_cast<decltype(r.fns.create)>(sym("cublasCreate_v2"));
      r.fns.set_stream = reinterpret_cast<decltype(r.fns.set_stream)>(sym("cublasSetStream_v2"));
      r.fns.gemm_strided_batched_ex = reinterpret_cast<decltype(r.fns.gemm_strided_batched_ex)>(
          sym("cublasGemmStridedBatchedEx"));
      if (!r.fns.create || !r.fns.set_stream || !r.fns.gemm_strided_batched_ex) {
        problems.push_back(path + " lacks cublasCreate_v2/cublasSetStream_v2/"
                           "cublasGemmStridedBatchedEx (cuBLAS 11 or newer is needed)");
        r.fns = CublasFns{};
        continue;  // keep it loaded: unloading cuBLAS mid-process is not worth the risk
      }
      r.path = path;
      return r;
    }
  }
  std::string msg = "cuBLAS not found: tried libcublas";
  for (size_t i = 0; i < suffixes.size(); ++i) msg += (i ? ", " : "") + suffixes[i];
  msg += " in ";
  for (size_t i = 0; i < dirs.size(); ++i)
    msg += (i ? ", " : "") + (dirs[i].empty() ? std::string("the loader's search path") : dirs[i]);
  for (const auto& p : problems) msg += "; " + p;
  msg += ". Install the CUDA toolkit's cuBLAS (or pip install nvidia-cublas-cu12 / PyTorch) "
         "and set FOVEA_CUBLAS_DIR to the directory holding libcublas.so.N";
  r.error = msg;
  return r;
}

cublasHandle_t g_handles[kMaxDevices];  // guarded by g_mutexes[device]
std::mutex g_mutexes[kMaxDevices];

}  // namespace

const CublasFns* cublas() {
  static const Loaded* loaded = new Loaded(load());  // thread-safe once; never unloaded
  if (!loaded->error.empty()) {
    set_last_error(loaded->error);
    return nullptr;
  }
  static CublasFns fns = [] {
    CublasFns f = loaded->fns;
    f.path = loaded->path.c_str();
    return f;
  }();
  return &fns;
}

std::mutex& cublas_mutex(int device) { return g_mutexes[device]; }

cublasHandle_t cublas_handle(int device) {
  if (g_handles[device]) return g_handles[device];
  const CublasFns* f = cublas();
  if (!f) return nullptr;
  cudaStream_t s = stream_for(device);
  if (!s) return nullptr;
  cublasHandle_t h = nullptr;
  cublasStatus_t st = f->create(&h);
  if (st != kCublasSuccess) {
    fail("cublasCreate on cuda:", device, " failed: ", cublas_status_name(st), " (", f->path,
         "; a cuBLAS newer than the driver fails this way: use a libcublas matching nvidia-smi's "
         "CUDA version via FOVEA_CUBLAS_DIR)");
    return nullptr;
  }
  st = f->set_stream(h, s);
  if (st != kCublasSuccess) {
    fail("cublasSetStream on cuda:", device, " failed: ", cublas_status_name(st));
    return nullptr;  // the handle leaks; this does not happen with a working cuBLAS
  }
  g_handles[device] = h;
  return h;
}

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case 0: return "CUBLAS_STATUS_SUCCESS (0)";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED (1)";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED (3)";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE (7)";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH (8)";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR (11)";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED (13)";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR (14)";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED (15)";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR (16)";
    default: return "unknown cuBLAS status";
  }
}

}  // namespace fovea::cuda
