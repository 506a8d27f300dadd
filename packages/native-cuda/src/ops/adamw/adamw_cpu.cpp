// CPU AdamW: validation, the scalar reference, the threaded fast path, and the f64 gradient
// norm reduction (formulas and layouts in adamw.h).
//
// Fast path: the element range is split over the thread pool; each chunk is walked in
// blocks of kBlock elements. A block's gradient is widened to f32 in a stack buffer when it
// is bf16/f16, the ISA's f32 core updates (w, m, v) in place, and a 16-bit parameter then
// receives its rounded master. A block is 4 KB per stream, so the widen / round passes stay
// in L1 and DRAM sees each tensor read once and written once. Every element is computed by
// exactly one thread with the same formula, so results do not depend on the thread count.
// No fp contraction here: w·decay is rounded before the update is added, as in torch.
#pragma GCC optimize("fp-contract=off")
#include "ops/adamw/adamw.h"
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>
#include "core/error.h"
#include "core/thread_pool.h"

namespace fovea {
namespace {

constexpr int64_t kBlock = 1024;
constexpr int64_t kGrain = 32768;
constexpr int64_t kNormBlock = 65536;

const char* kOp = "adamwStep";

bool is_16bit(DType t) { return t == DType::BF16 || t == DType::F16; }

void check_same(const char* name, const TensorView& p, const TensorView& x) {
  bool same = p.ndim == x.ndim;
  for (int d = 0; same && d < p.ndim; ++d) same = p.shape[d] == x.shape[d];
  if (!same) {
    std::string ps = "[", xs = "[";
    for (int d = 0; d < p.ndim; ++d) ps += (d ? "," : "") + std::to_string(p.shape[d]);
    for (int d = 0; d < x.ndim; ++d) xs += (d ? "," : "") + std::to_string(x.shape[d]);
    fail(kOp, ": ", name, " has shape ", xs, "] but the parameter has shape ", ps,
         "]; they must match");
  }
  if (!x.contiguous()) fail(kOp, ": ", name, " must be contiguous");
  if (x.device != p.device) fail(kOp, ": ", name, " is on another device than the parameter");
}

// Loads element i of a float view as f32.
inline float load_f32(const TensorView& x, int64_t i) {
  switch (x.dtype) {
    case DType::BF16: return load(x.ptr<bf16>() + i);
    case DType::F16: return load(x.ptr<f16>() + i);
    default: return x.ptr<float>()[i];
  }
}
inline void store_f32(const TensorView& x, int64_t i, float w) {
  switch (x.dtype) {
    case DType::BF16: store(x.ptr<bf16>() + i, w); break;
    case DType::F16: store(x.ptr<f16>() + i, w); break;
    default: x.ptr<float>()[i] = w;
  }
}

// Typed widen / round loops for a block (one dtype per loop, so they vectorize).
template <class T> void widen(const T* x, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = load(x + j);
}
template <class T> void narrow(const float* x, T* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) store(y + j, x[j]);
}

}  // namespace

AdamWScalars adamw_scalars(const AdamWHyper& h) {
  const double t = double(h.step);
  AdamWScalars s;
  s.decay = float(1.0 - h.lr * h.weight_decay);
  s.beta1 = float(h.beta1);
  s.one_minus_beta1 = float(1.0 - h.beta1);
  s.beta2 = float(h.beta2);
  s.one_minus_beta2 = float(1.0 - h.beta2);
  s.neg_step_size = float(-(h.lr / (1.0 - std::pow(h.beta1, t))));
  s.bc2_sqrt = float(std::sqrt(1.0 - std::pow(h.beta2, t)));
  s.eps = float(h.eps);
  return s;
}

void adamw_check(const AdamWHyper& h, const TensorView& p, const TensorView& g,
                 const TensorView& m, const TensorView& v, const TensorView* master) {
  if (!(h.lr >= 0) || !std::isfinite(h.lr)) fail(kOp, ": lr must be a finite number >= 0, got ", h.lr);
  if (!(h.beta1 >= 0 && h.beta1 < 1)) fail(kOp, ": beta1 must be in [0, 1), got ", h.beta1);
  if (!(h.beta2 >= 0 && h.beta2 < 1)) fail(kOp, ": beta2 must be in [0, 1), got ", h.beta2);
  if (!(h.eps >= 0) || !std::isfinite(h.eps)) fail(kOp, ": eps must be a finite number >= 0, got ", h.eps);
  if (!(h.weight_decay >= 0) || !std::isfinite(h.weight_decay))
    fail(kOp, ": weightDecay must be a finite number >= 0, got ", h.weight_decay);
  if (h.step < 1) fail(kOp, ": step must be >= 1, got ", h.step);
  if (!(p.dtype == DType::F32 || is_16bit(p.dtype)))
    fail(kOp, ": the parameter must be f32, bf16 or f16, got ", dtype_name(p.dtype));
  if (!p.contiguous()) fail(kOp, ": the parameter must be contiguous (it is updated in place)");
  if (!(g.dtype == DType::F32 || is_16bit(g.dtype)))
    fail(kOp, ": grad must be f32, bf16 or f16, got ", dtype_name(g.dtype));
  check_same("grad", p, g);
  if (m.dtype != DType::F32) fail(kOp, ": expAvg must be f32, got ", dtype_name(m.dtype));
  if (v.dtype != DType::F32) fail(kOp, ": expAvgSq must be f32, got ", dtype_name(v.dtype));
  check_same("expAvg", p, m);
  check_same("expAvgSq", p, v);
  if (is_16bit(p.dtype)) {
    if (!master) fail(kOp, ": a ", dtype_name(p.dtype), " parameter needs an f32 master copy");
    if (master->dtype != DType::F32) fail(kOp, ": master must be f32, got ", dtype_name(master->dtype));
    check_same("master", p, *master);
  } else if (master) {
    fail(kOp, ": an f32 parameter takes no master copy (pass null)");
  }
}

void adamw_core_portable(const AdamWScalars& s, float* w, const float* g, float* m, float* v,
                         int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = std::fma(gi, s.one_minus_beta1, m[i] * s.beta1);
    const float vi = std::fma(s.one_minus_beta2 * gi, gi, v[i] * s.beta2);
    const float denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;
    w[i] = w[i] * s.decay + (s.neg_step_size * mi) / denom;
    m[i] = mi; v[i] = vi;
  }
}

void adamw_reference(const AdamWHyper& h, const TensorView& p, const TensorView& g,
                     const TensorView& m, const TensorView& v, const TensorView* master) {
  adamw_check(h, p, g, m, v, master);
  const AdamWScalars s = adamw_scalars(h);
  const int64_t n = p.numel();
  for (int64_t i = 0; i < n; ++i) {
    float w = master ? master->ptr<float>()[i] : load_f32(p, i);
    const float gi = load_f32(g, i);
    float& mi = m.ptr<float>()[i];
    float& vi = v.ptr<float>()[i];
    mi = std::fma(gi, s.one_minus_beta1, mi * s.beta1);
    vi = std::fma(s.one_minus_beta2 * gi, gi, vi * s.beta2);
    w = w * s.decay + (s.neg_step_size * mi) / (std::sqrt(vi) / s.bc2_sqrt + s.eps);
    if (master) master->ptr<float>()[i] = w;
    store_f32(p, i, w);  // rounds to nearest even for bf16/f16
  }
}

AdamWCoreFn adamw_core(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return adamw_core_avx512;
    case Isa::Avx2: return adamw_core_avx2;
    default: return adamw_core_portable;
  }
}

void adamw_cpu_isa(Isa isa, const AdamWHyper& h, const TensorView& p, const TensorView& g,
                   const TensorView& m, const TensorView& v, const TensorView* master) {
  adamw_check(h, p, g, m, v, master);
  const AdamWScalars s = adamw_scalars(h);
  const AdamWCoreFn core = adamw_core(isa);
  const int64_t n = p.numel();
  float* w = master ? master->ptr<float>() : p.ptr<float>();
  float* mp = m.ptr<float>();
  float* vp = v.ptr<float>();
  const bool g32 = g.dtype == DType::F32;
  parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    float gbuf[kBlock];
    for (int64_t i = b; i < e; i += kBlock) {
      const int64_t len = std::min(kBlock, e - i);
      const float* gp = g.ptr<float>() + i;
      if (g.dtype == DType::BF16) { widen(g.ptr<bf16>() + i, gbuf, len); gp = gbuf; }
      else if (!g32) { widen(g.ptr<f16>() + i, gbuf, len); gp = gbuf; }
      core(s, w + i, gp, mp + i, vp + i, len);
      if (p.dtype == DType::BF16) narrow(w + i, p.ptr<bf16>() + i, len);
      else if (master) narrow(w + i, p.ptr<f16>() + i, len);
    }
  });
}

void adamw_cpu(const AdamWHyper& h, const TensorView& p, const TensorView& g,
               const TensorView& m, const TensorView& v, const TensorView* master) {
  adamw_cpu_isa(isa(), h, p, g, m, v, master);
}

double grad_norm_pow_cpu(const TensorView& x, double p) {
  if (!dtype_is_float(x.dtype)) fail("gradNormPow: x must be a float tensor, got ", dtype_name(x.dtype));
  if (!x.contiguous()) fail("gradNormPow: x must be contiguous");
  if (!(p > 0)) fail("gradNormPow: normType must be > 0, got ", p);
  const int64_t n = x.numel(), nb = (n + kNormBlock - 1) / kNormBlock;
  const bool is_inf = std::isinf(p);
  std::vector<double> part(size_t(nb), 0.0);
  parallel_for(0, nb, 1, [&](int64_t bb, int64_t be) {
    for (int64_t b = bb; b < be; ++b) {
      const int64_t i0 = b * kNormBlock, i1 = std::min(n, i0 + kNormBlock);
      double acc[4] = {0, 0, 0, 0};
      bool nan = false;
      dispatch_float(x.dtype, [&](auto t) {
        using T = decltype(t);
        const T* xp = x.ptr<T>();
        for (int64_t i = i0; i < i1; ++i) {
          const double a = std::fabs(double(load(xp + i)));
          if (a != a) nan = true;
          double& s = acc[i & 3];
          if (is_inf) s = a > s ? a : s;
          else if (p == 2) s += a * a;
          else if (p == 1) s += a;
          else s += std::pow(a, p);
        }
      });
      if (is_inf) part[size_t(b)] = nan ? NAN : std::max(std::max(acc[0], acc[1]), std::max(acc[2], acc[3]));
      else part[size_t(b)] = nan ? NAN : (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
  });
  double total = 0;
  for (double v : part) total = is_inf ? (v != v || total != total ? NAN : std::max(total, v)) : total + v;
  return total;
}

}  // namespace fovea
