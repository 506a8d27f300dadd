// Host storage is 64-byte aligned (full cache lines for SIMD loads) and comes from the host
// block cache (core/host_allocator.h); CUDA storage goes through the sidecar's caching
// allocator. Contents are unspecified unless the caller asks for zeros.
#include "core/storage.h"
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include "core/cuda_api.h"
#include "core/error.h"
#include "core/host_allocator.h"

namespace fovea {
namespace {
std::mutex g_m;
std::map<int, DeviceMemoryStats> g_stats;
void account(int device, int64_t bytes, int64_t count) {
  std::lock_guard<std::mutex> g(g_m);
  auto& s = g_stats[device];
  s.live_bytes += bytes;
  s.live_storages += count;
}
}  // namespace

Storage* storage_alloc(int device, size_t nbytes, bool zero) {
  auto* s = new Storage();
  s->device = device;
  s->nbytes = nbytes;
  size_t padded = (nbytes + 63) / 64 * 64;
  if (padded == 0) padded = 64;
  if (device < 0) {
    s->data = host_alloc(padded, zero);
    if (!s->data) { delete s; fail("out of host memory allocating ", nbytes, " bytes"); }
  } else {
    const FoveaCudaApi* api;
    try { api = cuda_api(); } catch (...) { delete s; throw; }
    s->data = api->malloc(device, padded);
    if (s->data && zero) {
      TensorView v = make_view(s->data, DType::Bool, {int64_t(padded)});
      if (api->fill(&v, 0.0)) { api->free(device, s->data); s->data = nullptr; }
    }
    if (!s->data) {
      delete s;
      fail("cuda:", device, ": allocating ", nbytes, " bytes failed: ", api->last_error());
    }
  }
  account(device, int64_t(nbytes), 1);
  return s;
}

void storage_release(Storage* s) {
  if (!s || s->freed) return;
  size_t padded = (s->nbytes + 63) / 64 * 64;
  if (padded == 0) padded = 64;
  if (s->device < 0) host_free(s->data, padded);
  else if (const FoveaCudaApi* api = cuda_api()) api->free(s->device, s->data);
  account(s->device, -int64_t(s->nbytes), -1);
  s->data = nullptr;
  s->freed = true;
}

void storage_delete(Storage* s) {
  storage_release(s);
  delete s;
}

DeviceMemoryStats memory_stats(int device) {
  std::lock_guard<std::mutex> g(g_m);
  auto it = g_stats.find(device);
  return it == g_stats.end() ? DeviceMemoryStats{0, 0} : it->second;
}

}  // namespace fovea
