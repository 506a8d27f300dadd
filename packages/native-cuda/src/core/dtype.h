// Element types shared by every kernel, and the codes the TypeScript side uses for them.
// The numeric codes are part of the JS <-> native contract: keep them in sync with
// packages/core-ts/src/dtype.ts (DTYPE_CODES). f64 exists for gradcheck and oracles.
#pragma once
#include <cstdint>
#include <cstring>
#include <cstddef>

namespace fovea {

enum class DType : int32_t { F32 = 0, F64 = 1, BF16 = 2, F16 = 3, I32 = 4, I64 = 5, Bool = 6 };
constexpr int kNumDTypes = 7;

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::Bool: return 1;
  }
  return 0;
}
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::Bool: return "bool";
  }
  return "?";
}
inline bool dtype_is_float(DType t) {
  return t == DType::F32 || t == DType::F64 || t == DType::BF16 || t == DType::F16;
}

// 16-bit float storage types. Arithmetic always happens in float (f32 accumulate).
struct bf16 { uint16_t bits; };
struct f16 { uint16_t bits; };

inline float bf16_to_f32(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f; std::memcpy(&f, &u, 4); return f;
}
// Round to nearest even, NaN stays NaN (as PyTorch's c10::BFloat16 does).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  return uint16_t(u >> 16);
}
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
  if (exp == 0) {
    if (mant == 0) u = sign;
    else {  // subnormal: normalize
      int e = -1;
      do { mant <<= 1; ++e; } while (!(mant & 0x400));
      mant &= 0x3ff;
      u = sign | uint32_t(127 - 15 - e) << 23 | mant << 13;
    }
  } else if (exp == 31) u = sign | 0x7f800000u | mant << 13;
  else u = sign | (exp + 112) << 23 | mant << 13;
  float f; std::memcpy(&f, &u, 4); return f;
}
// Round to nearest even with overflow to inf and gradual underflow.
inline uint16_t f32_to_f16(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00);           // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00);          // overflow -> inf
  if (a < 0x38800000u) {                                         // subnormal or zero
    if (a < 0x33000000u) return uint16_t(sign);
    uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;                                    // 14..24
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = a - 0x38000000u;                                  // rebias exponent
  uint32_t lsb = (r >> 13) & 1u;
  r += 0xfffu + lsb;
  return uint16_t(sign | (r >> 13));
}

// Scalar load/store as the compute type. Float types compute in float (f64 in double);
// integer types in int64.
template <class T> struct Compute { using type = T; };
template <> struct Compute<bf16> { using type = float; };
template <> struct Compute<f16> { using type = float; };
template <> struct Compute<int32_t> { using type = int64_t; };
template <> struct Compute<bool> { using type = int64_t; };

template <class T> inline typename Compute<T>::type load(const T* p) { return *p; }
template <> inline float load<bf16>(const bf16* p) { return bf16_to_f32(p->bits); }
template <> inline float load<f16>(const f16* p) { return f16_to_f32(p->bits); }
template <> inline int64_t load<int32_t>(const int32_t* p) { return *p; }
template <> inline int64_t load<bool>(const bool* p) { return *p ? 1 : 0; }

template <class T, class V> inline void store(T* p, V v) { *p = T(v); }
template <class V> inline void store(bf16* p, V v) { p->bits = f32_to_bf16(float(v)); }
template <class V> inline void store(f16* p, V v) { p->bits = f32_to_f16(float(v)); }
template <class V> inline void store(bool* p, V v) { *p = v != V(0); }

// Calls f(T{}) with the C++ type for a dtype. Used by kernels that support every dtype.
template <class F> inline void dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(float{}); break;
    case DType::F64: f(double{}); break;
    case DType::BF16: f(bf16{}); break;
    case DType::F16: f(f16{}); break;
    case DType::I32: f(int32_t{}); break;
    case DType::I64: f(int64_t{}); break;
    case DType::Bool: f(bool{}); break;
  }
}
// Float dtypes only; the caller has validated that t is a float type.
template <class F> inline void dispatch_float(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(float{}); break;
    case DType::F64: f(double{}); break;
    case DType::BF16: f(bf16{}); break;
    case DType::F16: f(f16{}); break;
    default: break;
  }
}

}  // namespace fovea
