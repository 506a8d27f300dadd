// A caching allocator per device over cudaMalloc (never managed memory): cudaMalloc and
// cudaFree are slow and cudaFree synchronizes the device, so freed blocks are kept and
// handed to the next request of a similar size, as PyTorch's allocator does.
//
// Size classes: a request is rounded up to 1/16 of its power-of-two octave (at least 512
// bytes), so rounding wastes under 6.25%; a cached block is reused for a request when it is
// at most 1/8 larger than the rounded size. Blocks are never split or merged.
//
// Reuse without events is safe because every device has a single stream (stream.cu): work
// that used a freed block was enqueued before any work of its next owner.
//
// Stats: allocated = bytes in blocks handed out (rounded sizes); reserved = allocated + cached.
#include <map>
#include <mutex>
#include <unordered_map>
#include "cuda/common.cuh"
#include "cuda/entries.h"

namespace fovea::cuda {
namespace {

struct DevicePool {
  std::mutex mutex;
  std::multimap<size_t, void*> cached;       // free blocks by size
  std::unordered_map<void*, size_t> live;   // handed-out blocks -> size
  size_t allocated = 0;
  size_t reserved = 0;
};

// Never destroyed: freeing device memory from a static destructor races with driver shutdown.
DevicePool* pools() {
  static DevicePool* p = new DevicePool[kMaxDevices];
  return p;
}

size_t round_size(size_t n) {
  if (n <= 512) return 512;
  size_t octave = size_t(1) << (63 - __builtin_clzll(n));  // largest power of two <= n
  size_t step = std::max<size_t>(512, octave / 16);
  return (n + step - 1) / step * step;
}

// Gives every cached block of the pool back to the driver. Caller holds pool.mutex and has
// made the device current.
int release_cached(DevicePool& pool, int device) {
  int rc = 0;
  for (auto& [size, ptr] : pool.cached) {
    cudaError_t e = cudaFree(ptr);
    if (e != cudaSuccess && !rc) rc = cuda_fail(e, "empty_cache: cudaFree", device);
    pool.reserved -= size;
  }
  pool.cached.clear();
  return rc;
}

}  // namespace

void* device_malloc(int device, size_t nbytes) {
  if (nbytes > (size_t(1) << 62)) {  // also keeps round_size from overflowing
    fail("cuda:", device, ": allocating ", nbytes, " bytes: out of memory (no device has that)");
    return nullptr;
  }
  if (use_device(device, "malloc")) return nullptr;
  const size_t size = round_size(nbytes);
  DevicePool& pool = pools()[device];
  std::lock_guard<std::mutex> lock(pool.mutex);

  auto it = pool.cached.lower_bound(size);
  if (it != pool.cached.end() && it->first <= size + size / 8) {
    void* p = it->second;
    pool.live.emplace(p, it->first);
    pool.allocated += it->first;
    pool.cached.erase(it);
    return p;
  }

  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, size);
  if (e == cudaErrorMemoryAllocation && !pool.cached.empty()) {
    // Out of memory while holding cached blocks: give them back and try once more.
    cudaGetLastError();
    release_cached(pool, device);
    e = cudaMalloc(&p, size);
  }
  if (e != cudaSuccess) {
    cuda_fail(e, "malloc", device);
    fail("cuda:", device, ": allocating ", nbytes, " bytes (", size, " rounded) failed: ",
         last_error(), " (this process: ", pool.allocated >> 20, " MiB allocated, ",
         pool.reserved >> 20, " MiB reserved)");
    return nullptr;
  }
  pool.live.emplace(p, size);
  pool.allocated += size;
  pool.reserved += size;
  return p;
}

int device_free(int device, void* ptr) {
  if (!ptr) return 0;
  if (device < 0 || device >= kMaxDevices) return fail("free: cuda:", device, " does not exist");
  DevicePool& pool = pools()[device];
  std::lock_guard<std::mutex> lock(pool.mutex);
  auto it = pool.live.find(ptr);
  if (it == pool.live.end())
    return fail("free: ", ptr, " was not allocated on cuda:", device,
                " by this allocator (or was freed twice)");
  pool.cached.emplace(it->second, ptr);
  pool.allocated -= it->second;
  pool.live.erase(it);
  return 0;
}

int empty_cache(int device) {
  if (use_device(device, "empty_cache")) return 1;
  DevicePool& pool = pools()[device];
  std::lock_guard<std::mutex> lock(pool.mutex);
  return release_cached(pool, device);
}

int memory_stats(int device, size_t* allocated, size_t* reserved) {
  if (device < 0 || device >= kMaxDevices)
    return fail("memory_stats: cuda:", device, " does not exist");
  DevicePool& pool = pools()[device];
  std::lock_guard<std::mutex> lock(pool.mutex);
  if (allocated) *allocated = pool.allocated;
  if (reserved) *reserved = pool.reserved;
  return 0;
}

}  // namespace fovea::cuda
