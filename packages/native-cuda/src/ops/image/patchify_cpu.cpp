// Normalize + patchify one resized image into its rows of the packed pixel_values (layout in
// image.h). The reference computes every element from the formula with explicit indices; the
// fast path uses a 256-entry table per channel (the same float arithmetic, so bit-identical),
// copies the first time step into the others, and splits merge-block rows over the pool.
#include <cstring>
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/image/image.h"

namespace fovea {
namespace {

// transformers: rescale = float32(float64(x) * (1/255)), then normalize in float32.
inline float normalize_u8(uint8_t x, float mean, float std) {
  const double rescale_factor = 1.0 / 255.0;
  const float r = float(double(x) * rescale_factor);
  return (r - mean) / std;
}

void check(const PatchifyParams& p) {
  FOVEA_CHECK(p.src && p.dst, "patchify: null pointer");
  FOVEA_CHECK(p.patch >= 1 && p.temporal >= 1 && p.merge >= 1,
              "patchify: patch, temporal and merge must be >= 1");
  const int64_t f = int64_t(p.patch) * p.merge;
  FOVEA_CHECK(p.h >= f && p.w >= f && p.h % f == 0 && p.w % f == 0, "patchify: image ", p.h,
              "x", p.w, " must have both sides positive multiples of patch*merge = ", f);
}

}  // namespace

void patchify_reference(const PatchifyParams& p) {
  check(p);
  const int64_t ps = p.patch, m = p.merge, T = p.temporal;
  const int64_t gh = p.h / ps, gw = p.w / ps, cols = 3 * T * ps * ps;
  for (int64_t bh = 0; bh < gh / m; ++bh)
    for (int64_t bw = 0; bw < gw / m; ++bw)
      for (int64_t mh = 0; mh < m; ++mh)
        for (int64_t mw = 0; mw < m; ++mw) {
          const int64_t row = ((bh * (gw / m) + bw) * m + mh) * m + mw;
          const int64_t y0 = (bh * m + mh) * ps, x0 = (bw * m + mw) * ps;
          for (int64_t c = 0; c < 3; ++c)
            for (int64_t t = 0; t < T; ++t)
              for (int64_t py = 0; py < ps; ++py)
                for (int64_t px = 0; px < ps; ++px) {
                  const uint8_t x = p.src[((y0 + py) * p.w + (x0 + px)) * 3 + c];
                  p.dst[row * cols + ((c * T + t) * ps + py) * ps + px] =
                      normalize_u8(x, p.mean[c], p.std[c]);
                }
        }
}

void patchify(const PatchifyParams& p) {
  check(p);
  const int64_t ps = p.patch, m = p.merge, T = p.temporal;
  const int64_t gh = p.h / ps, gw = p.w / ps, cols = 3 * T * ps * ps, plane = ps * ps;
  float lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut[c][v] = normalize_u8(uint8_t(v), p.mean[c], p.std[c]);
  // One task = one row of merge blocks (m patch rows of the image): disjoint output rows.
  parallel_for(0, gh / m, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t bh = b0; bh < b1; ++bh)
      for (int64_t bw = 0; bw < gw / m; ++bw)
        for (int64_t mh = 0; mh < m; ++mh)
          for (int64_t mw = 0; mw < m; ++mw) {
            float* out = p.dst + (((bh * (gw / m) + bw) * m + mh) * m + mw) * cols;
            const uint8_t* in = p.src + (((bh * m + mh) * ps) * p.w + (bw * m + mw) * ps) * 3;
            for (int64_t py = 0; py < ps; ++py) {
              const uint8_t* s = in + py * p.w * 3;
              float* o0 = out + py * ps;  // channel 0, time 0
              for (int64_t px = 0; px < ps; ++px) {
                o0[px] = lut[0][s[px * 3]];
                o0[T * plane + px] = lut[1][s[px * 3 + 1]];
                o0[2 * T * plane + px] = lut[2][s[px * 3 + 2]];
              }
            }
            for (int64_t c = 0; c < 3; ++c)
              for (int64_t t = 1; t < T; ++t)
                std::memcpy(out + (c * T + t) * plane, out + c * T * plane, sizeof(float) * plane);
          }
  });
}

}  // namespace fovea
