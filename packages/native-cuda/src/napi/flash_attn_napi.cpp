// Bindings for flash attention (ops/flash_attn/flash_attn.h), varlen layout:
//   flashAttnFwd(q, k, v, cuSeqlensQ, cuSeqlensK, out, lse,
//                maxSeqlenQ, maxSeqlenK, causal, windowLeft, windowRight, scale)
//   flashAttnBwd(q, k, v, out, lse, dout, cuSeqlensQ, cuSeqlensK, dq, dk, dv,
//                maxSeqlenQ, maxSeqlenK, causal, windowLeft, windowRight, scale, deterministic)
// q/out/dout/dq [totalQ, Hq, D]; k/v/dk/dv [totalK, Hkv, D]; lse f32 [Hq, totalQ] contiguous;
// cuSeqlens i32 [B + 1]. q, k, v, out, dout need a contiguous last dim (rows and heads may be
// strided; dout must have out's strides); lse, dq, dk, dv must be contiguous. causal and
// deterministic are 0/1; windows are -1 (unbounded) or >= 0.
// Everything is checked here once, including the offsets themselves (read from host memory,
// or copied from the device for CUDA tensors): start at 0, non-decreasing, last == total,
// and maxSeqlen >= the longest sequence. CUDA tensors go to the sidecar.
#include <algorithm>
#include <cmath>
#include <vector>
#include "core/cuda_api.h"
#include "core/error.h"
#include "napi/binding.h"
#include "ops/flash_attn/flash_attn.h"

namespace fovea::napi {
namespace {

bool get_flag(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  int64_t v = get_int(info, i, op, name);
  if (v != 0 && v != 1) fail(op, ": ", name, " must be 0 or 1, got ", v);
  return v == 1;
}

void check_rows(const char* op, const char* name, const TensorView& t) {
  if (t.ndim != 3) fail(op, ": ", name, " must be 3-D [total, heads, headDim], got shape ", shape_str(t));
  if (t.shape[2] > 1 && t.strides[2] != 1)
    fail(op, ": ", name, " must have a contiguous last dimension (stride 1), got stride ", t.strides[2]);
}

// Reads and validates cuSeqlens; returns the host copy.
std::vector<int32_t> read_offsets(const char* op, const char* name, const TensorView& cu,
                                  int64_t total, const char* total_name, int device) {
  check_dtype(op, name, cu, DType::I32);
  if (cu.ndim != 1 || cu.shape[0] < 1)
    fail(op, ": ", name, " must be a 1-D i32 tensor of batch + 1 offsets, got shape ", shape_str(cu));
  if (cu.device != device)
    fail(op, ": ", name, " is on ", cu.device < 0 ? "cpu" : "cuda", " but q is on ",
         device < 0 ? "cpu" : "cuda", "; the offsets must be on q's device");
  check_contiguous(op, name, cu);
  std::vector<int32_t> h(size_t(cu.shape[0]));
  if (cu.device < 0) {
    std::copy(cu.ptr<int32_t>(), cu.ptr<int32_t>() + h.size(), h.begin());
  } else if (cuda_api()->memcpy_d2h(cu.device, h.data(), cu.data, h.size() * 4)) {
    fail(op, " (cuda): reading ", name, ": ", cuda_api()->last_error());
  }
  if (h[0] != 0) fail(op, ": ", name, "[0] must be 0, got ", h[0]);
  for (size_t b = 1; b < h.size(); ++b)
    if (h[b] < h[b - 1])
      fail(op, ": ", name, " must be non-decreasing, but ", name, "[", b, "] = ", h[b], " < ",
           name, "[", b - 1, "] = ", h[b - 1]);
  if (h.back() != total)
    fail(op, ": the last entry of ", name, " must equal ", total_name, " = ", total, ", got ", h.back());
  return h;
}

// Fills the forward part of p from the arguments shared by both bindings.
void fill_common(const char* op, FlashAttnParams& p, const TensorView& q, const TensorView& k,
                 const TensorView& v, const TensorView& out, const TensorView& lse,
                 const TensorView& cuq, const TensorView& cuk, const Napi::CallbackInfo& info,
                 size_t first_scalar) {
  check_rows(op, "q", q);
  check_rows(op, "k", k);
  check_rows(op, "v", v);
  check_rows(op, "out", out);
  check_float(op, "q", q);
  for (auto [n, t] : {std::pair<const char*, const TensorView*>{"k", &k}, {"v", &v}, {"out", &out}})
    if (t->dtype != q.dtype)
      fail(op, ": ", n, " is ", dtype_name(t->dtype), " but q is ", dtype_name(q.dtype), "; they must match");
  check_same_device(op, {&q, &k, &v, &out, &lse});
  const int64_t total_q = q.shape[0], hq = q.shape[1], d = q.shape[2];
  const int64_t total_k = k.shape[0], hkv = k.shape[1];
  if (hq < 1 || hkv < 1) fail(op, ": q and k need at least one head, got Hq = ", hq, ", Hkv = ", hkv);
  if (d < 1) fail(op, ": the head dim must be >= 1, got q shape ", shape_str(q));
  if (k.shape[2] != d || v.shape[2] != d)
    fail(op, ": q, k and v must have the same head dim, got q ", shape_str(q), ", k ", shape_str(k),
         ", v ", shape_str(v));
  if (v.shape[0] != total_k || v.shape[1] != hkv)
    fail(op, ": v must have k's shape ", shape_str(k), ", got ", shape_str(v));
  if (hq % hkv != 0)
    fail(op, ": the number of query heads (", hq, ") must be a multiple of the number of KV heads (", hkv, ")");
  check_same_shape(op, "q", q, "out", out);
  check_dtype(op, "lse", lse, DType::F32);
  if (lse.ndim != 2 || lse.shape[0] != hq || lse.shape[1] != total_q)
    fail(op, ": lse must be f32 [Hq, totalQ] = [", hq, ", ", total_q, "], got ", shape_str(lse));
  check_contiguous(op, "lse", lse);
  const std::vector<int32_t> oq = read_offsets(op, "cuSeqlensQ", cuq, total_q, "totalQ (q.shape[0])", q.device);
  const std::vector<int32_t> ok = read_offsets(op, "cuSeqlensK", cuk, total_k, "totalK (k.shape[0])", q.device);
  if (oq.size() != ok.size())
    fail(op, ": cuSeqlensQ and cuSeqlensK must have the same length (batch + 1), got ", oq.size(),
         " and ", ok.size());
  int64_t mq = 0, mk = 0;
  for (size_t b = 1; b < oq.size(); ++b) {
    mq = std::max<int64_t>(mq, oq[b] - oq[b - 1]);
    mk = std::max<int64_t>(mk, ok[b] - ok[b - 1]);
  }
  const int64_t max_q = get_int(info, first_scalar, op, "maxSeqlenQ");
  const int64_t max_k = get_int(info, first_scalar + 1, op, "maxSeqlenK");
  if (max_q < mq) fail(op, ": maxSeqlenQ = ", max_q, " is less than the longest query sequence (", mq, ")");
  if (max_k < mk) fail(op, ": maxSeqlenK = ", max_k, " is less than the longest key sequence (", mk, ")");
  if (max_q > (int64_t(1) << 31) - 1 || max_k > (int64_t(1) << 31) - 1)
    fail(op, ": maxSeqlenQ/maxSeqlenK must fit in i32");
  const bool causal = get_flag(info, first_scalar + 2, op, "causal");
  const int64_t wl = get_int(info, first_scalar + 3, op, "windowLeft");
  const int64_t wr = get_int(info, first_scalar + 4, op, "windowRight");
  if (wl < -1 || wr < -1 || wl > (int64_t(1) << 30) || wr > (int64_t(1) << 30))
    fail(op, ": windowLeft and windowRight must be -1 (unbounded) or in [0, 2^30], got ", wl, " and ", wr);
  const double scale = get_double(info, first_scalar + 5, op, "scale");
  if (!std::isfinite(scale)) fail(op, ": scale must be finite, got ", scale);

  p.q = q.data; p.k = k.data; p.v = v.data; p.out = out.data;
  p.lse = lse.ptr<float>();
  p.dtype = q.dtype;
  p.cu_seqlens_q = cuq.ptr<int32_t>();
  p.cu_seqlens_k = cuk.ptr<int32_t>();
  p.batch = int(oq.size() - 1);
  p.total_q = total_q; p.total_k = total_k;
  p.hq = int(hq); p.hkv = int(hkv); p.d = int(d);
  p.max_seqlen_q = int(max_q); p.max_seqlen_k = int(max_k);
  p.q_row_stride = q.strides[0]; p.q_head_stride = q.strides[1];
  p.k_row_stride = k.strides[0]; p.k_head_stride = k.strides[1];
  p.v_row_stride = v.strides[0]; p.v_head_stride = v.strides[1];
  p.o_row_stride = out.strides[0]; p.o_head_stride = out.strides[1];
  p.causal = causal;
  p.window_left = int(wl); p.window_right = int(wr);
  p.scale = float(scale);
  p.device = q.device;
}

Napi::Value flash_attn_fwd_js(const Napi::CallbackInfo& info) {
  const char* op = "flashAttention";
  TensorView q = get_view(info, 0, op, "q"), k = get_view(info, 1, op, "k"),
             v = get_view(info, 2, op, "v"), cuq = get_view(info, 3, op, "cuSeqlensQ"),
             cuk = get_view(info, 4, op, "cuSeqlensK"), out = get_view(info, 5, op, "out"),
             lse = get_view(info, 6, op, "lse");
  FlashAttnParams p;
  fill_common(op, p, q, k, v, out, lse, cuq, cuk, info, 7);
  if (p.device >= 0) {
    if (cuda_api()->flash_attn_fwd(&p)) fail(op, " (cuda): ", cuda_api()->last_error());
  } else {
    flash_attn_fwd_cpu(p);
  }
  return info.Env().Undefined();
}

Napi::Value flash_attn_bwd_js(const Napi::CallbackInfo& info) {
  const char* op = "flashAttentionBackward";
  TensorView q = get_view(info, 0, op, "q"), k = get_view(info, 1, op, "k"),
             v = get_view(info, 2, op, "v"), out = get_view(info, 3, op, "out"),
             lse = get_view(info, 4, op, "lse"), dout = get_view(info, 5, op, "dout"),
             cuq = get_view(info, 6, op, "cuSeqlensQ"), cuk = get_view(info, 7, op, "cuSeqlensK"),
             dq = get_view(info, 8, op, "dq"), dk = get_view(info, 9, op, "dk"),
             dv = get_view(info, 10, op, "dv");
  FlashAttnParams p;
  fill_common(op, p, q, k, v, out, lse, cuq, cuk, info, 11);
  check_same_shape(op, "out", out, "dout", dout);
  if (dout.dtype != q.dtype) fail(op, ": dout is ", dtype_name(dout.dtype), " but q is ", dtype_name(q.dtype));
  for (int i = 0; i < 3; ++i)
    if (dout.strides[i] != out.strides[i] && dout.shape[i] > 1)
      fail(op, ": dout must have out's strides; make it contiguous");
  check_same_shape(op, "q", q, "dq", dq);
  check_same_shape(op, "k", k, "dk", dk);
  check_same_shape(op, "v", v, "dv", dv);
  for (auto [n, t] : {std::pair<const char*, const TensorView*>{"dq", &dq}, {"dk", &dk}, {"dv", &dv}}) {
    if (t->dtype != q.dtype) fail(op, ": ", n, " is ", dtype_name(t->dtype), " but q is ", dtype_name(q.dtype));
    check_contiguous(op, n, *t);
  }
  check_same_device(op, {&q, &dout, &dq, &dk, &dv});
  p.dout = dout.data; p.dq = dq.data; p.dk = dk.data; p.dv = dv.data;
  p.deterministic = get_flag(info, 17, op, "deterministic");
  if (p.device >= 0) {
    if (cuda_api()->flash_attn_bwd(&p)) fail(op, " (cuda): ", cuda_api()->last_error());
  } else {
    flash_attn_bwd_cpu(p);
  }
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("flashAttnFwd", flash_attn_fwd_js);
FOVEA_BIND("flashAttnBwd", flash_attn_bwd_js);

}  // namespace fovea::napi
