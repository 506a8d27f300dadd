// Bindings for the image kernels (ops/image/image.h), used by @fovea/models' processor:
//   imageResizeBicubic(src: Uint8Array, srcH, srcW, channels, dst: Uint8Array, dstH, dstW)
//       Pillow-exact bicubic resize of an HWC uint8 image into dst (both plain byte arrays:
//       decoded images come from sharp as Buffers and never need to become tensors).
//   imagePatchify(src: Uint8Array, h, w, out: f32 view [rows, 3·T·ps·ps], rowOffset,
//                 mean: number[3], std: number[3], patch, temporal, merge)
//       normalize + patchify one resized RGB image into out rows [rowOffset, rowOffset + P).
// CPU only: the processor runs on the host before the tensors move to the GPU.
#include <string>
#include "core/error.h"
#include "napi/binding.h"
#include "ops/image/image.h"

namespace fovea::napi {
namespace {

Napi::Uint8Array get_bytes(const Napi::CallbackInfo& info, size_t i, const char* op,
                           const char* name) {
  if (i >= info.Length() || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    fail(op, ": ", name, " must be a Uint8Array (or Buffer)");
  return info[i].As<Napi::Uint8Array>();
}

void get_floats3(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name,
                 float out[3]) {
  if (i >= info.Length() || !info[i].IsArray() || info[i].As<Napi::Array>().Length() != 3)
    fail(op, ": ", name, " must be an array of 3 numbers");
  Napi::Array a = info[i].As<Napi::Array>();
  for (uint32_t c = 0; c < 3; ++c) {
    Napi::Value v = a.Get(c);
    if (!v.IsNumber()) fail(op, ": ", name, "[", c, "] is not a number");
    out[c] = float(v.As<Napi::Number>().DoubleValue());
  }
}

int64_t get_positive(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name,
                     int64_t max = int64_t(1) << 31) {
  int64_t v = get_int(info, i, op, name);
  if (v < 1 || v > max) fail(op, ": ", name, " must be in [1, ", max, "], got ", v);
  return v;
}

Napi::Value resize_js(const Napi::CallbackInfo& info) {
  const char* op = "imageResizeBicubic";
  Napi::Uint8Array src = get_bytes(info, 0, op, "src");
  ResizeParams p;
  p.src_h = get_positive(info, 1, op, "srcH", 1 << 20);
  p.src_w = get_positive(info, 2, op, "srcW", 1 << 20);
  p.channels = int(get_positive(info, 3, op, "channels", 4));
  Napi::Uint8Array dst = get_bytes(info, 4, op, "dst");
  p.dst_h = get_positive(info, 5, op, "dstH", 1 << 20);
  p.dst_w = get_positive(info, 6, op, "dstW", 1 << 20);
  const int64_t need_src = p.src_h * p.src_w * p.channels, need_dst = p.dst_h * p.dst_w * p.channels;
  if (int64_t(src.ByteLength()) != need_src)
    fail(op, ": src holds ", src.ByteLength(), " bytes but ", p.src_h, "x", p.src_w, "x",
         p.channels, " needs ", need_src);
  if (int64_t(dst.ByteLength()) != need_dst)
    fail(op, ": dst holds ", dst.ByteLength(), " bytes but ", p.dst_h, "x", p.dst_w, "x",
         p.channels, " needs ", need_dst);
  p.src = src.Data();
  p.dst = dst.Data();
  if (p.src == p.dst) fail(op, ": src and dst must not be the same buffer");
  resize_bicubic_u8(p);
  return info.Env().Undefined();
}

Napi::Value patchify_js(const Napi::CallbackInfo& info) {
  const char* op = "imagePatchify";
  Napi::Uint8Array src = get_bytes(info, 0, op, "src");
  PatchifyParams p;
  p.h = get_positive(info, 1, op, "h", 1 << 20);
  p.w = get_positive(info, 2, op, "w", 1 << 20);
  TensorView out = get_view(info, 3, op, "out");
  const int64_t row_offset = get_int(info, 4, op, "rowOffset");
  get_floats3(info, 5, op, "mean", p.mean);
  get_floats3(info, 6, op, "std", p.std);
  p.patch = int(get_positive(info, 7, op, "patch", 1024));
  p.temporal = int(get_positive(info, 8, op, "temporal", 64));
  p.merge = int(get_positive(info, 9, op, "merge", 64));
  if (int64_t(src.ByteLength()) != p.h * p.w * 3)
    fail(op, ": src holds ", src.ByteLength(), " bytes but an RGB ", p.h, "x", p.w, " image needs ",
         p.h * p.w * 3);
  const int64_t f = int64_t(p.patch) * p.merge;
  if (p.h % f || p.w % f)
    fail(op, ": image ", p.h, "x", p.w, " must have both sides multiples of patch*merge = ", f);
  if (out.device >= 0) fail(op, ": out must be a CPU tensor");
  check_dtype(op, "out", out, DType::F32);
  check_contiguous(op, "out", out);
  const int64_t cols = 3 * int64_t(p.temporal) * p.patch * p.patch;
  const int64_t rows = (p.h / p.patch) * (p.w / p.patch);
  if (out.ndim != 2 || out.shape[1] != cols)
    fail(op, ": out must be [rows, ", cols, "], got ", shape_str(out));
  if (row_offset < 0 || row_offset + rows > out.shape[0])
    fail(op, ": rows [", row_offset, ", ", row_offset + rows, ") do not fit in out ", shape_str(out));
  p.src = src.Data();
  p.dst = out.ptr<float>() + row_offset * cols;
  patchify(p);
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("imageResizeBicubic", resize_js);
FOVEA_BIND("imagePatchify", patchify_js);

}  // namespace fovea::napi
