// CPU cross entropy forward/backward (semantics in cross_entropy.h).
//
// Reference: per-row loops in the compute type (f32, f64 for f64) with std::exp.
// Fast path (f32/bf16/f16 logits): the softmax row primitives (softmax.h) over chunks of
// kChunk logits with an online rescale, so a vocabulary-sized row (Qwen: 151 936) is read
// from memory once and bf16 chunks are widened once into an L1-sized buffer:
//   m' = max(m, max chunk);  s = s·exp(m - m') + Σ_chunk exp(x - m');  lse = m + log s
// The backward writes dloss·exp(x - lse) chunk by chunk, subtracting dloss at the target
// before the single rounding to the logits' dtype. f64 logits use the reference loops.
// Rows are independent and each is owned by one thread: results do not depend on the
// thread count.
#include "ops/cross_entropy/cross_entropy.h"
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/softmax/softmax.h"

namespace fovea {
namespace {

constexpr int64_t kChunk = 2048;

int64_t grain_rows(int64_t v) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(v, 1)); }

template <class I>
void check_targets(const I* t, int64_t n, int64_t v, int64_t ignore) {
  for (int64_t r = 0; r < n; ++r) {
    const int64_t tv = int64_t(t[r]);
    if (tv != ignore && (tv < 0 || tv >= v))
      fail("crossEntropy: target ", tv, " at row ", r, " is out of range for logits [", n, ", ", v,
           "]: valid classes are 0..", v - 1, " (or ignoreIndex ", ignore, ")");
  }
}

// Calls f(T, I, R) for logits dtype T, targets dtype I and f32/f64 outputs R.
template <class F>
void dispatch3(const TensorView& logits, const TensorView& targets, DType r, F&& f) {
  dispatch_float(logits.dtype, [&](auto t) {
    auto with_r = [&](auto i) {
      if (r == DType::F64) f(t, i, double{});
      else f(t, i, float{});
    };
    if (targets.dtype == DType::I32) with_r(int32_t{});
    else with_r(int64_t{});
  });
}

template <class T, class I, class R>
void forward_ref(const TensorView& logits, const TensorView& targets, int64_t ignore,
                 const TensorView& losses, const TensorView& lse) {
  using C = typename Compute<T>::type;
  const int64_t n = logits.shape[0], v = logits.shape[1];
  const T* xp = logits.ptr<T>();
  const I* tp = targets.ptr<I>();
  check_targets(tp, n, v, ignore);
  R* lp = losses.ptr<R>();
  R* sp = lse.ptr<R>();
  parallel_for(0, n, grain_rows(v), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const T* x = xp + r * v;
      C m = -std::numeric_limits<C>::infinity();
      for (int64_t j = 0; j < v; ++j) m = std::max(m, C(load(x + j)));
      C s = 0;
      for (int64_t j = 0; j < v; ++j) s += std::exp(C(load(x + j)) - m);
      const C l = m + std::log(s);
      const int64_t t = int64_t(tp[r]);
      sp[r] = R(l);
      lp[r] = t == ignore ? R(0) : R(l - C(load(x + t)));
    }
  });
}

// The chunk of row x starting at c0 as f32: x itself for f32, else widened into buf.
template <class T>
const float* chunk_f32(const T* x, int64_t c0, int64_t len, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    (void)buf; (void)len;
    return x + c0;
  } else {
    for (int64_t j = 0; j < len; ++j) buf[j] = load(x + c0 + j);
    return buf;
  }
}

template <class T, class I, class R>
void forward_fast(const TensorView& logits, const TensorView& targets, int64_t ignore,
                  const TensorView& losses, const TensorView& lse) {
  const SoftmaxRowKernels& k = softmax_row_kernels(isa());
  const int64_t n = logits.shape[0], v = logits.shape[1];
  const T* xp = logits.ptr<T>();
  const I* tp = targets.ptr<I>();
  check_targets(tp, n, v, ignore);
  R* lp = losses.ptr<R>();
  R* sp = lse.ptr<R>();
  parallel_for(0, n, grain_rows(v), [&](int64_t rb, int64_t re) {
    std::vector<float> buf(static_cast<size_t>(std::min(v, kChunk)));
    for (int64_t r = rb; r < re; ++r) {
      const T* x = xp + r * v;
      float m = -std::numeric_limits<float>::infinity(), s = 0.f;
      for (int64_t c0 = 0; c0 < v; c0 += kChunk) {
        const int64_t len = std::min(kChunk, v - c0);
        const float* p = chunk_f32(x, c0, len, buf.data());
        const float cm = k.max(p, len);
        if (cm > m) { s *= std::exp(m - cm); m = cm; }  // m = -inf: exp(-inf) = 0, s was 0
        if (m == -std::numeric_limits<float>::infinity()) continue;  // all -inf so far
        s += k.sum_exp(p, len, m, nullptr);
      }
      const float l = m + std::log(s);
      const int64_t t = int64_t(tp[r]);
      sp[r] = R(l);
      lp[r] = t == ignore ? R(0) : R(l - float(load(x + t)));
    }
  });
}

template <class T, class I, class R>
void backward_ref(const TensorView& logits, const TensorView& targets, const TensorView& lse,
                  const TensorView& dlosses, int64_t ignore, const TensorView& dlogits) {
  using C = typename Compute<T>::type;
  const int64_t n = logits.shape[0], v = logits.shape[1];
  const T* xp = logits.ptr<T>();
  const I* tp = targets.ptr<I>();
  check_targets(tp, n, v, ignore);
  const R* sp = lse.ptr<R>();
  const R* gp = dlosses.ptr<R>();
  T* dp = dlogits.ptr<T>();
  parallel_for(0, n, grain_rows(v), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const int64_t t = int64_t(tp[r]);
      const C l = C(sp[r]), g = t == ignore ? C(0) : C(gp[r]);
      const T* x = xp + r * v;
      T* d = dp + r * v;
      for (int64_t j = 0; j < v; ++j)
        store(d + j, t == ignore ? C(0) : g * std::exp(C(load(x + j)) - l) - (j == t ? g : C(0)));
    }
  });
}

template <class T, class I, class R>
void backward_fast(const TensorView& logits, const TensorView& targets, const TensorView& lse,
                   const TensorView& dlosses, int64_t ignore, const TensorView& dlogits) {
  const SoftmaxRowKernels& k = softmax_row_kernels(isa());
  const int64_t n = logits.shape[0], v = logits.shape[1];
  const T* xp = logits.ptr<T>();
  const I* tp = targets.ptr<I>();
  check_targets(tp, n, v, ignore);
  const R* sp = lse.ptr<R>();
  const R* gp = dlosses.ptr<R>();
  T* dp = dlogits.ptr<T>();
  parallel_for(0, n, grain_rows(v), [&](int64_t rb, int64_t re) {
    std::vector<float> in(static_cast<size_t>(std::min(v, kChunk))), out(in.size());
    for (int64_t r = rb; r < re; ++r) {
      const int64_t t = int64_t(tp[r]);
      const T* x = xp + r * v;
      T* d = dp + r * v;
      if (t == ignore) {
        for (int64_t j = 0; j < v; ++j) store(d + j, 0.f);
        continue;
      }
      const float l = float(sp[r]), g = float(gp[r]);
      for (int64_t c0 = 0; c0 < v; c0 += kChunk) {
        const int64_t len = std::min(kChunk, v - c0);
        const float* p = chunk_f32(x, c0, len, in.data());
        float* o = std::is_same_v<T, float> ? reinterpret_cast<float*>(d) + c0 : out.data();
        k.exp_scale(p, o, len, l, g);
        if (t >= c0 && t < c0 + len) o[t - c0] -= g;
        if constexpr (!std::is_same_v<T, float>)
          for (int64_t j = 0; j < len; ++j) store(d + c0 + j, o[j]);
      }
    }
  });
}

}  // namespace

void cross_entropy_reference(const TensorView& logits, const TensorView& targets,
                             int64_t ignore_index, const TensorView& losses, const TensorView& lse) {
  dispatch3(logits, targets, losses.dtype, [&](auto t, auto i, auto r) {
    forward_ref<decltype(t), decltype(i), decltype(r)>(logits, targets, ignore_index, losses, lse);
  });
}

void cross_entropy_cpu(const TensorView& logits, const TensorView& targets, int64_t ignore_index,
                       const TensorView& losses, const TensorView& lse) {
  dispatch3(logits, targets, losses.dtype, [&](auto t, auto i, auto r) {
    using T = decltype(t);
    if constexpr (std::is_same_v<T, double>)
      forward_ref<T, decltype(i), decltype(r)>(logits, targets, ignore_index, losses, lse);
    else
      forward_fast<T, decltype(i), decltype(r)>(logits, targets, ignore_index, losses, lse);
  });
}

void cross_entropy_backward_reference(const TensorView& logits, const TensorView& targets,
                                      const TensorView& lse, const TensorView& dlosses,
                                      int64_t ignore_index, const TensorView& dlogits) {
  dispatch3(logits, targets, lse.dtype, [&](auto t, auto i, auto r) {
    backward_ref<decltype(t), decltype(i), decltype(r)>(logits, targets, lse, dlosses, ignore_index, dlogits);
  });
}

void cross_entropy_backward_cpu(const TensorView& logits, const TensorView& targets,
                                const TensorView& lse, const TensorView& dlosses,
                                int64_t ignore_index, const TensorView& dlogits) {
  dispatch3(logits, targets, lse.dtype, [&](auto t, auto i, auto r) {
    using T = decltype(t);
    if constexpr (std::is_same_v<T, double>)
      backward_ref<T, decltype(i), decltype(r)>(logits, targets, lse, dlosses, ignore_index, dlogits);
    else
      backward_fast<T, decltype(i), decltype(r)>(logits, targets, lse, dlosses, ignore_index, dlogits);
  });
}

}  // namespace fovea
