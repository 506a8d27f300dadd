// Vectorized f32 exp for the softmax / cross-entropy row kernels (AVX-512 and AVX2/FMA), plus
// a scalar twin of the same algorithm (exp_poly_scalar) that documents it and is used by the
// tests. Included only from files whose SIMD functions carry the matching target attribute.
//
// Algorithm (Cephes expf): clamp x to [-104, 89] (beyond it the result is 0 or +inf anyway;
// clamping keeps n small and NaN passes through the clamp), n = round(x·log2 e),
// r = x - n·ln2 with ln2 split in two (hi has 9 significant bits, so n·hi is exact) giving
// |r| ≤ ln2/2, p = 1 + r + r²·P(r) with P of degree 5, result = p·2^n.
// Max error measured against double exp over [-87, 88]: ≤ 2 ulp (tests/test_nn_kernels.cpp).
// 2^n: AVX-512 uses scalef (exact, handles overflow to inf and gradual underflow); AVX2 splits
// n = n1 + n2 and multiplies by 2^n1 then 2^n2 (each a normal float for |n| ≤ 150), so
// overflow gives inf and underflow is gradual too, with one rounding at the end.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fovea {
namespace vexp {

constexpr float kLo = -104.f, kHi = 89.f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

// The same computation one lane at a time (fma where the SIMD code uses fma).
inline float exp_poly_scalar(float x) {
  if (x != x) return x;
  x = std::fmin(std::fmax(x, kLo), kHi);
  float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = kP0;
  p = std::fma(p, r, kP1); p = std::fma(p, r, kP2); p = std::fma(p, r, kP3);
  p = std::fma(p, r, kP4); p = std::fma(p, r, kP5);
  p = std::fma(p, r * r, r + 1.f);
  return std::ldexp(p, int(n));
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) inline __m512 exp512(__m512 x) {
  // max/min return their second operand when either is NaN: x second keeps NaN.
  x = _mm512_min_ps(_mm512_set1_ps(kHi), _mm512_max_ps(_mm512_set1_ps(kLo), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx2,fma"))) inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(kHi), _mm256_max_ps(_mm256_set1_ps(kLo), x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  // 2^n as 2^n1 · 2^n2 with n1 = n >> 1, n2 = n - n1; both in [-75, 65] for x in [kLo, kHi].
  // A NaN lane turns n into garbage, but p is NaN there and NaN · anything stays NaN.
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
#endif

}  // namespace vexp
}  // namespace fovea
