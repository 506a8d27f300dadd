"""PyTorch oracle for two GRPO/MGPO optimizer steps on the tiny Qwen2.5-VL fixture.

Reads the rollouts tools/oracle/dump_two_step.mjs dumped to packages/trainers/test/fixtures/two_step/<case>/
and recomputes, independently of Fovea, what packages/trainers/src/algorithms/grpoStep.ts must do:
  per sequence: M-RoPE positions over the WHOLE multi-turn sequence (rope_index of
  benchmarks/qwen_model_torch.py, crop images included) → eager forward (qwen_model_torch.forward;
  its --check proves it equals transformers on this checkpoint) → row i predicts tokens[i + 1] and is
  kept iff lossMask[i + 1] > 0 → the GRPO loss of tools/oracle/gen_grpo.py (grpo_reference, the
  formulas of /work/shared/specs/rl-methods.md) on the mini-batch → backward →
  torch.nn.utils.clip_grad_norm_ → torch.optim.AdamW, for the manifest's calls × ppoEpochs ×
  mini-batches (two updates per case).

It runs twice: in float64 (the expected values; qwen_model_torch's explicit .float() casts are mapped
to float64 for that run, only its rotary tables keep f32-rounded angles) and in float32 like Fovea.
The float32 run's errors against the float64 run are the same-precision baseline the TS test scales
its tolerances from (STYLE habit 4): AdamW's first steps move each weight by about ±lr whatever the
gradient's size, so weights whose gradient is tiny and cancellation-dominated carry f32 noise of a
few percent of lr in ANY f32 implementation.

Before training it checks the rollout invariants on the dump (for MGPO: the loss mask is 1 exactly on
the sampled tokens of both assistant turns and 0 on the prompt and on the tool turn with its crop
image tokens) and that the dumped old log-probs equal the initial model's log-probs of the sampled
tokens (sampling ran at temperature 1, top-k 0, top-p 1), so a shifted mask cannot pass unnoticed.

Writes into each case folder (the dump is left as it is):
  expected.json     per update (float64 run): loss, gradNorm (before clipping) and the grpoLoss
                    statistics, and clipMargin, the closest distance of a loss token's ratio to a
                    kink of the surrogate (clip bounds, dual-clip switch); per parameter tensor (HF
                    name, in safetensors order): numel, `loose` (count of loose weights, below) and
                    the sum and L2 norm of (after the last update − initial) over its other weights;
                    the sample layout; the old-log-prob check; `f32Baseline`: the float32 run's max
                    errors against the float64 run, pooled (max) over the cases, with the keys and
                    definitions of the TS test's error report (`f32BaselineThisCase`: this case's).
  positions.bin     i32 [3, L]: the M-RoPE positions of every rollout, back to back.
  paramSample.bin   f32: after the last update, for each tensor in order, the elements at
                    sample_indices(numel) (every element when numel <= SAMPLE_CAP).
  looseIndex.bin    i32 / looseValue.bin f32: for each tensor in order, the flat indices and final
                    values of its loose weights: those whose clipped gradient fell below LOOSE_GRAD
                    (but not exactly 0 throughout) in some update. AdamW's step lr·m̂/(√v̂ + eps)
                    amplifies a gradient's round-off by about eps/(|g| + eps)² there, so the test
                    holds them to a looser bound; everything else is compared tightly.
Rerun from the repository root: node tools/oracle/dump_two_step.mjs && /usr/bin/python3 tools/oracle/gen_two_step.py
"""
import contextlib
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, os.path.join(ROOT, "tools", "oracle"))
import qwen_model_torch as Q  # noqa: E402
from gen_grpo import base_cfg, grpo_reference  # noqa: E402

FIXTURES = os.path.join(ROOT, "packages", "trainers", "test", "fixtures", "two_step")
SAMPLE_CAP = 1024          # elements sampled per parameter tensor (all of a smaller tensor)
LOOSE_GRAD = 1e-7          # a weight whose |clipped gradient| drops below this in some update is "loose"
NP_DTYPE = {"f32": np.float32, "i32": np.int32}


def sample_indices(numel):
    """Deterministic, evenly spread element indices; the TS test uses the same formula."""
    if numel <= SAMPLE_CAP:
        return list(range(numel))
    return [(k * numel) // SAMPLE_CAP + (k * 7919) % max(1, numel // SAMPLE_CAP) for k in range(SAMPLE_CAP)]


def load_case(d):
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)

    def ld(name):
        e = man["tensors"][name]
        a = np.fromfile(os.path.join(d, e["file"]), dtype=NP_DTYPE[e["dtype"]])
        if a.size != math.prod(e["shape"]):
            raise ValueError(f"{d}/{e['file']}: {a.size} values, manifest says shape {e['shape']}")
        return torch.from_numpy(a.copy()).reshape(e["shape"])

    tokens, mask, old, pixels = ld("tokens").long(), ld("lossMask"), ld("oldLogprobs"), ld("pixels")
    offs, o = [], 0
    for im in man["images"]:
        offs.append(o)
        o += im["rows"]
    if o != pixels.shape[0]:
        raise ValueError(f"{d}: images list {o} patch rows, pixels.bin holds {pixels.shape[0]}")
    rollouts, o = [], 0
    for r in man["rollouts"]:
        n = r["length"]
        ims = [man["images"][k] for k in r["images"]]
        pv = torch.cat([pixels[offs[k]:offs[k] + man["images"][k]["rows"]] for k in r["images"]]) if ims else None
        rollouts.append({**r, "tokens": tokens[o:o + n], "mask": mask[o:o + n], "old": old[o:o + n], "pixels": pv,
                         "grids": [(im["grid"]["t"], im["grid"]["h"], im["grid"]["w"]) for im in ims],
                         "sources": [im["source"] for im in ims]})
        o += n
    if o != tokens.shape[0]:
        raise ValueError(f"{d}: rollouts cover {o} tokens, tokens.bin holds {tokens.shape[0]}")
    return man, rollouts


def runs_of_ones(mask):
    runs, start = [], None
    for i, m in enumerate(mask.tolist() + [0.0]):
        if m == 1.0 and start is None:
            start = i
        elif m != 1.0 and start is not None:
            runs.append((start, i))
            start = None
    return runs


def check_invariants(c, man, rollouts, im_start, im_end):
    """Loss mask = 1 exactly on the sampled assistant tokens; 0 on prompt and tool turn (images included)."""
    merge = c.merge
    for s, r in enumerate(rollouts):
        ids, m, old, pl = r["tokens"].tolist(), r["mask"], r["old"], r["promptLength"]
        where = f"{man['case']} rollout {s}"
        assert set(m.tolist()) <= {0.0, 1.0}, f"{where}: mask values {set(m.tolist())}"
        assert bool(((old != 0) == (m == 1)).all()) and bool((old[m == 1] <= 0).all()), f"{where}: old log-probs not exactly on the mask"
        assert float(m[:pl].sum()) == 0 and im_start in ids[:pl], f"{where}: the prompt must be unmasked and open an assistant turn"
        gen_prompt = ids[pl - ids[:pl][::-1].index(im_start) - 1:pl]   # "<|im_start|>assistant\n" (several ids here)
        runs = runs_of_ones(m)
        assert len(runs) == r["turns"], f"{where}: {len(runs)} masked runs for {r['turns']} assistant turn(s)"
        assert runs[0][0] == pl and runs[-1][1] == len(ids), f"{where}: turns must start right after the prompt and end the sequence"
        pads = [i for i, t in enumerate(ids) if t == c.image_token]
        assert all(m[i] == 0 for i in pads), f"{where}: an image token is in the loss"
        n_img = [t * h * w // merge ** 2 for t, h, w in r["grids"]]
        assert len(pads) == sum(n_img), f"{where}: {len(pads)} image tokens, grids give {sum(n_img)}"
        if man["mode"] == "mgpo":
            (a1, e1), (a2, _) = runs
            gap = ids[e1:a2]
            # The tool turn: closes turn 1 (unless the model sampled <|im_end|> itself), opens a user
            # turn holding the crop (vision_start, its image tokens, vision_end), ends with the same
            # generation prompt as the first prompt.
            assert (ids[e1 - 1] == im_end) != (gap[0] == im_end), f"{where}: turn 1 must be closed exactly once"
            assert im_start in gap and gap[-len(gen_prompt):] == gen_prompt, f"{where}: tool turn is not a user turn ending in the generation prompt"
            vs = [i for i, t in enumerate(gap) if t == c.vision_start]
            assert len(vs) == 1 and gap[vs[0] + 1:vs[0] + 1 + n_img[-1]] == [c.image_token] * n_img[-1] \
                and gap[vs[0] + 1 + n_img[-1]] == c.vision_end, f"{where}: the tool turn must hold exactly the crop's image tokens"
            assert r["sources"][-1] == "crop" and r["tool"]["ok"], f"{where}: turn 2 must see a crop"


def rows_of(c, p, r):
    """Hidden rows [n, H] predicting the loss tokens of one rollout, with their targets/mask/old."""
    ids = r["tokens"]
    pos = Q.rope_index(ids, r["grids"], c.image_token, c.vision_start, c.merge)
    hidden = Q.forward(c, p, ids, r["pixels"], r["grids"], pos)
    keep = torch.nonzero(r["mask"][1:] > 0)[:, 0]
    return hidden[keep], ids[keep + 1], r["mask"][keep + 1], r["old"][keep + 1], pos


def token_logp(h, W, targets, temperature):
    return torch.log_softmax(F.linear(h, W) / temperature, -1).gather(1, targets[:, None])[:, 0]


def old_logprob_check(c, p0, rollouts):
    """Max |initial-policy log-prob − dumped old log-prob| over the loss tokens."""
    err = 0.0
    with torch.no_grad():
        for r in rollouts:
            h, tgt, _, old, _ = rows_of(c, p0, r)
            err = max(err, float((token_logp(h, Q.lm_head(c, p0), tgt, 1.0) - old).abs().max()))
    return err


@contextlib.contextmanager
def float_means(dtype):
    """qwen_model_torch casts with .float() (float32) on purpose; the float64 run maps it to float64."""
    if dtype == torch.float32:
        yield
        return
    orig = torch.Tensor.float
    torch.Tensor.float = lambda self, *a, **k: self.to(dtype)
    try:
        yield
    finally:
        torch.Tensor.float = orig


def cast_rollouts(rollouts, dtype):
    """The dumped f32 values, exactly, in `dtype`."""
    return [dict(r, mask=r["mask"].to(dtype), old=r["old"].to(dtype),
                 pixels=None if r["pixels"] is None else r["pixels"].to(dtype)) for r in rollouts]


def train(c, p0, man, rollouts, dtype):
    """The manifest's updates in `dtype`; returns (parameters after the last update, per-update stats)."""
    with float_means(dtype):
        return _train(c, {n: t.to(dtype) for n, t in p0.items()}, man, cast_rollouts(rollouts, dtype), dtype)


def _train(c, p0, man, rollouts, dtype):
    t = man["train"]
    cfg = base_cfg(computeEntropy=False, **{k: v for k, v in t["loss"].items()})
    cfg["dualClip"] = cfg["dualClip"] or 0.0
    names = list(p0.keys())
    params = {n: p0[n].clone().requires_grad_(True) for n in names}
    a = man["adamw"]
    opt = torch.optim.AdamW([params[n] for n in names], lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"],
                            weight_decay=a["weightDecay"], foreach=False)
    # grpoStep hands grpoLoss f32 advantages: round them to f32 first.
    adv = torch.tensor(man["advantages"], dtype=torch.float64).float().to(dtype)
    mb = t.get("miniBatchSize") or len(rollouts)
    use_ref = t["loss"].get("beta", 0) > 0
    updates, gmin, gmax = [], {}, {}
    for _call in range(t["calls"]):
        for _epoch in range(t.get("ppoEpochs", 1)):
            for start in range(0, len(rollouts), mb):
                part = list(range(start, min(start + mb, len(rollouts))))
                hs, tg, mk, od, av, sq, refs = [], [], [], [], [], [], []
                for j, s in enumerate(part):
                    h, tgt, m, old, _ = rows_of(c, params, rollouts[s])
                    hs.append(h); tg.append(tgt); mk.append(m); od.append(old)
                    av.append(adv[s].expand(len(tgt))); sq.append(torch.full((len(tgt),), j, dtype=torch.int32))
                    if use_ref:   # the frozen reference policy: the initial weights
                        with torch.no_grad():
                            hr, *_ = rows_of(c, p0, rollouts[s])
                            refs.append(token_logp(hr, Q.lm_head(c, p0), tgt, cfg["temperature"]))
                tgt = torch.cat(tg)
                loss, parts = grpo_reference(torch.cat(hs), Q.lm_head(c, params), None, tgt, torch.cat(av), torch.cat(mk),
                                             torch.cat(sq), len(part), torch.cat(od), torch.cat(refs) if use_ref else None, cfg)
                loss.backward()
                grads = [params[n].grad for n in names if params[n].grad is not None]
                gnorm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))
                torch.nn.utils.clip_grad_norm_([params[n] for n in names], t.get("maxGradNorm", float("inf")))
                for n in names:   # what AdamW sees, for the conditioning of each weight's update
                    g = params[n].grad.detach().abs() if params[n].grad is not None else torch.zeros_like(params[n])
                    gmin[n] = g if n not in gmin else torch.minimum(gmin[n], g)
                    gmax[n] = g if n not in gmax else torch.maximum(gmax[n], g)
                opt.step()
                opt.zero_grad(set_to_none=True)
                updates.append(dict(parts["stats"], loss=float(loss), gradNorm=gnorm, rollouts=len(part),
                                    clipMargin=clip_margin(parts, torch.cat(av), cfg)))
    # Ill-conditioned weights: AdamW's step lr·m̂/(√v̂ + eps) of a weight whose gradient is near eps
    # amplifies the gradient's f32 round-off (d step/d g ≈ lr·eps/(|g| + eps)²); exact zeros stay exact.
    loose = {n: (gmin[n] < LOOSE_GRAD) & (gmax[n] > 0) for n in names}
    return {n: p.detach() for n, p in params.items()}, updates, loose


def clip_margin(parts, adv, cfg):
    """Closest distance of a loss token to a kink of the surrogate (clip bounds; dual clip's switch)."""
    m = parts["m"]
    ratio, a = parts["ratio"].detach()[m].double(), adv[m].double()
    lo, hi = 1 - cfg["epsLow"], 1 + cfg["epsHigh"]
    margin = float(torch.minimum((ratio - lo).abs(), (ratio - hi).abs()).min())
    if cfg["dualClip"] and bool((a < 0).any()):
        # for A < 0 the loss switches where max(-A r, -A clip(r)) crosses -A c
        clip1 = torch.maximum(-a * ratio, -a * torch.clamp(ratio, lo, hi))
        margin = min(margin, float((clip1 + a * cfg["dualClip"])[a < 0].abs().min()))
    return margin


STAT_KEYS = ("pgLoss", "klLoss", "meanRatio", "approxKl", "klRef", "clipFracLow", "clipFracHigh", "clipFracDual")


def param_errors(p0, got, ref, loose, lr):
    """Parameter errors after the last update (see expected.json's doc in the module docstring)."""
    w = {"paramTightPerLr": 0.0, "paramLoosePerLr": 0.0, "deltaNormTight": 0.0, "deltaSumTightPerLr": 0.0}
    for n in p0:
        g, r, lz = got[n].double().reshape(-1), ref[n].double().reshape(-1), loose[n].reshape(-1)
        d0 = p0[n].double().reshape(-1)
        tight = ~lz
        dg, dr = (g - d0)[tight], (r - d0)[tight]
        w["deltaNormTight"] = max(w["deltaNormTight"], abs(float(dg.norm() - dr.norm())) / max(float(dr.norm()), lr))
        w["deltaSumTightPerLr"] = max(w["deltaSumTightPerLr"], abs(float(dg.sum() - dr.sum())) / (lr * math.sqrt(g.numel())))
        idx = torch.tensor(sample_indices(g.numel()), dtype=torch.long)
        idx = idx[tight[idx]]
        if len(idx):
            w["paramTightPerLr"] = max(w["paramTightPerLr"], float((g[idx] - r[idx]).abs().max()) / lr)
        if bool(lz.any()):
            w["paramLoosePerLr"] = max(w["paramLoosePerLr"], float((g[lz] - r[lz]).abs().max()) / lr)
    return w


def max_errors(p0, got, ref, got_updates, ref_updates, loose, lr):
    """The float32 run's errors against the float64 run, measured as the TS test measures Fovea's."""
    w = {"loss": 0.0, "gradNorm": 0.0, "stat": 0.0}
    for u, e in zip(got_updates, ref_updates):
        w["loss"] = max(w["loss"], abs(u["loss"] - e["loss"]) / max(abs(e["loss"]), 1e-2))
        w["gradNorm"] = max(w["gradNorm"], abs(u["gradNorm"] - e["gradNorm"]) / e["gradNorm"])
        w["stat"] = max([w["stat"]] + [abs(u[k] - e[k]) / max(1.0, abs(e[k])) for k in STAT_KEYS])
    return dict(w, **param_errors(p0, got, ref, loose, lr))


def write_expected(d, man, p0, params, updates, loose, positions, old_err, baseline, case_baseline):
    names = list(p0.keys())
    stats, sample, loose_idx, loose_val = {}, [], [], []
    for n in names:
        after, lz = params[n].reshape(-1), loose[n].reshape(-1)
        delta = (after.double() - p0[n].double().reshape(-1))[~lz]
        stats[n] = {"numel": after.numel(), "loose": int(lz.sum()), "deltaSumTight": float(delta.sum()),
                    "deltaNormTight": float(delta.norm())}
        sample.append(after[sample_indices(after.numel())].float())
        loose_idx.append(torch.nonzero(lz)[:, 0].int())
        loose_val.append(after[lz].float())
    torch.cat(sample).numpy().astype("<f4").tofile(os.path.join(d, "paramSample.bin"))
    torch.cat(loose_idx).numpy().astype("<i4").tofile(os.path.join(d, "looseIndex.bin"))
    torch.cat(loose_val).numpy().astype("<f4").tofile(os.path.join(d, "looseValue.bin"))
    torch.cat(positions, 1).numpy().astype("<i4").tofile(os.path.join(d, "positions.bin"))
    out = {
        "case": man["case"], "generator": "tools/oracle/gen_two_step.py", "torch": torch.__version__,
        "sampleCap": SAMPLE_CAP, "sampleFormula": "numel <= cap: all; else (k*numel)//cap + (k*7919) % max(1, numel//cap), k < cap",
        "looseGrad": LOOSE_GRAD, "oldLogprobMaxAbsErr": old_err,
        "f32Baseline": baseline, "f32BaselineThisCase": case_baseline, "updates": updates, "params": stats,
    }
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def main():
    torch.set_num_threads(1)   # one thread: the float32 run's reductions, hence the baseline, are reproducible
    cases = sorted(n for n in os.listdir(FIXTURES) if os.path.isfile(os.path.join(FIXTURES, n, "manifest.json")))
    if not cases:
        sys.exit(f"no dumped cases under {FIXTURES}: run node tools/oracle/dump_two_step.mjs first")
    results = []
    for name in cases:
        d = os.path.join(FIXTURES, name)
        man, rollouts = load_case(d)
        model_dir = os.path.join(ROOT, man["model"])
        with open(os.path.join(model_dir, "config.json")) as f:
            cj = json.load(f)
        c = Q.Cfg(cj)
        p0 = Q.load_safetensors(os.path.join(model_dir, "model.safetensors"))
        check_invariants(c, man, rollouts, cj["im_start_id"], cj["eos_token_id"])
        old_err = old_logprob_check(c, p0, rollouts)
        if old_err > 1e-3:
            sys.exit(f"{name}: dumped old log-probs differ from the initial policy's by {old_err:.2e} (> 1e-3)")
        positions = [Q.rope_index(r["tokens"], r["grids"], c.image_token, c.vision_start, c.merge) for r in rollouts]
        params, updates, loose = train(c, p0, man, rollouts, torch.float64)
        params32, updates32, _ = train(c, p0, man, rollouts, torch.float32)
        baseline = max_errors(p0, params32, params, updates32, updates, loose, man["adamw"]["lr"])
        results.append((d, man, p0, params, updates, loose, positions, old_err, baseline))
        print(f"{name}: old-logprob max err {old_err:.2e}; loose weights {sum(int(v.sum()) for v in loose.values())}; "
              f"f32 baseline {json.dumps({k: float(f'{v:.3g}') for k, v in baseline.items()})}")
        for k, u in enumerate(updates):
            print(f"  update {k}: loss {u['loss']:.6f} gradNorm {u['gradNorm']:.5f} meanRatio {u['meanRatio']:.5f} "
                  f"clip low {u['clipFracLow']:.3f} high {u['clipFracHigh']:.3f} dual {u['clipFracDual']:.3f} "
                  f"klRef {u['klRef']:.2e} clipMargin {u['clipMargin']:.2e}")
    # The f32 noise level is a property of the model and the arithmetic, not of one case: pool it.
    pooled = {k: max(r[8][k] for r in results) for k in results[0][8]}
    for d, man, p0, params, updates, loose, positions, old_err, baseline in results:
        write_expected(d, man, p0, params, updates, loose, positions, old_err, pooled, baseline)


if __name__ == "__main__":
    main()
