"""PyTorch half of the Qwen2.5-VL model benchmark (qwen_model_side.sh runs it next to
qwen_model_fovea.mjs): a plain, eager PyTorch 1.13 implementation of the model Fovea's
packages/models/src/qwen2_5_vl computes (HF Qwen2_5_VLForConditionalGeneration, f32), written
from /work/shared/specs/qwen25vl-and-kernels.md §2-3 — no transformers, no safetensors library.

  --check           prove it is the same model: load the HF fixture checkpoint
                    (packages/models/test/fixtures/qwen25vl/model) and its multi_image case, and
                    require window_index / cu_window_seqlens / position ids exact and logits
                    relative error < 1e-4 against what transformers computed.
  --print-config    the benchmark's config.json (flat HF layout) on stdout; the Fovea side reads it.
  fwd | fwdbwd      one benchmark configuration in this process (peak RSS is that config's);
                    prints one JSON line.

Attention: PyTorch 1.13 has no F.scaled_dot_product_attention, so attention is matmul + softmax
per segment; segments of equal length (the 16 windows of 64 patches of a 448x448 image) run as one
batched matmul, unequal ones in a loop. The causal text attention masks with masked_fill.
GQA multiplies [Hkv, group, L, D] queries against [Hkv, 1, L, D] keys (repeat_kv by broadcast).
"""
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "packages/models/test/fixtures/qwen25vl")


# ---------------------------------------------------------------- config


def bench_config():
    """The fixture's config.json with the benchmark's Qwen2.5-VL-like shape (Qwen's real token ids)."""
    with open(os.path.join(FIXTURES, "model/config.json")) as f:
        cfg = json.load(f)
    cfg.update(
        hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6,
        image_token_id=151655, vision_start_token_id=151652, vision_end_token_id=151653,
        video_token_id=151656, vision_token_id=151654, bos_token_id=151643, eos_token_id=151645,
        im_start_id=151644, max_window_layers=24,
    )
    cfg["rope_scaling"] = {"mrope_section": [8, 12, 12], "rope_type": "default", "type": "default"}
    cfg["vision_config"].update(
        depth=8, hidden_size=1280, num_heads=16, intermediate_size=3420, patch_size=14,
        temporal_patch_size=2, spatial_merge_size=2, window_size=112, fullatt_block_indexes=[3, 7],
        out_hidden_size=896, in_channels=3,
    )
    return cfg


class Cfg:
    """The numbers the graph needs, from a flat-layout config.json."""

    def __init__(self, j):
        v = j["vision_config"]
        self.hidden, self.layers = j["hidden_size"], j["num_hidden_layers"]
        self.heads, self.kv_heads = j["num_attention_heads"], j["num_key_value_heads"]
        self.head_dim = self.hidden // self.heads
        self.inter, self.vocab, self.eps = j["intermediate_size"], j["vocab_size"], j["rms_norm_eps"]
        self.theta, self.mrope = j["rope_theta"], j["rope_scaling"]["mrope_section"]
        self.tied = j["tie_word_embeddings"]
        self.image_token, self.vision_start = j["image_token_id"], j["vision_start_token_id"]
        self.vision_end = j["vision_end_token_id"]
        self.v_depth, self.v_hidden, self.v_heads = v["depth"], v["hidden_size"], v["num_heads"]
        self.v_head_dim = self.v_hidden // self.v_heads
        self.v_inter, self.patch, self.tp = v["intermediate_size"], v["patch_size"], v["temporal_patch_size"]
        self.merge, self.window, self.full = v["spatial_merge_size"], v["window_size"], v["fullatt_block_indexes"]
        self.v_out, self.in_ch = v["out_hidden_size"], v["in_channels"]
        self.patch_dim = self.in_ch * self.tp * self.patch * self.patch


def param_shapes(c):
    """HF parameter names (legacy layout) -> shapes."""
    s = {"visual.patch_embed.proj.weight": [c.v_hidden, c.in_ch, c.tp, c.patch, c.patch]}
    d, vi = c.v_hidden, c.v_inter
    for i in range(c.v_depth):
        p = f"visual.blocks.{i}."
        s.update({p + "norm1.weight": [d], p + "norm2.weight": [d],
                  p + "attn.qkv.weight": [3 * d, d], p + "attn.qkv.bias": [3 * d],
                  p + "attn.proj.weight": [d, d], p + "attn.proj.bias": [d]})
        for n, shp in (("gate_proj", [vi, d]), ("up_proj", [vi, d]), ("down_proj", [d, vi])):
            s[p + f"mlp.{n}.weight"], s[p + f"mlp.{n}.bias"] = shp, [shp[0]]
    w = d * c.merge ** 2
    s.update({"visual.merger.ln_q.weight": [d], "visual.merger.mlp.0.weight": [w, w], "visual.merger.mlp.0.bias": [w],
              "visual.merger.mlp.2.weight": [c.v_out, w], "visual.merger.mlp.2.bias": [c.v_out]})
    h, hd = c.hidden, c.head_dim
    s["model.embed_tokens.weight"] = [c.vocab, h]
    for i in range(c.layers):
        p = f"model.layers.{i}."
        s.update({p + "self_attn.q_proj.weight": [c.heads * hd, h], p + "self_attn.q_proj.bias": [c.heads * hd],
                  p + "self_attn.k_proj.weight": [c.kv_heads * hd, h], p + "self_attn.k_proj.bias": [c.kv_heads * hd],
                  p + "self_attn.v_proj.weight": [c.kv_heads * hd, h], p + "self_attn.v_proj.bias": [c.kv_heads * hd],
                  p + "self_attn.o_proj.weight": [h, c.heads * hd],
                  p + "mlp.gate_proj.weight": [c.inter, h], p + "mlp.up_proj.weight": [c.inter, h],
                  p + "mlp.down_proj.weight": [h, c.inter],
                  p + "input_layernorm.weight": [h], p + "post_attention_layernorm.weight": [h]})
    s["model.norm.weight"] = [h]
    if not c.tied:
        s["lm_head.weight"] = [c.vocab, h]
    return s


def random_params(c, seed=0, std=0.02):
    """Seeded random weights (norm weights 1 + N(0, 0.1^2)), as Qwen2_5_VL.random does (other draws)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shp in param_shapes(c).items():
        if name.endswith(("norm1.weight", "norm2.weight", "layernorm.weight", "norm.weight", "ln_q.weight")):
            t = 1 + 0.1 * torch.randn(shp, generator=g)
        else:
            t = std * torch.randn(shp, generator=g)
        out[name] = t.requires_grad_(True)
    return out


def load_safetensors(path):
    """name -> f32 tensor, parsing the header with struct + json (F32 only: the fixture's dtype)."""
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {e['dtype']}, this loader reads F32 only")
        a, b = e["data_offsets"]
        out[name] = torch.frombuffer(bytearray(buf[8 + n + a:8 + n + b]), dtype=torch.float32).reshape(e["shape"])
    return out


# ---------------------------------------------------------------- index logic (spec §2, §3)


def vision_index(grids, merge, vws):
    """window_index (merged units in window order), cu_window_seqlens and cu_seqlens (patch rows),
    rotary (row, col) ids per patch in pixel_values order — get_window_index / rot_pos_emb of the spec."""
    window_index, cu_window, offset = [], [0], 0
    pos = []
    for t, gh, gw in grids:
        lh, lw = gh // merge, gw // merge
        idx = torch.arange(t * lh * lw).reshape(t, lh, lw)
        pad_h, pad_w = vws - lh % vws, vws - lw % vws  # a full extra window row when divisible
        nh, nw = (lh + pad_h) // vws, (lw + pad_w) // vws
        padded = F.pad(idx, (0, pad_w, 0, pad_h), value=-100)
        padded = padded.reshape(t, nh, vws, nw, vws).permute(0, 1, 3, 2, 4).reshape(t, nh * nw, vws, vws)
        seqlens = (padded != -100).sum([2, 3]).reshape(-1)
        flat = padded.reshape(-1)
        window_index.append(flat[flat != -100] + offset)
        cu = seqlens.cumsum(0) * merge * merge + cu_window[-1]
        cu_window.extend(cu.tolist())
        offset += t * lh * lw
        hpos = torch.arange(gh).unsqueeze(1).expand(-1, gw)
        wpos = torch.arange(gw).unsqueeze(0).expand(gh, -1)
        blk = lambda p: p.reshape(gh // merge, merge, gw // merge, merge).permute(0, 2, 1, 3).flatten()
        pos.append(torch.stack([blk(hpos), blk(wpos)], -1).repeat(t, 1))
    cu_window = torch.unique_consecutive(torch.tensor(cu_window))
    cu_full = F.pad(torch.tensor([gh * gw for t, gh, gw in grids for _ in range(t)]).cumsum(0), (1, 0))
    return torch.cat(window_index), cu_window, cu_full, torch.cat(pos)


def rope_index(ids, grids, image_token, vision_start, merge):
    """[3, L] M-RoPE positions of one sequence (images only; text after an image continues at max + 1)."""
    ids = ids.tolist()
    L, out, st, cur, gi = len(ids), [[], [], []], 0, 0, 0
    starts = [i + 1 for i in range(L - 1) if ids[i] == vision_start and ids[i + 1] == image_token]
    for s in starts:
        n_text = s - cur
        for k in range(3):
            out[k].extend(range(st, st + n_text))
        t, gh, gw = grids[gi]
        gi += 1
        hh, ww = gh // merge, gw // merge
        base = st + n_text
        for ti in range(t):
            for r in range(hh):
                for col in range(ww):
                    out[0].append(base + ti * 0)  # images: temporal index 0 (second_per_grid_t = 0)
                    out[1].append(base + r)
                    out[2].append(base + col)
        cur = s + t * hh * ww
        st = max(max(o[-1] for o in out) + 1, 0)
    for k in range(3):
        out[k].extend(range(st, st + L - cur))
    return torch.tensor(out)


# ---------------------------------------------------------------- graph


def rms_norm(x, w, eps):
    """HF Qwen2RMSNorm: normalize in f32, cast back, then multiply by the weight."""
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


def segment_attention(q, k, v, cu, causal=False):
    """q [N, H, D], k, v [N, Hkv, D]; softmax(q k^T / sqrt(D)) v within each segment of cu."""
    n, hq, d = q.shape
    hkv = k.shape[1]
    scale = d ** -0.5
    lens = (cu[1:] - cu[:-1]).tolist()
    if len(set(lens)) == 1:  # equal segments: one batched matmul
        s, b = lens[0], len(lens)
        qs = q.reshape(b, s, hkv, hq // hkv, d).permute(0, 2, 3, 1, 4)    # [B, Hkv, G, S, D]
        ks = k.reshape(b, s, hkv, 1, d).permute(0, 2, 3, 1, 4)            # [B, Hkv, 1, S, D]
        vs = v.reshape(b, s, hkv, 1, d).permute(0, 2, 3, 1, 4)
        sc = torch.matmul(qs, ks.transpose(-1, -2)) * scale
        if causal:
            sc = sc.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
        o = torch.matmul(torch.softmax(sc, -1), vs)                        # [B, Hkv, G, S, D]
        return o.permute(0, 3, 1, 2, 4).reshape(n, hq * d)
    return torch.cat([segment_attention(q[a:e], k[a:e], v[a:e], torch.tensor([0, e - a]), causal)
                      for a, e in zip(cu[:-1].tolist(), cu[1:].tolist())])


def swiglu(x, p, prefix, bias):
    b = (lambda n: p[prefix + n + ".bias"]) if bias else (lambda n: None)
    g = F.linear(x, p[prefix + "gate_proj.weight"], b("gate_proj"))
    u = F.linear(x, p[prefix + "up_proj.weight"], b("up_proj"))
    return F.linear(F.silu(g) * u, p[prefix + "down_proj.weight"], b("down_proj"))


def vision_forward(c, p, pixel_values, grids, hooks=None):
    unit = c.merge ** 2
    win, cu_win, cu_full, pos = vision_index(grids, c.merge, c.window // c.merge // c.patch)
    n = pixel_values.shape[0]
    h = F.linear(pixel_values, p["visual.patch_embed.proj.weight"].reshape(c.v_hidden, -1))
    h = h.reshape(n // unit, unit, -1)[win].reshape(n, -1)
    dim = c.v_head_dim // 2
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    freqs = torch.outer(torch.arange(int(pos.max()) + 1, dtype=torch.float), inv)
    rot = freqs[pos].flatten(1)                                              # [N, head_dim / 2]
    rot = rot.reshape(n // unit, unit, -1)[win].reshape(n, -1)
    emb = torch.cat((rot, rot), -1)
    cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)                # [N, 1, head_dim]
    for i in range(c.v_depth):
        pre = f"visual.blocks.{i}."
        cu = cu_full if i in c.full else cu_win
        x = rms_norm(h, p[pre + "norm1.weight"], 1e-6)
        qkv = F.linear(x, p[pre + "attn.qkv.weight"], p[pre + "attn.qkv.bias"]).reshape(n, 3, c.v_heads, -1)
        q, k, v = qkv.unbind(1)
        q = (q.float() * cos + rotate_half(q.float()) * sin).to(q.dtype)
        k = (k.float() * cos + rotate_half(k.float()) * sin).to(k.dtype)
        a = segment_attention(q, k, v, cu)
        h = h + F.linear(a, p[pre + "attn.proj.weight"], p[pre + "attn.proj.bias"])
        h = h + swiglu(rms_norm(h, p[pre + "norm2.weight"], 1e-6), p, pre + "mlp.", True)
    x = rms_norm(h, p["visual.merger.ln_q.weight"], 1e-6).reshape(n // unit, -1)
    x = F.gelu(F.linear(x, p["visual.merger.mlp.0.weight"], p["visual.merger.mlp.0.bias"]))
    x = F.linear(x, p["visual.merger.mlp.2.weight"], p["visual.merger.mlp.2.bias"])
    if hooks is not None:
        hooks.update(window_index=win, cu_window_seqlens=cu_win, cu_seqlens=cu_full)
    return x[torch.argsort(win)]


def mrope_cos_sin(c, pos):
    """cos, sin [L, 1, head_dim]: frequency j takes its position from component t, h or w by mrope_section."""
    d = c.head_dim
    inv = 1.0 / (c.theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    freqs = pos.float().unsqueeze(-1) * inv                                  # [3, L, d/2]
    emb = torch.cat((freqs, freqs), -1)                                      # [3, L, d]
    comp = torch.cat([torch.full((s,), i % 3) for i, s in enumerate(c.mrope * 2)])
    pick = lambda t: t.gather(0, comp.view(1, 1, d).expand(1, t.shape[1], d))[0]
    return pick(emb.cos()).unsqueeze(1), pick(emb.sin()).unsqueeze(1)


def forward(c, p, ids, pixel_values, grids, pos=None, hooks=None):
    """Final hidden states [L, hidden] of one sequence (after model.norm)."""
    L = ids.shape[0]
    h = p["model.embed_tokens.weight"][ids]
    if grids:
        feats = vision_forward(c, p, pixel_values, grids, hooks)
        mask = (ids == c.image_token).unsqueeze(-1).expand_as(h)
        h = h.masked_scatter(mask, feats)
    if pos is None:
        pos = rope_index(ids, grids, c.image_token, c.vision_start, c.merge)
    if hooks is not None:
        hooks["position_ids"] = pos
    cos, sin = mrope_cos_sin(c, pos)
    cu = torch.tensor([0, L])
    for i in range(c.layers):
        pre = f"model.layers.{i}."
        x = rms_norm(h, p[pre + "input_layernorm.weight"], c.eps)
        q = F.linear(x, p[pre + "self_attn.q_proj.weight"], p[pre + "self_attn.q_proj.bias"]).reshape(L, c.heads, -1)
        k = F.linear(x, p[pre + "self_attn.k_proj.weight"], p[pre + "self_attn.k_proj.bias"]).reshape(L, c.kv_heads, -1)
        v = F.linear(x, p[pre + "self_attn.v_proj.weight"], p[pre + "self_attn.v_proj.bias"]).reshape(L, c.kv_heads, -1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        h = h + F.linear(segment_attention(q, k, v, cu, causal=True), p[pre + "self_attn.o_proj.weight"])
        h = h + swiglu(rms_norm(h, p[pre + "post_attention_layernorm.weight"], c.eps), p, pre + "mlp.", False)
    return rms_norm(h, p["model.norm.weight"], c.eps)


def lm_head(c, p):
    return p["model.embed_tokens.weight"] if c.tied else p["lm_head.weight"]


# ---------------------------------------------------------------- check against the HF fixture


def check():
    torch.set_num_threads(2)
    with open(os.path.join(FIXTURES, "model/config.json")) as f:
        c = Cfg(json.load(f))
    p = load_safetensors(os.path.join(FIXTURES, "model/model.safetensors"))
    case = os.path.join(FIXTURES, "multi_image")
    with open(os.path.join(case, "manifest.json")) as f:
        man = json.load(f)["tensors"]
    np_dt = {"f32": torch.float32, "i32": torch.int32}

    def load(name):
        e = man[name]
        with open(os.path.join(case, e["file"]), "rb") as f:
            return torch.frombuffer(bytearray(f.read()), dtype=np_dt[e["dtype"]]).reshape(e["shape"])

    ids = load("input_ids")[0].long()
    assert int(load("attention_mask").min()) == 1, "multi_image is expected to have no padding"
    grids = [tuple(g) for g in load("image_grid_thw").tolist()]
    hooks = {}
    with torch.no_grad():
        hidden = forward(c, p, ids, load("pixel_values"), grids, None, hooks)
        logits = F.linear(hidden, lm_head(c, p))
    exact = [("window_index", "vision/window_index"), ("cu_window_seqlens", "vision/cu_window_seqlens"),
             ("cu_seqlens", "vision/cu_seqlens"), ("position_ids", "position_ids")]
    ok = True
    for mine, theirs in exact:
        same = torch.equal(hooks[mine].long().reshape(-1), load(theirs).long().reshape(-1))
        print(f"{mine}: {'exact' if same else 'MISMATCH'}")
        ok &= same
    ref = load("logits")[0]
    rel = float((logits - ref).norm() / ref.norm())
    hrel = float((hidden - load("final_hidden")[0]).norm() / load("final_hidden")[0].norm())
    print(f"final hidden rel err {hrel:.3e}; logits rel err {rel:.3e} (limit 1e-4)")
    ok &= rel < 1e-4
    print("check:", "OK" if ok else "FAILED")
    return 0 if ok else 1


# ---------------------------------------------------------------- benchmark


def bench_input(c, seed=0):
    """<|vision_start|> + 256 <|image_pad|> + <|vision_end|> + 512 text ids; one 448x448 image (grid 1x32x32)."""
    g = torch.Generator().manual_seed(seed)
    grids = [(1, 32, 32)]
    n_img = 32 * 32 // c.merge ** 2
    text = torch.randint(0, 151643, (512,), generator=g)
    ids = torch.cat([torch.tensor([c.vision_start]), torch.full((n_img,), c.image_token),
                     torch.tensor([c.vision_end]), text])
    pv = torch.randn(32 * 32, c.patch_dim, generator=g)
    return ids, pv, grids


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(mode):
    threads = int(os.environ.get("FOVEA_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    c = Cfg(bench_config())
    p = random_params(c)
    param_bytes = sum(t.numel() * t.element_size() for t in p.values())
    ids, pv, grids = bench_input(c)
    L = ids.shape[0]
    n_text = 512
    rows = slice(L - n_text - 1, L - 1)     # the rows that predict the 512 text tokens
    targets = ids[L - n_text:]
    after_init = peak_rss_mb()

    def step():
        if mode == "fwd":
            with torch.no_grad():
                forward(c, p, ids, pv, grids)
            return None
        hidden = forward(c, p, ids, pv, grids)
        loss = F.cross_entropy(F.linear(hidden[rows], lm_head(c, p)), targets)
        loss.backward()
        for t in p.values():
            t.grad = None
        return float(loss)

    reps = int(os.environ.get("BENCH_REPS", "3"))
    step()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        loss = step()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    med = ts[len(ts) // 2]
    print(json.dumps({
        "impl": "torch", "bench": f"qwen25vl_{mode}", "threads": torch.get_num_threads(), "tokens": L,
        "seconds": med, "all_seconds": ts, "tokens_per_s": L / med, "loss": loss,
        "peakRssMB": peak_rss_mb(), "initRssMB": after_init, "paramMB": param_bytes / 2 ** 20,
        "attention": "matmul+softmax per segment (equal windows batched); torch has no SDPA in 1.13",
    }), flush=True)


if __name__ == "__main__":
    arg = sys.argv[1] if len(sys.argv) > 1 else "--check"
    if arg == "--check":
        sys.exit(check())
    if arg == "--print-config":
        print(json.dumps(bench_config(), indent=1))
    elif arg in ("fwd", "fwdbwd"):
        bench(arg)
    else:
        sys.exit(f"usage: {sys.argv[0]} --check | --print-config | fwd | fwdbwd")
