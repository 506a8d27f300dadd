// CPU RMSNorm forward/backward (semantics in rmsnorm.h).
//
// rmsnorm_reference: per-row loops in the compute type for every (x, weight, rstd) dtype mix.
// rmsnorm_cpu: x and weight both f32 run the ISA's row primitives (Σx², then w·(x·r) while
// the row is still in L1; outputs of kStreamingStoreBytes or more are written with
// non-temporal stores, see softmax.h); any other mix runs the reference loops. Each row is owned by one thread: the forward result does
// not depend on the thread count.
#include "ops/rmsnorm/rmsnorm.h"
#include <cmath>
#include <vector>
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/softmax/softmax.h"  // stream_fence, kStreamingStoreBytes

namespace fovea {
namespace {

// Product of all dims but the last (an H of 0 still has rows: their rstd is NaN, as torch's).
int64_t leading_rows(const TensorView& x) {
  int64_t r = 1;
  for (int d = 0; d < x.ndim - 1; ++d) r *= x.shape[d];
  return r;
}

int64_t grain_rows(int64_t h) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(h, 1)); }

// Σ x² with 8 partial sums (vectorizable, tree-like rounding).
template <class C, class T>
C sum_sq_ref(const T* x, int64_t n) {
  C part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) { C v = load(x + i + k); part[k] += v * v; }
  C s = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (; i < n; ++i) { C v = load(x + i); s += v * v; }
  return s;
}

template <class T, class W, class R>
void forward_ref(const TensorView& x, const TensorView& w, double eps, const TensorView& y,
                 const TensorView& rstd) {
  using C = typename Compute<T>::type;
  const int64_t h = x.shape[x.ndim - 1], rows = leading_rows(x);
  const T* xp = x.ptr<T>();
  const W* wp = w.ptr<W>();
  T* yp = y.ptr<T>();
  R* rp = rstd.ptr<R>();
  parallel_for(0, rows, grain_rows(h), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const T* xr = xp + r * h;
      T* yr = yp + r * h;
      const C rs = C(1) / std::sqrt(sum_sq_ref<C>(xr, h) / C(h) + C(eps));
      rp[r] = R(rs);
      for (int64_t j = 0; j < h; ++j) {
        T n;  // HF rounds x·rstd to x's dtype before the weight multiply
        store(&n, C(load(xr + j)) * rs);
        store(yr + j, C(load(wp + j)) * C(load(&n)));
      }
    }
  });
}

void forward_fast_f32(const RmsNormRowKernels& k, const TensorView& x, const TensorView& w,
                      double eps, const TensorView& y, const TensorView& rstd) {
  const int64_t h = x.shape[x.ndim - 1], rows = leading_rows(x);
  const float* xp = x.ptr<float>();
  const float* wp = w.ptr<float>();
  float* yp = y.ptr<float>();
  float* rp = rstd.ptr<float>();
  const float feps = float(eps);
  const bool stream = rows * h * int64_t(sizeof(float)) >= kStreamingStoreBytes;
  parallel_for(0, rows, grain_rows(h), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const float rs = 1.f / std::sqrt(k.sum_sq(xp + r * h, h) / float(h) + feps);
      rp[r] = rs;
      k.scale_mul(xp + r * h, wp, yp + r * h, h, rs, stream);
    }
    if (stream) stream_fence();
  });
}

template <class T, class W, class R, class G>
void backward_typed(const TensorView& x, const TensorView& w, const TensorView& rstd,
                    const TensorView& dy, const TensorView& dx, const TensorView& dw) {
  using C = typename Compute<T>::type;
  const int64_t h = x.shape[x.ndim - 1], rows = leading_rows(x);
  const T* xp = x.ptr<T>();
  const W* wp = w.ptr<W>();
  const R* rp = rstd.ptr<R>();
  const T* gp = dy.ptr<T>();
  T* dxp = dx.ptr<T>();
  // A fixed split of the rows into `tasks` contiguous ranges, one dw partial each.
  const int tasks = int(std::max<int64_t>(1, std::min<int64_t>(num_threads(), rows)));
  std::vector<double> partial(size_t(tasks) * size_t(h), 0.0);
  parallel_tasks(tasks, [&](int t, int nt) {
    const int64_t rb = rows * t / nt, re = rows * (t + 1) / nt;
    double* dwp = partial.data() + size_t(t) * size_t(h);
    for (int64_t r = rb; r < re; ++r) {
      const T* xr = xp + r * h;
      const T* gr = gp + r * h;
      T* dr = dxp + r * h;
      const C rs = C(rp[r]);
      C part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t j = 0;
      for (; j + 8 <= h; j += 8)
        for (int k = 0; k < 8; ++k)
          part[k] += C(load(wp + j + k)) * C(load(gr + j + k)) * C(load(xr + j + k));
      C dot = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
      for (; j < h; ++j) dot += C(load(wp + j)) * C(load(gr + j)) * C(load(xr + j));
      const C c = rs * rs * rs * dot / C(h);
      for (int64_t k = 0; k < h; ++k) {
        const C xv = load(xr + k), gv = load(gr + k);
        dwp[k] += double(gv * xv * rs);
        store(dr + k, rs * C(load(wp + k)) * gv - c * xv);  // dx may alias dy
      }
    }
  });
  G* out = dw.ptr<G>();
  for (int64_t k = 0; k < h; ++k) {
    double s = 0;
    for (int t = 0; t < tasks; ++t) s += partial[size_t(t) * size_t(h) + size_t(k)];
    out[k] = G(s);
  }
}

// rstd (and dw) are f64 only when x is f64; dispatch the (x, w) pair and the rstd type.
template <class F>
void dispatch_xwr(const TensorView& x, const TensorView& w, const TensorView& rstd, F&& f) {
  dispatch_float(x.dtype, [&](auto xt) {
    dispatch_float(w.dtype, [&](auto wt) {
      if (rstd.dtype == DType::F64) f(xt, wt, double{});
      else f(xt, wt, float{});
    });
  });
}

float sum_sq_p(const float* x, int64_t n) { return sum_sq_ref<float>(x, n); }
void scale_mul_p(const float* x, const float* w, float* y, int64_t n, float r, bool /*stream*/) {
  for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * r);
}

}  // namespace

const RmsNormRowKernels& rmsnorm_kernels_portable() {
  static const RmsNormRowKernels k{sum_sq_p, scale_mul_p, "portable"};
  return k;
}

const RmsNormRowKernels& rmsnorm_row_kernels(Isa i) {
  switch (i) {
    case Isa::Avx512: return rmsnorm_kernels_avx512();
    case Isa::Avx2: return rmsnorm_kernels_avx2();
    default: return rmsnorm_kernels_portable();
  }
}

void rmsnorm_reference(const TensorView& x, const TensorView& w, double eps,
                       const TensorView& y, const TensorView& rstd) {
  dispatch_xwr(x, w, rstd, [&](auto xt, auto wt, auto rt) {
    forward_ref<decltype(xt), decltype(wt), decltype(rt)>(x, w, eps, y, rstd);
  });
}

void rmsnorm_cpu(const TensorView& x, const TensorView& w, double eps, const TensorView& y,
                 const TensorView& rstd) {
  if (x.dtype == DType::F32 && w.dtype == DType::F32 && rstd.dtype == DType::F32)
    forward_fast_f32(rmsnorm_row_kernels(isa()), x, w, eps, y, rstd);
  else
    rmsnorm_reference(x, w, eps, y, rstd);
}

void rmsnorm_backward_cpu(const TensorView& x, const TensorView& w, const TensorView& rstd,
                          const TensorView& dy, const TensorView& dx, const TensorView& dw) {
  dispatch_xwr(x, w, rstd, [&](auto xt, auto wt, auto rt) {
    using T = decltype(xt);
    using W = decltype(wt);
    using R = decltype(rt);
    if (dw.dtype == DType::F64) backward_typed<T, W, R, double>(x, w, rstd, dy, dx, dw);
    else backward_typed<T, W, R, float>(x, w, rstd, dy, dx, dw);
  });
}

}  // namespace fovea
