// Pillow-exact bicubic resize on uint8 (see image.h for the arithmetic). The reference is a
// plain transcription: taps, horizontal pass, vertical pass, one thread. The fast path keeps
// the same integer arithmetic, so it is bit-identical, and gets its speed from layout:
//   - horizontal pass: 16 source rows at a time are transposed to [x·C + c][16] (bytes),
//     so one output sample of 16 rows is a tap loop over 16-lane int32 vectors;
//   - vertical pass: each output row is a tap loop over contiguous 16-byte runs;
//   - both passes split rows over the thread pool; AVX2 / AVX-512 intrinsics chosen by isa()
//     (int32 mullo + add: exact), the portable path is the scalar loop. Off x86-64 the SIMD
//     passes are not compiled and the scalar ones always run.
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/image/image.h"

namespace fovea {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS
constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

// Pillow's bicubic_filter with a = -0.5, same expression order (the taps must round alike).
double bicubic_filter(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Taps of one axis: output i reads inputs [first[i], first[i] + count[i]) with weights
// k[i·ksize + j] (22-bit fixed point). Mirrors Pillow's precompute_coeffs (box = whole image)
// followed by normalize_coeffs_8bpc. Kept out of SIMD-targeted code so no FMA contraction
// can change a rounding.
struct Taps {
  int ksize = 0;
  std::vector<int32_t> first, count, k;
};

__attribute__((noinline)) Taps make_taps(int64_t in_size, int64_t out_size) {
  const double support_unit = 2.0;  // BICUBIC support
  double scale = double(float(in_size) - float(0)) / double(out_size);
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = support_unit * filterscale;
  Taps t;
  t.ksize = int(std::ceil(support)) * 2 + 1;
  t.first.resize(size_t(out_size));
  t.count.resize(size_t(out_size));
  t.k.assign(size_t(out_size) * size_t(t.ksize), 0);
  std::vector<double> w(size_t(t.ksize));
  for (int64_t xx = 0; xx < out_size; ++xx) {
    double center = 0.0 + (double(xx) + 0.5) * scale;
    double ss = 1.0 / filterscale;
    int64_t xmin = int64_t(center - support + 0.5);  // C cast: truncation toward zero
    if (xmin < 0) xmin = 0;
    int64_t xmax = int64_t(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      double v = bicubic_filter((double(x + xmin) - center + 0.5) * ss);
      w[size_t(x)] = v;
      ww += v;
    }
    for (int64_t x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? w[size_t(x)] / ww : w[size_t(x)];
      t.k[size_t(xx * t.ksize + x)] =
          v < 0 ? int32_t(-0.5 + v * (1 << kPrecisionBits)) : int32_t(0.5 + v * (1 << kPrecisionBits));
    }
    t.first[size_t(xx)] = int32_t(xmin);
    t.count[size_t(xx)] = int32_t(xmax);
  }
  return t;
}

inline uint8_t clip8(int32_t acc) {
  int32_t v = acc >> kPrecisionBits;
  return uint8_t(v < 0 ? 0 : (v > 255 ? 255 : v));
}

void check(const ResizeParams& p) {
  FOVEA_CHECK(p.src && p.dst, "resizeBicubic: null image pointer");
  FOVEA_CHECK(p.src_h >= 1 && p.src_w >= 1 && p.dst_h >= 1 && p.dst_w >= 1,
              "resizeBicubic: sizes must be >= 1, got ", p.src_h, "x", p.src_w, " -> ", p.dst_h,
              "x", p.dst_w);
  FOVEA_CHECK(p.channels >= 1 && p.channels <= 4, "resizeBicubic: channels must be 1..4, got ",
              p.channels);
}

// Which source rows the vertical pass reads: [band_first, band_last).
void band_of(const Taps& tv, int64_t dst_h, int64_t& band_first, int64_t& band_last) {
  band_first = tv.first[0];
  band_last = tv.first[size_t(dst_h - 1)] + tv.count[size_t(dst_h - 1)];
}

// ---------------------------------------------------------------------------------------
// Fast path. Portable: the reference loops per row range (threads only). AVX2 / AVX-512:
// intrinsics; int32 mullo/add is exact, so every ISA gives the reference's bytes.
constexpr int kRows = 16;  // rows per horizontal block = int32 lanes of one zmm

// Horizontal pass, scalar, band rows [r0, r1): out row r = resample of src row (row0 + r).
template <int C>
void hpass_scalar(const uint8_t* src, int64_t src_w, int64_t row0, uint8_t* out, int64_t dst_w,
                  const Taps& th, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* s = src + (row0 + r) * src_w * C;
    uint8_t* o = out + r * dst_w * C;
    for (int64_t xx = 0; xx < dst_w; ++xx) {
      const int32_t* k = th.k.data() + xx * th.ksize;
      const uint8_t* p = s + int64_t(th.first[size_t(xx)]) * C;
      int32_t acc[C];
      for (int c = 0; c < C; ++c) acc[c] = kHalf;
      for (int j = 0; j < th.count[size_t(xx)]; ++j)
        for (int c = 0; c < C; ++c) acc[c] += int32_t(p[j * C + c]) * k[j];
      for (int c = 0; c < C; ++c) o[xx * C + c] = clip8(acc[c]);
    }
  }
}

void vpass_scalar(const uint8_t* in, int64_t len, uint8_t* out, const Taps& tv, int64_t row_shift,
                  int64_t y0, int64_t y1) {
  for (int64_t yy = y0; yy < y1; ++yy) {
    const int32_t* k = tv.k.data() + yy * tv.ksize;
    const uint8_t* base = in + (tv.first[size_t(yy)] - row_shift) * len;
    for (int64_t i = 0; i < len; ++i) {
      int32_t acc = kHalf;
      for (int j = 0; j < tv.count[size_t(yy)]; ++j) acc += int32_t(base[j * len + i]) * k[j];
      out[yy * len + i] = clip8(acc);
    }
  }
}

#if defined(__x86_64__)  // the SIMD passes; other architectures use the scalar ones
// 16×16 byte transpose (SSE2): in a[r] = 16 bytes of row r; out a[i] = byte i of every row.
inline void transpose16x16(__m128i a[16]) {
  __m128i b[16], c[16], d[16];
  for (int p = 0; p < 8; ++p) {
    b[2 * p] = _mm_unpacklo_epi8(a[2 * p], a[2 * p + 1]);      // rows 2p, 2p+1; cols 0-7
    b[2 * p + 1] = _mm_unpackhi_epi8(a[2 * p], a[2 * p + 1]);  // cols 8-15
  }
  for (int q = 0; q < 4; ++q) {  // c[4q + g]: rows 4q..4q+3, cols 4g..4g+3
    c[4 * q + 0] = _mm_unpacklo_epi16(b[4 * q], b[4 * q + 2]);
    c[4 * q + 1] = _mm_unpackhi_epi16(b[4 * q], b[4 * q + 2]);
    c[4 * q + 2] = _mm_unpacklo_epi16(b[4 * q + 1], b[4 * q + 3]);
    c[4 * q + 3] = _mm_unpackhi_epi16(b[4 * q + 1], b[4 * q + 3]);
  }
  for (int h = 0; h < 2; ++h)  // d[8h + m]: rows 8h..8h+7, cols 2m, 2m+1
    for (int g = 0; g < 4; ++g) {
      d[8 * h + 2 * g] = _mm_unpacklo_epi32(c[8 * h + g], c[8 * h + 4 + g]);
      d[8 * h + 2 * g + 1] = _mm_unpackhi_epi32(c[8 * h + g], c[8 * h + 4 + g]);
    }
  for (int m = 0; m < 8; ++m) {
    a[2 * m] = _mm_unpacklo_epi64(d[m], d[8 + m]);
    a[2 * m + 1] = _mm_unpackhi_epi64(d[m], d[8 + m]);
  }
}

// Transposes band rows [rb, rb + nr) into tr[i][16] (i = x·C + c); rows past nr read zeros.
inline void transpose_rows(const uint8_t* src, int64_t row_len, int64_t row0, int64_t rb, int nr,
                           const uint8_t* zero_row, uint8_t* tr) {
  const uint8_t* rows[kRows];
  for (int r = 0; r < kRows; ++r) rows[r] = r < nr ? src + (row0 + rb + r) * row_len : zero_row;
  int64_t i = 0;
  for (; i + 16 <= row_len; i += 16) {
    __m128i a[16];
    for (int r = 0; r < kRows; ++r) a[r] = _mm_loadu_si128((const __m128i*)(rows[r] + i));
    transpose16x16(a);
    for (int k = 0; k < 16; ++k) _mm_storeu_si128((__m128i*)(tr + (i + k) * kRows), a[k]);
  }
  for (; i < row_len; ++i)
    for (int r = 0; r < kRows; ++r) tr[i * kRows + r] = rows[r][i];
}

inline void scatter_rows(const int32_t* v, uint8_t* o, int64_t stride, int nr) {
  for (int r = 0; r < nr; ++r) o[r * stride] = uint8_t(v[r]);
}

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define AVX2 __attribute__((target("avx2")))

template <int C>
AVX512 void hpass_avx512(const uint8_t* src, int64_t src_w, int64_t row0, uint8_t* out,
                         int64_t dst_w, const Taps& th, int64_t r0, int64_t r1) {
  const int64_t row_len = src_w * C;
  std::vector<uint8_t> tr(size_t(row_len) * kRows), zero_row(size_t(row_len), 0);
  const __m512i half = _mm512_set1_epi32(kHalf), zero = _mm512_setzero_si512(),
                top = _mm512_set1_epi32(255);
  alignas(64) int32_t lanes[kRows];
  for (int64_t rb = r0; rb < r1; rb += kRows) {
    const int nr = int(std::min<int64_t>(kRows, r1 - rb));
    transpose_rows(src, row_len, row0, rb, nr, zero_row.data(), tr.data());
    for (int64_t xx = 0; xx < dst_w; ++xx) {
      const int32_t* k = th.k.data() + xx * th.ksize;
      const int cnt = th.count[size_t(xx)];
      for (int c = 0; c < C; ++c) {
        const uint8_t* col = tr.data() + (int64_t(th.first[size_t(xx)]) * C + c) * kRows;
        __m512i acc = half;
        for (int j = 0; j < cnt; ++j) {
          __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(col + j * C * kRows)));
          acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(v, _mm512_set1_epi32(k[j])));
        }
        acc = _mm512_min_epi32(_mm512_max_epi32(_mm512_srai_epi32(acc, kPrecisionBits), zero), top);
        _mm512_store_si512(lanes, acc);
        scatter_rows(lanes, out + (rb * dst_w + xx) * C + c, dst_w * C, nr);
      }
    }
  }
}

template <int C>
AVX2 void hpass_avx2(const uint8_t* src, int64_t src_w, int64_t row0, uint8_t* out, int64_t dst_w,
                     const Taps& th, int64_t r0, int64_t r1) {
  const int64_t row_len = src_w * C;
  std::vector<uint8_t> tr(size_t(row_len) * kRows), zero_row(size_t(row_len), 0);
  const __m256i half = _mm256_set1_epi32(kHalf), zero = _mm256_setzero_si256(),
                top = _mm256_set1_epi32(255);
  alignas(32) int32_t lanes[kRows];
  for (int64_t rb = r0; rb < r1; rb += kRows) {
    const int nr = int(std::min<int64_t>(kRows, r1 - rb));
    transpose_rows(src, row_len, row0, rb, nr, zero_row.data(), tr.data());
    for (int64_t xx = 0; xx < dst_w; ++xx) {
      const int32_t* k = th.k.data() + xx * th.ksize;
      const int cnt = th.count[size_t(xx)];
      for (int c = 0; c < C; ++c) {
        const uint8_t* col = tr.data() + (int64_t(th.first[size_t(xx)]) * C + c) * kRows;
        __m256i a0 = half, a1 = half;
        for (int j = 0; j < cnt; ++j) {
          const __m256i kj = _mm256_set1_epi32(k[j]);
          const uint8_t* q = col + j * C * kRows;
          a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)q)), kj));
          a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(q + 8))), kj));
        }
        a0 = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(a0, kPrecisionBits), zero), top);
        a1 = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(a1, kPrecisionBits), zero), top);
        _mm256_store_si256((__m256i*)lanes, a0);
        _mm256_store_si256((__m256i*)(lanes + 8), a1);
        scatter_rows(lanes, out + (rb * dst_w + xx) * C + c, dst_w * C, nr);
      }
    }
  }
}

AVX512 void vpass_avx512(const uint8_t* in, int64_t len, uint8_t* out, const Taps& tv,
                         int64_t row_shift, int64_t y0, int64_t y1) {
  const __m512i half = _mm512_set1_epi32(kHalf), zero = _mm512_setzero_si512(),
                top = _mm512_set1_epi32(255);
  for (int64_t yy = y0; yy < y1; ++yy) {
    const int32_t* k = tv.k.data() + yy * tv.ksize;
    const uint8_t* base = in + (tv.first[size_t(yy)] - row_shift) * len;
    const int cnt = tv.count[size_t(yy)];
    uint8_t* o = out + yy * len;
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
      __m512i a0 = half, a1 = half;
      for (int j = 0; j < cnt; ++j) {
        const __m512i kj = _mm512_set1_epi32(k[j]);
        const uint8_t* q = base + j * len + i;
        a0 = _mm512_add_epi32(a0, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)q)), kj));
        a1 = _mm512_add_epi32(a1, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(q + 16))), kj));
      }
      a0 = _mm512_min_epi32(_mm512_max_epi32(_mm512_srai_epi32(a0, kPrecisionBits), zero), top);
      a1 = _mm512_min_epi32(_mm512_max_epi32(_mm512_srai_epi32(a1, kPrecisionBits), zero), top);
      _mm_storeu_si128((__m128i*)(o + i), _mm512_cvtepi32_epi8(a0));
      _mm_storeu_si128((__m128i*)(o + i + 16), _mm512_cvtepi32_epi8(a1));
    }
    for (; i < len; ++i) {
      int32_t acc = kHalf;
      for (int j = 0; j < cnt; ++j) acc += int32_t(base[j * len + i]) * k[j];
      o[i] = clip8(acc);
    }
  }
}

AVX2 void vpass_avx2(const uint8_t* in, int64_t len, uint8_t* out, const Taps& tv,
                     int64_t row_shift, int64_t y0, int64_t y1) {
  const __m256i half = _mm256_set1_epi32(kHalf);
  for (int64_t yy = y0; yy < y1; ++yy) {
    const int32_t* k = tv.k.data() + yy * tv.ksize;
    const uint8_t* base = in + (tv.first[size_t(yy)] - row_shift) * len;
    const int cnt = tv.count[size_t(yy)];
    uint8_t* o = out + yy * len;
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
      __m256i a0 = half, a1 = half;
      for (int j = 0; j < cnt; ++j) {
        const __m256i kj = _mm256_set1_epi32(k[j]);
        const uint8_t* q = base + j * len + i;
        a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)q)), kj));
        a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(q + 8))), kj));
      }
      // >> 22, then saturating packs: int32 → int16 (signed sat) → uint8 (unsigned sat)
      // clamps to [0, 255] exactly as clip8 does.
      a0 = _mm256_srai_epi32(a0, kPrecisionBits);
      a1 = _mm256_srai_epi32(a1, kPrecisionBits);
      __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(a0, a1), 0xD8);
      __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
      _mm_storeu_si128((__m128i*)(o + i), b);
    }
    for (; i < len; ++i) {
      int32_t acc = kHalf;
      for (int j = 0; j < cnt; ++j) acc += int32_t(base[j * len + i]) * k[j];
      o[i] = clip8(acc);
    }
  }
}

#endif  // __x86_64__

using HPass = void (*)(const uint8_t*, int64_t, int64_t, uint8_t*, int64_t, const Taps&, int64_t, int64_t);
using VPass = void (*)(const uint8_t*, int64_t, uint8_t*, const Taps&, int64_t, int64_t, int64_t);

template <int C> HPass pick_hpass(Isa level) {
#if defined(__x86_64__)
  return level == Isa::Avx512 ? hpass_avx512<C> : level == Isa::Avx2 ? hpass_avx2<C> : hpass_scalar<C>;
#else
  return hpass_scalar<C>;  // isa() is Portable off x86-64
#endif
}
VPass pick_vpass(Isa level) {
#if defined(__x86_64__)
  return level == Isa::Avx512 ? vpass_avx512 : level == Isa::Avx2 ? vpass_avx2 : vpass_scalar;
#else
  return vpass_scalar;
#endif
}
HPass pick_hpass(Isa level, int C) {
  switch (C) {
    case 1: return pick_hpass<1>(level);
    case 2: return pick_hpass<2>(level);
    case 3: return pick_hpass<3>(level);
    default: return pick_hpass<4>(level);
  }
}

}  // namespace

void resize_bicubic_u8_reference(const ResizeParams& p) {
  check(p);
  const int C = p.channels;
  if (p.src_h == p.dst_h && p.src_w == p.dst_w) {  // Image.resize returns a copy
    std::memcpy(p.dst, p.src, size_t(p.src_h * p.src_w * C));
    return;
  }
  const bool need_h = p.dst_w != p.src_w, need_v = p.dst_h != p.src_h;
  Taps th = make_taps(p.src_w, p.dst_w), tv = make_taps(p.src_h, p.dst_h);
  int64_t band_first, band_last;
  band_of(tv, p.dst_h, band_first, band_last);
  const uint8_t* cur = p.src;
  int64_t cur_w = p.src_w, row_shift = 0;
  std::vector<uint8_t> tmp;
  if (need_h) {
    const int64_t band = band_last - band_first;
    uint8_t* out = need_v ? (tmp.resize(size_t(band * p.dst_w * C)), tmp.data()) : p.dst;
    for (int64_t y = 0; y < band; ++y)
      for (int64_t xx = 0; xx < p.dst_w; ++xx)
        for (int c = 0; c < C; ++c) {
          int32_t acc = kHalf;
          for (int j = 0; j < th.count[size_t(xx)]; ++j)
            acc += int32_t(p.src[((band_first + y) * p.src_w + th.first[size_t(xx)] + j) * C + c]) *
                   th.k[size_t(xx * th.ksize + j)];
          out[(y * p.dst_w + xx) * C + c] = clip8(acc);
        }
    cur = out;
    cur_w = p.dst_w;
    row_shift = band_first;
  }
  if (need_v) {
    for (int64_t yy = 0; yy < p.dst_h; ++yy)
      for (int64_t x = 0; x < cur_w * C; ++x) {
        int32_t acc = kHalf;
        for (int j = 0; j < tv.count[size_t(yy)]; ++j)
          acc += int32_t(cur[(tv.first[size_t(yy)] - row_shift + j) * cur_w * C + x]) *
                 tv.k[size_t(yy * tv.ksize + j)];
        p.dst[yy * cur_w * C + x] = clip8(acc);
      }
  }
}

void resize_bicubic_u8(const ResizeParams& p) {
  check(p);
  const int C = p.channels;
  if (p.src_h == p.dst_h && p.src_w == p.dst_w) {
    std::memcpy(p.dst, p.src, size_t(p.src_h * p.src_w * C));
    return;
  }
  const Isa level = isa();
  const HPass hpass = pick_hpass(level, C);
  const VPass vpass = pick_vpass(level);
  const bool need_h = p.dst_w != p.src_w, need_v = p.dst_h != p.src_h;
  Taps th = make_taps(p.src_w, p.dst_w), tv = make_taps(p.src_h, p.dst_h);
  int64_t band_first, band_last;
  band_of(tv, p.dst_h, band_first, band_last);
  const uint8_t* cur = p.src;
  int64_t row_shift = 0, cur_w = p.src_w;
  std::vector<uint8_t> tmp;
  if (need_h) {
    const int64_t band = band_last - band_first;
    uint8_t* out = need_v ? (tmp.resize(size_t(band * p.dst_w * C)), tmp.data()) : p.dst;
    // Chunks are whole 16-row blocks so every block but the last is full.
    const int64_t blocks = (band + kRows - 1) / kRows;
    parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      hpass(p.src, p.src_w, band_first, out, p.dst_w, th, b0 * kRows,
            std::min(band, b1 * kRows));
    });
    cur = out;
    row_shift = band_first;
    cur_w = p.dst_w;
  }
  if (need_v) {
    const int64_t len = cur_w * C;
    parallel_for(0, p.dst_h, 4, [&](int64_t y0, int64_t y1) {
      vpass(cur, len, p.dst, tv, row_shift, y0, y1);
    });
  }
}

}  // namespace fovea
