// The sidecar's one export: fovea_cuda_api() returns the FoveaCudaApi table (core/cuda_api.h)
// that the core's loader (core/cuda_loader.cpp) dlsym()s. Everything else in this library is
// hidden (CMake builds it with -fvisibility=hidden).
//
// Each slot is a captureless lambda around the implementation in entries.h, so that a C++
// exception (std::bad_alloc while formatting a message, say) becomes an error code with a
// message instead of unwinding through the C ABI into the core.
#include <exception>
#include <new>
#include "cuda/common.cuh"
#include "cuda/entries.h"

namespace fovea::cuda {
namespace {

template <class F> int guarded(const char* what, F&& f) noexcept {
  try {
    return f();
  } catch (const std::exception& e) {
    try { fail(what, ": ", e.what()); } catch (...) {}
  } catch (...) {
    try { fail(what, ": unknown C++ exception"); } catch (...) {}
  }
  return 1;
}

FoveaCudaApi make_table() {
  FoveaCudaApi t{};
  t.abi_version = FOVEA_CUDA_ABI_VERSION;
  t.last_error = []() -> const char* { return last_error(); };
  t.probe = [](int* n, int* drv, int* rt) {
    return guarded("probe", [&] { return probe(n, drv, rt); });
  };
  t.device_info = [](int d, char* name, int len, size_t* total, int* ma, int* mi, int* sms) {
    return guarded("device_info", [&] { return device_info(d, name, len, total, ma, mi, sms); });
  };
  t.malloc = [](int d, size_t n) -> void* {
    try {
      return device_malloc(d, n);
    } catch (const std::exception& e) {
      try { fail("malloc: ", e.what()); } catch (...) {}
      return nullptr;
    }
  };
  t.free = [](int d, void* p) { return guarded("free", [&] { return device_free(d, p); }); };
  t.empty_cache = [](int d) { return guarded("empty_cache", [&] { return empty_cache(d); }); };
  t.memory_stats = [](int d, size_t* a, size_t* r) {
    return guarded("memory_stats", [&] { return memory_stats(d, a, r); });
  };
  t.memcpy_h2d = [](int d, void* dst, const void* src, size_t n) {
    return guarded("memcpy_h2d", [&] { return memcpy_h2d(d, dst, src, n); });
  };
  t.memcpy_d2h = [](int d, void* dst, const void* src, size_t n) {
    return guarded("memcpy_d2h", [&] { return memcpy_d2h(d, dst, src, n); });
  };
  t.memcpy_d2d = [](int d, void* dst, const void* src, size_t n) {
    return guarded("memcpy_d2d", [&] { return memcpy_d2d(d, dst, src, n); });
  };
  t.synchronize = [](int d) { return guarded("synchronize", [&] { return synchronize(d); }); };
  t.fill = [](const TensorView* o, double v) { return guarded("fill", [&] { return fill(o, v); }); };
  t.copy = [](const TensorView* s, const TensorView* d) {
    return guarded("copy", [&] { return copy(s, d); });
  };
  t.unary = [](int op, const TensorView* x, const TensorView* o, double a, double b) {
    return guarded("unary", [&] { return unary(op, x, o, a, b); });
  };
  t.binary = [](int op, const TensorView* a, const TensorView* b, const TensorView* o) {
    return guarded("binary", [&] { return binary(op, a, b, o); });
  };
  t.reduce_last = [](int op, const TensorView* x, const TensorView* o, const TensorView* i) {
    return guarded("reduce_last", [&] { return reduce_last(op, x, o, i); });
  };
  t.softmax_last = [](int log, const TensorView* x, const TensorView* o) {
    return guarded("softmax_last", [&] { return softmax_last(log, x, o); });
  };
  t.gemm = [](const GemmParams* p) { return guarded("gemm", [&] { return gemm(p); }); };
  t.flash_attn_fwd = [](const FlashAttnParams* p) {
    return guarded("flash_attn_fwd", [&] { return flash_attn_fwd(p); });
  };
  t.flash_attn_bwd = [](const FlashAttnParams* p) {
    return guarded("flash_attn_bwd", [&] { return flash_attn_bwd(p); });
  };
  t.grpo_loss = [](const GrpoLossParams* p) {
    return guarded("grpo_loss", [&] { return grpo_loss(p); });
  };
  t.paged_write = [](const PagedWriteParams* p) {
    return guarded("paged_write", [&] { return paged_write(p); });
  };
  t.paged_copy_blocks = [](const PagedCopyParams* p) {
    return guarded("paged_copy_blocks", [&] { return paged_copy_blocks(p); });
  };
  t.paged_attention = [](const PagedAttnParams* p) {
    return guarded("paged_attention", [&] { return paged_attention(p); });
  };
  t.adamw_step = [](const TensorView* p, const TensorView* g, const TensorView* m,
                    const TensorView* v, const TensorView* ms, const AdamWScalars* s) {
    return guarded("adamw_step", [&] { return adamw_step(p, g, m, v, ms, s); });
  };
  return t;
}

}  // namespace
}  // namespace fovea::cuda

extern "C" __attribute__((visibility("default"))) const fovea::FoveaCudaApi* fovea_cuda_api() {
  // Built once, on first call (thread-safe static initialization); never destroyed.
  static const fovea::FoveaCudaApi table = fovea::cuda::make_table();
  return &table;
}
