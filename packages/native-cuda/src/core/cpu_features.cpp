// CPU feature detection through the compiler's cpuid wrappers (x86-64); other
// architectures get the portable path.
#include "core/cpu_features.h"
#include <cstdlib>
#include <cstring>

namespace fovea {
namespace {

Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Portable;
}

Isa env_cap() {
  const char* e = std::getenv("FOVEA_ISA");
  if (!e) return Isa::Avx512;
  if (!std::strcmp(e, "portable")) return Isa::Portable;
  if (!std::strcmp(e, "avx2")) return Isa::Avx2;
  return Isa::Avx512;
}

Isa g_detected = detect();
Isa g_cap = env_cap();

}  // namespace

Isa isa() { return g_detected < g_cap ? g_detected : g_cap; }
void set_isa_cap(Isa cap) { g_cap = cap; }
const char* isa_name(Isa i) {
  switch (i) {
    case Isa::Portable: return "portable";
    case Isa::Avx2: return "avx2+fma";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

}  // namespace fovea
