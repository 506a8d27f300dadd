// Fovea half of the side-by-side benchmark (side-by-side.sh runs it next to torch_side.py
// with the same thread count). Prints one JSON line per measurement: median seconds over
// repeats after warm-up, and the GFLOP/s or GB/s it implies.
import { randn, ones, matmul, softmax, rmsNorm, tidy, numThreads, cpuIsa } from '@fovea/core';

const reps = Number(process.env.BENCH_REPS ?? 10);
function median(xs) { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; }
function time(fn, warm = 2) {
  for (let i = 0; i < warm; i++) fn();
  const ts = [];
  for (let i = 0; i < reps; i++) { const t0 = process.hrtime.bigint(); fn(); ts.push(Number(process.hrtime.bigint() - t0) / 1e9); }
  return median(ts);
}
const emit = (o) => console.log(JSON.stringify({ impl: 'fovea', threads: numThreads(), isa: cpuIsa(), ...o }));

for (const [M, K, N] of [[1024, 1024, 1024], [4096, 1024, 4096]]) {
  const a = randn([M, K], { seed: 1 }), b = randn([K, N], { seed: 2 });
  const s = time(() => tidy(() => { matmul(a, b); }));
  emit({ bench: `gemm_f32_${M}x${K}x${N}`, seconds: s, gflops: (2 * M * N * K) / s / 1e9 });
  a.dispose(); b.dispose();
}
{
  const x = randn([8192, 4096], { seed: 3 });
  const bytes = 2 * x.size * 4;
  const s = time(() => tidy(() => { softmax(x, -1); }));
  emit({ bench: 'softmax_f32_8192x4096', seconds: s, gbps: bytes / s / 1e9 });
  // Fovea's ops always allocate their output; with the host block cache warm this is the
  // kernel's cost, the fair match for PyTorch's out= variant.
  emit({ bench: 'softmax_f32_8192x4096_out', seconds: s, gbps: bytes / s / 1e9 });
  const w = ones([4096]);
  const s2 = time(() => tidy(() => { rmsNorm(x, w, 1e-6); }));
  emit({ bench: 'rmsnorm_f32_8192x4096', seconds: s2, gbps: (bytes + 4096 * 4) / s2 / 1e9 });
}
