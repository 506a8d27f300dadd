"""Plumbing shared by the oracle scripts: seeded draws, dtype tags, building one case (inputs ->
float64 reference outputs -> gradients of a random projection) and writing it as a fixture folder
(manifest.json + raw little-endian row-major .bin files, the format of shared/fixtures/README.md).

Invariants the TS tests rely on:
- every random number of a case comes from one torch.Generator seeded with crc32(case name), so a
  case's bytes do not change when other cases are added, removed or reordered;
- inputs are stored in their own dtype; the reference is computed from their exact values upcast
  to float64 (integer inputs to int64, u8 masks to bool) and stored as f64 / i64 / u8;
- proj is uniform in [-1, 1), float64; grad_<x> = d(sum_i sum(out_i * proj_i)) / dx in float64.
"""
import json
import math
import os
import shutil
import zlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

# fixture dtype tag -> (torch dtype, little-endian numpy dtype of the raw bytes).
# bf16 and f16 are stored as their raw 16-bit patterns; u8 holds booleans (0 / 1).
DTYPES = {
    "f64": (torch.float64, "<f8"),
    "f32": (torch.float32, "<f4"),
    "f16": (torch.float16, "<u2"),
    "bf16": (torch.bfloat16, "<u2"),
    "i64": (torch.int64, "<i8"),
    "i32": (torch.int32, "<i4"),
    "u8": (torch.bool, "u1"),
}
TAG_OF = {tdt: tag for tag, (tdt, _) in DTYPES.items()}
ITEMSIZE = {tag: np.dtype(npdt).itemsize for tag, (_, npdt) in DTYPES.items()}


class Draw:
    """Seeded random tensors. Float draws are float64 uniforms, rounded to the requested dtype."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def u(self, shape, lo=-1.0, hi=1.0):
        return torch.rand(shape, generator=self.g, dtype=torch.float64) * (hi - lo) + lo

    def f32(self, shape, lo=-1.0, hi=1.0):
        return self.u(shape, lo, hi).float()

    def bf16(self, shape, lo=-1.0, hi=1.0):
        return self.u(shape, lo, hi).to(torch.bfloat16)

    def signed(self, shape, lo, hi, dtype=torch.float32):
        """Magnitude uniform in [lo, hi), random sign: keeps values away from 0 (abs, relu, div)."""
        mag = self.u(shape, lo, hi)
        sign = torch.where(self.u(shape, 0.0, 1.0) < 0.5, -1.0, 1.0).double()
        return (mag * sign).to(dtype)

    def ints(self, shape, lo, hi, dtype=torch.int32):
        """Integers uniform in [lo, hi)."""
        return torch.randint(lo, hi, tuple(shape), generator=self.g, dtype=torch.int64).to(dtype)

    def bools(self, shape, p=0.5):
        return self.u(shape, 0.0, 1.0) < p


def away(x: torch.Tensor, points, margin: float) -> torch.Tensor:
    """Push values within `margin` of any point up by 2*margin (keeps clamp/relu boundaries clear)."""
    y = x.double()
    for p in points:
        y = torch.where((y - p).abs() < margin, y + 2 * margin, y)
    return y.to(x.dtype)


def assert_no_ties(x: torch.Tensor, dim: int):
    """max/min/argmax are only differentiable / well defined without ties along dim."""
    s, _ = torch.sort(x.double(), dim=dim)
    assert bool((s.diff(dim=dim) > 0).all()), "tie along reduction dim"


@dataclass
class Case:
    name: str
    op: str
    inputs: Callable[[Draw], list]          # -> [(name, tensor in storage dtype), ...] in call order
    fn: Callable                            # reference: upcast tensors -> tensor or tuple of tensors
    params: dict = field(default_factory=dict)
    diff: list = field(default_factory=list)  # inputs whose gradients are recorded
    outputs: list = field(default_factory=lambda: ["out"])
    tolerance: Optional[dict] = None
    proj_all: bool = False                  # one projection per output, named proj0, proj1, ...
    raw: bool = False                       # fn sees stored tensors; outputs kept in their dtype
    manual_grads: Optional[Callable] = None  # (projections by output name) -> [grad per diff input]
    note: Optional[str] = None


def case_seed(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _upcast(t: torch.Tensor, requires_grad: bool) -> torch.Tensor:
    if t.dtype == torch.bool:
        return t
    if t.is_floating_point():
        return t.double().requires_grad_(requires_grad)
    return t.long()


def _stored(t: torch.Tensor, raw: bool) -> torch.Tensor:
    """The dtype an output is stored in: itself for raw cases, else f64 / i64 / bool."""
    t = t.detach()
    if raw or t.dtype == torch.bool:
        return t
    return t.double() if t.is_floating_point() else t.long()


def build(case: Case):
    """Runs one case. Returns (tensors by name, manifest without tensors)."""
    seed = case_seed(case.name)
    draw = Draw(seed)
    named = case.inputs(draw)
    names = [n for n, _ in named]
    assert set(case.diff) <= set(names), case.name
    args = [t if case.raw else _upcast(t, n in case.diff) for n, t in named]
    res = case.fn(*args)
    res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
    assert len(res) == len(case.outputs), f"{case.name}: {len(res)} outputs"
    outs = dict(zip(case.outputs, res))

    tensors = {n: t for n, t in named}
    for n, t in outs.items():
        tensors[n] = _stored(t, case.raw)
    projections = {}
    if case.diff:
        floats = [n for n in case.outputs if outs[n].is_floating_point()]
        targets = floats if case.proj_all else floats[:1]
        for i, n in enumerate(targets):
            pname = f"proj{i}" if case.proj_all else "proj"
            projections[n] = pname
            tensors[pname] = draw.u(tuple(outs[n].shape))
        projs = {n: tensors[p] for n, p in projections.items()}
        if case.manual_grads is not None:
            grads = case.manual_grads(projs)
        else:
            loss = sum((outs[n] * projs[n]).sum() for n in projections)
            grads = torch.autograd.grad(loss, [a for n, a in zip(names, args) if n in case.diff])
        diff_in_order = [n for n in names if n in case.diff]
        for n, g in zip(diff_in_order, grads):
            assert tuple(g.shape) == tuple(tensors[n].shape), f"{case.name}: grad_{n} shape"
            tensors[f"grad_{n}"] = g.detach().double()

    for n, t in tensors.items():
        if t.is_floating_point():
            assert bool(torch.isfinite(t.double()).all()), f"{case.name}: {n} not finite"

    manifest = {
        "case": case.name, "op": case.op, "generator": "tools/oracle/gen_ops.py",
        "torch": torch.__version__, "seed": seed, "params": case.params,
        "inputs": names, "differentiable": [n for n in names if n in case.diff],
        "outputs": list(case.outputs),
    }
    if projections:
        manifest["projections"] = projections
    if case.tolerance:
        manifest["tolerance"] = case.tolerance
    if case.note:
        manifest["note"] = case.note
    return tensors, manifest


def to_bytes(t: torch.Tensor) -> tuple:
    """(fixture dtype tag, raw little-endian row-major bytes)."""
    tag = TAG_OF[t.dtype]
    t = t.detach().contiguous()
    if tag in ("bf16", "f16"):
        arr = t.view(torch.int16).numpy().view("<u2")
    elif tag == "u8":
        arr = t.to(torch.uint8).numpy()
    else:
        arr = t.numpy()
    return tag, np.ascontiguousarray(arr).astype(DTYPES[tag][1], copy=False).tobytes()


def write_case(root: str, tensors: dict, manifest: dict):
    folder = os.path.join(root, manifest["case"])
    os.makedirs(folder)
    entries = {}
    for name, t in tensors.items():
        tag, data = to_bytes(t)
        with open(os.path.join(folder, f"{name}.bin"), "wb") as f:
            f.write(data)
        entries[name] = {"file": f"{name}.bin", "dtype": tag, "shape": list(t.shape)}
    manifest = dict(manifest, tensors=entries)
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        f.write(dumps_readable(manifest))


def dumps_readable(obj: dict) -> str:
    """JSON with one top-level key per line and one tensor (or list item) per line."""
    def block(d):
        return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in d.items()) + "\n }"
    lines = []
    for k, v in obj.items():
        if isinstance(v, dict) and len(json.dumps(v)) > 80:
            lines.append(f" {json.dumps(k)}: {block(v)}")
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def reset_dir(root: str):
    """The folder is generated: wipe it so removed cases do not linger."""
    if os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(root)


def verify(root: str) -> int:
    """Re-reads index.json and every manifest: files exist, byte size = prod(shape) * itemsize,
    every listed input/output/grad/proj is present. Returns total bytes of .bin files."""
    with open(os.path.join(root, "index.json")) as f:
        index = json.load(f)
    total = 0
    for name in index["cases"]:
        folder = os.path.join(root, name)
        with open(os.path.join(folder, "manifest.json")) as f:
            m = json.load(f)
        assert m["case"] == name
        ts = m["tensors"]
        needed = m["inputs"] + m["outputs"] + [f"grad_{n}" for n in m["differentiable"]]
        needed += list(m.get("projections", {}).values())
        for n in needed:
            assert n in ts, f"{name}: {n} missing from tensors"
        bins = {e for e in os.listdir(folder) if e.endswith(".bin")}
        assert bins == {e["file"] for e in ts.values()}, f"{name}: stray or missing .bin"
        for n, e in ts.items():
            size = os.path.getsize(os.path.join(folder, e["file"]))
            want = math.prod(e["shape"]) * ITEMSIZE[e["dtype"]]
            assert size == want, f"{name}/{n}: {size} bytes, expected {want}"
            total += size
    return total
