// GEMM kernel lab (llm.c dev/cuda style): a standalone main that validates gemm_cpu against
// gemm_reference, then times GFLOP/s for the target shapes, with knobs to try variants.
// Not part of the CMake build. Compile by hand from packages/native-cuda:
//   g++ -O3 -std=c++17 -Isrc bench/gemm_lab.cpp src/ops/matmul/*.cpp
//       src/core/thread_pool.cpp src/core/cpu_features.cpp -lpthread -o /tmp/gemm_lab
//   (one command line)
// Usage:
//   /tmp/gemm_lab                      validate, then time the default shape list
//   /tmp/gemm_lab M K N [M K N ...]    time these shapes
// Environment: FOVEA_NUM_THREADS, FOVEA_ISA (portable|avx2|avx512),
//   LAB_MC / LAB_KC / LAB_NC   force the cache blocking (see gemm::set_blocking_override)
//   LAB_ORDER=0|1              jr outside ir (B micro-panel in L1) | ir outside jr
//   LAB_KERNEL=name            time a variant micro-kernel defined below instead of isa()'s
//   LAB_REPS=n                 timed repetitions (best of n is reported)
// Results and the variants tried live in src/ops/matmul/NOTES.md.
#include <immintrin.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "ops/matmul/gemm_internal.h"
#include "ops/matmul/matmul.h"

using namespace fovea;

// ---------------------------------------------------------------- variant micro-kernels
// Same contract as gemm::MicroKernel. Generic over MR×(16·NV) so shapes can be compared.
template <int MR, int NV>
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void kernel_var(
    int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float beta) {
  __m512 acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(bp + 16 * v);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
    }
    ap += MR;
    bp += 16 * NV;
  }
  const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* p = c + i * ldc + 16 * v;
      if (beta == 0.f) _mm512_storeu_ps(p, acc[i][v]);
      else _mm512_storeu_ps(p, _mm512_fmadd_ps(vb, _mm512_loadu_ps(p), acc[i][v]));
    }
}

gemm::KernelInfo pick_kernel() {
  const char* e = std::getenv("LAB_KERNEL");
  if (!e) return gemm::kernel_for(isa());
  std::string n = e;
  if (n == "12x32") return {kernel_var<12, 2>, 12, 32, "var 12x32"};
  if (n == "14x32") return {kernel_var<14, 2>, 14, 32, "var 14x32"};
  if (n == "8x48") return {kernel_var<8, 3>, 8, 48, "var 8x48"};
  if (n == "6x64") return {kernel_var<6, 4>, 6, 64, "var 6x64"};
  if (n == "7x64") return {kernel_var<7, 4>, 7, 64, "var 7x64"};
  if (n == "avx2") return gemm::kernel_avx2();
  if (n == "portable") return gemm::kernel_portable();
  std::fprintf(stderr, "unknown LAB_KERNEL %s\n", e);
  std::exit(2);
}

// ---------------------------------------------------------------- driver
// Row-major f32 problem; `kern` overrides the micro-kernel via the serial entry when set.
struct Problem {
  int64_t M, K, N;
  std::vector<float> a, b, c;
  GemmParams p;
  // LAB_PAD=p pads C's row stride to N + p floats (to see what power-of-two strides cost).
  Problem(int64_t M_, int64_t K_, int64_t N_)
      : M(M_), K(K_), N(N_), a(M * K), b(K * N), c(M * (N + pad())) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (auto& x : a) x = u(rng);
    for (auto& x : b) x = u(rng);
    p.a = a.data(); p.b = b.data(); p.c = c.data();
    p.M = M; p.N = N; p.K = K;
    p.a_rs = K; p.a_cs = 1; p.b_rs = N; p.b_cs = 1; p.c_rs = N + pad(); p.c_cs = 1;
  }
  static int64_t pad() { const char* e = std::getenv("LAB_PAD"); return e ? std::atoll(e) : 0; }
};

// Runs gemm_cpu, or (with LAB_KERNEL) the same row split over threads with the variant.
void run(const GemmParams& p, const gemm::KernelInfo* variant) {
  if (!variant) return gemm_cpu(p);
  const int nt = num_threads();
  const int64_t tiles = (p.M + variant->mr - 1) / variant->mr;
  const int64_t step = (tiles + nt - 1) / nt * variant->mr;
  parallel_for(0, (p.M + step - 1) / step, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      GemmParams s = p;
      const int64_t m0 = t * step, m1 = std::min(p.M, m0 + step);
      s.a = static_cast<const float*>(p.a) + m0 * p.a_rs;
      s.c = static_cast<float*>(p.c) + m0 * p.c_rs;
      s.M = m1 - m0;
      gemm::gemm_blocked_serial(s, *variant);
    }
  });
}

bool validate(const gemm::KernelInfo* variant) {
  bool ok = true;
  const int64_t shapes[][3] = {{1, 1, 1}, {37, 53, 71}, {128, 300, 257}, {333, 1000, 129}};
  for (auto& s : shapes) {
    Problem pr(s[0], s[1], s[2]);
    std::vector<float> ref(pr.c.size());  // (validate without LAB_PAD: compares all of c)
    GemmParams rp = pr.p;
    rp.c = ref.data();
    gemm_reference(rp);
    run(pr.p, variant);
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      worst = std::max(worst, std::fabs(double(pr.c[i]) - ref[i]) / (std::sqrt(double(pr.K)) + 1));
    const bool good = worst < 1e-5 * pr.K;
    std::printf("validate %4ldx%4ldx%4ld: max err/sqrt(K) %.2e %s\n", long(s[0]), long(s[1]),
                long(s[2]), worst, good ? "ok" : "FAIL");
    ok = ok && good;
  }
  return ok;
}

double time_shape(int64_t M, int64_t K, int64_t N, const gemm::KernelInfo* variant, int reps) {
  Problem pr(M, K, N);
  run(pr.p, variant);  // warm-up: pages, packing buffers, thread pool
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    run(pr.p, variant);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * double(M) * double(N) * double(K) / best / 1e9;
}

int main(int argc, char** argv) {
  const int reps = std::getenv("LAB_REPS") ? std::atoi(std::getenv("LAB_REPS")) : 10;
  auto env = [](const char* n) { const char* e = std::getenv(n); return e ? std::atoll(e) : 0LL; };
  gemm::set_blocking_override(env("LAB_MC"), env("LAB_KC"), env("LAB_NC"),
                              std::getenv("LAB_ORDER") ? int(env("LAB_ORDER")) : -1);
  gemm::KernelInfo vk{};
  const gemm::KernelInfo* variant = nullptr;
  if (std::getenv("LAB_KERNEL")) { vk = pick_kernel(); variant = &vk; }
  const gemm::KernelInfo shown = variant ? vk : gemm::kernel_for(isa());
  const gemm::Blocking bl = gemm::blocking_for(shown);
  std::printf("kernel %s, isa %s, threads %d, mc %ld kc %ld nc %ld rows_outer %d\n", shown.name,
              isa_name(isa()), num_threads(), long(bl.mc), long(bl.kc), long(bl.nc), int(bl.rows_outer));
  std::vector<int64_t> shapes;
  for (int i = 1; i + 2 < argc; i += 3)
    for (int j = 0; j < 3; ++j) shapes.push_back(std::atoll(argv[i + j]));
  if (shapes.empty()) {
    if (!validate(variant)) return 1;
    shapes = {1024, 1024, 1024, 4096, 1024, 4096, 512, 512, 512, 2048, 2048, 2048,
              256, 4096, 256, 4096, 256, 1024, 1, 4096, 4096};
  }
  for (size_t i = 0; i < shapes.size(); i += 3)
    std::printf("M=%5ld K=%5ld N=%5ld  %7.1f GFLOP/s\n", long(shapes[i]), long(shapes[i + 1]),
                long(shapes[i + 2]), time_shape(shapes[i], shapes[i + 1], shapes[i + 2], variant, reps));
  return 0;
}
