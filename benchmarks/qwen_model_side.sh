#!/usr/bin/env bash
# Qwen2.5-VL model graph side by side with a plain PyTorch implementation (issue 6, speed):
# a Qwen2.5-VL-shaped random model (text 896 × 24 layers, 14/2 heads, vocab 151936, tied head;
# vision 1280 × 8 blocks, full attention in blocks 3 and 7), one 448×448 image (1024 patches →
# 256 image tokens) + 512 text tokens = 770 tokens, f32, same thread count on both sides.
#   fwd         forward to the final hidden states, no grad, no logits
#   fwdbwd      + mean next-token cross-entropy of the 512 text tokens through the lm_head, backward
#   fwdbwd_ckpt fwdbwd with gradient checkpointing (Fovea only)
#   fwdbwd_hostcache8g  fwdbwd with FOVEA_HOST_CACHE_MB=8192 (Fovea only)
# Each configuration runs in a fresh process, so its peak RSS (getrusage high-water) is its own.
# First proves the PyTorch side is the same model: `qwen_model_torch.py --check` against the HF
# fixture (window index, positions exact; logits rel err < 1e-4). Needs `npm run build` and
# `npx tsc -b packages/models`. BENCH_REPS (default 3) timed runs after one warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."
export FOVEA_NUM_THREADS="${FOVEA_NUM_THREADS:-2}"
export OMP_NUM_THREADS="$FOVEA_NUM_THREADS" OPENBLAS_NUM_THREADS="$FOVEA_NUM_THREADS"
mkdir -p benchmarks/out
out=benchmarks/out/qwen_model.jsonl
config=benchmarks/out/qwen_bench_config.json
: > "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads: $FOVEA_NUM_THREADS; $(date -u '+%F %H:%M') UTC; load: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 benchmarks/qwen_model_torch.py --check
/usr/bin/python3 benchmarks/qwen_model_torch.py --print-config > "$config"
for mode in fwd fwdbwd ckpt; do
  node benchmarks/qwen_model_fovea.mjs "$config" "$mode" | tee -a "$out"
  [[ "$mode" == ckpt ]] && continue
  /usr/bin/python3 benchmarks/qwen_model_torch.py "$mode" | tee -a "$out"
done
# The same fwdbwd with a host block cache big enough to hold what one backward frees (the
# default FOVEA_HOST_CACHE_MB=2048 munmaps most of it, so later steps page-fault it back in).
FOVEA_HOST_CACHE_MB=8192 BENCH_TAG=hostcache8g node benchmarks/qwen_model_fovea.mjs "$config" fwdbwd | tee -a "$out"
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const by = {};
for (const r of rows) (by[r.bench] ??= {})[r.impl] = r;
const n = (x, d = 1) => (x === undefined ? "-" : x.toFixed(d));
console.log(`\nparameters: ${n(rows[0].paramMB, 0)} MB f32 (both sides); tokens per step: ${rows[0].tokens}`);
console.log("| config | Fovea tok/s | PyTorch tok/s | Fovea / PyTorch speed | Fovea peak RSS MB | PyTorch peak RSS MB | Fovea / PyTorch memory |\n|---|---|---|---|---|---|---|");
for (const [k, v] of Object.entries(by)) {
  const f = v.fovea, t = v.torch;
  console.log(`| ${k} | ${n(f?.tokens_per_s)} | ${n(t?.tokens_per_s)} | ${f && t ? (f.tokens_per_s / t.tokens_per_s).toFixed(2) + "x" : "-"} | ${n(f?.peakRssMB, 0)} | ${n(t?.peakRssMB, 0)} | ${f && t ? (f.peakRssMB / t.peakRssMB).toFixed(2) : "-"} |`);
}' "$out"
