// Fovea half of the flash attention benchmark (flash_attn_side.sh runs it next to
// flash_attn_torch.py, one configuration per process so peak RSS belongs to that config).
// Usage: node benchmarks/flash_attn_side.mjs S causal(0|1) fwd|fwdbwd
// B = 1, Hq = 16, Hkv = 2, D = 128, f32. Prints one JSON line: median seconds after warm-up,
// process peak RSS (getrusage ru_maxrss high-water) and the RSS after the inputs were made,
// so peak − inputs is what the op itself needed (outputs, gradients, scratch).
import { randn, tidy, numThreads, cpuIsa, memoryStats } from '@fovea/core';
import { flashAttention } from '../packages/core-ts/dist/ops/flashAttention.js';
import { tensor } from '@fovea/core';

const [S, causal, mode] = [Number(process.argv[2] ?? 2048), process.argv[3] === '1', process.argv[4] ?? 'fwd'];
const Hq = 16, Hkv = 2, D = 128;
const reps = Number(process.env.BENCH_REPS ?? (S >= 8192 ? 2 : 5));
const warm = S >= 8192 ? 1 : 2;
const rssMB = () => process.resourceUsage().maxRSS / 1024;

const q = randn([S, Hq, D], { seed: 1 }), k = randn([S, Hkv, D], { seed: 2 }), v = randn([S, Hkv, D], { seed: 3 });
const dout = randn([S, Hq, D], { seed: 4 });
const cu = tensor([0, S], { dtype: 'i32' });
const opts = { cuSeqlensQ: cu, cuSeqlensK: cu, maxSeqlenQ: S, maxSeqlenK: S, causal };
const inputsMB = process.memoryUsage().rss / 2 ** 20;
let peakLive = 0;

function step() {
  tidy(() => {
    if (mode === 'fwd') {
      flashAttention(q, k, v, opts);
    } else {
      const [ql, kl, vl] = [q, k, v].map((t) => t.detach().requiresGrad_(true));
      const { out } = flashAttention(ql, kl, vl, opts);
      out.backward(dout);
      peakLive = Math.max(peakLive, memoryStats().cpu?.liveBytes ?? 0);
    }
  });
}
for (let i = 0; i < warm; i++) step();
const ts = [];
for (let i = 0; i < reps; i++) {
  const t0 = process.hrtime.bigint();
  step();
  ts.push(Number(process.hrtime.bigint() - t0) / 1e9);
}
ts.sort((a, b) => a - b);
const flops = (mode === 'fwd' ? 4 : 4 + 10) * Hq * S * S * D / (causal ? 2 : 1);  // fwd 2 GEMMs, bwd 5 (nominal)
console.log(JSON.stringify({
  impl: 'fovea', bench: `flash_attn_S${S}_${causal ? 'causal' : 'full'}_${mode}`, threads: numThreads(), isa: cpuIsa(),
  seconds: ts[Math.floor(ts.length / 2)], gflops: flops / ts[Math.floor(ts.length / 2)] / 1e9,
  peakRssMB: rssMB(), inputsRssMB: inputsMB, peakLiveTensorMB: peakLive / 2 ** 20, reps,
}));
