// CPU counter-based random fill (semantics in random.h). Each element is a pure function of
// (seed, offset + i), so the parallel split over elements cannot change any value.
#include "ops/random/random.h"
#include <cmath>
#include <type_traits>
#include "core/error.h"
#include "core/thread_pool.h"

namespace fovea {
namespace {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
constexpr double kTwoPi = 6.283185307179586476925286766559;

inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = uint64_t(a) * uint64_t(b);
  hi = uint32_t(p >> 32);
  lo = uint32_t(p);
}

inline double u53(uint32_t hi_word, uint32_t lo_word) {  // [0, 1) with 53 random bits
  return double((uint64_t(hi_word >> 5) << 26) | (lo_word >> 6)) * 0x1.0p-53;
}

template <class T>
void fill_typed(const TensorView& out, RandomKind kind, uint64_t seed, uint64_t offset, double a,
                double b) {
  constexpr bool kF64 = std::is_same_v<T, double>;
  T* p = out.ptr<T>();
  const std::array<uint32_t, 2> key{uint32_t(seed), uint32_t(seed >> 32)};
  parallel_for(0, out.numel(), 1 << 14, [&](int64_t ib, int64_t ie) {
    for (int64_t i = ib; i < ie; ++i) {
      const uint64_t c = offset + uint64_t(i);
      const auto r = philox4x32_10({uint32_t(c), uint32_t(c >> 32), 0u, 0u}, key);
      double y;
      if (kind == RandomKind::Uniform) {
        const double u = kF64 ? u53(r[0], r[1]) : double(r[0] >> 8) * 0x1.0p-24;
        y = a + (b - a) * u;
        if constexpr (kF64) {
          if (y >= b && b > a) y = std::nextafter(b, a);
        } else if constexpr (std::is_same_v<T, float>) {
          if (float(y) >= float(b) && b > a) y = std::nextafter(float(b), float(a));
        }
      } else {
        const double u1 = kF64 ? 1.0 - u53(r[0], r[1]) : (double(r[0]) + 1.0) * 0x1.0p-32;
        const double u2 = kF64 ? u53(r[2], r[3]) : double(r[1]) * 0x1.0p-32;
        y = a + b * std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
      }
      store(p + i, y);
    }
  });
}

}  // namespace

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    if (round) { k[0] += kW0; k[1] += kW1; }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c[0], hi0, lo0);
    mulhilo(kM1, c[2], hi1, lo1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
  }
  return c;
}

void random_fill_cpu(const TensorView& out, RandomKind kind, uint64_t seed, uint64_t offset,
                     double a, double b) {
  dispatch_float(out.dtype, [&](auto t) { fill_typed<decltype(t)>(out, kind, seed, offset, a, b); });
}

}  // namespace fovea
