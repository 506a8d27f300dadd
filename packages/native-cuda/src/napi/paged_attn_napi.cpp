// Bindings for the paged KV cache kernels (ops/paged_attn/paged_attn.h):
//   pagedKvWrite(kCache, vCache, k, v, slots)
//   pagedKvCopyBlocks(kCache, vCache, src, dst)
//   pagedAttention(q, kCache, vCache, blockTables, contextLens, cuSeqlensQ, out, scale)
// kCache/vCache [numBlocks, blockSize, Hkv, D] contiguous, same dtype (f32, bf16, f16) and
// device; k/v [T, Hkv, D] in the cache dtype (last dim contiguous); slots i32 [T];
// src/dst i32 [n]; q/out [totalQ, Hq, D] (f32/bf16/f16, last dim contiguous); blockTables
// i32 [B, maxBlocks]; contextLens i32 [B]; cuSeqlensQ i32 [B + 1]. Index tensors live on the
// cache's device; for CUDA they are read back once here so that every index is validated
// before a kernel runs (no out-of-bounds read or write is possible from JavaScript).
#include <algorithm>
#include <cmath>
#include <vector>
#include "core/cuda_api.h"
#include "core/error.h"
#include "napi/binding.h"
#include "ops/paged_attn/paged_attn.h"

namespace fovea::napi {
namespace {

bool cache_float(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

// Validates the K/V pools; returns {numBlocks, blockSize, hkv, d}.
std::vector<int64_t> check_caches(const char* op, const TensorView& kc, const TensorView& vc) {
  if (kc.ndim != 4) fail(op, ": kCache must be 4-D [numBlocks, blockSize, Hkv, D], got ", shape_str(kc));
  check_same_shape(op, "kCache", kc, "vCache", vc);
  if (!cache_float(kc.dtype)) fail(op, ": the cache must be f32, bf16 or f16, got ", dtype_name(kc.dtype));
  if (vc.dtype != kc.dtype) fail(op, ": vCache is ", dtype_name(vc.dtype), " but kCache is ", dtype_name(kc.dtype));
  check_contiguous(op, "kCache", kc);
  check_contiguous(op, "vCache", vc);
  check_same_device(op, {&kc, &vc});
  for (int i = 0; i < 4; ++i)
    if (kc.shape[i] < 1) fail(op, ": every cache dimension must be >= 1, got ", shape_str(kc));
  return {kc.shape[0], kc.shape[1], kc.shape[2], kc.shape[3]};
}

// Host copy of a 1-D/2-D i32 index tensor on `device` (read back from CUDA).
std::vector<int32_t> read_i32(const char* op, const char* name, const TensorView& t, int device) {
  check_dtype(op, name, t, DType::I32);
  check_contiguous(op, name, t);
  if (t.device != device)
    fail(op, ": ", name, " is on ", t.device < 0 ? "cpu" : "cuda", " but the cache is on ",
         device < 0 ? "cpu" : "cuda", "; index tensors must be on the cache's device");
  std::vector<int32_t> h(size_t(t.numel()));
  if (h.empty()) return h;
  if (t.device < 0) std::copy(t.ptr<int32_t>(), t.ptr<int32_t>() + h.size(), h.begin());
  else if (cuda_api()->memcpy_d2h(t.device, h.data(), t.data, h.size() * 4))
    fail(op, " (cuda): reading ", name, ": ", cuda_api()->last_error());
  return h;
}

void check_rows(const char* op, const char* name, const TensorView& t, int64_t heads, int64_t d,
                const char* heads_name) {
  if (t.ndim != 3 || t.shape[1] != heads || t.shape[2] != d)
    fail(op, ": ", name, " must be [T, ", heads_name, " = ", heads, ", D = ", d, "], got ", shape_str(t));
  if (d > 1 && t.strides[2] != 1) fail(op, ": ", name, " must have a contiguous last dimension");
}

Napi::Value write_js(const Napi::CallbackInfo& info) {
  const char* op = "PagedKVCache.write";
  TensorView kc = get_view(info, 0, op, "kCache"), vc = get_view(info, 1, op, "vCache"),
             k = get_view(info, 2, op, "k"), v = get_view(info, 3, op, "v"),
             sl = get_view(info, 4, op, "slots");
  const auto dims = check_caches(op, kc, vc);
  const int64_t nslots = dims[0] * dims[1];
  check_rows(op, "k", k, dims[2], dims[3], "numKvHeads");
  check_rows(op, "v", v, dims[2], dims[3], "numKvHeads");
  if (v.shape[0] != k.shape[0]) fail(op, ": k ", shape_str(k), " and v ", shape_str(v), " must have the same shape");
  for (auto [n, t] : {std::pair<const char*, const TensorView*>{"k", &k}, {"v", &v}})
    if (t->dtype != kc.dtype)
      fail(op, ": ", n, " is ", dtype_name(t->dtype), " but the cache is ", dtype_name(kc.dtype), "; they must match");
  check_same_device(op, {&kc, &k, &v});
  if (sl.ndim != 1 || sl.shape[0] != k.shape[0])
    fail(op, ": slots must be i32 [T] with T = k.shape[0] = ", k.shape[0], ", got ", shape_str(sl));
  const std::vector<int32_t> s = read_i32(op, "slots", sl, kc.device);
  for (size_t t = 0; t < s.size(); ++t)
    if (s[t] < 0 || s[t] >= nslots)
      fail(op, ": slots[", t, "] = ", s[t], " is out of range [0, numBlocks·blockSize = ", nslots, ")");
  PagedWriteParams p;
  p.k = k.data; p.v = v.data;
  p.k_row_stride = k.strides[0]; p.k_head_stride = k.strides[1];
  p.v_row_stride = v.strides[0]; p.v_head_stride = v.strides[1];
  p.k_cache = kc.data; p.v_cache = vc.data; p.dtype = kc.dtype;
  p.slots = sl.ptr<int32_t>(); p.num_tokens = k.shape[0];
  p.hkv = int(dims[2]); p.d = int(dims[3]); p.device = kc.device;
  if (p.num_tokens == 0) return info.Env().Undefined();
  if (p.device >= 0) {
    if (cuda_api()->paged_write(&p)) fail(op, " (cuda): ", cuda_api()->last_error());
  } else {
    paged_write_cpu(p);
  }
  return info.Env().Undefined();
}

Napi::Value copy_js(const Napi::CallbackInfo& info) {
  const char* op = "PagedKVCache.copyBlocks";
  TensorView kc = get_view(info, 0, op, "kCache"), vc = get_view(info, 1, op, "vCache"),
             src = get_view(info, 2, op, "src"), dst = get_view(info, 3, op, "dst");
  const auto dims = check_caches(op, kc, vc);
  if (src.ndim != 1 || dst.ndim != 1 || src.shape[0] != dst.shape[0])
    fail(op, ": src and dst must be i32 [n] of the same length, got ", shape_str(src), " and ", shape_str(dst));
  const std::vector<int32_t> s = read_i32(op, "src", src, kc.device), d = read_i32(op, "dst", dst, kc.device);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] < 0 || s[i] >= dims[0] || d[i] < 0 || d[i] >= dims[0])
      fail(op, ": block pair ", i, " (", s[i], " -> ", d[i], ") is out of range [0, numBlocks = ", dims[0], ")");
    if (std::find(s.begin(), s.end(), d[i]) != s.end())
      fail(op, ": destination block ", d[i], " is also a source; copies must not overlap");
  }
  PagedCopyParams p;
  p.k_cache = kc.data; p.v_cache = vc.data; p.dtype = kc.dtype;
  p.src = src.ptr<int32_t>(); p.dst = dst.ptr<int32_t>(); p.n = int(s.size());
  p.block_elems = dims[1] * dims[2] * dims[3]; p.device = kc.device;
  if (p.n == 0) return info.Env().Undefined();
  if (p.device >= 0) {
    if (cuda_api()->paged_copy_blocks(&p)) fail(op, " (cuda): ", cuda_api()->last_error());
  } else {
    paged_copy_blocks_cpu(p);
  }
  return info.Env().Undefined();
}

Napi::Value attention_js(const Napi::CallbackInfo& info) {
  const char* op = "PagedKVCache.attention";
  TensorView q = get_view(info, 0, op, "q"), kc = get_view(info, 1, op, "kCache"),
             vc = get_view(info, 2, op, "vCache"), bt = get_view(info, 3, op, "blockTables"),
             cl = get_view(info, 4, op, "contextLens"), cq = get_view(info, 5, op, "cuSeqlensQ"),
             out = get_view(info, 6, op, "out");
  const auto dims = check_caches(op, kc, vc);
  const int64_t nb = dims[0], bs = dims[1], hkv = dims[2], d = dims[3];
  if (q.ndim != 3 || q.shape[2] != d)
    fail(op, ": q must be [T, numHeads, headDim = ", d, "], got ", shape_str(q));
  if (d > 1 && q.strides[2] != 1) fail(op, ": q must have a contiguous last dimension");
  if (!cache_float(q.dtype)) fail(op, ": q must be f32, bf16 or f16, got ", dtype_name(q.dtype));
  const int64_t hq = q.shape[1];
  if (hq < 1 || hq % hkv != 0)
    fail(op, ": numHeads (", hq, ") must be a positive multiple of numKvHeads (", hkv, ")");
  check_same_shape(op, "q", q, "out", out);
  if (out.dtype != q.dtype) fail(op, ": out is ", dtype_name(out.dtype), " but q is ", dtype_name(q.dtype));
  if (d > 1 && out.strides[2] != 1) fail(op, ": out must have a contiguous last dimension");
  check_same_device(op, {&kc, &q, &out});
  if (bt.ndim != 2) fail(op, ": blockTables must be i32 [B, maxBlocks], got ", shape_str(bt));
  const int64_t batch = bt.shape[0], maxb = bt.shape[1];
  if (cl.ndim != 1 || cl.shape[0] != batch)
    fail(op, ": contextLens must be i32 [B = ", batch, "], got ", shape_str(cl));
  if (cq.ndim != 1 || cq.shape[0] != batch + 1)
    fail(op, ": cuSeqlensQ must be i32 [B + 1 = ", batch + 1, "], got ", shape_str(cq));
  const auto table = read_i32(op, "blockTables", bt, kc.device);
  const auto ctx = read_i32(op, "contextLens", cl, kc.device);
  const auto cu = read_i32(op, "cuSeqlensQ", cq, kc.device);
  if (cu[0] != 0) fail(op, ": cuSeqlensQ[0] must be 0, got ", cu[0]);
  if (cu[size_t(batch)] != q.shape[0])
    fail(op, ": the last entry of cuSeqlensQ (", cu[size_t(batch)], ") must equal q.shape[0] = ", q.shape[0]);
  int max_ctx = 0, max_q = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t qlen = int64_t(cu[size_t(b + 1)]) - cu[size_t(b)], c = ctx[size_t(b)];
    if (qlen < 0) fail(op, ": cuSeqlensQ must be non-decreasing, but entry ", b + 1, " < entry ", b);
    if (c < qlen || c > maxb * bs)
      fail(op, ": sequence ", b, " has ", qlen, " queries but ", c, " cached tokens; need queries <= cached <= ",
           maxb * bs, " (maxBlocks·blockSize)");
    for (int64_t i = 0; i < (c + bs - 1) / bs; ++i) {
      const int32_t blk = table[size_t(b * maxb + i)];
      if (blk < 0 || blk >= nb)
        fail(op, ": blockTables[", b, "][", i, "] = ", blk, " is out of range [0, numBlocks = ", nb, ")");
    }
    max_ctx = std::max<int>(max_ctx, int(c));
    max_q = std::max<int>(max_q, int(qlen));
  }
  const double scale = get_double(info, 7, op, "scale");
  if (!std::isfinite(scale)) fail(op, ": scale must be finite, got ", scale);
  PagedAttnParams p;
  p.q = q.data; p.out = out.data; p.q_dtype = q.dtype;
  p.k_cache = kc.data; p.v_cache = vc.data; p.cache_dtype = kc.dtype;
  p.block_tables = bt.ptr<int32_t>(); p.context_lens = cl.ptr<int32_t>(); p.cu_seqlens_q = cq.ptr<int32_t>();
  p.batch = int(batch); p.max_blocks_per_seq = int(maxb);
  p.total_q = q.shape[0]; p.num_blocks = nb;
  p.hq = int(hq); p.hkv = int(hkv); p.d = int(d); p.block_size = int(bs);
  p.max_context_len = max_ctx; p.max_qlen = max_q;
  p.q_row_stride = q.strides[0]; p.q_head_stride = q.strides[1];
  p.o_row_stride = out.strides[0]; p.o_head_stride = out.strides[1];
  p.scale = float(scale); p.device = kc.device;
  if (p.total_q == 0) return info.Env().Undefined();
  if (p.device >= 0) {
    if (cuda_api()->paged_attention(&p)) fail(op, " (cuda): ", cuda_api()->last_error());
  } else {
    paged_attn_cpu(p);
  }
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("pagedKvWrite", write_js);
FOVEA_BIND("pagedKvCopyBlocks", copy_js);
FOVEA_BIND("pagedAttention", attention_js);

}  // namespace fovea::napi
