"""PyTorch float64 reference fixtures for flashAttention (packages/core-ts/src/ops/flashAttention.ts),
written to packages/core-ts/test/fixtures/flash_attn/ in the format of tools/oracle/README.md.

The reference is naive attention with an explicit [sq, sk] boolean mask per sequence (FlashAttention's
varlen semantics: bottom-right aligned causal mask, windows around the diagonal i + sk - sq, query
head h reads KV head h // (Hq / Hkv)). A row that sees no key has out 0, lse +inf and zero gradient.
Inputs q, k, v are f32 (uniform in [-2, 2) so the softmax is not flat). Everything is computed in
float64 and, unlike gen_ops.py, stored as f32 (out, lse, proj and the gradients of sum(out * proj),
proj itself f32-rounded before use) to keep the committed fixtures at a few MB; f32 rounding
(~6e-8 relative) is far below the tolerances the tests use. cuSeqlens are i32. The shared kernel fixtures
(/work/shared/fixtures/kernels/attention_*) are copied into flash_attn/shared/ unchanged.

Run from the repository root:  /usr/bin/python3 tools/oracle/gen_flash_attn.py
"""
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import Draw, case_seed, write_case  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "packages", "core-ts", "test", "fixtures", "flash_attn")
SHARED = "/work/shared/fixtures/kernels"


def mask_for(sq, sk, causal, wl, wr):
    i = torch.arange(sq)[:, None]
    j = torch.arange(sk)[None, :]
    diag = i + sk - sq
    m = torch.ones(sq, sk, dtype=torch.bool)
    if causal:
        m &= j <= diag
    if wl >= 0:
        m &= j >= diag - wl
    if wr >= 0:
        m &= j <= diag + wr
    return m


def attention(q, k, v, cuq, cuk, causal, wl, wr, scale):
    """q [Tq, Hq, D], k/v [Tk, Hkv, D] float64 -> out [Tq, Hq, D], lse [Hq, Tq]."""
    hq, hkv = q.shape[1], k.shape[1]
    outs, lses = [], []
    for b in range(len(cuq) - 1):
        qs = q[cuq[b]:cuq[b + 1]]
        ks = k[cuk[b]:cuk[b + 1]].repeat_interleave(hq // hkv, dim=1)
        vs = v[cuk[b]:cuk[b + 1]].repeat_interleave(hq // hkv, dim=1)
        sq, sk = qs.shape[0], ks.shape[0]
        m = mask_for(sq, sk, causal, wl, wr)
        seen = m.any(dim=1)  # [sq]
        s = torch.einsum("ihd,jhd->hij", qs, ks) * scale
        s = s.masked_fill(~m, float("-inf"))
        # Rows that see nothing: scores 0 (finite softmax, no NaN in the graph), then P = 0.
        s = torch.where(seen[None, :, None], s, torch.zeros((), dtype=s.dtype))
        p = torch.softmax(s, dim=-1) * seen[None, :, None]
        outs.append(torch.einsum("hij,jhd->ihd", p, vs))
        lse = torch.logsumexp(s, dim=-1)
        lses.append(torch.where(seen[None, :], lse, torch.full((), float("inf"), dtype=lse.dtype)))
    return torch.cat(outs, 0), torch.cat(lses, 1)


def offsets(lens):
    o = [0]
    for n in lens:
        o.append(o[-1] + n)
    return o


def make_case(name, sq, sk, hq, hkv, d, causal=False, wl=-1, wr=-1, note=None):
    seed = case_seed(name)
    draw = Draw(seed)
    cuq, cuk = offsets(sq), offsets(sk)
    q = draw.f32((cuq[-1], hq, d), -2.0, 2.0)
    k = draw.f32((cuk[-1], hkv, d), -2.0, 2.0)
    v = draw.f32((cuk[-1], hkv, d))
    scale = 1.0 / d ** 0.5
    args = [t.double().requires_grad_(True) for t in (q, k, v)]
    out, lse = attention(*args, cuq, cuk, causal, wl, wr, scale)
    proj = draw.u(tuple(out.shape)).float()
    grads = [g.float() for g in torch.autograd.grad((out * proj.double()).sum(), args)]
    tensors = {
        "q": q, "k": k, "v": v,
        "cuSeqlensQ": torch.tensor(cuq, dtype=torch.int32), "cuSeqlensK": torch.tensor(cuk, dtype=torch.int32),
        "out": out.detach().float(), "lse": lse.detach().float(), "proj": proj,
        "grad_q": grads[0], "grad_k": grads[1], "grad_v": grads[2],
    }
    manifest = {
        "case": name, "op": "flashAttention", "generator": "tools/oracle/gen_flash_attn.py",
        "torch": torch.__version__, "seed": seed,
        "params": {"maxSeqlenQ": max(sq), "maxSeqlenK": max(sk), "causal": causal,
                   "windowLeft": wl, "windowRight": wr, "scale": scale},
        "inputs": ["q", "k", "v", "cuSeqlensQ", "cuSeqlensK"], "differentiable": ["q", "k", "v"],
        "outputs": ["out", "lse"], "projections": {"out": "proj"},
    }
    if note:
        manifest["note"] = note
    return tensors, manifest


LENS = [0, 1, 2, 17, 128]
CASES = [
    # name, seqlens_q, seqlens_k, Hq, Hkv, D, causal, windowLeft, windowRight
    # (long sequences get small heads and head dims so the fixtures stay small)
    ("mixed_noncausal_mha_d64", LENS, LENS, 1, 1, 64, False, -1, -1),
    ("mixed_causal_gqa2_d32", LENS, LENS, 2, 1, 32, True, -1, -1),
    ("mixed_causal_gqa7_d80", [2, 0, 17, 1], [2, 0, 17, 1], 7, 1, 80, True, -1, -1),
    ("mixed_noncausal_gqa8_d128", [17, 1, 0, 2], [17, 1, 0, 2], 8, 1, 128, False, -1, -1),
    ("long1000_causal_gqa2_d8", [1000], [1000], 2, 1, 8, True, -1, -1),
    ("long1000_window63_64_d8", [1000, 17], [1000, 17], 1, 1, 8, False, 63, 64),
    ("window0_0_noncausal_gqa2_d32", [17, 128, 1], [17, 128, 1], 2, 1, 32, False, 0, 0),
    ("window4_0_causal_gqa8_d16", [128, 17, 2], [128, 17, 2], 8, 1, 16, True, 4, 0),
    ("window63_64_causal_gqa7_d16", [128, 2, 17], [128, 2, 17], 7, 1, 16, True, 63, 64),
    ("prefix_causal_gqa2_d16", [1, 17, 2, 0, 17, 128], [17, 128, 2, 5, 2, 128], 2, 1, 16, True, -1, -1),
    ("prefix_noncausal_window_d80", [17, 1, 2], [128, 0, 17], 2, 1, 80, False, 4, 2),
]


def main():
    torch.set_num_threads(2)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    names = []
    for (name, sq, sk, hq, hkv, d, causal, wl, wr) in CASES:
        tensors, manifest = make_case(name, sq, sk, hq, hkv, d, causal, wl, wr)
        write_case(OUT, tensors, manifest)
        names.append(name)
    shared = sorted(c for c in os.listdir(SHARED) if c.startswith("attention_"))
    for c in shared:
        shutil.copytree(os.path.join(SHARED, c), os.path.join(OUT, "shared", c))
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump({"cases": names, "ops": {"flashAttention": names}, "shared": shared}, f, indent=1)
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"wrote {len(names)} cases + {len(shared)} shared to {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
