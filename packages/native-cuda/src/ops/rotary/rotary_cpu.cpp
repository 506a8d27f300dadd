// CPU rotary embedding (semantics in rotary.h). Work is split over the B·S·H rows of D
// elements; each row pairs element i with i + D/2. The loops are simple enough for the
// compiler to vectorize in the f32 case, and the op is memory-bound (x in, out out, cos/sin
// reused across the H heads of a position), so there is no hand-written SIMD path.
#include "ops/rotary/rotary.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace fovea {
namespace {

template <class T, class CS>
void rotary_typed(const TensorView& x, const TensorView& cosv, const TensorView& sinv,
                  const TensorView& out, bool inverse) {
  using C = typename Compute<T>::type;
  const int64_t B = x.shape[0], S = x.shape[1], H = x.shape[2], D = x.shape[3], h = D / 2;
  const bool bcast = cosv.shape[0] == 1;
  const T* xp = x.ptr<T>();
  T* op = out.ptr<T>();
  const CS* cp = cosv.ptr<CS>();
  const CS* sp = sinv.ptr<CS>();
  const int64_t rows = B * S * H;
  parallel_for(0, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(D, 1)), [&](int64_t rb, int64_t re) {
    for (int64_t row = rb; row < re; ++row) {
      const int64_t bs = row / H;            // b·S + s
      const int64_t b = bs / S, s = bs % S;
      const int64_t cs_off = ((bcast ? 0 : b) * S + s) * D;
      const CS* c = cp + cs_off;
      const CS* sn = sp + cs_off;
      const T* xr = xp + row * D;
      T* yr = op + row * D;
      for (int64_t i = 0; i < h; ++i) {
        const C x1 = load(xr + i), x2 = load(xr + i + h);
        const C c1 = C(load(c + i)), c2 = C(load(c + i + h));
        const C s1 = C(load(sn + i)), s2 = C(load(sn + i + h));
        if (!inverse) {
          store(yr + i, x1 * c1 - x2 * s1);
          store(yr + i + h, x2 * c2 + x1 * s2);
        } else {  // x here is dy: dx = dy·cos + rotate_half_T(dy·sin)
          store(yr + i, x1 * c1 + x2 * s2);
          store(yr + i + h, x2 * c2 - x1 * s1);
        }
      }
    }
  });
}

}  // namespace

void rotary_cpu(const TensorView& x, const TensorView& cos, const TensorView& sin,
                const TensorView& out, bool inverse) {
  dispatch_float(x.dtype, [&](auto xt) {
    using T = decltype(xt);
    if (cos.dtype == DType::F32) rotary_typed<T, float>(x, cos, sin, out, inverse);
    else if (cos.dtype == x.dtype) rotary_typed<T, T>(x, cos, sin, out, inverse);
    else fail("rotary: cos/sin must be f32 or x's dtype (", dtype_name(x.dtype), "), got ",
              dtype_name(cos.dtype));
  });
}

}  // namespace fovea
