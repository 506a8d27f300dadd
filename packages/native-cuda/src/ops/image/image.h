// Image kernels for the Qwen2.5-VL processor (packages/models/src/processor): Pillow-exact
// bicubic resize on uint8, and normalize + patchify straight into the packed pixel_values.
//
// Images are uint8, interleaved HWC, C channels (the processor uses C = 3), rows contiguous.
//
// Resize reproduces Pillow's ImagingResample with BICUBIC (a = -0.5) bit for bit, because a
// checkpoint trained through Hugging Face's slow processor saw exactly those pixels:
//   - separable: a horizontal pass over the source rows the vertical pass needs, into a uint8
//     temporary, then a vertical pass; a pass whose size does not change is skipped;
//   - per output index: center = (i + 0.5)·scale, scale = in/out; when downscaling the filter
//     is stretched by scale (support 2·scale, taps (j - center + 0.5)/scale): antialiasing;
//   - taps are normalised to sum 1 in double, then rounded to 22-bit fixed point
//     (PRECISION_BITS = 32 - 8 - 2), accumulated in int32 from 1 << 21 (round half up), and
//     clipped to [0, 255] after >> 22, in both passes.
//
// Patchify writes one image's rows of pixel_values f32 [P, C·T·ps·ps] (P = gh·gw patches,
// gh = H/ps, gw = W/ps) in Hugging Face's order: rows are merge blocks in raster order, then
// the position inside the m×m block; columns are channel, time, pixel row, pixel column. The
// T time steps are copies of the single frame. The value is (float(x/255 in double) - mean_c)
// / std_c in float, which is what transformers' rescale (f64 → f32) then normalize (f32) give.
#pragma once
#include <cstdint>

namespace fovea {

struct ResizeParams {
  const uint8_t* src = nullptr;  // [src_h, src_w, channels]
  uint8_t* dst = nullptr;        // [dst_h, dst_w, channels]
  int64_t src_h = 0, src_w = 0, dst_h = 0, dst_w = 0;
  int channels = 3;
};

// The plain reference: a direct transcription of the algorithm above, one thread.
void resize_bicubic_u8_reference(const ResizeParams& p);
// The fast path: same arithmetic (bit-identical), rows split over the thread pool, channel
// count specialised.
void resize_bicubic_u8(const ResizeParams& p);

struct PatchifyParams {
  const uint8_t* src = nullptr;  // [h, w, 3], h and w multiples of patch·merge
  float* dst = nullptr;          // [gh·gw, 3·temporal·patch·patch], rows of this image only
  int64_t h = 0, w = 0;
  int patch = 14, temporal = 2, merge = 2;
  float mean[3] = {0, 0, 0};
  float std[3] = {1, 1, 1};
};

void patchify_reference(const PatchifyParams& p);
void patchify(const PatchifyParams& p);  // threaded over merge-block rows; bit-identical

}  // namespace fovea
