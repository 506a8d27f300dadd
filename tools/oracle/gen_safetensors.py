"""Independent safetensors oracle for Fovea: writes a small .safetensors fixture with struct + json +
numpy (no `safetensors` package, and nothing shared with the TS code), following the format spec
and the reference writer's layout (huggingface/safetensors, tensor.rs `prepare`):

- 8-byte little-endian u64 N, then N bytes of compact UTF-8 JSON ("__metadata__" first, then each
  tensor as {"dtype", "shape", "data_offsets"}), padded with spaces to a multiple of 8, then the
  data buffer;
- tensors sorted by dtype (the reference Dtype enum, widest alignment first) then by name (UTF-8
  bytes), packed back to back from offset 0.

It also writes expected.json: each tensor's dtype, shape and values as float64 lists (non-finite
values as the strings "inf", "-inf", "nan"; i64 also as decimal strings, exact), the torch casts
of each float tensor to f32/f64/bf16/f16 (torch rounds to nearest even), the metadata, and the
insertion order the TS writer must be given to reproduce the file byte for byte.

    /usr/bin/python3 tools/oracle/gen_safetensors.py             # writes the fixture
    /usr/bin/python3 tools/oracle/gen_safetensors.py --check F   # reads F with this script's reader
"""
import json
import os
import struct
import sys

import numpy as np
import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "packages", "core-ts", "test", "fixtures", "safetensors")

# The reference Dtype enum order (increasing alignment); the writer sorts by it, descending.
RANK = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16",
        "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"]
# format dtype -> (torch dtype, little-endian numpy dtype of the stored bits)
DTYPES = {
    "F32": (torch.float32, "<f4"), "F64": (torch.float64, "<f8"), "F16": (torch.float16, "<f2"),
    "BF16": (torch.bfloat16, "<i2"), "I32": (torch.int32, "<i4"), "I64": (torch.int64, "<i8"),
    "BOOL": (torch.bool, "u1"),
}
FLOATS = {"F32", "F64", "F16", "BF16"}
CAST_TARGETS = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16, "f16": torch.float16}


def raw_bytes(t, dtype):
    """Little-endian row-major bytes of t (bf16 through its int16 bit pattern)."""
    t = t.contiguous()
    if dtype == "BF16":
        t = t.view(torch.int16)
    return t.numpy().astype(DTYPES[dtype][1]).tobytes()


def serialize(tensors, metadata):
    """tensors: list of (name, dtype, torch tensor). Returns the file's bytes."""
    order = sorted(tensors, key=lambda e: (-RANK.index(e[1]), e[0].encode("utf-8")))
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, t in order:
        b = raw_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    js = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    js += b" " * ((8 - len(js) % 8) % 8)
    return struct.pack("<Q", len(js)) + js + b"".join(blobs)


def read(path):
    """Reads a file with this script's own parser; checks the layout invariants as it goes."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0 and 8 + n <= len(data), f"header length {n}"
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    buf = data[8 + n:]
    out, cursor = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        b, end = e["data_offsets"]
        assert b == cursor, f"{name}: offsets not contiguous"
        torch_dt, np_dt = DTYPES[e["dtype"]]
        arr = np.frombuffer(buf[b:end], dtype=np_dt).reshape(e["shape"])
        assert arr.nbytes == end - b
        t = torch.from_numpy(arr.copy())
        out[name] = t.view(torch.bfloat16) if e["dtype"] == "BF16" else t.to(torch_dt)
        cursor = end
    assert cursor == len(buf), "trailing bytes"
    return out, meta


def f32(vals):
    return torch.tensor(vals, dtype=torch.float64).to(torch.float32)


def cases():
    g = torch.Generator().manual_seed(20240611)
    u = lambda *shape: torch.rand(shape, generator=g, dtype=torch.float64) * 4 - 2
    # f32 values include ties for the casts: 1 + 2^-8 and 1 + 3 * 2^-8 sit halfway between bf16
    # neighbours (round to even gives 1 and 1 + 2^-6); 1 + 2^-11 halfway between f16 neighbours.
    ties = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, -0.0, 3.0e38, 1e-40]
    return [
        # insertion order is deliberately not the file order
        ("model.embed.weight", "F32", torch.cat([f32(ties), u(6).float()]).reshape(3, 4)),
        ("model.layers.0.attn.bf16", "BF16", u(2, 3).to(torch.bfloat16)),
        ("model.layers.0.mlp.f16", "F16", torch.tensor([65504.0, 2 ** -24, -1.5, 0.333251953125], dtype=torch.float16)),
        ("model.norm.f64", "F64", torch.tensor([3.141592653589793, -1e300, 5e-324], dtype=torch.float64)),
        ("ids.i64", "I64", torch.tensor([-(2 ** 62) - 5, 0, 2 ** 53 + 1, 7], dtype=torch.int64)),
        ("ids.i32", "I32", torch.tensor([[-(2 ** 31), 2 ** 31 - 1], [0, -7]], dtype=torch.int32)),
        ("mask", "BOOL", torch.tensor([True, False, True], dtype=torch.bool)),
        ("scalar", "F32", torch.tensor(2.5, dtype=torch.float32)),
        ("empty", "F32", torch.zeros(0, 4, dtype=torch.float32)),
        ("a_bf16_first_by_name", "BF16", torch.tensor([1.0, -2.0], dtype=torch.bfloat16)),
    ]


def values(t):
    """float64 values; JSON has no inf/nan, so those are written as the strings "inf", "-inf", "nan"."""
    out = []
    for v in t.to(torch.float64).flatten().tolist():
        out.append(v if v == v and abs(v) != float("inf") else ("nan" if v != v else ("inf" if v > 0 else "-inf")))
    return out


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        tensors, meta = read(sys.argv[2])
        print(json.dumps({"metadata": meta, "tensors": {k: [str(v.dtype), list(v.shape)] for k, v in tensors.items()}}))
        return
    tensors = cases()
    metadata = {"format": "pt", "note": "fovea fixture \u2713"}
    data = serialize(tensors, metadata)
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "reference.safetensors")
    with open(path, "wb") as f:
        f.write(data)

    expected = {
        "generator": "tools/oracle/gen_safetensors.py", "torch": torch.__version__,
        "metadata": metadata, "insertion_order": [n for n, _, _ in tensors],
        "header_length": struct.unpack("<Q", data[:8])[0], "file_size": len(data), "tensors": {},
    }
    for name, dtype, t in tensors:
        e = {"dtype": dtype, "shape": list(t.shape), "values": values(t)}
        if dtype == "I64":
            e["values_str"] = [str(v) for v in t.flatten().tolist()]
        if dtype in FLOATS:
            e["as"] = {k: values(t.to(td)) for k, td in CAST_TARGETS.items()}
        expected["tensors"][name] = e
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")

    # Self-check: read the file back with the independent reader and compare bit for bit.
    back, meta = read(path)
    assert meta == metadata
    for name, dtype, t in tensors:
        assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
        assert raw_bytes(back[name], dtype) == raw_bytes(t, dtype), name
    print(f"wrote {path} ({len(data)} bytes, header {expected['header_length']}) and expected.json")


if __name__ == "__main__":
    main()
