// Bindings for the fused GRPO loss (ops/grpo_loss/grpo_loss.h):
//   grpoLoss(hidden, weight, bias?, targets, advantages, mask, seqIndex, oldLogprobs?, refLogprobs?,
//            logprobs, entropy?, stats, dHidden, dWeight, dBias?,
//            numSeqs, epsLow, epsHigh, dualClip, beta, kl, temperature, aggregation, normLength,
//            chunkTokens)
//   tokenLogprobs(hidden, weight, bias?, targets, logprobs, entropy?, temperature, chunkTokens)
// hidden [N, H], weight [V, H], bias [V]: one float dtype, unit column stride. Per-token vectors
// and outputs: f32 (f64 when hidden is f64), contiguous. stats: a CPU f64 [kGrpoNumStats].
// kl: 0 k1, 1 k2, 2 k3; aggregation: 0 token-mean, 1 seq-mean-token-mean, 2 seq-mean-token-sum,
// 3 seq-mean-token-sum-norm. Index ranges (targets, seqIndex) and finiteness of advantages and
// mask are checked here, on a host copy for CUDA tensors, so no kernel reads out of bounds.
#include <cmath>
#include <cstring>
#include <vector>
#include "core/cuda_api.h"
#include "core/error.h"
#include "napi/binding.h"
#include "ops/grpo_loss/grpo_loss.h"

namespace fovea::napi {
namespace {

TensorView opt_view(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  if (is_null_or_undefined(info, i)) return TensorView{};
  return get_view(info, i, op, name);
}

// The values of a 1-D contiguous [N] tensor on the host (copied back for CUDA tensors).
template <class T> std::vector<T> host_values(const TensorView& v) {
  std::vector<T> out(size_t(v.numel()));
  if (out.empty()) return out;
  if (v.device >= 0) {
    if (cuda_api()->memcpy_d2h(v.device, out.data(), v.data, out.size() * sizeof(T)))
      fail("grpoLoss (cuda): ", cuda_api()->last_error());
  } else {
    std::memcpy(out.data(), v.data, out.size() * sizeof(T));
  }
  return out;
}

struct Model { TensorView h, w, b; int64_t N, H, V; };

Model check_model(const char* op, const Napi::CallbackInfo& info) {
  Model m{get_view(info, 0, op, "hidden"), get_view(info, 1, op, "weight"), opt_view(info, 2, op, "bias"), 0, 0, 0};
  check_float(op, "hidden", m.h);
  if (m.h.ndim != 2) fail(op, ": hidden ", shape_str(m.h), " must be 2-D [N, H]");
  if (m.w.ndim != 2) fail(op, ": weight ", shape_str(m.w), " must be 2-D [V, H]");
  m.N = m.h.shape[0]; m.H = m.h.shape[1]; m.V = m.w.shape[0];
  if (m.w.shape[1] != m.H)
    fail(op, ": weight ", shape_str(m.w), " must be [V, ", m.H, "] to match hidden ", shape_str(m.h));
  if (m.w.dtype != m.h.dtype)
    fail(op, ": weight is ", dtype_name(m.w.dtype), " but hidden is ", dtype_name(m.h.dtype), "; they must match");
  if (m.H == 0 || m.V == 0) fail(op, ": hidden size and vocabulary must be > 0, got H=", m.H, " V=", m.V);
  if (m.h.strides[1] != 1 && m.H > 1) fail(op, ": hidden must have unit column stride");
  if (m.w.strides[1] != 1 && m.H > 1) fail(op, ": weight must have unit column stride");
  if (m.b.data) {
    if (m.b.dtype != m.h.dtype) fail(op, ": bias is ", dtype_name(m.b.dtype), " but hidden is ", dtype_name(m.h.dtype));
    if (m.b.ndim != 1 || m.b.shape[0] != m.V) fail(op, ": bias ", shape_str(m.b), " must be [", m.V, "]");
    check_contiguous(op, "bias", m.b);
  }
  return m;
}

// A per-token [N] vector of dtype `dt`, contiguous.
void check_vec(const char* op, const char* name, const TensorView& t, int64_t N, DType dt) {
  if (t.dtype != dt) fail(op, ": ", name, " must be ", dtype_name(dt), ", got ", dtype_name(t.dtype));
  if (t.ndim != 1 || t.shape[0] != N)
    fail(op, ": ", name, " ", shape_str(t), " must be [", N, "] (one per row of hidden)");
  check_contiguous(op, name, t);
}

void check_targets(const char* op, const TensorView& t, int64_t N, int64_t V) {
  check_vec(op, "targets", t, N, DType::I32);
  const std::vector<int32_t> v = host_values<int32_t>(t);
  for (int64_t i = 0; i < N; ++i)
    if (v[i] < 0 || v[i] >= V) fail(op, ": targets[", i, "] = ", v[i], " is outside [0, ", V, ")");
}

template <class T> void check_finite(const char* op, const char* name, const TensorView& t, bool nonneg) {
  const std::vector<T> v = host_values<T>(t);
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(double(v[i]))) fail(op, ": ", name, "[", i, "] = ", double(v[i]), " is not finite");
    if (nonneg && v[i] < 0) fail(op, ": ", name, "[", i, "] = ", double(v[i]), " is negative; expected weights >= 0");
  }
}

Napi::Value grpo_loss_js(const Napi::CallbackInfo& info) {
  const char* op = "grpoLoss";
  Model m = check_model(op, info);
  const DType acc = m.h.dtype == DType::F64 ? DType::F64 : DType::F32;
  TensorView targets = get_view(info, 3, op, "targets");
  TensorView adv = get_view(info, 4, op, "advantages");
  TensorView mask = get_view(info, 5, op, "mask");
  TensorView seq = get_view(info, 6, op, "seqIndex");
  TensorView old = opt_view(info, 7, op, "oldLogprobs");
  TensorView ref = opt_view(info, 8, op, "refLogprobs");
  TensorView lp = get_view(info, 9, op, "logprobs");
  TensorView ent = opt_view(info, 10, op, "entropy");
  TensorView stats = get_view(info, 11, op, "stats");
  TensorView dh = get_view(info, 12, op, "dHidden");
  TensorView dw = get_view(info, 13, op, "dWeight");
  TensorView dbv = opt_view(info, 14, op, "dBias");
  GrpoLossParams p;
  p.num_seqs = get_int(info, 15, op, "numSeqs");
  p.eps_low = get_double(info, 16, op, "epsLow");
  p.eps_high = get_double(info, 17, op, "epsHigh");
  p.dual_clip = get_double(info, 18, op, "dualClip");
  p.beta = get_double(info, 19, op, "beta");
  const int64_t kl = get_int(info, 20, op, "kl");
  p.temperature = get_double(info, 21, op, "temperature");
  const int64_t agg = get_int(info, 22, op, "aggregation");
  p.norm_length = get_double(info, 23, op, "normLength");
  p.chunk_tokens = get_int(info, 24, op, "chunkTokens");
  const int64_t N = m.N;

  if (kl < 0 || kl > 2) fail(op, ": kl must be 0 (k1), 1 (k2) or 2 (k3), got ", kl);
  if (agg < 0 || agg > 3) fail(op, ": aggregation code must be 0..3, got ", agg);
  if (!(p.temperature > 0) || !std::isfinite(p.temperature)) fail(op, ": temperature must be finite and > 0, got ", p.temperature);
  if (!(p.eps_low >= 0 && p.eps_low < 1)) fail(op, ": epsLow must be in [0, 1), got ", p.eps_low);
  if (!(p.eps_high >= 0) || !std::isfinite(p.eps_high)) fail(op, ": epsHigh must be finite and >= 0, got ", p.eps_high);
  if (!(p.dual_clip == 0 || p.dual_clip > 1) || !std::isfinite(p.dual_clip)) fail(op, ": dualClip must be 0 (off) or > 1, got ", p.dual_clip);
  if (!(p.beta >= 0) || !std::isfinite(p.beta)) fail(op, ": beta must be finite and >= 0, got ", p.beta);
  if (!(p.norm_length > 0) || !std::isfinite(p.norm_length)) fail(op, ": normLength must be finite and > 0, got ", p.norm_length);
  if (p.num_seqs < 1) fail(op, ": numSeqs must be >= 1, got ", p.num_seqs);
  if (p.beta > 0 && !ref.data) fail(op, ": beta = ", p.beta, " > 0 needs refLogprobs (the reference policy's log-probs)");
  check_targets(op, targets, N, m.V);
  check_vec(op, "advantages", adv, N, acc);
  check_vec(op, "mask", mask, N, acc);
  check_vec(op, "seqIndex", seq, N, DType::I32);
  if (old.data) check_vec(op, "oldLogprobs", old, N, acc);
  if (ref.data) check_vec(op, "refLogprobs", ref, N, acc);
  check_vec(op, "logprobs", lp, N, acc);
  if (ent.data) check_vec(op, "entropy", ent, N, acc);
  if (stats.device >= 0 || stats.dtype != DType::F64 || stats.numel() != kGrpoNumStats || !stats.contiguous())
    fail(op, ": stats must be a contiguous cpu f64 tensor of ", int(kGrpoNumStats), " elements");
  if (dh.dtype != acc || dh.ndim != 2 || dh.shape[0] != N || dh.shape[1] != m.H || !dh.contiguous())
    fail(op, ": dHidden must be a contiguous ", dtype_name(acc), " [", N, ", ", m.H, "], got ", dtype_name(dh.dtype), " ", shape_str(dh));
  if (dw.dtype != acc || dw.ndim != 2 || dw.shape[0] != m.V || dw.shape[1] != m.H || !dw.contiguous())
    fail(op, ": dWeight must be a contiguous ", dtype_name(acc), " [", m.V, ", ", m.H, "], got ", dtype_name(dw.dtype), " ", shape_str(dw));
  if (bool(dbv.data) != bool(m.b.data)) fail(op, ": dBias must be given exactly when bias is");
  if (dbv.data) check_vec(op, "dBias", dbv, m.V, acc);
  if (acc == DType::F64) { check_finite<double>(op, "advantages", adv, false); check_finite<double>(op, "mask", mask, true); }
  else { check_finite<float>(op, "advantages", adv, false); check_finite<float>(op, "mask", mask, true); }
  {
    const std::vector<int32_t> s = host_values<int32_t>(seq);
    for (int64_t i = 0; i < N; ++i)
      if (s[i] < 0 || s[i] >= p.num_seqs) fail(op, ": seqIndex[", i, "] = ", s[i], " is outside [0, numSeqs = ", p.num_seqs, ")");
  }
  std::vector<const TensorView*> dev = {&m.h, &m.w, &targets, &adv, &mask, &seq, &lp, &dh, &dw};
  for (const TensorView* t : {&m.b, &old, &ref, &ent, &dbv}) if (t->data) dev.push_back(t);
  for (const TensorView* t : dev)
    if (t->device != m.h.device) fail(op, ": all tensors must be on the same device as hidden (stats stays on the cpu)");

  p.hidden = m.h.data; p.weight = m.w.data; p.bias = m.b.data; p.dtype = m.h.dtype;
  p.hidden_rs = m.h.strides[0]; p.weight_rs = m.w.strides[0];
  p.targets = targets.ptr<int32_t>(); p.advantages = adv.data; p.mask = mask.data;
  p.seq_index = seq.ptr<int32_t>(); p.old_logprobs = old.data; p.ref_logprobs = ref.data;
  p.N = N; p.H = m.H; p.V = m.V;
  p.kl = GrpoKl(kl); p.aggregation = GrpoAgg(agg);
  p.compute_entropy = ent.data != nullptr; p.compute_grad = true;
  p.logprobs = lp.data; p.entropy = ent.data; p.stats = stats.ptr<double>();
  p.d_hidden = dh.data; p.d_weight = dw.data; p.d_bias = dbv.data;
  p.device = m.h.device;
  if (p.device >= 0) {
    if (cuda_api()->grpo_loss(&p)) fail(op, " (cuda): ", cuda_api()->last_error());
  } else {
    grpo_loss_cpu(p);
  }
  return info.Env().Undefined();
}

Napi::Value token_logprobs_js(const Napi::CallbackInfo& info) {
  const char* op = "tokenLogprobs";
  Model m = check_model(op, info);
  const DType acc = m.h.dtype == DType::F64 ? DType::F64 : DType::F32;
  TensorView targets = get_view(info, 3, op, "targets");
  TensorView lp = get_view(info, 4, op, "logprobs");
  TensorView ent = opt_view(info, 5, op, "entropy");
  GrpoLossParams p;
  p.temperature = get_double(info, 6, op, "temperature");
  p.chunk_tokens = get_int(info, 7, op, "chunkTokens");
  if (!(p.temperature > 0) || !std::isfinite(p.temperature)) fail(op, ": temperature must be finite and > 0, got ", p.temperature);
  check_targets(op, targets, m.N, m.V);
  check_vec(op, "logprobs", lp, m.N, acc);
  if (ent.data) check_vec(op, "entropy", ent, m.N, acc);
  check_same_device(op, {&m.h, &m.w, &targets, &lp});
  for (const TensorView* t : {&m.b, &ent})
    if (t->data && t->device != m.h.device) fail(op, ": all tensors must be on the same device as hidden");
  p.hidden = m.h.data; p.weight = m.w.data; p.bias = m.b.data; p.dtype = m.h.dtype;
  p.hidden_rs = m.h.strides[0]; p.weight_rs = m.w.strides[0];
  p.targets = targets.ptr<int32_t>();
  p.N = m.N; p.H = m.H; p.V = m.V; p.num_seqs = 1;
  p.compute_entropy = ent.data != nullptr; p.compute_grad = false;
  p.logprobs = lp.data; p.entropy = ent.data;
  p.device = m.h.device;
  if (p.device >= 0) {
    if (cuda_api()->grpo_loss(&p)) fail(op, " (cuda): ", cuda_api()->last_error());
  } else {
    grpo_loss_cpu(p);
  }
  return info.Env().Undefined();
}

}  // namespace

FOVEA_BIND("grpoLoss", grpo_loss_js);
FOVEA_BIND("tokenLogprobs", token_logprobs_js);

}  // namespace fovea::napi
