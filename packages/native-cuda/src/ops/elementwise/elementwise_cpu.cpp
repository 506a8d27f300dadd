// CPU elementwise kernels: unary, binary (broadcast through stride-0 views), where, fill,
// and strided copy with dtype conversion. Each op is a small functor on the compute type
// (float for f32/bf16/f16, double for f64, int64 for integers), applied by StridedPlan,
// which merges contiguous dimensions and splits the work over the thread pool. With all
// operands contiguous the inner loop is a flat loop the compiler vectorizes.
#include "ops/elementwise/elementwise.h"
#include <cmath>
#include <limits>
#include <type_traits>
#include "core/error.h"
#include "core/strided.h"
#include "ops/elementwise/elementwise_simd.h"

namespace fovea {
namespace {

template <class C> inline C sigmoid_of(C x) { return C(1) / (C(1) + std::exp(-x)); }
template <class C> inline C gelu_of(C x) {
  return C(0.5) * x * (C(1) + std::erf(x * C(0.70710678118654752440)));
}
template <class C> inline C gelu_grad(C x) {
  const C cdf = C(0.5) * (C(1) + std::erf(x * C(0.70710678118654752440)));
  const C pdf = std::exp(C(-0.5) * x * x) * C(0.39894228040143267794);
  return cdf + x * pdf;
}

template <class T, class F>
void map1(const TensorView& x, const TensorView& out, F f) {
  StridedPlan<2> plan({&out, &x});
  plan.run(kElementwiseGrain, [&](std::array<char*, 2> p, std::array<int64_t, 2> s, int64_t n) {
    T* o = reinterpret_cast<T*>(p[0]);
    const T* a = reinterpret_cast<const T*>(p[1]);
    if (s[0] == 1 && s[1] == 1)
      for (int64_t i = 0; i < n; ++i) store(o + i, f(load(a + i)));
    else
      for (int64_t i = 0; i < n; ++i) store(o + i * s[0], f(load(a + i * s[1])));
  });
}

template <class TO, class T, class F>
void map2(const TensorView& a, const TensorView& b, const TensorView& out, F f) {
  StridedPlan<3> plan({&out, &a, &b});
  plan.run(kElementwiseGrain, [&](std::array<char*, 3> p, std::array<int64_t, 3> s, int64_t n) {
    TO* o = reinterpret_cast<TO*>(p[0]);
    const T* x = reinterpret_cast<const T*>(p[1]);
    const T* y = reinterpret_cast<const T*>(p[2]);
    if (s[0] == 1 && s[1] == 1 && s[2] == 1)
      for (int64_t i = 0; i < n; ++i) store(o + i, f(load(x + i), load(y + i)));
    else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {
      const auto yv = load(y);
      for (int64_t i = 0; i < n; ++i) store(o + i, f(load(x + i), yv));
    } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {
      const auto xv = load(x);
      for (int64_t i = 0; i < n; ++i) store(o + i, f(xv, load(y + i)));
    } else
      for (int64_t i = 0; i < n; ++i)
        store(o + i * s[0], f(load(x + i * s[1]), load(y + i * s[2])));
  });
}

template <class T>
void unary_typed(UnaryOp op, const TensorView& x, const TensorView& out, double alpha,
                 double beta) {
  using C = typename Compute<T>::type;
  const C a = C(alpha), b = C(beta);
  switch (op) {
    case UnaryOp::Neg: map1<T>(x, out, [](C v) { return C(-v); }); break;
    case UnaryOp::Exp: map1<T>(x, out, [](C v) { return std::exp(v); }); break;
    case UnaryOp::Log: map1<T>(x, out, [](C v) { return std::log(v); }); break;
    case UnaryOp::Sqrt: map1<T>(x, out, [](C v) { return std::sqrt(v); }); break;
    case UnaryOp::Rsqrt: map1<T>(x, out, [](C v) { return C(1) / std::sqrt(v); }); break;
    case UnaryOp::Abs: map1<T>(x, out, [](C v) { return v < 0 ? C(-v) : v; }); break;
    case UnaryOp::Silu: map1<T>(x, out, [](C v) { return v * sigmoid_of(v); }); break;
    case UnaryOp::Gelu: map1<T>(x, out, [](C v) { return gelu_of(v); }); break;
    case UnaryOp::Sigmoid: map1<T>(x, out, [](C v) { return sigmoid_of(v); }); break;
    case UnaryOp::Tanh: map1<T>(x, out, [](C v) { return std::tanh(v); }); break;
    case UnaryOp::Relu: map1<T>(x, out, [](C v) { return v > 0 ? v : C(0); }); break;
    case UnaryOp::PowScalar:
      if (alpha == 2.0) map1<T>(x, out, [](C v) { return v * v; });
      else map1<T>(x, out, [=](C v) { return C(std::pow(v, a)); });
      break;
    case UnaryOp::Clamp:
      // alpha/beta are lower/upper bounds; NaN inputs stay NaN as in PyTorch.
      map1<T>(x, out, [=](C v) {
        if (v != v) return v;
        if (double(v) < alpha) return a;
        if (double(v) > beta) return b;
        return v;
      });
      break;
    case UnaryOp::AddScalar: map1<T>(x, out, [=](C v) { return C(v + a); }); break;
    case UnaryOp::MulScalar: map1<T>(x, out, [=](C v) { return C(v * a); }); break;
    case UnaryOp::Sin: map1<T>(x, out, [](C v) { return std::sin(v); }); break;
    case UnaryOp::Cos: map1<T>(x, out, [](C v) { return std::cos(v); }); break;
    case UnaryOp::Reciprocal: map1<T>(x, out, [](C v) { return C(1) / v; }); break;
    case UnaryOp::Square: map1<T>(x, out, [](C v) { return C(v * v); }); break;
    case UnaryOp::Sign: map1<T>(x, out, [](C v) { return C((v > 0) - (v < 0)); }); break;
    case UnaryOp::LogicalNot: map1<T>(x, out, [](C v) { return C(v == C(0)); }); break;
    default: fail("unary: unknown op code ", int(op));
  }
}

template <class T>
void binary_typed(BinaryOp op, const TensorView& a, const TensorView& b, const TensorView& out) {
  using C = typename Compute<T>::type;
  switch (op) {
    case BinaryOp::Add: map2<T, T>(a, b, out, [](C x, C y) { return C(x + y); }); break;
    case BinaryOp::Sub: map2<T, T>(a, b, out, [](C x, C y) { return C(x - y); }); break;
    case BinaryOp::Mul: map2<T, T>(a, b, out, [](C x, C y) { return C(x * y); }); break;
    case BinaryOp::Div:
      if constexpr (std::is_integral_v<C>)
        // Integer division truncates toward zero; division by zero is an error upstream
        // (checked here so it can never trap).
        map2<T, T>(a, b, out, [](C x, C y) { return y == 0 ? C(0) : C(x / y); });
      else
        map2<T, T>(a, b, out, [](C x, C y) { return C(x / y); });
      break;
    case BinaryOp::Pow:
      map2<T, T>(a, b, out, [](C x, C y) { return C(std::pow(x, y)); });
      break;
    case BinaryOp::Maximum:
      map2<T, T>(a, b, out, [](C x, C y) { return (x != x || x > y) ? x : y; });
      break;
    case BinaryOp::Minimum:
      map2<T, T>(a, b, out, [](C x, C y) { return (x != x || x < y) ? x : y; });
      break;
    case BinaryOp::Eq: map2<bool, T>(a, b, out, [](C x, C y) { return x == y; }); break;
    case BinaryOp::Ne: map2<bool, T>(a, b, out, [](C x, C y) { return x != y; }); break;
    case BinaryOp::Lt: map2<bool, T>(a, b, out, [](C x, C y) { return x < y; }); break;
    case BinaryOp::Le: map2<bool, T>(a, b, out, [](C x, C y) { return x <= y; }); break;
    case BinaryOp::Gt: map2<bool, T>(a, b, out, [](C x, C y) { return x > y; }); break;
    case BinaryOp::Ge: map2<bool, T>(a, b, out, [](C x, C y) { return x >= y; }); break;
    case BinaryOp::SiluBackward:
      map2<T, T>(a, b, out, [](C x, C dy) {
        C s = sigmoid_of(x);
        return C(dy * s * (C(1) + x * (C(1) - s)));
      });
      break;
    case BinaryOp::GeluBackward:
      map2<T, T>(a, b, out, [](C x, C dy) { return C(dy * gelu_grad(x)); });
      break;
    case BinaryOp::SigmoidBackward:
      map2<T, T>(a, b, out, [](C y, C dy) { return C(dy * y * (C(1) - y)); });
      break;
    case BinaryOp::TanhBackward:
      map2<T, T>(a, b, out, [](C y, C dy) { return C(dy * (C(1) - y * y)); });
      break;
    case BinaryOp::ReluBackward:
      map2<T, T>(a, b, out, [](C x, C dy) { return x > 0 ? dy : C(0); });
      break;
    case BinaryOp::LogicalAnd:
      map2<T, T>(a, b, out, [](C x, C y) { return C(x != C(0) && y != C(0)); });
      break;
    case BinaryOp::LogicalOr:
      map2<T, T>(a, b, out, [](C x, C y) { return C(x != C(0) || y != C(0)); });
      break;
    default: fail("binary: unknown op code ", int(op));
  }
}

}  // namespace

void unary_cpu(UnaryOp op, const TensorView& x, const TensorView& out, double alpha, double beta) {
  if (x.dtype == DType::F32 && x.contiguous() && out.contiguous() &&
      unary_f32_simd(op, x.ptr<float>(), out.ptr<float>(), x.numel(), float(alpha), float(beta)))
    return;
  dispatch_all(x.dtype, [&](auto t) { unary_typed<decltype(t)>(op, x, out, alpha, beta); });
}

void binary_cpu(BinaryOp op, const TensorView& a, const TensorView& b, const TensorView& out) {
  if (a.dtype == DType::F32 && out.dtype == DType::F32 && a.contiguous() && out.contiguous()) {
    bool b_scalar = true;
    for (int d = 0; d < b.ndim; ++d) b_scalar = b_scalar && (b.strides[d] == 0 || b.shape[d] == 1);
    if ((b_scalar || b.contiguous()) &&
        binary_f32_simd(op, a.ptr<float>(), b.ptr<float>(), b_scalar, out.ptr<float>(), out.numel()))
      return;
  }
  dispatch_all(a.dtype, [&](auto t) { binary_typed<decltype(t)>(op, a, b, out); });
}

void where_cpu(const TensorView& cond, const TensorView& a, const TensorView& b,
               const TensorView& out) {
  dispatch_all(a.dtype, [&](auto t) {
    using T = decltype(t);
    StridedPlan<4> plan({&out, &cond, &a, &b});
    plan.run(kElementwiseGrain, [&](std::array<char*, 4> p, std::array<int64_t, 4> s, int64_t n) {
      T* o = reinterpret_cast<T*>(p[0]);
      const bool* c = reinterpret_cast<const bool*>(p[1]);
      const T* x = reinterpret_cast<const T*>(p[2]);
      const T* y = reinterpret_cast<const T*>(p[3]);
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = c[i * s[1]] ? x[i * s[2]] : y[i * s[3]];
    });
  });
}

void fill_cpu(const TensorView& out, double value) {
  dispatch_all(out.dtype, [&](auto t) {
    using T = decltype(t);
    T v;
    store(&v, typename Compute<T>::type(value));
    StridedPlan<1> plan({&out});
    plan.run(kElementwiseGrain, [&](std::array<char*, 1> p, std::array<int64_t, 1> s, int64_t n) {
      T* o = reinterpret_cast<T*>(p[0]);
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = v;
    });
  });
}

namespace {
// Float -> integer conversion truncates toward zero (PyTorch's .to(int)); out-of-range values
// saturate instead of invoking undefined behaviour.
template <class TD, class V> inline void store_converted(TD* p, V v) {
  if constexpr (std::is_integral_v<TD> && !std::is_same_v<TD, bool> &&
                std::is_floating_point_v<V>) {
    if (v != v) { *p = 0; return; }
    constexpr double lo = double(std::numeric_limits<TD>::min());
    constexpr double hi = double(std::numeric_limits<TD>::max());
    double d = double(v);
    *p = d <= lo ? std::numeric_limits<TD>::min()
       : d >= hi ? std::numeric_limits<TD>::max() : TD(d);
  } else {
    store(p, v);
  }
}
}  // namespace

void copy_cpu(const TensorView& src, const TensorView& dst) {
  dispatch_all(src.dtype, [&](auto ts) {
    using TS = decltype(ts);
    dispatch_all(dst.dtype, [&](auto td) {
      using TD = decltype(td);
      StridedPlan<2> plan({&dst, &src});
      plan.run(kElementwiseGrain, [&](std::array<char*, 2> p, std::array<int64_t, 2> s, int64_t n) {
        TD* o = reinterpret_cast<TD*>(p[0]);
        const TS* x = reinterpret_cast<const TS*>(p[1]);
        if constexpr (std::is_same_v<TS, TD>) {
          if (s[0] == 1 && s[1] == 1) { std::memcpy(o, x, size_t(n) * sizeof(TS)); return; }
          for (int64_t i = 0; i < n; ++i) o[i * s[0]] = x[i * s[1]];
        } else if constexpr (std::is_same_v<TS, bf16> || std::is_same_v<TS, f16>) {
          for (int64_t i = 0; i < n; ++i) store_converted(o + i * s[0], load(x + i * s[1]));
        } else {
          for (int64_t i = 0; i < n; ++i) store_converted(o + i * s[0], *(x + i * s[1]));
        }
      });
    });
  });
}

}  // namespace fovea
