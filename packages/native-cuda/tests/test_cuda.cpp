// Tests of the CUDA sidecar (src/cuda/) through the loader (core/cuda_loader.cpp).
//  - On a machine without CUDA (CI, laptops) every GPU test SKIPs with the loader's reason,
//    and cuda_loader_names_what_is_missing checks that reason and the thrown Error.
//  - With a GPU, each kernel runs on fresh random inputs (seed printed on failure) next to
//    the CPU reference from the op headers, on strided and broadcast views, and must agree
//    within tolerances that follow from the dtype: both sides compute in f32 (f64 for f64)
//    with libm-quality math, so they differ by a few f32 ulps plus, for bf16/f16 outputs,
//    one ulp of the output type when the two land on opposite sides of a rounding boundary.
//    Sums add an accumulation-order term that grows with the reduced length.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "core/cuda_api.h"
#include "harness.h"
#include "ops/elementwise/elementwise.h"
#include "ops/matmul/matmul.h"
#include "ops/reduce/reduce.h"
#include "ops/softmax/softmax.h"

using namespace fovea;

namespace {

unsigned seed() {
  static unsigned s = std::random_device{}();
  return s;
}
std::mt19937& rng() {
  static std::mt19937 r(seed());
  return r;
}

const FoveaCudaApi* need_cuda() {
  const char* why = cuda_unavailable_reason();
  if (*why) FOVEA_SKIP(why);
  return cuda_api();
}

// A host buffer viewed as a contiguous tensor; views of it (transposes, broadcasts) are
// plain TensorView copies with other strides.
struct Host {
  std::vector<unsigned char> bytes;
  TensorView v;
};
Host make_host(DType dt, std::vector<int64_t> shape) {
  Host h;
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  h.bytes.assign(size_t(std::max<int64_t>(n, 1)) * dtype_size(dt), 0);
  h.v.data = h.bytes.data();
  h.v.dtype = dt;
  h.v.ndim = int(shape.size());
  int64_t st = 1;
  for (int d = h.v.ndim - 1; d >= 0; --d) { h.v.shape[d] = shape[d]; h.v.strides[d] = st; st *= shape[d]; }
  return h;
}
void set(void* base, DType dt, int64_t i, double x) {
  dispatch_all(dt, [&](auto t) {
    using T = decltype(t);
    store(static_cast<T*>(base) + i, x);
  });
}
double get(const void* base, DType dt, int64_t i) {
  double r = 0;
  dispatch_all(dt, [&](auto t) {
    using T = decltype(t);
    r = double(load(static_cast<const T*>(base) + i));
  });
  return r;
}
// Fills every element with a uniform value in [lo, hi] (rounded for integer dtypes).
void randomize(Host& h, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  const int64_t n = int64_t(h.bytes.size() / dtype_size(h.v.dtype));
  for (int64_t i = 0; i < n; ++i) {
    double x = u(rng());
    if (!dtype_is_float(h.v.dtype)) x = std::round(x);
    set(h.bytes.data(), h.v.dtype, i, x);
  }
}

// Device memory with the same bytes as a Host, freed on scope exit.
struct Dev {
  const FoveaCudaApi* api;
  void* p = nullptr;
  size_t n = 0;
  Dev(const FoveaCudaApi* a, size_t nbytes) : api(a), n(nbytes) {
    p = api->malloc(0, std::max<size_t>(n, 1));
    if (!p) throw Error(std::string("cuda malloc: ") + api->last_error());
  }
  Dev(const FoveaCudaApi* a, const Host& h) : Dev(a, h.bytes.size()) {
    if (api->memcpy_h2d(0, p, h.bytes.data(), n)) throw Error(api->last_error());
  }
  ~Dev() { api->free(0, p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  std::vector<unsigned char> download() const {
    std::vector<unsigned char> out(n);
    if (api->memcpy_d2h(0, out.data(), p, n)) throw Error(api->last_error());
    return out;
  }
  // The device twin of a view into h (same strides, same offset).
  TensorView view(const TensorView& hv, const Host& h) const {
    TensorView d = hv;
    d.data = static_cast<char*>(p) + (static_cast<const char*>(hv.data) -
                                      reinterpret_cast<const char*>(h.bytes.data()));
    d.device = 0;
    return d;
  }
};

void check_ok(const FoveaCudaApi* api, int rc, const char* what) {
  if (rc) throw Error(std::string(what) + ": " + api->last_error());
}

struct Tol { double rtol, atol; };
Tol tol_for(DType dt) {
  switch (dt) {
    case DType::F32: return {1e-5, 1e-5};
    case DType::F64: return {1e-12, 1e-12};
    case DType::BF16: return {1e-2, 1e-5};  // one bf16 ulp is 2^-7 relative
    case DType::F16: return {2e-3, 1e-5};   // one f16 ulp is 2^-10 relative
    default: return {0, 0};                 // integers and bool: exact
  }
}

// Compares n elements of two buffers of one dtype; reports the first mismatch and a count.
void expect_close(const std::string& what, const void* want, const void* got, DType dt,
                  int64_t n, Tol tol, const char* file = __FILE__, int line = __LINE__) {
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double w = get(want, dt, i), g = get(got, dt, i);
    const bool ok = (std::isnan(w) && std::isnan(g)) || w == g ||
                    std::fabs(w - g) <= tol.atol + tol.rtol * std::fabs(w);
    if (!ok && bad++ == 0) first = i;
  }
  if (bad)
    fovea_test::report(file, line, what + ": " + std::to_string(bad) + " of " + std::to_string(n) +
                       " differ; first at " + std::to_string(first) + ": cpu " +
                       std::to_string(get(want, dt, first)) + ", cuda " +
                       std::to_string(get(got, dt, first)) + " (seed " + std::to_string(seed()) + ")");
}

const DType kAll[] = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64, DType::Bool};
const DType kFloats[] = {DType::F32, DType::F64, DType::BF16, DType::F16};

// [rows, cols] buffer seen as its transpose [cols, rows] (strides [1, cols]).
TensorView transposed(const Host& h) {
  TensorView t = h.v;
  std::swap(t.shape[0], t.shape[1]);
  std::swap(t.strides[0], t.strides[1]);
  return t;
}

}  // namespace

FOVEA_TEST(cuda_loader_names_what_is_missing) {
  const std::string why = cuda_unavailable_reason();
  if (why.empty()) FOVEA_SKIP("CUDA is available here; this checks the CPU-only error path");
  EXPECT_TRUE(why.find("CUDA is unavailable") == 0);
  // One of the four things the loader distinguishes must be named.
  EXPECT_TRUE(why.find("sidecar library") != std::string::npos ||
              why.find("no NVIDIA driver") != std::string::npos ||
              why.find("driver too old") != std::string::npos ||
              why.find("no CUDA GPU") != std::string::npos);
  for (int attempt = 0; attempt < 2; ++attempt) {  // cached: same answer the second time
    bool threw = false;
    try {
      cuda_api();
    } catch (const Error& e) {
      threw = true;
      EXPECT_TRUE(why == e.what());
    }
    EXPECT_TRUE(threw);
  }
}

FOVEA_TEST(cuda_copies_and_caching_allocator) {
  const FoveaCudaApi* api = need_cuda();
  int n = 0, drv = 0, rt = 0;
  EXPECT_TRUE(api->probe(&n, &drv, &rt) == 0 && n > 0 && drv > 0 && rt > 0);
  char name[128];
  size_t total = 0;
  int ma = 0, mi = 0, sms = 0;
  EXPECT_TRUE(api->device_info(0, name, sizeof name, &total, &ma, &mi, &sms) == 0 && total > 0 && sms > 0);

  Host h = make_host(DType::F32, {1000});
  randomize(h, -1, 1);
  {
    Dev a(api, h), b(api, h.bytes.size());
    check_ok(api, api->memcpy_d2d(0, b.p, a.p, h.bytes.size()), "memcpy_d2d");
    EXPECT_TRUE(b.download() == h.bytes);
  }
  size_t alloc0 = 0, res0 = 0, alloc1 = 0, res1 = 0;
  check_ok(api, api->memory_stats(0, &alloc0, &res0), "memory_stats");
  void* p = api->malloc(0, 100000);
  EXPECT_TRUE(p != nullptr);
  check_ok(api, api->memory_stats(0, &alloc1, &res1), "memory_stats");
  EXPECT_TRUE(alloc1 >= alloc0 + 100000 && res1 >= alloc1);
  check_ok(api, api->free(0, p), "free");
  void* q = api->malloc(0, 100000);  // a same-size request reuses the cached block
  EXPECT_TRUE(q == p);
  check_ok(api, api->free(0, q), "free");
  EXPECT_TRUE(api->free(0, q) != 0);  // double free is reported, not ignored
  check_ok(api, api->empty_cache(0), "empty_cache");
  check_ok(api, api->memory_stats(0, &alloc1, &res1), "memory_stats");
  EXPECT_TRUE(alloc1 == alloc0 && res1 == alloc1);  // nothing cached after empty_cache
  EXPECT_TRUE(api->malloc(0, size_t(1) << 62) == nullptr);  // OOM is an error, not a crash
  EXPECT_TRUE(std::strstr(api->last_error(), "out of memory") != nullptr);
}

FOVEA_TEST(cuda_fill_and_copy_match_cpu) {
  const FoveaCudaApi* api = need_cuda();
  for (DType dt : kAll) {
    Host cpu = make_host(dt, {6, 9}), gpu = cpu;
    Dev d(api, cpu);
    TensorView every_other = cpu.v;  // [6, 4] view over columns 0, 2, 4, 6
    every_other.shape[1] = 4;
    every_other.strides[1] = 2;
    fill_cpu(every_other, 2.75);
    EXPECT_TRUE(api->fill(&every_other, 0) != 0);  // a host view is refused, not dereferenced
    TensorView dv = d.view(every_other, cpu);
    check_ok(api, api->fill(&dv, 2.75), "fill");
    gpu.bytes = d.download();
    expect_close(std::string("fill ") + dtype_name(dt), cpu.bytes.data(), gpu.bytes.data(), dt, 54, tol_for(dt));
  }
  for (DType from : kAll)
    for (DType to : kAll) {
      Host src = make_host(from, {7, 5});
      randomize(src, -3, 3);
      Host want = make_host(to, {5, 7});
      const TensorView st = transposed(src);  // strided source, contiguous destination
      copy_cpu(st, want.v);
      Dev ds(api, src), dd(api, want.bytes.size());
      TensorView dsv = ds.view(st, src), ddv = dd.view(want.v, want);
      check_ok(api, api->copy(&dsv, &ddv), "copy");
      auto got = dd.download();
      expect_close(std::string("copy ") + dtype_name(from) + "->" + dtype_name(to), want.bytes.data(),
                   got.data(), to, 35, tol_for(to));
    }
}

FOVEA_TEST(cuda_unary_matches_cpu) {
  const FoveaCudaApi* api = need_cuda();
  auto run = [&](UnaryOp op, DType dt, double lo, double hi, double alpha, double beta) {
    Host x = make_host(dt, {33, 20});
    randomize(x, lo, hi);
    const TensorView xt = transposed(x);  // [20, 33], strided
    Host want = make_host(dt, {20, 33});
    unary_cpu(op, xt, want.v, alpha, beta);
    Dev dx(api, x), dout(api, want.bytes.size());
    TensorView dxv = dx.view(xt, x), dov = dout.view(want.v, want);
    check_ok(api, api->unary(int(op), &dxv, &dov, alpha, beta), "unary");
    auto got = dout.download();
    expect_close("unary op " + std::to_string(int(op)) + " " + dtype_name(dt), want.bytes.data(),
                 got.data(), dt, 660, tol_for(dt));
  };
  for (DType dt : kFloats)
    for (int op = 0; op < int(UnaryOp::Count); ++op) {
      const UnaryOp u = UnaryOp(op);
      const bool positive = u == UnaryOp::Log || u == UnaryOp::Sqrt || u == UnaryOp::Rsqrt ||
                            u == UnaryOp::PowScalar || u == UnaryOp::Reciprocal;
      const double alpha = u == UnaryOp::Clamp ? -1.0 : u == UnaryOp::PowScalar ? 1.7 : 0.75;
      const double beta = u == UnaryOp::Clamp ? 0.5 : 0.0;
      run(u, dt, positive ? 0.1 : -3.0, 3.0, alpha, beta);
    }
  for (DType dt : {DType::I32, DType::I64})
    for (UnaryOp u : {UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Relu, UnaryOp::Square, UnaryOp::Sign,
                      UnaryOp::AddScalar, UnaryOp::MulScalar, UnaryOp::Clamp})
      run(u, dt, -10, 10, u == UnaryOp::Clamp ? -2.0 : 3.0, 5.0);
}

FOVEA_TEST(cuda_binary_broadcast_matches_cpu) {
  const FoveaCudaApi* api = need_cuda();
  auto run = [&](BinaryOp op, DType dt, double lo, double hi, double blo, double bhi) {
    // a: [4, 1, 6] broadcast over dim 1; b: [6, 5] transposed and broadcast over dim 0.
    Host a = make_host(dt, {4, 1, 6}), b = make_host(dt, {6, 5});
    randomize(a, lo, hi);
    randomize(b, blo, bhi);
    TensorView av = a.v, bv = b.v;
    av.shape[1] = 5; av.strides[1] = 0;
    bv.ndim = 3;
    bv.shape[0] = 4; bv.shape[1] = 5; bv.shape[2] = 6;
    bv.strides[0] = 0; bv.strides[1] = 1; bv.strides[2] = 5;
    const DType odt = binary_op_is_comparison(op) ? DType::Bool : dt;
    Host want = make_host(odt, {4, 5, 6});
    binary_cpu(op, av, bv, want.v);
    Dev da(api, a), db(api, b), dout(api, want.bytes.size());
    TensorView dav = da.view(av, a), dbv = db.view(bv, b), dov = dout.view(want.v, want);
    check_ok(api, api->binary(int(op), &dav, &dbv, &dov), "binary");
    auto got = dout.download();
    expect_close("binary op " + std::to_string(int(op)) + " " + dtype_name(dt), want.bytes.data(),
                 got.data(), odt, 120, tol_for(odt));
  };
  for (DType dt : kFloats)
    for (int op = 0; op < int(BinaryOp::Count); ++op) {
      const BinaryOp o = BinaryOp(op);
      if (o == BinaryOp::Pow) run(o, dt, 0.1, 3, -2, 2);          // positive base
      else if (o == BinaryOp::Div) run(o, dt, -3, 3, 0.5, 3);     // denominator away from 0
      else run(o, dt, -3, 3, -3, 3);
    }
  for (DType dt : {DType::I32, DType::I64})
    for (BinaryOp o : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Maximum,
                       BinaryOp::Minimum, BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt, BinaryOp::Le,
                       BinaryOp::Gt, BinaryOp::Ge, BinaryOp::LogicalAnd, BinaryOp::LogicalOr})
      run(o, dt, -4, 4, -4, 4);
  for (DType dt : {DType::I32, DType::I64}) run(BinaryOp::Div, dt, 0, 50, 1, 7);
  for (BinaryOp o : {BinaryOp::LogicalAnd, BinaryOp::LogicalOr, BinaryOp::Eq, BinaryOp::Ne})
    run(o, DType::Bool, 0, 1, 0, 1);
}

FOVEA_TEST(cuda_reduce_last_matches_cpu) {
  const FoveaCudaApi* api = need_cuda();
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64})
    for (int64_t n : {1, 5, 33, 300, 1025, 5000})
      for (int op = 0; op < int(ReduceOp::Count); ++op) {
        const ReduceOp r = ReduceOp(op);
        const bool is_float = dtype_is_float(dt);
        if (!is_float && r == ReduceOp::LogSumExp) continue;
        if (!is_float && r == ReduceOp::Prod && n > 33) continue;  // would overflow
        const int64_t rows = 11;
        Host x = make_host(dt, {rows, n});
        if (r == ReduceOp::Prod) randomize(x, is_float ? 0.9 : -1, is_float ? 1.1 : 2);
        else randomize(x, -4, 4);
        const bool arg = r == ReduceOp::Argmax || r == ReduceOp::Argmin;
        const bool pick = arg || r == ReduceOp::Max || r == ReduceOp::Min;
        Host want = make_host(dt, {arg ? 0 : rows}), want_idx = make_host(DType::I64, {pick ? rows : 0});
        reduce_last_cpu(r, x.v, want.v, want_idx.v);
        Dev dx(api, x), dout(api, want.bytes.size()), didx(api, want_idx.bytes.size());
        TensorView dxv = dx.view(x.v, x), dov = dout.view(want.v, want), div = didx.view(want_idx.v, want_idx);
        check_ok(api, api->reduce_last(op, &dxv, &dov, &div), "reduce_last");
        const std::string what = "reduce op " + std::to_string(op) + " " + dtype_name(dt) + " n=" + std::to_string(n);
        if (!arg) {
          auto got = dout.download();
          Tol t = tol_for(dt);
          // Accumulation order differs (tree vs sequential): allow ~n ulps of the f32 sum.
          if (is_float && dt != DType::F64 && (r == ReduceOp::Sum || r == ReduceOp::Mean || r == ReduceOp::Prod))
            t.atol += double(n) * 4.0 * 6e-8 * (r == ReduceOp::Sum ? 4.0 : 1.0), t.rtol += double(n) * 1.2e-7;
          expect_close(what, want.bytes.data(), got.data(), dt, rows, t);
        }
        if (pick) {
          auto got = didx.download();
          expect_close(what + " idx", want_idx.bytes.data(), got.data(), DType::I64, rows, {0, 0});
        }
      }
}

FOVEA_TEST(cuda_softmax_matches_cpu) {
  const FoveaCudaApi* api = need_cuda();
  for (DType dt : kFloats)
    for (int64_t n : {1, 10, 1000, 3000})
      for (int log = 0; log < 2; ++log) {
        const int64_t rows = 7;
        Host x = make_host(dt, {rows, n}), want = make_host(dt, {rows, n});
        randomize(x, -8, 8);
        softmax_reference(x.v, want.v, log != 0);
        Dev dx(api, x), dout(api, want.bytes.size());
        TensorView dxv = dx.view(x.v, x), dov = dout.view(want.v, want);
        check_ok(api, api->softmax_last(log, &dxv, &dov), "softmax_last");
        auto got = dout.download();
        // The row sum is sequential on the cpu and a tree on the gpu: allow the sequential
        // sum's error bound, n·u relative, on top of the dtype's own tolerance.
        Tol t = tol_for(dt);
        t.rtol += double(n) * (dt == DType::F64 ? 1.1e-16 : 6e-8);
        if (dt != DType::F64) t.atol = std::max(t.atol, 1e-6 * (log ? 10 : 1));
        expect_close(std::string(log ? "log_softmax " : "softmax ") + dtype_name(dt) + " n=" + std::to_string(n),
                     want.bytes.data(), got.data(), dt, rows * n, t);
      }
}

FOVEA_TEST(cuda_gemm_matches_reference) {
  const FoveaCudaApi* api = need_cuda();
  struct Case { DType ab, c; bool ta, tb, col_c, bcast_b; float alpha, beta; int64_t K; };
  const Case cases[] = {
      {DType::F32, DType::F32, false, false, false, false, 1.f, 0.f, 71},
      {DType::F32, DType::F32, true, true, false, false, 0.5f, 2.f, 64},
      {DType::BF16, DType::F32, false, true, false, true, 1.f, 0.f, 128},
      {DType::BF16, DType::BF16, true, false, false, false, 1.f, 1.f, 40},
      {DType::F16, DType::F16, false, false, true, false, 1.f, 0.f, 96},
      {DType::F64, DType::F64, true, false, true, true, -1.f, 0.5f, 33},
      {DType::F32, DType::F32, false, false, false, false, 1.f, 0.5f, 0},  // K = 0: C = beta·C
  };
  const int64_t batch = 3, M = 37, N = 53;
  for (const Case& cs : cases) {
    const int64_t K = cs.K;
    Host a = make_host(cs.ab, {batch, cs.ta ? K : M, cs.ta ? M : K});
    Host b = make_host(cs.ab, {cs.bcast_b ? 1 : batch, cs.tb ? N : K, cs.tb ? K : N});
    Host c = make_host(cs.c, {batch, cs.col_c ? N : M, cs.col_c ? M : N});
    randomize(a, -1, 1);
    randomize(b, -1, 1);
    randomize(c, -1, 1);
    Dev da(api, a), db(api, b), dc(api, c);
    GemmParams p;
    p.a_dtype = p.b_dtype = cs.ab;
    p.c_dtype = cs.c;
    p.batch = batch; p.M = M; p.N = N; p.K = K;
    p.a_batch = M * K; p.a_rs = cs.ta ? 1 : K; p.a_cs = cs.ta ? M : 1;
    p.b_batch = cs.bcast_b ? 0 : K * N; p.b_rs = cs.tb ? 1 : N; p.b_cs = cs.tb ? K : 1;
    p.c_batch = M * N; p.c_rs = cs.col_c ? 1 : N; p.c_cs = cs.col_c ? M : 1;
    p.alpha = cs.alpha; p.beta = cs.beta;
    GemmParams hp = p;
    hp.a = a.bytes.data(); hp.b = b.bytes.data(); hp.c = c.bytes.data();
    gemm_reference(hp);
    p.a = da.p; p.b = db.p; p.c = dc.p; p.device = 0;
    if (api->gemm(&p) != 0) {
      const std::string e = api->last_error();
      if (e.find("cuBLAS not found") != std::string::npos) FOVEA_SKIP(e);
      fovea_test::report(__FILE__, __LINE__, "gemm failed: " + e);
      continue;
    }
    auto got = dc.download();
    Tol t = tol_for(cs.c);
    t.atol += double(K) * (cs.c == DType::F64 ? 1e-15 : 4e-7);  // f32 accumulation over K
    expect_close(std::string("gemm ") + dtype_name(cs.ab) + "->" + dtype_name(cs.c) + " K=" + std::to_string(K),
                 c.bytes.data(), got.data(), cs.c, batch * M * N, t);
  }
  // An operand without a unit stride is refused with a message, not silently copied.
  GemmParams bad;
  bad.device = 0; bad.M = bad.N = bad.K = 4;
  bad.a = bad.b = bad.c = reinterpret_cast<void*>(16);
  bad.a_rs = 8; bad.a_cs = 2; bad.b_rs = 4; bad.b_cs = 1; bad.c_rs = 4; bad.c_cs = 1;
  EXPECT_TRUE(api->gemm(&bad) != 0);
  EXPECT_TRUE(std::strstr(api->last_error(), "contiguous") != nullptr ||
              std::strstr(api->last_error(), "cuBLAS not found") != nullptr);
}
