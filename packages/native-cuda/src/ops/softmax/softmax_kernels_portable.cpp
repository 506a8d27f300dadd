// Portable f32 row primitives (the table declared in softmax.h): plain C++ with std::exp.
// This is what every non-x86 build and FOVEA_ISA=portable runs, and the readable statement of
// what the AVX2 / AVX-512 primitives compute (the prefetch and streaming hints are ignored).
// Sums use 8 partial accumulators (as reduce_cpu.cpp does), which the compiler vectorizes
// and which round like a shallow tree.
#include <cmath>
#include <limits>
#include "ops/softmax/softmax.h"

namespace fovea {
namespace {

float max_p(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

template <class F>
float sum8(int64_t n, F term) {
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) part[k] += term(i + k);
  float s = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (; i < n; ++i) s += term(i);
  return s;
}

float sum_exp_p(const float* x, int64_t n, float shift, const float* /*ahead*/) {
  return sum8(n, [&](int64_t i) { return std::exp(x[i] - shift); });
}

float exp_store_sum_p(const float* x, float* y, int64_t n, float shift, const float* /*ahead*/) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i] - shift);
  return sum8(n, [&](int64_t i) { return y[i]; });
}

void exp_scale_p(const float* x, float* y, int64_t n, float shift, float scale) {
  for (int64_t i = 0; i < n; ++i) y[i] = scale * std::exp(x[i] - shift);
}

void scale_store_p(const float* x, float* y, int64_t n, float s, bool /*stream*/) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}

void sub2_p(const float* x, float* y, int64_t n, float a, float b, bool /*stream*/) {
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - a) - b;
}

}  // namespace

const SoftmaxRowKernels& softmax_kernels_portable() {
  static const SoftmaxRowKernels k{max_p, sum_exp_p, exp_store_sum_p, exp_scale_p,
                                   scale_store_p, sub2_p, "portable"};
  return k;
}

}  // namespace fovea
