// Storage: one allocation of device or host memory that tensors view. The JS side holds a
// handle to it and frees it deterministically (dispose/tidy); a GC finalizer is a backstop.
// Live bytes and counts per device are tracked for memoryStats().
#pragma once
#include <cstddef>
#include <cstdint>

namespace fovea {

struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  int device = -1;  // -1 host, >= 0 CUDA ordinal
  bool freed = false;
};

// Contents are unspecified unless zero is set.
Storage* storage_alloc(int device, size_t nbytes, bool zero = false);
void storage_release(Storage* s);                   // frees the memory; keeps the struct
void storage_delete(Storage* s);                    // release + delete the struct

struct DeviceMemoryStats { int64_t live_bytes; int64_t live_storages; };
DeviceMemoryStats memory_stats(int device);

}  // namespace fovea
