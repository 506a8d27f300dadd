// Softmax / RMSNorm kernel lab (llm.c dev/cuda style): times the fast CPU paths and variants
// of their row schedule on [rows, n] f32 (default 8192 × 4096), reporting GB/s with
// bytes = read x + write y (weight and rstd are negligible) and each one's max |diff| against
// the scalar reference (the pass/fail checks live in tests/test_nn_kernels.cpp).
// Not part of the CMake build. Compile by hand from packages/native-cuda:
//   g++ -O3 -std=c++17 -Isrc bench/nn_lab.cpp src/ops/softmax/*.cpp src/ops/rmsnorm/*.cpp
//       src/core/thread_pool.cpp src/core/cpu_features.cpp -lpthread -o /tmp/nn_lab
// Usage: /tmp/nn_lab [rows n]     Environment: FOVEA_NUM_THREADS, FOVEA_ISA, LAB_REPS.
// PyTorch side: the script in the comment at the end of this file (same shapes, 2 threads).
// Results and what each variant measured: src/ops/softmax/NOTES.md.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "ops/rmsnorm/rmsnorm.h"
#include "ops/softmax/softmax.h"

using namespace fovea;

namespace {

// ---------------------------------------------------------------- softmax variants (f32)
// Each runs the ISA's primitives (softmax.h) with a different schedule; softmax_cpu runs
// "prefetch + stream" for outputs >= kStreamingStoreBytes and "prefetch" below it.
//   plain:    m = max; e = exp(x - m) into y, s = Σe; y *= 1/s  (no prefetch, regular stores)
//   prefetch: plain + the next row prefetched during the exp pass
//   two-exp:  m = max; s = Σexp(x - m) (no store); y = exp(x - m)/s  (two exps per element)
//   two-exp + stream: as two-exp, the final pass with non-temporal stores
//   prefetch + stream: e into an L1 scratch row, then y = e/s with non-temporal stores
enum class Sched { Plain, Prefetch, TwoExp, TwoExpStream, PrefetchStream };
void softmax_variant(Sched sc, const float* x, float* y, int64_t rows, int64_t n) {
  const SoftmaxRowKernels& k = softmax_row_kernels(isa());
  parallel_for(0, rows, std::max<int64_t>(1, 16384 / n), [&](int64_t rb, int64_t re) {
    std::vector<float> buf(static_cast<size_t>(n));
    for (int64_t r = rb; r < re; ++r) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      const float* ahead = r + 1 < re ? xr + n : nullptr;
      const float m = k.max(xr, n);
      switch (sc) {
        case Sched::Plain: case Sched::Prefetch: {
          float s = k.exp_store_sum(xr, yr, n, m, sc == Sched::Prefetch ? ahead : nullptr);
          k.scale_store(yr, yr, n, 1.f / s, false);
          break;
        }
        case Sched::TwoExp: k.exp_scale(xr, yr, n, m, 1.f / k.sum_exp(xr, n, m, nullptr)); break;
        case Sched::TwoExpStream: {
          float s = k.sum_exp(xr, n, m, nullptr);
          k.exp_store_sum(xr, buf.data(), n, m, nullptr);  // stand-in: exp again, then stream
          k.scale_store(buf.data(), yr, n, 1.f / s, true);
          break;
        }
        case Sched::PrefetchStream: {
          float s = k.exp_store_sum(xr, buf.data(), n, m, ahead);
          k.scale_store(buf.data(), yr, n, 1.f / s, true);
          break;
        }
      }
    }
    stream_fence();
  });
}
void rmsnorm_variant(bool stream, const float* x, const float* w, float* y, float* rstd,
                     int64_t rows, int64_t n) {
  const RmsNormRowKernels& k = rmsnorm_row_kernels(isa());
  parallel_for(0, rows, std::max<int64_t>(1, 16384 / n), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const float rs = 1.f / std::sqrt(k.sum_sq(x + r * n, n) / float(n) + 1e-6f);
      rstd[r] = rs;
      k.scale_mul(x + r * n, w, y + r * n, n, rs, stream);
    }
    stream_fence();
  });
}

// ---------------------------------------------------------------- timing
double best_ms(int reps, const std::function<void()>& f) {
  f();
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, ms);
  }
  return best;
}

float* alloc_f32(int64_t n) {
  float* p = static_cast<float*>(std::aligned_alloc(64, size_t(n) * 4 + 64));
  std::memset(p, 0, size_t(n) * 4);
  return p;
}

double max_abs_diff(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = argc > 2 ? std::atoll(argv[1]) : 8192, n = argc > 2 ? std::atoll(argv[2]) : 4096;
  int reps = std::getenv("LAB_REPS") ? std::atoi(std::getenv("LAB_REPS")) : 10;
  std::printf("rows %lld n %lld threads %d isa %s\n", (long long)rows, (long long)n, num_threads(),
              isa_name(isa()));
  const int64_t total = rows * n;
  float *x = alloc_f32(total), *y = alloc_f32(total), *yr = alloc_f32(total);
  float *w = alloc_f32(n), *rs = alloc_f32(rows), *rs2 = alloc_f32(rows);
  std::mt19937 g(7);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (int64_t i = 0; i < total; ++i) x[i] = nd(g);
  for (int64_t i = 0; i < n; ++i) w[i] = 1.f + 0.1f * nd(g);
  TensorView xv = make_view(x, DType::F32, {rows, n}), yv = make_view(y, DType::F32, {rows, n});
  TensorView rv = make_view(yr, DType::F32, {rows, n});
  TensorView wv = make_view(w, DType::F32, {n}), sv = make_view(rs, DType::F32, {rows});
  TensorView sv2 = make_view(rs2, DType::F32, {rows});
  const double gb = double(total) * 8 / 1e9;

  auto report = [&](const char* name, double ms, const float* ref) {
    std::printf("%-28s %8.2f ms  %6.2f GB/s  max|diff| vs reference %.3g\n", name, ms, gb / (ms / 1e3),
                ref ? max_abs_diff(y, ref, total) : 0.0);
  };
  for (int log = 0; log < 2; ++log) {
    softmax_reference(xv, rv, log);
    std::printf("-- %s\n", log ? "log_softmax" : "softmax");
    report("reference (scalar)", best_ms(reps, [&] { softmax_reference(xv, yv, log); }), yr);
    report("softmax_cpu", best_ms(reps, [&] { softmax_cpu(xv, yv, log); }), yr);
    if (!log) {
      const char* names[] = {"variant plain", "variant prefetch", "variant two-exp",
                             "variant two-exp + stream", "variant prefetch + stream"};
      for (int v = 0; v < 5; ++v)
        report(names[v], best_ms(reps, [&] { softmax_variant(Sched(v), x, y, rows, n); }), yr);
    }
  }
  std::printf("-- rms_norm\n");
  rmsnorm_reference(xv, wv, 1e-6, rv, sv2);
  report("reference (scalar)", best_ms(reps, [&] { rmsnorm_reference(xv, wv, 1e-6, yv, sv); }), yr);
  report("rmsnorm_cpu", best_ms(reps, [&] { rmsnorm_cpu(xv, wv, 1e-6, yv, sv); }), yr);
  report("variant regular stores", best_ms(reps, [&] { rmsnorm_variant(false, x, w, y, rs, rows, n); }), yr);
  report("variant stream", best_ms(reps, [&] { rmsnorm_variant(true, x, w, y, rs, rows, n); }), yr);
  // What an op costs in Fovea when its output is freshly allocated (aligned_alloc + memset,
  // as storage_alloc does), for comparison with PyTorch, which allocates on every call.
  std::printf("-- with a fresh output storage per call (storage_alloc's aligned_alloc + memset)\n");
  auto fresh = [&](const std::function<void(float*)>& f) {
    return best_ms(reps, [&] {
      float* o = alloc_f32(total);
      f(o);
      std::free(o);
    });
  };
  report("softmax_cpu + alloc", fresh([&](float* o) { softmax_cpu(xv, make_view(o, DType::F32, {rows, n}), false); }), nullptr);
  report("rmsnorm_cpu + alloc", fresh([&](float* o) { rmsnorm_cpu(xv, wv, 1e-6, make_view(o, DType::F32, {rows, n}), sv); }), nullptr);
  std::free(x); std::free(y); std::free(yr); std::free(w); std::free(rs); std::free(rs2);
  return 0;
}

/* PyTorch side (run with the python that has torch; prints the same GB/s):
# PyTorch side of bench/nn_lab.cpp: same shapes, 2 threads, bytes = read x + write y.
import torch, time
torch.set_num_threads(2)
x = torch.randn(8192, 4096) * 3
w = 1 + 0.1 * torch.randn(4096)
y = torch.zeros_like(x)
def best(f, reps=10):
    for _ in range(3): f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)
gb = 2 * x.numel() * 4 / 1e9
def rms(x):  # HF Qwen2RMSNorm (f32 input: the casts are no-ops)
    v = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(v + 1e-6))
for name, f in [("torch.softmax", lambda: torch.softmax(x, -1)),
                ("aten._softmax.out (no alloc)", lambda: torch.ops.aten._softmax.out(x, -1, False, out=y)),
                ("torch.log_softmax", lambda: torch.log_softmax(x, -1)),
                ("aten._log_softmax.out (no alloc)", lambda: torch.ops.aten._log_softmax.out(x, -1, False, out=y)),
                ("HF RMSNorm (x.pow(2).mean, rsqrt, 2 muls)", lambda: rms(x))]:
    t = best(f)
    print(f"{name:44s} {t*1e3:8.2f} ms {gb/t:7.2f} GB/s")
*/
