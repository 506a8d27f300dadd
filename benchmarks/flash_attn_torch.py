"""PyTorch half of the flash attention benchmark (flash_attn_side.sh; one configuration per process).
Usage: python3 benchmarks/flash_attn_torch.py S causal(0|1) fwd|fwdbwd
PyTorch 1.13 has no fused attention, so the baseline is the eager computation
softmax(Q·Kᵀ·scale [masked]) · V over [Hq, S, D] with the KV heads expanded (repeat_interleave),
B = 1, Hq = 16, Hkv = 2, D = 128, f32, same thread count as Fovea. Prints one JSON line: median
seconds after warm-up, process peak RSS (resource.getrusage ru_maxrss, the kernel's high-water
mark; no tracemalloc, which does not see torch's allocations) and the RSS after making inputs."""
import json, os, resource, sys, time
import torch

S, causal, mode = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
threads = int(os.environ.get("FOVEA_NUM_THREADS", "2"))
torch.set_num_threads(threads)
reps = int(os.environ.get("BENCH_REPS", "2" if S >= 8192 else "5"))
warm = 1 if S >= 8192 else 2
Hq, Hkv, D = 16, 2, 128
g = torch.Generator().manual_seed(0)
q = torch.randn(S, Hq, D, generator=g)
k = torch.randn(S, Hkv, D, generator=g)
v = torch.randn(S, Hkv, D, generator=g)
dout = torch.randn(S, Hq, D, generator=g)
mask = torch.ones(S, S, dtype=torch.bool).triu(1) if causal else None
scale = D ** -0.5


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


inputs_mb = rss_mb()


def attn(q, k, v):
    qh = q.transpose(0, 1)                                      # [Hq, S, D]
    kh = k.repeat_interleave(Hq // Hkv, dim=1).transpose(0, 1)  # [Hq, S, D]
    vh = v.repeat_interleave(Hq // Hkv, dim=1).transpose(0, 1)
    s = torch.matmul(qh, kh.transpose(1, 2)) * scale
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), vh).transpose(0, 1)  # [S, Hq, D]


def step():
    if mode == "fwd":
        with torch.no_grad():
            attn(q, k, v)
    else:
        ql, kl, vl = (t.detach().requires_grad_(True) for t in (q, k, v))
        attn(ql, kl, vl).backward(dout)


for _ in range(warm):
    step()
ts = []
for _ in range(reps):
    t0 = time.perf_counter()
    step()
    ts.append(time.perf_counter() - t0)
ts.sort()
sec = ts[len(ts) // 2]
flops = (4 if mode == "fwd" else 14) * Hq * S * S * D / (2 if causal else 1)
print(json.dumps({"impl": "torch", "bench": f"flash_attn_S{S}_{'causal' if causal else 'full'}_{mode}",
                  "threads": threads, "torch": torch.__version__, "seconds": sec, "gflops": flops / sec / 1e9,
                  "peakRssMB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "inputsRssMB": inputs_mb, "reps": reps}), flush=True)
