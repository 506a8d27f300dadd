// Run conversions used by GEMM packing and the scratch-tile store: a contiguous run of
// f32/bf16/f16 elements to f32 (and back for the store). f16 runs use the F16C instructions
// when the CPU has them (gemm_convert.cpp), since the scalar f16 decode was 17% of an f16
// GEMM's time (NOTES.md); everything else is plain C++ that GCC vectorizes.
#pragma once
#include <cstdint>
#include <cstring>
#include "core/dtype.h"

namespace fovea {
namespace gemm {

bool have_f16c();  // CPU has F16C and isa() is not capped to portable
// dst[i] = float(src[i]) / f16(src[i]) for i < n, with F16C (call only if have_f16c()).
void f16_to_f32_run_f16c(const uint16_t* src, float* dst, int64_t n);
void f32_to_f16_run_f16c(const float* src, uint16_t* dst, int64_t n);

// dst[0:n] = scale · float(src[0:n]); n is small (a packing chunk).
inline void to_f32_run(const float* src, float* dst, int64_t n, float scale) {
  if (scale == 1.f) std::memcpy(dst, src, size_t(n) * sizeof(float));
  else for (int64_t i = 0; i < n; ++i) dst[i] = scale * src[i];
}
inline void to_f32_run(const bf16* src, float* dst, int64_t n, float scale) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = uint32_t(src[i].bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    dst[i] = scale * f;
  }
}
inline void to_f32_run(const f16* src, float* dst, int64_t n, float scale) {
  if (have_f16c()) {
    f16_to_f32_run_f16c(reinterpret_cast<const uint16_t*>(src), dst, n);
    if (scale != 1.f) for (int64_t i = 0; i < n; ++i) dst[i] *= scale;
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = scale * f16_to_f32(src[i].bits);
  }
}

// dst[0:n] = round(src[0:n]) for the store of a scratch row (C of any float dtype).
template <class T> inline void from_f32_run(const float* src, T* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store(dst + i, src[i]);
}
template <> inline void from_f32_run<f16>(const float* src, f16* dst, int64_t n) {
  if (have_f16c()) f32_to_f16_run_f16c(src, reinterpret_cast<uint16_t*>(dst), n);
  else for (int64_t i = 0; i < n; ++i) dst[i].bits = f32_to_f16(src[i]);
}

}  // namespace gemm
}  // namespace fovea
