"""PyTorch half of the side-by-side benchmark (run by side-by-side.sh next to fovea_side.mjs,
same thread count). Prints one JSON line per measurement, median seconds after warm-up.
RMSNorm is Qwen2RMSNorm's computation (upcast, mean of squares, rsqrt, scale), written in
eager PyTorch as transformers runs it."""
import json, os, time
import torch

threads = int(os.environ.get("FOVEA_NUM_THREADS", "2"))
torch.set_num_threads(threads)
reps = int(os.environ.get("BENCH_REPS", "10"))
g = torch.Generator().manual_seed(0)


def timeit(fn, warm=2):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def emit(**kw):
    print(json.dumps({"impl": "torch", "threads": threads, "torch": torch.__version__, **kw}), flush=True)


with torch.no_grad():
    for M, K, N in [(1024, 1024, 1024), (4096, 1024, 4096)]:
        a = torch.randn(M, K, generator=g)
        b = torch.randn(K, N, generator=g)
        s = timeit(lambda: torch.matmul(a, b))
        emit(bench=f"gemm_f32_{M}x{K}x{N}", seconds=s, gflops=2 * M * N * K / s / 1e9)
    x = torch.randn(8192, 4096, generator=g)
    nbytes = 2 * x.numel() * 4
    s = timeit(lambda: torch.softmax(x, -1))
    emit(bench="softmax_f32_8192x4096", seconds=s, gbps=nbytes / s / 1e9)
    # Into a preallocated output: PyTorch's kernel alone, without its allocator's page faults.
    y = torch.empty_like(x)
    try:
        s = timeit(lambda: torch.softmax(x, -1, out=y))
    except TypeError:
        s = timeit(lambda: torch._softmax(x, -1, False, out=y))  # noqa
    emit(bench="softmax_f32_8192x4096_out", seconds=s, gbps=nbytes / s / 1e9)
    w = torch.ones(4096)

    def rms():
        h = x.to(torch.float32)
        var = h.pow(2).mean(-1, keepdim=True)
        return w * (h * torch.rsqrt(var + 1e-6)).to(x.dtype)

    s = timeit(rms)
    emit(bench="rmsnorm_f32_8192x4096", seconds=s, gbps=(nbytes + 4096 * 4) / s / 1e9)
    # Also the best PyTorch can do for RMSNorm on this build, if it has a fused op.
    if hasattr(torch.nn.functional, "rms_norm"):
        s = timeit(lambda: torch.nn.functional.rms_norm(x, (4096,), w, 1e-6))
        emit(bench="rmsnorm_fused_f32_8192x4096", seconds=s, gbps=(nbytes + 4096 * 4) / s / 1e9)
