"""PyTorch half of the skinny GEMM benchmark (benchmarks/skinny_gemm_side.mjs runs it in its
own process): torch.nn.functional.linear(x [M, K], W [N, K]) on the CPU, f32 or bf16, with the
same timing rule as the Fovea side (2 warm-ups, repeats until >= 1.5 s or 30 calls).
Prints one JSON line: [{N, M, best, median}] in seconds per call.
Usage: python3 benchmarks/skinny_gemm_torch.py K N1,N2 M1,M2 f32|bf16
(threads: FOVEA_NUM_THREADS, default 2; set OPENBLAS_NUM_THREADS to the same, as the caller does)
"""
import json
import os
import sys
import time

import torch

K = int(sys.argv[1])
Ns = [int(v) for v in sys.argv[2].split(",")]
Ms = [int(v) for v in sys.argv[3].split(",")]
dtype = torch.bfloat16 if sys.argv[4] == "bf16" else torch.float32
torch.set_num_threads(int(os.environ.get("FOVEA_NUM_THREADS", "2")))


def time_it(fn):
    fn()
    fn()
    ts = []
    start = time.perf_counter()
    while len(ts) < 30 and (len(ts) < 5 or time.perf_counter() - start < 1.5):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[0], ts[len(ts) // 2]


rows = []
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    for N in Ns:
        W = torch.randn(N, K, generator=g).to(dtype)
        for M in Ms:
            x = torch.randn(M, K, generator=g).to(dtype)
            best, median = time_it(lambda: torch.nn.functional.linear(x, W))
            rows.append({"N": N, "M": M, "best": best, "median": median})
print(json.dumps(rows))
