// Fused GRPO loss side by side with PyTorch CPU (issue 4): N tokens, H hidden, V vocabulary
// (default 4096 × 2048 × 151,936, Qwen2.5-VL-3B's head), f32, forward + backward to hidden and
// weight, same threads on both sides. Each implementation runs in its own process (this script
// re-runs itself with --fovea, then runs benchmarks/grpo_torch.py), so each peak RSS (getrusage
// high-water) is that implementation's alone; "op peak" = peak − RSS after the inputs were made,
// i.e. what the loss needed (gradients dW/dh included, the inputs h/W not).
// Wall time and process CPU time (user + sys, all threads) are both reported: the machine is
// shared, and CPU time is the steadier of the two under other people's load.
// Usage: node benchmarks/grpo_side.mjs [N] [H] [V] [reps]     (needs `npm run build`)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const [N, H, V, reps] = [4096, 2048, 151936, 2].map((d, i) => Number(process.argv[(process.argv[2] === '--fovea' ? 3 : 2) + i] ?? d));

async function foveaSide() {
  const { randn, rand, tensor, tidy, numThreads, cpuIsa, noGrad } = await import('@fovea/core');
  const { grpoLoss } = await import('../packages/core-ts/dist/ops/grpoLoss.js');
  const h0 = randn([N, H], { seed: 1 });
  const W = randn([V, H], { seed: 2 });
  noGrad(() => W.mul_(0.02));
  const targets = tensor(Array.from({ length: N }, (_, i) => (i * 7919) % V), { dtype: 'i32' });
  const adv = tensor(Array.from({ length: N }, (_, i) => Math.sin(Math.floor(i / 64) * 1.7)));
  const mask = tensor(Array.from({ length: N }, (_, i) => (i % 5 === 0 ? 0 : 1)));
  const seqIndex = tensor(Array.from({ length: N }, (_, i) => Math.floor(i / 64)), { dtype: 'i32' });
  const lv = -Math.log(V);
  const old = tensor(Array.from({ length: N }, (_, i) => lv + 0.3 * Math.sin(i)));
  const ref = tensor(Array.from({ length: N }, (_, i) => lv + 0.3 * Math.cos(i)));
  const inputsMB = process.memoryUsage().rss / 2 ** 20;
  const times = [], cpu = [];
  let loss = 0;
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
    tidy(() => {
      const hidden = h0.detach().requiresGrad_(true);
      W.requiresGrad_(true);
      W.grad?.dispose(); W.grad = null;
      const out = grpoLoss({ hidden, weight: W, targets, advantages: adv, mask, seqIndex, numSeqs: Math.ceil(N / 64),
        oldLogprobs: old, refLogprobs: ref, config: { epsLow: 0.2, epsHigh: 0.28, beta: 0.04, kl: 'k3' } });
      out.loss.backward();
      loss = out.loss.item();
      hidden.grad?.dispose();
    });
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e6);
  }
  const peak = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify({ impl: 'fovea', threads: numThreads(), isa: cpuIsa(), N, H, V, seconds: times, cpuSeconds: cpu, loss,
    peakRssMB: peak, inputsRssMB: inputsMB, opPeakMB: peak - inputsMB }));
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: process.env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop();
  console.log(line);
  return JSON.parse(line);
}

if (process.argv[2] === '--fovea') {
  await foveaSide();
} else {
  process.env.FOVEA_NUM_THREADS ??= '2';
  process.env.OMP_NUM_THREADS = process.env.OPENBLAS_NUM_THREADS = process.env.FOVEA_NUM_THREADS;
  const self = fileURLToPath(import.meta.url);
  console.log(`grpo loss fwd+bwd, N=${N} H=${H} V=${V} f32, threads ${process.env.FOVEA_NUM_THREADS}, ${new Date().toISOString().slice(0, 10)}`);
  const f = run(process.execPath, [self, '--fovea', N, H, V, reps]);
  const t = run('/usr/bin/python3', [fileURLToPath(new URL('./grpo_torch.py', import.meta.url)), N, H, V, reps]);
  const best = (x) => Math.min(...x.seconds);
  const bc = (x) => Math.min(...x.cpuSeconds);
  console.log(`| N×H×V | fovea wall s (best of ${reps}) | torch wall s | wall ratio fovea/torch | fovea CPU s | torch CPU s | CPU ratio | fovea peak / op-peak MB | torch peak / op-peak MB | op-peak ratio torch/fovea |`);
  console.log(`|---|---|---|---|---|---|---|---|---|---|`);
  console.log(`| ${N}×${H}×${V} | ${best(f).toFixed(2)} | ${best(t).toFixed(2)} | ${(best(f) / best(t)).toFixed(2)}× | ` +
    `${bc(f).toFixed(2)} | ${bc(t).toFixed(2)} | ${(bc(f) / bc(t)).toFixed(2)}× | ` +
    `${f.peakRssMB.toFixed(0)} / ${f.opPeakMB.toFixed(0)} | ${t.peakRssMB.toFixed(0)} / ${t.opPeakMB.toFixed(0)} | ${(t.opPeakMB / f.opPeakMB).toFixed(1)}× |`);
  console.log(`loss fovea ${f.loss} torch ${t.loss}`);
}
