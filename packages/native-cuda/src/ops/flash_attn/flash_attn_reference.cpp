// The plain, obviously-correct flash attention reference (flash_attn.h): f64 math, one
// score row at a time, loops in the order of the math. Every fast path (the tiled CPU
// kernel, the CUDA kernels) is tested against it; it also serves f64 inputs (gradcheck).
//
// Forward, per sequence b, query head h and query row i (sq queries, sk keys):
//   s_j = scale · q_i·k_j for visible j (mask in flash_attn.h), lse_i = log Σ_j exp(s_j),
//   out_i = Σ_j exp(s_j − lse_i) v_j; a row that sees no key gets out 0, lse +inf.
// Backward with P_ij = exp(s_ij − lse_i), D_i = dO_i·O_i:
//   dV_j += P_ij dO_i, dP_ij = dO_i·v_j, dS_ij = P_ij (dP_ij − D_i),
//   dQ_i += scale dS_ij k_j, dK_j += scale dS_ij q_i.
// Query heads of one KV head add into the same dK/dV rows (GQA), so dK/dV are summed in f64
// buffers and stored once at the end.
#include "ops/flash_attn/flash_attn.h"
#include <cmath>
#include <limits>
#include <vector>
#include "core/error.h"

namespace fovea {
namespace {

// Element (row, head, c) of a [total, heads, d] tensor with the given strides.
template <class T>
inline double at(const void* base, int64_t rs, int64_t hs, int64_t row, int h, int c) {
  return double(load(static_cast<const T*>(base) + row * rs + int64_t(h) * hs + c));
}

// Visible key range [lo, hi] (inclusive; empty when lo > hi) of query i.
inline void key_range(const FlashAttnParams& p, int64_t i, int64_t sq, int64_t sk, int64_t& lo,
                      int64_t& hi) {
  const int64_t diag = i + sk - sq;
  lo = 0;
  hi = sk - 1;
  if (p.causal) hi = std::min(hi, diag);
  if (p.window_left >= 0) lo = std::max<int64_t>(lo, diag - p.window_left);
  if (p.window_right >= 0) hi = std::min<int64_t>(hi, diag + p.window_right);
}

template <class T>
void fwd(const FlashAttnParams& p) {
  const int group = p.hq / p.hkv, d = p.d;
  std::vector<double> s, acc(d);
  for (int b = 0; b < p.batch; ++b) {
    const int64_t q0 = p.cu_seqlens_q[b], sq = p.cu_seqlens_q[b + 1] - q0;
    const int64_t k0 = p.cu_seqlens_k[b], sk = p.cu_seqlens_k[b + 1] - k0;
    for (int h = 0; h < p.hq; ++h) {
      const int g = h / group;
      for (int64_t i = 0; i < sq; ++i) {
        int64_t lo, hi;
        key_range(p, i, sq, sk, lo, hi);
        T* o = static_cast<T*>(p.out) + (q0 + i) * p.o_row_stride + int64_t(h) * p.o_head_stride;
        float* lse = p.lse + int64_t(h) * p.total_q + q0 + i;
        if (lo > hi) {
          for (int c = 0; c < d; ++c) store(o + c, 0.0);
          *lse = std::numeric_limits<float>::infinity();
          continue;
        }
        s.assign(size_t(hi - lo + 1), 0.0);
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = lo; j <= hi; ++j) {
          double dot = 0;
          for (int c = 0; c < d; ++c)
            dot += at<T>(p.q, p.q_row_stride, p.q_head_stride, q0 + i, h, c) *
                   at<T>(p.k, p.k_row_stride, p.k_head_stride, k0 + j, g, c);
          s[j - lo] = dot * double(p.scale);
          m = std::max(m, s[j - lo]);
        }
        double l = 0;
        for (double& x : s) l += std::exp(x - m);
        const double ls = m + std::log(l);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = lo; j <= hi; ++j) {
          const double pij = std::exp(s[j - lo] - ls);
          for (int c = 0; c < d; ++c)
            acc[c] += pij * at<T>(p.v, p.v_row_stride, p.v_head_stride, k0 + j, g, c);
        }
        for (int c = 0; c < d; ++c) store(o + c, acc[c]);
        *lse = float(ls);
      }
    }
  }
}

template <class T>
void bwd(const FlashAttnParams& p) {
  const int group = p.hq / p.hkv, d = p.d;
  // dK/dV accumulate over query rows and over the query heads of a group: f64 buffers.
  std::vector<double> dk(size_t(p.total_k) * p.hkv * d, 0.0), dv(dk.size(), 0.0), dq(d);
  std::vector<double> s;
  for (int b = 0; b < p.batch; ++b) {
    const int64_t q0 = p.cu_seqlens_q[b], sq = p.cu_seqlens_q[b + 1] - q0;
    const int64_t k0 = p.cu_seqlens_k[b], sk = p.cu_seqlens_k[b + 1] - k0;
    for (int h = 0; h < p.hq; ++h) {
      const int g = h / group;
      for (int64_t i = 0; i < sq; ++i) {
        const int64_t r = q0 + i;
        int64_t lo, hi;
        key_range(p, i, sq, sk, lo, hi);
        std::fill(dq.begin(), dq.end(), 0.0);
        // D_i = dO_i·O_i with O recomputed in f64 (the stored out may be rounded).
        s.assign(size_t(std::max<int64_t>(hi - lo + 1, 0)), 0.0);
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = lo; j <= hi; ++j) {
          double dot = 0;
          for (int c = 0; c < d; ++c)
            dot += at<T>(p.q, p.q_row_stride, p.q_head_stride, r, h, c) *
                   at<T>(p.k, p.k_row_stride, p.k_head_stride, k0 + j, g, c);
          s[j - lo] = dot * double(p.scale);
          m = std::max(m, s[j - lo]);
        }
        double l = 0;
        for (double x : s) l += std::exp(x - m);
        const double ls = m + std::log(l);
        double Di = 0;
        for (int c = 0; c < d; ++c) {
          double o = 0;
          for (int64_t j = lo; j <= hi; ++j)
            o += std::exp(s[j - lo] - ls) * at<T>(p.v, p.v_row_stride, p.v_head_stride, k0 + j, g, c);
          Di += o * at<T>(p.dout, p.o_row_stride, p.o_head_stride, r, h, c);
        }
        for (int64_t j = lo; j <= hi; ++j) {
          const double pij = std::exp(s[j - lo] - ls);
          double dp = 0;
          for (int c = 0; c < d; ++c)
            dp += at<T>(p.dout, p.o_row_stride, p.o_head_stride, r, h, c) *
                  at<T>(p.v, p.v_row_stride, p.v_head_stride, k0 + j, g, c);
          const double ds = pij * (dp - Di) * double(p.scale);
          double* dkj = dk.data() + ((k0 + j) * p.hkv + g) * d;
          double* dvj = dv.data() + ((k0 + j) * p.hkv + g) * d;
          for (int c = 0; c < d; ++c) {
            dvj[c] += pij * at<T>(p.dout, p.o_row_stride, p.o_head_stride, r, h, c);
            dkj[c] += ds * at<T>(p.q, p.q_row_stride, p.q_head_stride, r, h, c);
            dq[c] += ds * at<T>(p.k, p.k_row_stride, p.k_head_stride, k0 + j, g, c);
          }
        }
        T* dqr = static_cast<T*>(p.dq) + (r * p.hq + h) * d;
        for (int c = 0; c < d; ++c) store(dqr + c, dq[c]);
      }
    }
  }
  // Keys outside every sequence (none when cu_seqlens_k ends at total_k) stay zero too.
  T* dkp = static_cast<T*>(p.dk);
  T* dvp = static_cast<T*>(p.dv);
  for (size_t e = 0; e < dk.size(); ++e) {
    store(dkp + e, dk[e]);
    store(dvp + e, dv[e]);
  }
}

}  // namespace

void flash_attn_fwd_reference(const FlashAttnParams& p) {
  dispatch_float(p.dtype, [&](auto t) { fwd<decltype(t)>(p); });
}
void flash_attn_bwd_reference(const FlashAttnParams& p) {
  dispatch_float(p.dtype, [&](auto t) { bwd<decltype(t)>(p); });
}

}  // namespace fovea
