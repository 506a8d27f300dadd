// Skinny GEMM (decoding's linear(x [M, K], W [N, K]) = x·Wᵀ) side by side with PyTorch CPU:
// Fovea before (FOVEA_GEMM_SKINNY=0: the packed-panel GEMM) and after (the skinny path,
// src/ops/matmul/gemm_skinny.cpp), then torch.nn.functional.linear, each in its own process
// with the same threads. Shapes: K = 896 against N = 151,936 (Qwen2.5 0.5B's lm_head) and
// N = 4,864 (its MLP), M = rows (batch of tokens). f32 (bf16 W too with --bf16).
// Reports the best and median time per call, GFLOP/s = 2·M·N·K / t and the effective
// weight-streaming bandwidth GB/s = N·K·sizeof(W) / t (W is read once per call at best).
// Usage: node benchmarks/skinny_gemm_side.mjs [--bf16] [M list, default 1,4,8]
//        (needs `npm run build`; threads = FOVEA_NUM_THREADS, default 2; OPENBLAS too)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const side = args.includes('--side') ? args[args.indexOf('--side') + 1] : null;
const bf16 = args.includes('--bf16');
const mList = (args.find((a) => /^[0-9,]+$/.test(a)) ?? '1,4,8').split(',').map(Number);
const K = 896, Ns = [151936, 4864];
const threads = process.env.FOVEA_NUM_THREADS ?? '2';

// Times fn: 2 warm-ups, then repeats until ≥ 1.5 s or 30 calls; returns [best, median] seconds.
function timeIt(fn) {
  fn(); fn();
  const ts = [];
  const start = performance.now();
  while (ts.length < 30 && (ts.length < 5 || performance.now() - start < 1500)) {
    const t0 = performance.now();
    fn();
    ts.push((performance.now() - t0) / 1e3);
  }
  ts.sort((a, b) => a - b);
  return [ts[0], ts[Math.floor(ts.length / 2)]];
}

async function foveaSide() {
  const { randn, tidy, noGrad } = await import('@fovea/core');
  const { linear } = await import('../packages/core-ts/dist/ops/matmul.js');
  const rows = [];
  for (const N of Ns) {
    let W = randn([N, K], { seed: 2 });
    if (bf16) { const w = W.cast('bf16'); W.dispose(); W = w; }
    for (const M of mList) {
      let x = randn([M, K], { seed: 1 });
      if (bf16) { const v = x.cast('bf16'); x.dispose(); x = v; }
      const [best, median] = noGrad(() => timeIt(() => tidy(() => { linear(x, W); })));
      rows.push({ N, M, best, median });
      x.dispose();
    }
    W.dispose();
  }
  console.log(JSON.stringify(rows));
}

function run(cmd, argv, env) {
  const r = spawnSync(cmd, argv, { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

if (side === 'fovea') {
  await foveaSide();
} else {
  const self = fileURLToPath(import.meta.url);
  const common = { FOVEA_NUM_THREADS: threads, OPENBLAS_NUM_THREADS: threads, OMP_NUM_THREADS: threads };
  const extra = [...(bf16 ? ['--bf16'] : []), mList.join(',')];
  const before = run('node', [self, '--side', 'fovea', ...extra], { ...common, FOVEA_GEMM_SKINNY: '0' });
  const after = run('node', [self, '--side', 'fovea', ...extra], { ...common });
  const torch = run('/usr/bin/python3', [fileURLToPath(new URL('./skinny_gemm_torch.py', import.meta.url)),
    String(K), Ns.join(','), mList.join(','), bf16 ? 'bf16' : 'f32'], common);
  const wBytes = bf16 ? 2 : 4;
  const fmt = (r, N, M) => {
    const gf = (2 * M * N * K) / r.best / 1e9, gb = (N * K * wBytes) / r.best / 1e9;
    return `${(r.best * 1e3).toFixed(2).padStart(8)} ms (med ${(r.median * 1e3).toFixed(2)}) ${gf.toFixed(1).padStart(6)} GF/s ${gb.toFixed(1).padStart(5)} GB/s`;
  };
  console.log(`skinny GEMM x[M, ${K}]·W[N, ${K}]ᵀ, ${bf16 ? 'bf16' : 'f32'}, ${threads} threads, ${new Date().toISOString()}`);
  console.log('N        M | Fovea before (packed)                    | Fovea after (skinny)                     | PyTorch linear                           | after/before | torch/after');
  for (let i = 0; i < before.length; i++) {
    const { N, M } = before[i];
    const b = before[i], a = after[i], t = torch[i];
    console.log(`${String(N).padEnd(8)} ${String(M).padStart(2)} | ${fmt(b, N, M)} | ${fmt(a, N, M)} | ${fmt(t, N, M)} | ${(b.best / a.best).toFixed(2).padStart(5)}× | ${(t.best / a.best).toFixed(2)}×`);
  }
}
