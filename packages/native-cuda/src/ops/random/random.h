// Counter-based random fill: uniform [a, b) or normal(mean a, std b), reproducible for any
// thread count, across runs, and (by construction) on CUDA.
//   Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; the
//   generator of Random123 and curand) keyed by the 64-bit seed: key = (seed lo, seed hi).
//   Element i of the tensor uses the counter (offset + i) as (lo, hi, 0, 0) and the four
//   32-bit words r0..r3 of that one block. The TS side advances `offset` by numel after each
//   fill, so successive fills never reuse a counter.
//   uniform:  u = (r0 >> 8) · 2^-24 in [0, 1)   (f64 output: 53 bits from r0, r1)
//             y = a + (b - a) · u computed in double; f32/f64 results that round up to b are
//             replaced by the largest value below b. bf16/f16 round the f32 value once and
//             may then equal b (as torch's do).
//   normal:   Box–Muller in double on u1 = (r0 + 1) · 2^-32 in (0, 1] and u2 = r1 · 2^-32
//             (f64 output: 53-bit u1, u2 from (r0, r1) and (r2, r3)):
//             y = a + b · sqrt(-2 ln u1) · cos(2π u2)
// out: contiguous float tensor (f32, f64, bf16, f16).
#pragma once
#include <array>
#include <cstdint>
#include "core/tensor_view.h"

namespace fovea {

enum class RandomKind : int { Uniform = 0, Normal = 1, Count };

void random_fill_cpu(const TensorView& out, RandomKind kind, uint64_t seed, uint64_t offset,
                     double a, double b);

// One Philox4x32-10 block (exposed for known-answer tests).
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key);

}  // namespace fovea
