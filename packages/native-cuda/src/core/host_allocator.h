// Host memory for CPU storages. Blocks of 1 MiB and more come from mmap and, when freed, are
// kept in a cache keyed by size (up to FOVEA_HOST_CACHE_MB; default a quarter of RAM, clamped to 2–16 GiB) so a training loop
// that allocates the same shapes every step reuses them instead of paying page faults again
// (the CPU counterpart of the CUDA caching allocator). Smaller blocks use aligned_alloc.
// Contents of a new block are unspecified unless `zero` is set (FOVEA_POISON=1 fills them
// with 0xFF bytes to catch kernels that leave outputs unwritten).
#pragma once
#include <cstddef>
#include <cstdint>

namespace fovea {

void* host_alloc(size_t nbytes, bool zero);  // 64-byte aligned; nullptr when out of memory
void host_free(void* p, size_t nbytes);
int64_t host_cached_bytes();
void host_empty_cache();  // returns every cached block to the OS

}  // namespace fovea
