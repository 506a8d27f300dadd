"""PyTorch half of the fused GRPO loss benchmark (benchmarks/grpo_side.mjs runs it in its own
process): the unfused computation a PyTorch trainer does (verl's formulas) — logits = h·Wᵀ/T,
log_softmax, gather, ratio, clip, k3 KL, token-mean — forward + backward to h and W, f32.
Prints one JSON line: seconds per fwd+bwd for each repeat, process peak RSS (getrusage high-water)
and the RSS after the inputs were made, so peak − inputs is what the loss itself needed.
Usage: python3 benchmarks/grpo_torch.py N H V [reps]
"""
import json
import resource
import sys
import time

import torch

N, H, V = (int(x) for x in sys.argv[1:4])
reps = int(sys.argv[4]) if len(sys.argv) > 4 else 2
threads = int(__import__("os").environ.get("FOVEA_NUM_THREADS", "2"))
torch.set_num_threads(threads)


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


g = torch.Generator().manual_seed(0)
h0 = torch.randn(N, H, generator=g)
W0 = torch.randn(V, H, generator=g) * 0.02
# The same per-token inputs as grpo_side.mjs (h and W are random on both sides, same scale).
i = torch.arange(N)
targets = (i * 7919) % V
adv = torch.sin(torch.div(i, 64, rounding_mode="floor") * 1.7)
mask = (i % 5 != 0).float()
lv = -float(torch.log(torch.tensor(float(V))))
old = lv + 0.3 * torch.sin(i.double()).float()
ref = lv + 0.3 * torch.cos(i.double()).float()
eps_low, eps_high, beta, T = 0.2, 0.28, 0.04, 1.0
inputs_mb = rss_mb()


def step():
    h = h0.clone().requires_grad_(True)
    W = W0.requires_grad_(True)
    W.grad = None
    logits = (h @ W.T) / T
    logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    ratio = torch.exp(torch.clamp(logp - old, -20.0, 20.0))
    pg = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1 - eps_low, 1 + eps_high))
    d = torch.clamp(ref - logp, -20.0, 20.0)
    kl = torch.clamp(torch.exp(d) - d - 1, -10.0, 10.0)
    loss = ((pg + beta * kl) * mask).sum() / mask.sum()
    loss.backward()
    return float(loss)


times, cpu = [], []
for _ in range(reps):
    t0, c0 = time.perf_counter(), time.process_time()
    loss = step()
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"impl": "torch", "torch": torch.__version__, "threads": threads, "N": N, "H": H, "V": V,
                  "seconds": times, "cpuSeconds": cpu, "loss": loss, "peakRssMB": peak, "inputsRssMB": inputs_mb,
                  "opPeakMB": peak - inputs_mb}))
