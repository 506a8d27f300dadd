// Driver and device discovery: the sidecar's answer to "can CUDA run here, and if not, what
// is missing?". The loader (core/cuda_loader.cpp) calls probe() once and shows its message
// verbatim, so each failure names the missing piece and the fix:
//   1. no driver:      libcuda.so.1 cannot be loaded (cudaDriverGetVersion reports 0);
//   2. old driver:     the driver's CUDA version is below the runtime this sidecar links;
//   3. no device:      the driver loads but reports no GPU (or CUDA_VISIBLE_DEVICES hides it).
#include <dlfcn.h>
#include <cstdlib>
#include <cstring>
#include "cuda/common.cuh"
#include "cuda/entries.h"

namespace fovea::cuda {
namespace {

std::string version_str(int v) {  // 12040 -> "12.4"
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// Why libcuda.so.1 does not load, in the dynamic loader's words.
std::string driver_dlerror() {
  void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (h) {
    dlclose(h);
    return "libcuda.so.1 loads, but the CUDA runtime could not initialize it";
  }
  const char* e = dlerror();
  return e ? e : "libcuda.so.1: not found";
}

std::string visible_devices_note() {
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  if (!v) return "";
  return std::string(" CUDA_VISIBLE_DEVICES is set to \"") + v + "\"; unset it or list a GPU.";
}

}  // namespace

int probe(int* device_count_out, int* driver_version_out, int* runtime_version_out) {
  int driver = 0, runtime = 0, count = 0;
  cudaRuntimeGetVersion(&runtime);
  if (runtime_version_out) *runtime_version_out = runtime;
  cudaError_t e = cudaDriverGetVersion(&driver);
  if (driver_version_out) *driver_version_out = driver;
  if (device_count_out) *device_count_out = 0;
  if (e != cudaSuccess || driver == 0) {
    cudaGetLastError();
    return fail("no NVIDIA driver: ", driver_dlerror(),
                ". Install the NVIDIA driver (nvidia-smi must work); in a container, run it "
                "with the NVIDIA container toolkit (docker run --gpus all)");
  }
  // A driver of an older major version cannot run this runtime at all. Within one major
  // version, minor-version compatibility usually lets it run, so leave that to the device
  // query below, which reports cudaErrorInsufficientDriver when it cannot.
  if (driver / 1000 < runtime / 1000) {
    return fail("NVIDIA driver too old: it supports CUDA ", version_str(driver),
                " but the sidecar was built with the CUDA ", version_str(runtime),
                " runtime. Update the driver (nvidia-smi shows the CUDA version it supports), "
                "or rebuild the sidecar with a CUDA ", version_str(driver), " toolkit");
  }
  e = cudaGetDeviceCount(&count);
  if (e == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    return fail("NVIDIA driver too old: it supports CUDA ", version_str(driver),
                " but the sidecar was built with the CUDA ", version_str(runtime), " runtime (",
                cudaGetErrorString(e), "). Update the driver, or rebuild the sidecar with an "
                "older CUDA toolkit");
  }
  if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0)) {
    cudaGetLastError();
    return fail("no CUDA GPU: the NVIDIA driver (CUDA ", version_str(driver),
                ") loaded but reports no device (", cudaGetErrorString(e), ").",
                visible_devices_note(), " Check nvidia-smi");
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    return fail("CUDA initialization failed: ", cudaGetErrorString(e), " (", cudaGetErrorName(e),
                "); driver CUDA ", version_str(driver), ", runtime CUDA ", version_str(runtime),
                ".", visible_devices_note());
  }
  if (device_count_out) *device_count_out = count;
  return 0;
}

int device_info(int device, char* name, int name_len, size_t* total_bytes, int* cc_major,
                int* cc_minor, int* sm_count) {
  if (use_device(device, "device_info")) return 1;
  cudaDeviceProp prop{};
  FOVEA_CU(cudaGetDeviceProperties(&prop, device), "device_info", device);
  if (name && name_len > 0) {
    std::strncpy(name, prop.name, size_t(name_len) - 1);
    name[name_len - 1] = '\0';
  }
  if (total_bytes) *total_bytes = prop.totalGlobalMem;
  if (cc_major) *cc_major = prop.major;
  if (cc_minor) *cc_minor = prop.minor;
  if (sm_count) *sm_count = prop.multiProcessorCount;
  return 0;
}

}  // namespace fovea::cuda
