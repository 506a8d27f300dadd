// The plain reference of paged attention (paged_attn.h): for each segment, query row and head,
// walk the sequence's tokens through its block table, materialize the f64 score row,
// softmax it, and sum the values. Every other path (CPU fast, CUDA) is tested against it.
#include <cmath>
#include <vector>
#include "ops/paged_attn/paged_attn.h"

namespace fovea {
namespace {

template <class T>
double ld(const void* base, int64_t i) { return double(load(static_cast<const T*>(base) + i)); }

template <class TQ, class TC>
void run(const PagedAttnParams& p) {
  const int group = p.hq / p.hkv, d = p.d, bs = p.block_size;
  std::vector<double> s, o(static_cast<size_t>(d));
  for (int b = 0; b < p.batch; ++b) {
    const int64_t q0 = p.cu_seqlens_q[b], qlen = p.cu_seqlens_q[b + 1] - q0, ctx = p.context_lens[b];
    const int32_t* table = p.block_tables + int64_t(b) * p.max_blocks_per_seq;
    for (int64_t i = 0; i < qlen; ++i) {
      const int64_t last = ctx - qlen + i;  // the last cached token query i sees
      for (int h = 0; h < p.hq; ++h) {
        const int g = h / group;
        const int64_t qoff = (q0 + i) * p.q_row_stride + int64_t(h) * p.q_head_stride;
        s.assign(size_t(last + 1), 0.0);
        double mx = -INFINITY;
        for (int64_t j = 0; j <= last; ++j) {
          const int64_t kv = ((int64_t(table[j / bs]) * bs + j % bs) * p.hkv + g) * d;
          double dot = 0;
          for (int c = 0; c < d; ++c) dot += ld<TQ>(p.q, qoff + c) * ld<TC>(p.k_cache, kv + c);
          s[size_t(j)] = dot * p.scale;
          mx = std::fmax(mx, s[size_t(j)]);
        }
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j <= last; ++j) {
          const int64_t kv = ((int64_t(table[j / bs]) * bs + j % bs) * p.hkv + g) * d;
          for (int c = 0; c < d; ++c) o[size_t(c)] += s[size_t(j)] * ld<TC>(p.v_cache, kv + c);
        }
        TQ* out = static_cast<TQ*>(p.out) + (q0 + i) * p.o_row_stride + int64_t(h) * p.o_head_stride;
        for (int c = 0; c < d; ++c) store(out + c, last < 0 ? 0.0 : o[size_t(c)] / sum);
      }
    }
  }
}

}  // namespace

void paged_attn_reference(const PagedAttnParams& p) {
  dispatch_float(p.q_dtype, [&](auto tq) {
    dispatch_float(p.cache_dtype, [&](auto tc) { run<decltype(tq), decltype(tc)>(p); });
  });
}

}  // namespace fovea
