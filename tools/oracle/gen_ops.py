"""PyTorch oracle for Fovea's tensor ops: writes committed reference fixtures that the TS tests
(vitest, no Python in CI) compare against, one folder per case under
packages/core-ts/test/fixtures/ops/<case>/ (manifest.json + raw .bin tensors) plus index.json.

Each case draws its inputs from a generator seeded by crc32(case name), computes the op in
float64 from the exact stored input values, and records grad_<input> = d(sum(out * proj))/d(input)
for a random float64 projection `proj`. Op names and params are the TS API's (see
tools/oracle/README.md for the format and for how to add a case).

Rerun from the repository root (deterministic: same torch, same bytes):
    /usr/bin/python3 tools/oracle/gen_ops.py
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep tools/oracle free of __pycache__
from fixture_io import Case, assert_no_ties, away, build, dumps_readable, reset_dir, verify, write_case

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "packages", "core-ts", "test", "fixtures", "ops")

BF16_TOL = {"rtol": 1e-2, "atol": 2e-2}
CASES = []


def add(name, op, inputs, fn, **kw):
    CASES.append(Case(name, op, inputs, fn, **kw))


def all_dims(x, dims):
    return tuple(range(x.dim())) if dims is None else tuple(dims)


# ---------------------------------------------------------------- elementwise binary
def binary_cases():
    f = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
         "pow": torch.pow, "maximum": torch.maximum, "minimum": torch.minimum}
    shapes = {"same": ([3, 4], [3, 4]), "broadcast": ([3, 1, 4], [2, 4])}
    for op in ["add", "sub", "mul", "maximum", "minimum"]:
        for kind, (sa, sb) in shapes.items():
            add(f"{op}_{kind}", op, lambda d, sa=sa, sb=sb: [("a", d.f32(sa, -2, 2)), ("b", d.f32(sb, -2, 2))],
                f[op], diff=["a", "b"])
    add("add_broadcast_both", "add", lambda d: [("a", d.f32([2, 3, 1])), ("b", d.f32([1, 3, 4]))],
        torch.add, diff=["a", "b"])
    add("add_rank0", "add", lambda d: [("a", d.f32([3, 4])), ("b", d.f32([]))], torch.add,
        diff=["a", "b"], note="b is a 0-d tensor (shape [])")
    add("mul_rank1_tail", "mul", lambda d: [("a", d.f32([2, 3, 5])), ("b", d.f32([5]))], torch.mul,
        diff=["a", "b"])
    add("div_same", "div", lambda d: [("a", d.f32([3, 4], -2, 2)), ("b", d.signed([3, 4], 0.5, 2))],
        torch.div, diff=["a", "b"])
    add("div_broadcast", "div", lambda d: [("a", d.f32([2, 3, 4], -2, 2)), ("b", d.signed([3, 1], 0.5, 2))],
        torch.div, diff=["a", "b"])
    add("pow_same", "pow", lambda d: [("a", d.f32([3, 4], 0.5, 2)), ("b", d.f32([3, 4], -2, 2))],
        torch.pow, diff=["a", "b"])
    add("pow_broadcast", "pow", lambda d: [("a", d.f32([2, 3, 4], 0.5, 2)), ("b", d.f32([4], -2, 3))],
        torch.pow, diff=["a", "b"])

    cmp = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge}
    small_ints = lambda d, s: d.ints(s, -2, 3, torch.float32)  # many exact ties
    for op, fn in cmp.items():
        add(f"{op}_broadcast", op, lambda d: [("a", small_ints(d, [3, 1, 4])), ("b", small_ints(d, [2, 4]))],
            fn, note="integer-valued f32 inputs so that ties occur")
        add(f"{op}_same", op, lambda d: [("a", d.f32([4, 5])), ("b", d.f32([4, 5]))], fn)
    add("eq_i32", "eq", lambda d: [("a", d.ints([2, 6], 0, 4)), ("b", torch.tensor([2], dtype=torch.int32))],
        torch.eq, note="i32 ids compared with a [1] tensor (e.g. ids == padId)")
    add("lt_i32", "lt", lambda d: [("a", d.ints([3, 4], -3, 3)), ("b", d.ints([4], -3, 3))], torch.lt)

    add("where_same", "where", lambda d: [("cond", d.bools([3, 5])), ("a", d.f32([3, 5])), ("b", d.f32([3, 5]))],
        torch.where, diff=["a", "b"])
    add("where_broadcast", "where",
        lambda d: [("cond", d.bools([2, 3, 4])), ("a", d.f32([3, 4])), ("b", d.f32([2, 1, 4]))],
        torch.where, diff=["a", "b"])
    add("where_cond_broadcast", "where",
        lambda d: [("cond", d.bools([4])), ("a", d.f32([3, 4])), ("b", d.f32([3, 1]))],
        torch.where, diff=["a", "b"])


# ---------------------------------------------------------------- unary
def unary_cases():
    uni = lambda lo, hi: (lambda d: [("x", d.f32([3, 5], lo, hi))])
    ops = {
        "neg": (torch.neg, uni(-3, 3)), "exp": (torch.exp, uni(-3, 3)), "log": (torch.log, uni(0.05, 5)),
        "sqrt": (torch.sqrt, uni(0.05, 5)), "rsqrt": (torch.rsqrt, uni(0.05, 5)),
        "abs": (torch.abs, lambda d: [("x", d.signed([3, 5], 0.05, 3))]),
        "silu": (F.silu, uni(-6, 6)), "gelu": (lambda x: F.gelu(x, approximate="none"), uni(-5, 5)),
        "sigmoid": (torch.sigmoid, uni(-6, 6)), "tanh": (torch.tanh, uni(-3, 3)),
        "relu": (torch.relu, lambda d: [("x", d.signed([3, 5], 0.05, 3))]),
    }
    for op, (fn, inp) in ops.items():
        add(op, op, inp, fn, diff=["x"])
    add("exp_3d", "exp", lambda d: [("x", d.f32([2, 3, 4], -4, 4))], torch.exp, diff=["x"])
    add("gelu_3d", "gelu", lambda d: [("x", d.f32([2, 3, 4], -4, 4))], lambda x: F.gelu(x), diff=["x"],
        note="erf form (torch approximate='none')")

    for name, e, inp in [("sq", 2.0, lambda d: d.f32([3, 5], -2, 2)), ("cube", 3.0, lambda d: d.f32([3, 5], -2, 2)),
                         ("half", 0.5, lambda d: d.f32([3, 5], 0.1, 4)), ("neg", -1.5, lambda d: d.f32([3, 5], 0.2, 4))]:
        add(f"powScalar_{name}", "powScalar", lambda d, inp=inp: [("x", inp(d))],
            lambda x, e=e: torch.pow(x, e), params={"exponent": e}, diff=["x"])

    add("clamp_min_max", "clamp", lambda d: [("x", away(d.f32([4, 5], -2, 2), [-0.5, 0.7], 0.02))],
        lambda x: torch.clamp(x, -0.5, 0.7), params={"min": -0.5, "max": 0.7}, diff=["x"])
    add("clamp_min", "clamp", lambda d: [("x", away(d.f32([4, 5], -2, 2), [-0.25], 0.02))],
        lambda x: torch.clamp(x, min=-0.25), params={"min": -0.25}, diff=["x"],
        note="max absent from params: no upper bound")


def cast_cases():
    def special(d, extra):
        return torch.cat([torch.tensor(extra, dtype=torch.float32), d.f32([24], -3, 3)])
    # bf16: 1+2^-8 is a halfway point (ties to even -> 1), 1+3*2^-8 -> 1+2^-6; f16 likewise at 2^-11.
    bf16_pts = [0.0, -0.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 3.0e38, 1e-39, 65504.0]
    f16_pts = [0.0, -0.0, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504.0, -65504.0, 1e-5, 3e-7, -6e-8]
    ident = lambda P: [P["out"]]  # d(cast)/dx is treated as the identity
    add("cast_f32_bf16", "cast", lambda d: [("x", special(d, bf16_pts))], lambda x: x.to(torch.bfloat16),
        params={"dtype": "bf16"}, diff=["x"], raw=True, manual_grads=ident, tolerance=BF16_TOL,
        note="out stored as bf16 bits, round-to-nearest-even: compare exactly; grad_x = proj")
    add("cast_f32_f16", "cast", lambda d: [("x", special(d, f16_pts))], lambda x: x.to(torch.float16),
        params={"dtype": "f16"}, diff=["x"], raw=True, manual_grads=ident, tolerance={"rtol": 1e-3, "atol": 1e-5},
        note="out stored as f16 bits, round-to-nearest-even incl. subnormals: compare exactly; grad_x = proj")
    add("cast_f32_i32", "cast",
        lambda d: [("x", torch.cat([torch.tensor([-0.5, -1.7, 2.9, -2.0, 0.99, -0.0, 1e6 + 0.5]),
                                    d.f32([17], -100, 100)]))],
        lambda x: x.to(torch.int32), params={"dtype": "i32"}, raw=True,
        note="truncation toward zero (torch .to(int32)); compare exactly")
    add("cast_i32_f32", "cast",
        lambda d: [("x", torch.cat([torch.tensor([16777217, -16777219, 2 ** 31 - 1, -2 ** 31, 0], dtype=torch.int32),
                                    d.ints([19], -1000, 1000)]))],
        lambda x: x.to(torch.float32), params={"dtype": "f32"}, raw=True,
        note="round-to-nearest-even above 2^24; compare exactly")
    add("cast_f32_f64", "cast", lambda d: [("x", d.f32([3, 5], -3, 3))], lambda x: x.to(torch.float64),
        params={"dtype": "f64"}, diff=["x"], raw=True, manual_grads=ident, note="exact; grad_x = proj")


# ---------------------------------------------------------------- reductions
def reduction_cases():
    x345 = lambda d: [("x", d.f32([3, 4, 5], -2, 2))]
    layouts = [("all", None, False), ("all_keepdim", None, True), ("dim1_keepdim", [1], True),
               ("neg1", [-1], False), ("dims02", [0, 2], False), ("dims_neg1_0_keepdim", [-1, 0], True)]
    for suffix, dims, keep in layouts:
        p = {"dims": dims, "keepdim": keep}
        add(f"sum_{suffix}", "sum", x345, lambda x, dims=dims, keep=keep: x.sum(all_dims(x, dims), keepdim=keep),
            params=p, diff=["x"])
        add(f"mean_{suffix}", "mean", x345, lambda x, dims=dims, keep=keep: x.mean(all_dims(x, dims), keepdim=keep),
            params=p, diff=["x"])
    for suffix, dims, keep in [("neg1", [-1], False), ("dims02_keepdim", [0, 2], True), ("all", None, False)]:
        add(f"logsumexp_{suffix}", "logsumexp", x345,
            lambda x, dims=dims, keep=keep: torch.logsumexp(x, all_dims(x, dims), keepdim=keep),
            params={"dims": dims, "keepdim": keep}, diff=["x"])
    add("logsumexp_large", "logsumexp", lambda d: [("x", d.f32([3, 6], 80, 100))],
        lambda x: torch.logsumexp(x, (-1,)), params={"dims": [-1], "keepdim": False}, diff=["x"],
        note="inputs in [80, 100): a naive exp overflows f32")

    def var(x, dims, keep, c):
        dd = all_dims(x, dims)
        n = 1
        for i in dd:
            n *= x.shape[i]
        m = x.mean(dd, keepdim=True)
        return ((x - m) ** 2).sum(dd, keepdim=keep) / (n - c)
    for suffix, dims, keep in [("neg1", [-1], False), ("dims02_keepdim", [0, 2], True), ("all", None, False)]:
        for c in (1, 0):
            add(f"var_{suffix}_c{c}", "var", x345, lambda x, dims=dims, keep=keep, c=c: var(x, dims, keep, c),
                params={"dims": dims, "keepdim": keep, "correction": c}, diff=["x"],
                note="sum((x - mean)^2) / (N - correction)")

    def distinct(shape, dim):
        def inp(d):
            x = d.f32(shape, -3, 3)
            assert_no_ties(x, dim)
            return [("x", x)]
        return inp
    for op, fn in [("max", torch.max), ("min", torch.min)]:
        for suffix, dim, keep in [("dim1", 1, False), ("neg1_keepdim", -1, True), ("dim0", 0, False)]:
            add(f"{op}_{suffix}", op, distinct([3, 4, 5], dim),
                lambda x, fn=fn, dim=dim, keep=keep: tuple(fn(x, dim, keepdim=keep)),
                params={"dim": dim, "keepdim": keep}, diff=["x"], outputs=["values", "indices"],
                note="no ties; indices i64; gradient flows through values only")
    for suffix, dim, keep in [("dim0", 0, False), ("neg1_keepdim", -1, True), ("dim1", 1, False)]:
        add(f"argmax_{suffix}", "argmax", distinct([3, 4, 5], dim),
            lambda x, dim=dim, keep=keep: torch.argmax(x, dim, keepdim=keep), params={"dim": dim, "keepdim": keep})


# ---------------------------------------------------------------- matmul, linear, softmax
def linalg_cases():
    mm = [("2d", [3, 4], [4, 5]), ("3d", [2, 3, 4], [2, 4, 5]), ("broadcast_batch", [2, 1, 3, 4], [5, 4, 6]),
          ("3d_2d", [2, 3, 4], [4, 5]), ("1d_2d", [4], [4, 5]), ("2d_1d", [3, 4], [4]), ("1d_1d", [4], [4]),
          ("3d_1d", [2, 3, 4], [4]), ("1d_3d", [4], [2, 4, 5])]
    for suffix, sa, sb in mm:
        add(f"matmul_{suffix}", "matmul", lambda d, sa=sa, sb=sb: [("a", d.f32(sa)), ("b", d.f32(sb))],
            torch.matmul, diff=["a", "b"], note="torch.matmul semantics (1-D operands promoted then squeezed)")
    add("matmul_bf16", "matmul", lambda d: [("a", d.bf16([8, 16])), ("b", d.bf16([16, 12]))], torch.matmul,
        diff=["a", "b"], tolerance=BF16_TOL,
        note="bf16 inputs; the kernel should accumulate in f32; reference in f64 from the exact bf16 values")
    add("matmul_bf16_batched", "matmul", lambda d: [("a", d.bf16([2, 4, 16])), ("b", d.bf16([2, 16, 8]))],
        torch.matmul, diff=["a", "b"], tolerance=BF16_TOL)

    add("linear_bias", "linear", lambda d: [("x", d.f32([2, 3, 4])), ("weight", d.f32([5, 4])), ("bias", d.f32([5]))],
        F.linear, diff=["x", "weight", "bias"], note="y = x @ weight^T + bias")
    add("linear_nobias", "linear", lambda d: [("x", d.f32([3, 4])), ("weight", d.f32([6, 4]))],
        F.linear, diff=["x", "weight"])
    add("linear_1d", "linear", lambda d: [("x", d.f32([4])), ("weight", d.f32([3, 4])), ("bias", d.f32([3]))],
        F.linear, diff=["x", "weight", "bias"])

    for op, fn in [("softmax", torch.softmax), ("logSoftmax", torch.log_softmax)]:
        for suffix, shape, dim, lo, hi in [("dim0", [4, 5], 0, -4, 4), ("neg1", [4, 5], -1, -4, 4),
                                           ("dim1_3d", [2, 3, 4], 1, -4, 4), ("large", [3, 6], -1, 80, 100)]:
            add(f"{op}_{suffix}", op, lambda d, shape=shape, lo=lo, hi=hi: [("x", d.f32(shape, lo, hi))],
                lambda x, fn=fn, dim=dim: fn(x, dim), params={"dim": dim}, diff=["x"],
                note="inputs in [80, 100): needs max subtraction" if lo == 80 else None)


# ---------------------------------------------------------------- indexing and shape ops
def index_cases():
    def emb(shape):
        def inp(d):
            ids = d.ints(shape, 0, 10)
            assert ids.numel() > len(set(ids.flatten().tolist())), "want repeated ids"
            return [("weight", d.f32([10, 4])), ("ids", ids)]
        return inp
    for suffix, shape in [("2d", [2, 6]), ("1d", [7])]:
        add(f"embedding_{suffix}", "embedding", emb(shape), lambda w, ids: F.embedding(ids, w), diff=["weight"],
            note="repeated ids: grad_weight rows accumulate (+=)")

    for suffix, dim, idx in [("dim0", 0, [3, 0, 3, 1]), ("dim1_repeat", 1, [4, 4, 0, 2, 4, 1]), ("neg1", -1, [2, 0])]:
        add(f"indexSelect_{suffix}", "indexSelect",
            lambda d, idx=idx: [("x", d.f32([4, 5, 3])), ("index", torch.tensor(idx, dtype=torch.int32))],
            lambda x, i, dim=dim: torch.index_select(x, dim, i), params={"dim": dim}, diff=["x"])

    for suffix, xs, ishape, dim in [("dim1", [3, 5], [3, 4], 1), ("dim0", [3, 5], [4, 5], 0),
                                    ("neg1_3d", [2, 3, 4], [2, 3, 6], -1), ("smaller_index", [4, 5], [2, 3], 1)]:
        add(f"gather_{suffix}", "gather",
            lambda d, xs=xs, ishape=ishape, dim=dim: [("x", d.f32(xs)), ("index", d.ints(ishape, 0, xs[dim]))],
            lambda x, i, dim=dim: torch.gather(x, dim, i), params={"dim": dim}, diff=["x"],
            note="index i32; out has the index's shape; repeated indices accumulate in grad_x")

    for suffix, xs, ishape, dim in [("dim1", [3, 5], [3, 4], 1), ("dim0", [4, 3], [6, 3], 0),
                                    ("neg1_3d", [2, 3, 4], [2, 3, 5], -1)]:
        add(f"scatterAdd_{suffix}", "scatterAdd",
            lambda d, xs=xs, ishape=ishape, dim=dim: [("x", d.f32(xs)), ("index", d.ints(ishape, 0, xs[dim])),
                                                      ("src", d.f32(ishape))],
            lambda x, i, s, dim=dim: x.scatter_add(dim, i, s), params={"dim": dim}, diff=["x", "src"],
            note="out = x with src[...] added at index along dim (repeats accumulate); index has src's shape")

    for suffix, dim, shapes in [("dim0", 0, [[1, 3], [2, 3], [3, 3]]), ("dim1", 1, [[2, 3, 4], [2, 1, 4], [2, 5, 4]]),
                                ("neg1", -1, [[2, 2], [2, 3], [2, 1]])]:
        add(f"cat_{suffix}", "cat", lambda d, shapes=shapes: [(f"t{i}", d.f32(s)) for i, s in enumerate(shapes)],
            lambda *ts, dim=dim: torch.cat(ts, dim), params={"dim": dim}, diff=["t0", "t1", "t2"])
    for suffix, dim in [("dim0", 0), ("dim1", 1), ("neg1", -1)]:
        add(f"stack_{suffix}", "stack", lambda d: [(f"t{i}", d.f32([2, 3])) for i in range(3)],
            lambda *ts, dim=dim: torch.stack(ts, dim), params={"dim": dim}, diff=["t0", "t1", "t2"])
    for suffix, shape, sizes, dim in [("dim0", [5, 4], [2, 3], 0), ("neg1", [2, 3, 6], [1, 2, 3], -1),
                                      ("dim1", [2, 4, 3], [3, 1], 1)]:
        add(f"split_{suffix}", "split", lambda d, shape=shape: [("x", d.f32(shape))],
            lambda x, sizes=sizes, dim=dim: torch.split(x, sizes, dim), params={"sizes": sizes, "dim": dim},
            diff=["x"], outputs=[f"out{i}" for i in range(len(sizes))], proj_all=True,
            note="loss = sum_i sum(out_i * proj_i)")


# ---------------------------------------------------------------- model ops
def model_cases():
    def rms(x, w, eps):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    for suffix, xs, eps, dt in [("3d", [2, 3, 16], 1e-6, "f32"), ("2d", [4, 8], 1e-5, "f32"),
                                ("bf16", [3, 16], 1e-6, "bf16")]:
        def inp(d, xs=xs, dt=dt):
            mk = d.bf16 if dt == "bf16" else d.f32
            return [("x", mk(xs, -2, 2)), ("weight", mk([xs[-1]], 0.5, 1.5))]
        add(f"rmsNorm_{suffix}", "rmsNorm", inp, lambda x, w, eps=eps: rms(x, w, eps), params={"eps": eps},
            diff=["x", "weight"], tolerance=BF16_TOL if dt == "bf16" else None,
            note="y = x * rsqrt(mean(x^2, -1) + eps) * weight (HF Qwen2RMSNorm, computed in f64)")

    def cos_sin(S, D, shape, start):
        inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
        emb = torch.outer(torch.arange(start, start + S, dtype=torch.float64), inv)
        emb = torch.cat([emb, emb], -1)  # HF convention: the two halves share frequencies
        return emb.cos().float().reshape(shape), emb.sin().float().reshape(shape)

    def rotary(x, cos, sin):
        if cos.dim() == 2:  # [S, D]: one angle per position and channel, shared by all heads
            cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * cos + rot * sin
    S, H, D = 5, 3, 8
    for suffix, xs, cs, start in [("3d", [S, H, D], [S, 1, D], 0), ("4d", [2, S, H, D], [S, 1, D], 7),
                                  ("cos2d", [S, H, D], [S, D], 3)]:
        def inp(d, xs=xs, cs=cs, start=start):
            cos, sin = cos_sin(S, D, cs, start)
            return [("x", d.f32(xs, -2, 2)), ("cos", cos), ("sin", sin)]
        add(f"rotary_{suffix}", "rotary", inp, rotary, diff=["x"],
            note="y = x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]); "
                 "cos/sin broadcast NumPy-style, except a 2-D [S, D] cos/sin is read as [S, 1, D]")

    def ce_inp(d):
        t = d.ints([6], 0, 10)
        t[1] = -100
        t[4] = -100
        return [("logits", d.f32([6, 10], -3, 3)), ("targets", t)]
    for red in ["mean", "sum", "none"]:
        add(f"crossEntropy_{red}", "crossEntropy", ce_inp,
            lambda lg, t, red=red: F.cross_entropy(lg, t, ignore_index=-100, reduction=red),
            params={"ignoreIndex": -100, "reduction": red}, diff=["logits"],
            note="targets 1 and 4 are ignored; mean divides by the count of non-ignored targets; "
                 "'none' gives 0 at ignored rows")


def main():
    for group in (binary_cases, unary_cases, cast_cases, reduction_cases, linalg_cases, index_cases, model_cases):
        group()
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    reset_dir(OUT)
    ops = {}
    for c in CASES:
        tensors, manifest = build(c)
        write_case(OUT, tensors, manifest)
        ops.setdefault(c.op, []).append(c.name)
    index = {"generator": "tools/oracle/gen_ops.py", "torch": torch.__version__, "cases": names,
             "ops": ops}
    with open(os.path.join(OUT, "index.json"), "w") as f:
        f.write(dumps_readable(index))
    total = verify(OUT)
    print(f"{len(names)} cases, {len(ops)} ops, {total} bytes of tensors -> {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
