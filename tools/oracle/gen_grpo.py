"""PyTorch oracle for the fused GRPO loss (packages/core-ts/src/ops/grpoLoss.ts): writes committed
fixtures under packages/core-ts/test/fixtures/grpo/<case>/ in the shared fixture format
(manifest.json with params/scalars/tensors + one raw little-endian file per tensor).

The reference is the plain unfused computation in float64 with autograd (verl's formulas):
logits = (h·Wᵀ + b)/T → log_softmax → gather → ratio = exp(clamp(logp − old, ±20)) →
max(−A·r, −A·clip(r, 1−εlow, 1+εhigh)) (dual clip min(·, −A·c) for A < 0) + β·kl(logp, ref) →
aggregation. Gradients of the loss w.r.t. h, W, b come from torch autograd (so the tie and
clamp rules are exactly torch's). `--check-shared` recomputes the shared fixtures
(/work/shared/fixtures/kernels/grpo_*) with this reference to prove the semantics agree.

Fully masked sequences (no token with mask > 0) do not count as sequences in 'seq-mean-token-mean'
and 'seq-mean-token-sum' (verl's current rule). 'seq-mean-token-sum-norm' is verl's and the shared
fixtures': Σ over all sequences of the masked token sums, divided by normLength (no division by the
number of sequences).

Rerun from the repository root (deterministic):  /usr/bin/python3 tools/oracle/gen_grpo.py
"""
import json
import os
import shutil
import sys
import zlib

import numpy as np
import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "packages", "core-ts", "test", "fixtures", "grpo")
SHARED = "/work/shared/fixtures/kernels"


def kl_term(logp, ref, kind):
    if kind == "k1":
        return logp - ref
    if kind == "k2":
        return 0.5 * (logp - ref) ** 2
    kl = torch.clamp(ref - logp, -20.0, 20.0)  # verl low_var_kl
    return torch.clamp(torch.exp(kl) - kl - 1.0, -10.0, 10.0)


def grpo_reference(h, W, b, targets, adv, mask, seq_index, num_seqs, old, ref, cfg):
    """All float64 tensors; h, W, b require grad. Returns (loss, parts dict)."""
    T = cfg["temperature"]
    logits = h @ W.T
    if b is not None:
        logits = logits + b
    logits = logits / T
    logsm = torch.log_softmax(logits, dim=-1)
    logp = logsm.gather(1, targets.long()[:, None])[:, 0]
    entropy = -(logsm.exp() * logsm).sum(-1)
    old_ = logp.detach() if old is None else old
    lr = torch.clamp(logp - old_, -20.0, 20.0)
    ratio = torch.exp(lr)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - cfg["epsLow"], 1 + cfg["epsHigh"])
    clip1 = torch.maximum(pg1, pg2)
    if cfg.get("dualClip"):
        pg3 = -adv * cfg["dualClip"]
        pg = torch.where(adv < 0, torch.minimum(pg3, clip1), clip1)
    else:
        pg = clip1
    kl = kl_term(logp, ref, cfg["kl"]) if ref is not None else torch.zeros_like(logp)
    per_tok = pg + cfg["beta"] * kl

    def agg(x):
        mode = cfg["aggregation"]
        if mode == "token-mean":
            return (x * mask).sum() / torch.clamp(mask.sum(), min=1e-30) if mask.sum() > 0 else (x * mask).sum() * 0
        if mode == "seq-mean-token-sum-norm":
            # verl (and the shared fixtures): Σ over sequences of token sums / the constant,
            # NOT divided by the number of sequences.
            return (x * mask).sum() / cfg["normLength"]
        seq_sum = torch.zeros(num_seqs, dtype=x.dtype).index_add(0, seq_index.long(), x * mask)
        seq_cnt = torch.zeros(num_seqs, dtype=x.dtype).index_add(0, seq_index.long(), mask)
        live = seq_cnt > 0
        n_live = int(live.sum())
        if n_live == 0:
            return (x * mask).sum() * 0
        if mode == "seq-mean-token-mean":
            per_seq = torch.where(live, seq_sum / torch.where(live, seq_cnt, torch.ones_like(seq_cnt)), torch.zeros_like(seq_sum))
        elif mode == "seq-mean-token-sum":
            per_seq = seq_sum
        else:
            raise ValueError(mode)
        return per_seq.sum() / n_live

    loss = agg(per_tok)
    m = mask > 0
    cnt = max(float(mask.sum()), 1e-30)
    with torch.no_grad():
        lo = 1 - cfg["epsLow"]
        hi = 1 + cfg["epsHigh"]
        stats = {
            "pgLoss": float(agg(pg)),
            "klLoss": float(agg(kl)),
            "clipFracLow": float(((ratio < lo) & (adv < 0)).double().mul(mask).sum() / cnt),
            "clipFracHigh": float(((ratio > hi) & (adv > 0)).double().mul(mask).sum() / cnt),
            "clipFracDual": float((((clip1 > -adv * cfg["dualClip"]) & (adv < 0)).double().mul(mask).sum() / cnt) if cfg.get("dualClip") else 0.0),
            "approxKl": float((0.5 * (logp - old_) ** 2 * mask).sum() / cnt),
            "klRef": float((kl * mask).sum() / cnt),
            "meanRatio": float((ratio * mask).sum() / cnt),
            "entropy": float((entropy * mask).sum() / cnt),
            "tokens": float(mask.sum()),
        }
    return loss, {"logp": logp, "entropy": entropy, "ratio": ratio, "pg": pg, "kl": kl, "stats": stats, "m": m}


def run_case(inp, cfg):
    h = inp["h"].clone().requires_grad_(True)
    W = inp["W"].clone().requires_grad_(True)
    b = inp["b"].clone().requires_grad_(True) if inp.get("b") is not None else None
    loss, parts = grpo_reference(h, W, b, inp["targets"], inp["adv"], inp["mask"], inp["seq"],
                                 inp["numSeqs"], inp.get("old"), inp.get("ref"), cfg)
    loss.backward()
    return loss, parts, h.grad, W.grad, (b.grad if b is not None else None)


def write(name, cfg, inp, loss, parts, dh, dW, db):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    tensors = {}

    def put(key, t, dtype):
        arr = t.detach().numpy().astype({"f32": np.float32, "f64": np.float64, "i32": np.int32}[dtype])
        arr.tofile(os.path.join(d, key + ".bin"))
        tensors[key] = {"file": key + ".bin", "dtype": dtype, "shape": list(arr.shape)}

    # Inputs are stored in f32 and were computed from exactly those f32 values.
    for k in ("h", "W", "b", "adv", "mask", "old", "ref"):
        if inp.get(k) is not None:
            put(k, inp[k], "f32")
    put("targets", inp["targets"], "i32")
    put("seqIndex", inp["seq"], "i32")
    put("logp", parts["logp"], "f64")
    put("entropy", parts["entropy"], "f64")
    put("dh", dh, "f64")
    put("dW", dW, "f64")
    if db is not None:
        put("db", db, "f64")
    man = {"case": name, "generator": "tools/oracle/gen_grpo.py", "params": dict(cfg, numSeqs=inp["numSeqs"]),
           "scalars": dict(parts["stats"], loss=float(loss)), "tensors": tensors}
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)


def make_inputs(name, N, H, V, num_seqs, bias, old_mode, ref, full_mask_seq=None, scale=1.0):
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    f32 = lambda *s, sc=1.0: (torch.randn(*s, generator=g) * sc).float().double()
    h = f32(N, H, sc=scale)
    W = f32(V, H, sc=1.0 / np.sqrt(H) * 2)
    b = f32(V, sc=0.5) if bias else None
    targets = torch.randint(0, V, (N,), generator=g, dtype=torch.int32)
    # contiguous sequences of random lengths
    cuts = sorted(torch.randperm(N - 1, generator=g)[: num_seqs - 1].add(1).tolist()) if num_seqs > 1 else []
    seq = torch.zeros(N, dtype=torch.int32)
    for c in cuts:
        seq[c:] += 1
    adv_seq = torch.randn(num_seqs, generator=g).float().double()
    adv = adv_seq[seq.long()]
    mask = (torch.rand(N, generator=g) > 0.25).double()
    mask[0] = 1.0
    if full_mask_seq is not None:
        mask[seq == full_mask_seq] = 0.0
    with torch.no_grad():
        logits = h @ W.T + (b if b is not None else 0)
    old = None
    if old_mode == "spread":
        # old logprobs placed so ratios land below 1-eps, inside, and above 1+eps
        with torch.no_grad():
            lp = torch.log_softmax(logits, -1).gather(1, targets.long()[:, None])[:, 0]
        shift = torch.tensor([0.6, -0.5, 0.0, 0.1, -0.1, 0.4, -0.35, -1.4, 1.6])[torch.arange(N) % 9].double()
        old = (lp + shift).float().double()
    refl = None
    if ref:
        with torch.no_grad():
            lp = torch.log_softmax(logits, -1).gather(1, targets.long()[:, None])[:, 0]
        refl = (lp + torch.randn(N, generator=g).double() * 0.5).float().double()
    return {"h": h, "W": W, "b": b, "targets": targets, "adv": adv, "mask": mask, "seq": seq,
            "numSeqs": num_seqs, "old": old, "ref": refl}


def base_cfg(**kw):
    c = {"epsLow": 0.2, "epsHigh": 0.28, "dualClip": 0.0, "beta": 0.0, "kl": "k3",
         "temperature": 1.0, "aggregation": "token-mean", "normLength": 16.0, "computeEntropy": True}
    c.update(kw)
    return c


CASES = [
    # name, (N, H, V, numSeqs), input opts, cfg
    ("tokmean_basic", (40, 24, 300, 4), dict(bias=True, old_mode="spread", ref=False), base_cfg()),
    ("tokmean_default_old", (33, 16, 257, 3), dict(bias=False, old_mode=None, ref=False), base_cfg()),
    ("seqmeantokmean_k1", (50, 32, 411, 5), dict(bias=True, old_mode="spread", ref=True),
     base_cfg(aggregation="seq-mean-token-mean", beta=0.1, kl="k1")),
    ("seqmeantoksum_k2_dual", (45, 32, 389, 4), dict(bias=True, old_mode="spread", ref=True),
     base_cfg(aggregation="seq-mean-token-sum", beta=0.05, kl="k2", dualClip=3.0)),
    ("norm_k3_temp", (60, 40, 701, 6), dict(bias=True, old_mode="spread", ref=True),
     base_cfg(aggregation="seq-mean-token-sum-norm", beta=0.2, kl="k3", normLength=24.0, temperature=0.7)),
    ("fullmask_seqmean", (36, 16, 200, 4), dict(bias=False, old_mode="spread", ref=True, full_mask_seq=2),
     base_cfg(aggregation="seq-mean-token-mean", beta=0.04, kl="k3", dualClip=2.0, epsHigh=0.3)),
    ("fullmask_norm", (30, 16, 150, 3), dict(bias=True, old_mode="spread", ref=False, full_mask_seq=0),
     base_cfg(aggregation="seq-mean-token-sum-norm", normLength=10.0)),
    ("n1", (1, 8, 97, 1), dict(bias=True, old_mode="spread", ref=True),
     base_cfg(beta=0.3, kl="k2", temperature=1.3)),
    ("bigvocab_chunks", (70, 20, 5003, 5), dict(bias=True, old_mode="spread", ref=True),
     base_cfg(aggregation="seq-mean-token-mean", beta=0.01, kl="k3", dualClip=3.0, temperature=0.9)),
]


def gen():
    if os.path.isdir(OUT):
        for n in os.listdir(OUT):
            if not n.startswith("shared_"):
                shutil.rmtree(os.path.join(OUT, n))
    os.makedirs(OUT, exist_ok=True)
    for name, (N, H, V, S), iopts, cfg in CASES:
        inp = make_inputs(name, N, H, V, S, **iopts)
        loss, parts, dh, dW, db = run_case(inp, cfg)
        write(name, cfg, inp, loss, parts, dh, dW, db)
        st = parts["stats"]
        print(f"{name}: loss {float(loss):.6g} clip low {st['clipFracLow']:.3f} high {st['clipFracHigh']:.3f} dual {st['clipFracDual']:.3f}")


def load_shared(d):
    m = json.load(open(os.path.join(d, "manifest.json")))
    ld = lambda k: torch.from_numpy(np.fromfile(os.path.join(d, m["tensors"][k]["file"]),
                                                dtype={"f32": np.float32, "i32": np.int32}[m["tensors"][k]["dtype"]]).copy())
    p = m["params"]
    cu = ld("cu_seqlens").long()
    N = p["N"]
    seq = torch.zeros(N, dtype=torch.int32)
    for i in range(len(cu) - 1):
        seq[cu[i]:cu[i + 1]] = i
    inp = {"h": ld("h").double().reshape(N, p["H"]), "W": ld("W").double().reshape(p["V"], p["H"]), "b": None,
           "targets": ld("targets"), "adv": ld("advantages").double(), "mask": ld("loss_mask").double(),
           "seq": seq, "numSeqs": len(cu) - 1, "old": ld("old_logp").double(), "ref": ld("ref_logp").double()}
    cfg = base_cfg(epsLow=p["eps_low"], epsHigh=p["eps_high"], dualClip=p["dual_clip_c"] or 0.0, beta=p["beta"],
                   kl=p["kl_type"], temperature=p["temperature"], aggregation=p["loss_agg_mode"], normLength=float(p["norm_len"]))
    return m, inp, cfg, ld


def check_shared():
    ok = True
    for n in sorted(os.listdir(SHARED)):
        if not n.startswith("grpo_"):
            continue
        d = os.path.join(SHARED, n)
        m, inp, cfg, ld = load_shared(d)
        loss, parts, dh, dW, _ = run_case(inp, cfg)
        p = m["params"]
        errs = {
            "loss": abs(float(loss) - m["scalars"]["loss"]),
            "clipfrac": abs(parts["stats"]["clipFracLow"] + parts["stats"]["clipFracHigh"] - m["scalars"]["pg_clipfrac"]),
            "logp": float((parts["logp"] - ld("logp").double()).abs().max()),
            "entropy": float((parts["entropy"] - ld("entropy").double()).abs().max()),
            "dh": float((dh - ld("dh").double().reshape(p["N"], p["H"])).abs().max()),
            "dW": float((dW - ld("dW").double().reshape(p["V"], p["H"])).abs().max()),
        }
        good = all(v < 1e-5 for v in errs.values())
        ok &= good
        print(n, "OK" if good else "MISMATCH", {k: f"{v:.2e}" for k, v in errs.items()})
    return ok


def copy_shared():
    for n in sorted(os.listdir(SHARED)):
        if n.startswith("grpo_"):
            dst = os.path.join(OUT, "shared_" + n)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(os.path.join(SHARED, n), dst)


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    if "--check-shared" in sys.argv:
        sys.exit(0 if check_shared() else 1)
    if "--copy-shared" in sys.argv:
        copy_shared()
    gen()
