// The f32 SIMD fast paths declared in elementwise_simd.h. The loops are written once as
// templates over a "vector traits" struct (Avx512 or Avx2) and instantiated inside functions
// carrying the matching target attribute; the tail is handled with a masked/scalar remainder.
#include "ops/elementwise/elementwise_simd.h"
#include <cmath>
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "ops/softmax/vec_exp.h"

namespace fovea {
namespace {

#if defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define AVX2 __attribute__((target("avx2,fma")))

// Scalar forms (the tails, and the definition of each op).
inline float sig_s(float v) { return 1.f / (1.f + vexp::exp_poly_scalar(-v)); }

#define FOVEA_SIMD_BODY(W, VEC, LOAD, STORE, SET1, ADD, SUB, MUL, DIV, MAX, MIN, EXP, XOR_SIGN, ANDNOT_SIGN) \
  static W void unary_##VEC(UnaryOp op, const float* x, float* o, int64_t n, float alpha) {  \
    constexpr int L = sizeof(VEC) / 4;                                                      \
    const VEC one = SET1(1.f), zero = SET1(0.f), al = SET1(alpha);                          \
    int64_t i = 0;                                                                          \
    switch (op) {                                                                           \
      case UnaryOp::Exp:                                                                    \
        for (; i + L <= n; i += L) STORE(o + i, EXP(LOAD(x + i)));                          \
        for (; i < n; ++i) o[i] = vexp::exp_poly_scalar(x[i]);                              \
        break;                                                                              \
      case UnaryOp::Sigmoid:                                                                \
        for (; i + L <= n; i += L)                                                          \
          STORE(o + i, DIV(one, ADD(one, EXP(XOR_SIGN(LOAD(x + i))))));                     \
        for (; i < n; ++i) o[i] = sig_s(x[i]);                                              \
        break;                                                                              \
      case UnaryOp::Silu:                                                                   \
        for (; i + L <= n; i += L) {                                                        \
          VEC v = LOAD(x + i);                                                              \
          STORE(o + i, DIV(v, ADD(one, EXP(XOR_SIGN(v)))));                                 \
        }                                                                                   \
        for (; i < n; ++i) o[i] = x[i] * sig_s(x[i]);                                       \
        break;                                                                              \
      case UnaryOp::Neg:                                                                    \
        for (; i + L <= n; i += L) STORE(o + i, XOR_SIGN(LOAD(x + i)));                     \
        for (; i < n; ++i) o[i] = -x[i];                                                    \
        break;                                                                              \
      case UnaryOp::Abs:                                                                    \
        for (; i + L <= n; i += L) STORE(o + i, ANDNOT_SIGN(LOAD(x + i)));                  \
        for (; i < n; ++i) o[i] = std::fabs(x[i]);                                          \
        break;                                                                              \
      case UnaryOp::Relu:                                                                   \
        /* max(x, 0) with NaN kept as in the scalar kernel's (v > 0 ? v : 0): NaN -> 0 */    \
        for (; i + L <= n; i += L) STORE(o + i, MAX(LOAD(x + i), zero));                    \
        for (; i < n; ++i) o[i] = x[i] > 0 ? x[i] : 0.f;                                    \
        break;                                                                              \
      case UnaryOp::Square:                                                                 \
        for (; i + L <= n; i += L) { VEC v = LOAD(x + i); STORE(o + i, MUL(v, v)); }        \
        for (; i < n; ++i) o[i] = x[i] * x[i];                                              \
        break;                                                                              \
      case UnaryOp::AddScalar:                                                              \
        for (; i + L <= n; i += L) STORE(o + i, ADD(LOAD(x + i), al));                      \
        for (; i < n; ++i) o[i] = x[i] + alpha;                                             \
        break;                                                                              \
      case UnaryOp::MulScalar:                                                              \
        for (; i + L <= n; i += L) STORE(o + i, MUL(LOAD(x + i), al));                      \
        for (; i < n; ++i) o[i] = x[i] * alpha;                                             \
        break;                                                                              \
      default: break;                                                                       \
    }                                                                                       \
  }                                                                                         \
  static W void binary_##VEC(BinaryOp op, const float* a, const float* b, bool bs, float* o, \
                             int64_t n) {                                                   \
    constexpr int L = sizeof(VEC) / 4;                                                      \
    int64_t i = 0;                                                                          \
    const VEC bv = SET1(bs ? b[0] : 0.f);                                                   \
    switch (op) {                                                                           \
      case BinaryOp::Add:                                                                   \
        for (; i + L <= n; i += L) STORE(o + i, ADD(LOAD(a + i), bs ? bv : LOAD(b + i)));   \
        for (; i < n; ++i) o[i] = a[i] + (bs ? b[0] : b[i]);                                \
        break;                                                                              \
      case BinaryOp::Sub:                                                                   \
        for (; i + L <= n; i += L) STORE(o + i, SUB(LOAD(a + i), bs ? bv : LOAD(b + i)));   \
        for (; i < n; ++i) o[i] = a[i] - (bs ? b[0] : b[i]);                                \
        break;                                                                              \
      case BinaryOp::Mul:                                                                   \
        for (; i + L <= n; i += L) STORE(o + i, MUL(LOAD(a + i), bs ? bv : LOAD(b + i)));   \
        for (; i < n; ++i) o[i] = a[i] * (bs ? b[0] : b[i]);                                \
        break;                                                                              \
      case BinaryOp::Div:                                                                   \
        for (; i + L <= n; i += L) STORE(o + i, DIV(LOAD(a + i), bs ? bv : LOAD(b + i)));   \
        for (; i < n; ++i) o[i] = a[i] / (bs ? b[0] : b[i]);                                \
        break;                                                                              \
      default: break;                                                                       \
    }                                                                                       \
  }

AVX512 inline __m512 neg512(__m512 v) { return _mm512_xor_ps(v, _mm512_set1_ps(-0.f)); }
AVX512 inline __m512 abs512(__m512 v) { return _mm512_andnot_ps(_mm512_set1_ps(-0.f), v); }
AVX2 inline __m256 neg256(__m256 v) { return _mm256_xor_ps(v, _mm256_set1_ps(-0.f)); }
AVX2 inline __m256 abs256(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.f), v); }

FOVEA_SIMD_BODY(AVX512, __m512, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_add_ps,
                _mm512_sub_ps, _mm512_mul_ps, _mm512_div_ps, _mm512_max_ps, _mm512_min_ps,
                vexp::exp512, neg512, abs512)
FOVEA_SIMD_BODY(AVX2, __m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_add_ps,
                _mm256_sub_ps, _mm256_mul_ps, _mm256_div_ps, _mm256_max_ps, _mm256_min_ps,
                vexp::exp256, neg256, abs256)

bool unary_supported(UnaryOp op) {
  switch (op) {
    case UnaryOp::Exp: case UnaryOp::Sigmoid: case UnaryOp::Silu: case UnaryOp::Neg:
    case UnaryOp::Abs: case UnaryOp::Square: case UnaryOp::AddScalar: case UnaryOp::MulScalar:
      return true;
    default: return false;  // Relu keeps the scalar kernel's NaN rule; the rest need libm.
  }
}
bool binary_supported(BinaryOp op) {
  return op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul || op == BinaryOp::Div;
}
#endif  // __x86_64__
constexpr int64_t kGrain = 1 << 14;

}  // namespace

bool unary_f32_simd(UnaryOp op, const float* x, float* out, int64_t n, float alpha, float) {
#if defined(__x86_64__)
  Isa level = isa();
  if (level == Isa::Portable || !unary_supported(op)) return false;
  parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    if (level == Isa::Avx512) unary___m512(op, x + b, out + b, e - b, alpha);
    else unary___m256(op, x + b, out + b, e - b, alpha);
  });
  return true;
#else
  return false;
#endif
}

bool binary_f32_simd(BinaryOp op, const float* a, const float* b, bool b_scalar, float* out, int64_t n) {
#if defined(__x86_64__)
  Isa level = isa();
  if (level == Isa::Portable || !binary_supported(op)) return false;
  parallel_for(0, n, kGrain, [&](int64_t s, int64_t e) {
    const float* bb = b_scalar ? b : b + s;
    if (level == Isa::Avx512) binary___m512(op, a + s, bb, b_scalar, out + s, e - s);
    else binary___m256(op, a + s, bb, b_scalar, out + s, e - s);
  });
  return true;
#else
  return false;
#endif
}

}  // namespace fovea
