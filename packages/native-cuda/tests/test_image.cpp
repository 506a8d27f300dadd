// Tests for the image kernels (ops/image): the fast resize and patchify against their plain
// references on fresh random images, for every ISA the CPU has and for 1 and N threads. Both
// are integer / table arithmetic, so the comparison is exact (every byte, every float bit).
// Pillow-exactness itself is checked in TS against Pillow's own output
// (packages/models/test/processor.test.ts).
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "harness.h"
#include "ops/image/image.h"

using namespace fovea;

namespace {

std::vector<uint8_t> random_image(int64_t h, int64_t w, int c, std::mt19937& rng) {
  std::vector<uint8_t> img(size_t(h * w * c));
  // Noise plus a gradient: sharp edges drive the negative lobes into clipping.
  for (int64_t i = 0; i < h * w * c; ++i)
    img[size_t(i)] = uint8_t((rng() % 3 == 0) ? (rng() & 255) : ((i / c) % w) * 255 / w);
  return img;
}

std::vector<Isa> isas() {
  std::vector<Isa> out{Isa::Portable};
  Isa best = isa();
  if (best >= Isa::Avx2) out.push_back(Isa::Avx2);
  if (best >= Isa::Avx512) out.push_back(Isa::Avx512);
  return out;
}

}  // namespace

FOVEA_TEST(image_resize_fast_matches_reference) {
  std::mt19937 rng(7);
  // (src_h, src_w, dst_h, dst_w, channels): down, up, mixed, one axis only, 1-pixel sides,
  // widths that are not multiples of 16 and bands with a partial 16-row block.
  const int64_t cases[][5] = {{300, 1200, 196, 868, 3}, {30, 45, 56, 84, 3},  {1100, 250, 924, 196, 3},
                              {97, 131, 97, 57, 3},     {97, 131, 40, 131, 3}, {1, 5, 3, 7, 3},
                              {40, 6000, 28, 5992, 3},  {17, 33, 51, 12, 1},   {64, 64, 64, 64, 3},
                              {23, 19, 5, 31, 4}};
  const Isa saved = isa();
  const int threads = num_threads();
  for (auto& c : cases) {
    auto src = random_image(c[0], c[1], int(c[4]), rng);
    ResizeParams p;
    p.src = src.data(); p.src_h = c[0]; p.src_w = c[1]; p.dst_h = c[2]; p.dst_w = c[3];
    p.channels = int(c[4]);
    std::vector<uint8_t> want(size_t(c[2] * c[3] * c[4])), got(want.size());
    p.dst = want.data();
    resize_bicubic_u8_reference(p);
    for (Isa level : isas()) {
      for (int nt : {1, threads > 1 ? threads : 2}) {
        set_isa_cap(level);
        set_num_threads(nt);
        std::fill(got.begin(), got.end(), 0xAB);
        p.dst = got.data();
        resize_bicubic_u8(p);
        size_t bad = 0;
        for (size_t i = 0; i < got.size(); ++i) bad += got[i] != want[i];
        if (bad)
          fovea_test::report(__FILE__, __LINE__, std::to_string(bad) + " bytes differ for case " +
                             std::to_string(c[0]) + "x" + std::to_string(c[1]) + " -> " +
                             std::to_string(c[2]) + "x" + std::to_string(c[3]) + " isa " +
                             isa_name(level));
      }
    }
  }
  set_isa_cap(saved);
  set_num_threads(threads);
}

FOVEA_TEST(image_resize_known_values) {
  // A constant image stays constant through any resize (taps sum to one in fixed point up to
  // rounding, and Pillow's rounding keeps 0 and 255 exact for a flat field).
  for (uint8_t v : {uint8_t(0), uint8_t(77), uint8_t(255)}) {
    std::vector<uint8_t> src(size_t(50 * 70 * 3), v), dst(size_t(28 * 112 * 3));
    ResizeParams p;
    p.src = src.data(); p.dst = dst.data(); p.src_h = 50; p.src_w = 70; p.dst_h = 28; p.dst_w = 112;
    resize_bicubic_u8(p);
    for (uint8_t b : dst) EXPECT_TRUE(b == v);
  }
  std::vector<uint8_t> one(3, 9), out(6);
  ResizeParams bad;
  bad.src = one.data(); bad.dst = out.data(); bad.src_h = 0; bad.src_w = 1; bad.dst_h = 1; bad.dst_w = 2;
  EXPECT_THROWS(resize_bicubic_u8(bad));
}

FOVEA_TEST(image_patchify_fast_matches_reference) {
  std::mt19937 rng(11);
  const int64_t sizes[][2] = {{28, 28}, {56, 84}, {924, 196}, {28, 5992}};
  const int threads = num_threads();
  for (auto& s : sizes) {
    auto src = random_image(s[0], s[1], 3, rng);
    PatchifyParams p;
    p.src = src.data(); p.h = s[0]; p.w = s[1];
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std_[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    std::memcpy(p.mean, mean, sizeof mean);
    std::memcpy(p.std, std_, sizeof std_);
    const int64_t n = (s[0] / 14) * (s[1] / 14) * 1176;
    std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
    p.dst = want.data();
    patchify_reference(p);
    for (int nt : {1, threads > 1 ? threads : 2}) {
      set_num_threads(nt);
      std::fill(got.begin(), got.end(), -999.f);
      p.dst = got.data();
      patchify(p);
      EXPECT_TRUE(std::memcmp(got.data(), want.data(), sizeof(float) * size_t(n)) == 0);
    }
    // Spot-check the layout: row 1 is the patch right of row 0 (inside the first 2x2 block);
    // column 196 (channel 0, time 1) repeats column 0.
    const float v = (float(double(src[14 * 3]) * (1.0 / 255.0)) - mean[0]) / std_[0];
    EXPECT_TRUE(want[1176] == v);
    EXPECT_TRUE(want[196] == want[0]);
  }
  set_num_threads(threads);
  std::vector<uint8_t> img(30 * 28 * 3);
  std::vector<float> out(2 * 1176);
  PatchifyParams bad;
  bad.src = img.data(); bad.dst = out.data(); bad.h = 30; bad.w = 28;
  EXPECT_THROWS(patchify(bad));
}
