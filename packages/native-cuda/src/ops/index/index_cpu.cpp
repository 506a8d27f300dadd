// CPU index_select / gather / scatter_add / index_add (semantics in index.h).
// Shapes are viewed as [A, L, Bn] around `dim`: A = the dims before it, L = its extent,
// Bn = the dims after it. Tensors whose dims after `dim` are larger than the index's (gather's
// x, scatter's dst and src) get their per-b offsets from a table built once per call.
// index_select / index_add move whole [Bn] runs (memcpy / a vectorizable add loop).
#include "ops/index/index.h"
#include <algorithm>
#include <cstring>
#include <sstream>
#include <type_traits>
#include <vector>
#include "core/error.h"
#include "core/thread_pool.h"

namespace fovea {
namespace {

template <class F>
void with_index(const TensorView& index, F&& f) {
  if (index.dtype == DType::I32) f(index.ptr<int32_t>());
  else if (index.dtype == DType::I64) f(index.ptr<int64_t>());
  else fail("index must be i32 or i64, got ", dtype_name(index.dtype));
}

std::string shape_of(const TensorView& v) {
  std::ostringstream os;
  os << "[";
  for (int d = 0; d < v.ndim; ++d) os << (d ? ", " : "") << v.shape[d];
  os << "]";
  return os.str();
}

std::string dim_of(int dim, const char* name, const TensorView& t) {
  return "dim " + std::to_string(dim) + " of " + name + " " + shape_of(t);
}

std::string coords_of(const TensorView& v, int64_t flat) {
  int64_t c[kMaxDims];
  for (int d = v.ndim - 1; d >= 0; --d) {
    c[d] = v.shape[d] ? flat % v.shape[d] : 0;
    flat = v.shape[d] ? flat / v.shape[d] : 0;
  }
  std::ostringstream os;
  os << "[";
  for (int d = 0; d < v.ndim; ++d) os << (d ? ", " : "") << c[d];
  os << "]";
  return os.str();
}

struct Split { int64_t A = 1, L = 1, Bn = 1; };
Split split_at(const TensorView& v, int dim) {
  Split s;
  for (int d = 0; d < dim; ++d) s.A *= v.shape[d];
  s.L = v.ndim ? v.shape[dim] : 1;
  for (int d = dim + 1; d < v.ndim; ++d) s.Bn *= v.shape[d];
  return s;
}

// Offset in `t` (contiguous) of the dims before / after `dim`, for a flat a (or b) counted
// in `shape`'s dims before (after) dim.
int64_t offset_before(const TensorView& shape, const TensorView& t, int dim, int64_t a) {
  int64_t off = 0;
  for (int d = dim - 1; d >= 0; --d) { off += (a % shape.shape[d]) * t.strides[d]; a /= shape.shape[d]; }
  return off;
}
std::vector<int64_t> offsets_after(const TensorView& shape, const TensorView& t, int dim) {
  const Split s = split_at(shape, dim);
  std::vector<int64_t> off(static_cast<size_t>(s.Bn));
  for (int64_t b = 0; b < s.Bn; ++b) {
    int64_t o = 0, r = b;
    for (int d = shape.ndim - 1; d > dim; --d) { o += (r % shape.shape[d]) * t.strides[d]; r /= shape.shape[d]; }
    off[size_t(b)] = o;
  }
  return off;
}

// Contiguous strides for t's shape (the kernels never see strided views, but a view of
// shape [.., 1, ..] may carry any stride on its size-1 dims).
TensorView with_contiguous_strides(TensorView t) {
  int64_t s = 1;
  for (int d = t.ndim - 1; d >= 0; --d) { t.strides[d] = s; s *= t.shape[d]; }
  return t;
}

// Calls f(W{}) with an unsigned word as wide as the dtype (a move needs no arithmetic).
template <class F> void dispatch_word(DType t, F&& f) {
  switch (dtype_size(t)) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    default: f(uint64_t{}); break;
  }
}

// Accumulating ops: every dtype but bool.
template <class F> void dispatch_accum(DType t, const char* op, F&& f) {
  if (t == DType::Bool) fail(op, ": bool tensors cannot be accumulated into");
  dispatch_all(t, [&](auto tag) {
    if constexpr (!std::is_same_v<decltype(tag), bool>) f(tag);
  });
}

}  // namespace

void check_index_range(const char* op, const TensorView& index, int64_t limit, const std::string& what) {
  const int64_t n = index.numel();
  with_index(index, [&](auto* ip) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = int64_t(ip[i]);
      if (v < 0 || v >= limit)
        fail(op, ": index value ", v, " at position ", coords_of(index, i), " of index ",
             shape_of(index), " is out of range for ", what, ": valid indices are ",
             limit > 0 ? "0.." + std::to_string(limit - 1) : std::string("none (the dim is empty)"),
             v < 0 ? " (negative indices are not wrapped around)" : "");
    }
  });
}

void index_select_cpu(const TensorView& x, int dim, const TensorView& index, const TensorView& out) {
  check_index_range("indexSelect", index, x.shape[dim], dim_of(dim, "x", x));
  const Split sx = split_at(x, dim);
  const int64_t L = index.numel(), row_bytes = sx.Bn * int64_t(dtype_size(x.dtype));
  const char* xp = static_cast<const char*>(x.data);
  char* op = static_cast<char*>(out.data);
  with_index(index, [&](auto* ip) {
    parallel_for(0, sx.A * L, std::max<int64_t>(1, 65536 / std::max<int64_t>(row_bytes, 1)),
                 [&](int64_t pb, int64_t pe) {
      for (int64_t p = pb; p < pe; ++p) {
        const int64_t a = p / L, j = p % L;
        std::memcpy(op + p * row_bytes, xp + (a * sx.L + int64_t(ip[j])) * row_bytes, size_t(row_bytes));
      }
    });
  });
}

void gather_cpu(const TensorView& x_in, int dim, const TensorView& index_in, const TensorView& out) {
  check_index_range("gather", index_in, x_in.shape[dim], dim_of(dim, "x", x_in));
  const TensorView x = with_contiguous_strides(x_in), index = with_contiguous_strides(index_in);
  const Split si = split_at(index, dim);
  const std::vector<int64_t> xb = offsets_after(index, x, dim);
  const int64_t xs_dim = x.strides[dim];
  with_index(index, [&](auto* ip) {
    dispatch_word(x.dtype, [&](auto w) {
      using W = decltype(w);
      const W* xp = static_cast<const W*>(x.data);
      W* op = static_cast<W*>(out.data);
      parallel_for(0, si.A * si.L, std::max<int64_t>(1, 32768 / std::max<int64_t>(si.Bn, 1)),
                   [&](int64_t rb, int64_t re) {
        for (int64_t r = rb; r < re; ++r) {  // r = a·L + j
          const int64_t xa = offset_before(index, x, dim, r / si.L);
          for (int64_t b = 0; b < si.Bn; ++b) {
            const int64_t e = r * si.Bn + b;
            op[e] = xp[xa + int64_t(ip[e]) * xs_dim + xb[size_t(b)]];
          }
        }
      });
    });
  });
}

void scatter_add_cpu(const TensorView& dst_in, int dim, const TensorView& index_in, const TensorView& src_in) {
  check_index_range("scatterAdd", index_in, dst_in.shape[dim], dim_of(dim, "dst", dst_in));
  const TensorView dst = with_contiguous_strides(dst_in), src = with_contiguous_strides(src_in);
  const TensorView index = with_contiguous_strides(index_in);
  const Split si = split_at(index, dim);
  const std::vector<int64_t> db = offsets_after(index, dst, dim), sb = offsets_after(index, src, dim);
  with_index(index, [&](auto* ip) {
    dispatch_accum(dst.dtype, "scatterAdd", [&](auto tag) {
      using T = decltype(tag);
      using C = typename Compute<T>::type;
      T* dp = dst.ptr<T>();
      const T* sp = src.ptr<T>();
      // p = a·Bn + b: the coordinates other than dim. Within a chunk, walk j in order.
      parallel_for(0, si.A * si.Bn, std::max<int64_t>(16, 32768 / std::max<int64_t>(si.L, 1)),
                   [&](int64_t pb, int64_t pe) {
        for (int64_t p = pb; p < pe;) {
          const int64_t a = p / si.Bn, b0 = p % si.Bn, b1 = std::min(si.Bn, b0 + (pe - p));
          const int64_t da = offset_before(index, dst, dim, a), sa = offset_before(index, src, dim, a);
          for (int64_t j = 0; j < si.L; ++j)
            for (int64_t b = b0; b < b1; ++b) {
              const int64_t v = int64_t(ip[(a * si.L + j) * si.Bn + b]);
              T* d = dp + da + v * dst.strides[dim] + db[size_t(b)];
              store(d, C(load(d)) + C(load(sp + sa + j * src.strides[dim] + sb[size_t(b)])));
            }
          p += b1 - b0;
        }
      });
    });
  });
}

void index_add_cpu(const TensorView& dst, int dim, const TensorView& index, const TensorView& src) {
  check_index_range("indexAdd", index, dst.shape[dim], dim_of(dim, "dst", dst));
  const Split sd = split_at(dst, dim);
  const int64_t L = index.numel();
  with_index(index, [&](auto* ip) {
    dispatch_accum(dst.dtype, "indexAdd", [&](auto tag) {
      using T = decltype(tag);
      using C = typename Compute<T>::type;
      T* dp = dst.ptr<T>();
      const T* sp = src.ptr<T>();
      // p = a·Bn + b as in scatter_add: chunks of [b0, b1) columns, j walked in order.
      parallel_for(0, sd.A * sd.Bn, std::max<int64_t>(16, 32768 / std::max<int64_t>(L, 1)),
                   [&](int64_t pb, int64_t pe) {
        for (int64_t p = pb; p < pe;) {
          const int64_t a = p / sd.Bn, b0 = p % sd.Bn, b1 = std::min(sd.Bn, b0 + (pe - p));
          for (int64_t j = 0; j < L; ++j) {
            T* d = dp + (a * sd.L + int64_t(ip[j])) * sd.Bn;
            const T* s = sp + (a * L + j) * sd.Bn;
            for (int64_t b = b0; b < b1; ++b) store(d + b, C(load(d + b)) + C(load(s + b)));
          }
          p += b1 - b0;
        }
      });
    });
  });
}

}  // namespace fovea
