// Device-side element types: the CUDA type for each DType, its compute type, and load/store
// with the same conversions as the CPU path (core/dtype.h), so kernels match the reference:
//   - f32, bf16, f16 compute in float; f64 in double; i32, i64, bool in int64;
//   - bf16/f16 round once on store (round-to-nearest-even; f64 goes through float first,
//     exactly as the CPU's store does);
//   - bool stores v != 0; other types store T(v) (float -> int truncates).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <type_traits>
#include "core/dtype.h"

namespace fovea::cuda {

template <class T> struct Tag { using type = T; };

template <class T> struct Acc { using type = T; };
template <> struct Acc<__nv_bfloat16> { using type = float; };
template <> struct Acc<__half> { using type = float; };
template <> struct Acc<int32_t> { using type = int64_t; };
template <> struct Acc<bool> { using type = int64_t; };
template <class T> using acc_t = typename Acc<T>::type;

template <class T> __device__ __forceinline__ acc_t<T> dload(const T* p) { return *p; }
template <> __device__ __forceinline__ float dload(const __nv_bfloat16* p) { return __bfloat162float(*p); }
template <> __device__ __forceinline__ float dload(const __half* p) { return __half2float(*p); }
template <> __device__ __forceinline__ int64_t dload(const bool* p) { return *p ? 1 : 0; }

template <class T, class V> __device__ __forceinline__ void dstore(T* p, V v) { *p = T(v); }
template <class V> __device__ __forceinline__ void dstore(__nv_bfloat16* p, V v) {
  *p = __float2bfloat16_rn(float(v));
}
template <class V> __device__ __forceinline__ void dstore(__half* p, V v) {
  *p = __float2half_rn(float(v));
}
template <class V> __device__ __forceinline__ void dstore(bool* p, V v) { *p = v != V(0); }

// Store into an element whose dtype is only known at run time (per-row results of reductions,
// where one switch per row costs nothing).
template <class V> __device__ __forceinline__ void dstore_any(void* base, int64_t i, DType t, V v) {
  switch (t) {
    case DType::F32: dstore(static_cast<float*>(base) + i, v); break;
    case DType::F64: dstore(static_cast<double*>(base) + i, v); break;
    case DType::BF16: dstore(static_cast<__nv_bfloat16*>(base) + i, v); break;
    case DType::F16: dstore(static_cast<__half*>(base) + i, v); break;
    case DType::I32: dstore(static_cast<int32_t*>(base) + i, v); break;
    case DType::I64: dstore(static_cast<int64_t*>(base) + i, v); break;
    case DType::Bool: dstore(static_cast<bool*>(base) + i, v); break;
  }
}

// Host: calls f(Tag<T>{}) with the device type for t. Returns false for an unknown code.
template <class F> bool dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(Tag<float>{}); return true;
    case DType::F64: f(Tag<double>{}); return true;
    case DType::BF16: f(Tag<__nv_bfloat16>{}); return true;
    case DType::F16: f(Tag<__half>{}); return true;
    case DType::I32: f(Tag<int32_t>{}); return true;
    case DType::I64: f(Tag<int64_t>{}); return true;
    case DType::Bool: f(Tag<bool>{}); return true;
  }
  return false;
}

// Math on the compute types, spelled per type so float stays float (expf, not exp).
#define FOVEA_MATH1(name, ff, df)                                              \
  __device__ __forceinline__ float name(float x) { return ff(x); }             \
  __device__ __forceinline__ double name(double x) { return df(x); }
FOVEA_MATH1(m_exp, expf, exp)
FOVEA_MATH1(m_log, logf, log)
FOVEA_MATH1(m_sqrt, sqrtf, sqrt)
FOVEA_MATH1(m_abs, fabsf, fabs)
FOVEA_MATH1(m_erf, erff, erf)
FOVEA_MATH1(m_tanh, tanhf, tanh)
FOVEA_MATH1(m_sin, sinf, sin)
FOVEA_MATH1(m_cos, cosf, cos)
#undef FOVEA_MATH1
__device__ __forceinline__ float m_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double m_pow(double x, double y) { return pow(x, y); }

// x^e for integers (exact, wrapping on overflow like int64 arithmetic). Negative
// exponents give 0 except for bases ±1.
__device__ __forceinline__ int64_t int_pow(int64_t base, int64_t e) {
  if (e < 0) return base == 1 ? 1 : base == -1 ? ((e & 1) ? -1 : 1) : 0;
  uint64_t r = 1, b = uint64_t(base);
  while (e) {
    if (e & 1) r *= b;
    b *= b;
    e >>= 1;
  }
  return int64_t(r);
}

template <class C> __device__ __forceinline__ bool is_nan(C v) {
  if constexpr (std::is_floating_point_v<C>) return v != v;
  else return false;
}

}  // namespace fovea::cuda
