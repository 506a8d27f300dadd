// Host block cache (see host_allocator.h). Exact-size reuse: training steps repeat shapes,
// so exact matches are the common case and nothing is wasted on rounding. Eviction is
// oldest-first once the cache exceeds its cap.
#include "core/host_allocator.h"
#include <sys/mman.h>
#include <unistd.h>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>

namespace fovea {
namespace {

constexpr size_t kLarge = size_t(1) << 20;
constexpr size_t kPage = 4096;

struct Cache {
  std::mutex m;
  std::multimap<size_t, void*> free_blocks;       // size -> block
  std::deque<std::pair<size_t, void*>> age;       // oldest first, for eviction
  size_t bytes = 0;
  size_t cap = [] {
    const char* e = std::getenv("FOVEA_HOST_CACHE_MB");
    if (e) { long mb = std::atol(e); return size_t(mb < 0 ? 0 : mb) << 20; }
    // Default: a quarter of physical memory, at least 2 GiB and at most 16 GiB. A training
    // step frees (and the next one reallocates) about its activation footprint; a cache
    // smaller than that sends the next step through first-touch page faults again.
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t quarter = pages > 0 && page > 0 ? size_t(pages) * size_t(page) / 4 : size_t(2) << 30;
    return std::min(std::max(quarter, size_t(2) << 30), size_t(16) << 30);
  }();
};
Cache& cache() { static Cache c; return c; }

// FOVEA_POISON=1 fills every non-zeroed block with 0xFF bytes (NaN for floats), so a kernel
// that leaves part of its output unwritten shows up in the tests.
const bool g_poison = [] { const char* e = std::getenv("FOVEA_POISON"); return e && *e == '1'; }();

size_t round_pages(size_t n) { return (n + kPage - 1) / kPage * kPage; }

void forget(Cache& c, size_t size, void* p) {
  for (auto it = c.age.begin(); it != c.age.end(); ++it)
    if (it->second == p) { c.age.erase(it); break; }
  c.bytes -= size;
  (void)size;
}

}  // namespace

void* host_alloc(size_t nbytes, bool zero) {
  if (nbytes < kLarge) {
    size_t padded = (nbytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, padded ? padded : 64);
    if (p && (zero || g_poison)) std::memset(p, zero ? 0 : 0xFF, padded);
    return p;
  }
  size_t size = round_pages(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> g(c.m);
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end()) {
      void* p = it->second;
      c.free_blocks.erase(it);
      forget(c, size, p);
      if (zero || g_poison) std::memset(p, zero ? 0 : 0xFF, size);
      return p;
    }
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (g_poison && !zero) std::memset(p, 0xFF, size);
  return p;  // fresh anonymous pages are zero
}

void host_free(void* p, size_t nbytes) {
  if (!p) return;
  if (nbytes < kLarge) { std::free(p); return; }
  size_t size = round_pages(nbytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.m);
  if (size > c.cap) { munmap(p, size); return; }
  c.free_blocks.emplace(size, p);
  c.age.emplace_back(size, p);
  c.bytes += size;
  while (c.bytes > c.cap && !c.age.empty()) {
    auto [sz, old] = c.age.front();
    c.age.pop_front();
    for (auto it = c.free_blocks.lower_bound(sz); it != c.free_blocks.end() && it->first == sz; ++it)
      if (it->second == old) { c.free_blocks.erase(it); break; }
    c.bytes -= sz;
    munmap(old, sz);
  }
}

int64_t host_cached_bytes() {
  std::lock_guard<std::mutex> g(cache().m);
  return int64_t(cache().bytes);
}

void host_empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.m);
  for (auto& [size, p] : c.free_blocks) munmap(p, size);
  c.free_blocks.clear();
  c.age.clear();
  c.bytes = 0;
}

}  // namespace fovea
