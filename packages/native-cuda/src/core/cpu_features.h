// Run-time CPU feature detection. Kernels compile their AVX2/FMA and AVX-512 variants with
// __attribute__((target(...))) and pick one per call from isa(); the portable path is
// always correct. FOVEA_ISA=portable|avx2|avx512 caps the choice (for tests and benchmarks).
#pragma once

namespace fovea {

enum class Isa { Portable = 0, Avx2 = 1, Avx512 = 2 };

Isa isa();               // best available, capped by FOVEA_ISA
void set_isa_cap(Isa);   // for tests: cap the ISA at run time
const char* isa_name(Isa);

}  // namespace fovea
