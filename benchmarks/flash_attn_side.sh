#!/usr/bin/env bash
# Flash attention side by side with PyTorch CPU (issue 3): B=1, Hq=16, Hkv=2, D=128, f32,
# S in {2048, 8192}, causal and not, forward and forward+backward, same threads on both sides.
# Each configuration runs in its own process (flash_attn_side.mjs / flash_attn_torch.py) so the
# reported peak RSS (getrusage high-water) is that configuration's. Needs `npm run build`.
# FA_CONFIGS overrides the list ("S:causal:mode ..."); FA_TORCH_SKIP lists configs PyTorch
# should not run (too much memory or time), e.g. "8192:0:fwdbwd".
set -euo pipefail
cd "$(dirname "$0")/.."
export FOVEA_NUM_THREADS="${FOVEA_NUM_THREADS:-2}"
export OMP_NUM_THREADS="$FOVEA_NUM_THREADS" OPENBLAS_NUM_THREADS="$FOVEA_NUM_THREADS"
mkdir -p benchmarks/out
out=benchmarks/out/flash_attn.jsonl
: > "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads: $FOVEA_NUM_THREADS; $(date -u +%F)"
configs="${FA_CONFIGS:-2048:0:fwd 2048:1:fwd 2048:0:fwdbwd 2048:1:fwdbwd 8192:0:fwd 8192:1:fwd 8192:0:fwdbwd 8192:1:fwdbwd}"
for c in $configs; do
  IFS=: read -r S causal mode <<<"$c"
  node benchmarks/flash_attn_side.mjs "$S" "$causal" "$mode" | tee -a "$out"
  if [[ " ${FA_TORCH_SKIP:-} " == *" $c "* ]]; then echo "torch: skipped $c"; continue; fi
  # Address-space cap so an oversized PyTorch run fails by itself instead of pushing the shared
  # machine into the OOM killer (FA_TORCH_VMEM_GB, default 18).
  ( ulimit -v $(( ${FA_TORCH_VMEM_GB:-18} * 1024 * 1024 )); \
    /usr/bin/python3 benchmarks/flash_attn_torch.py "$S" "$causal" "$mode" ) | tee -a "$out" \
    || echo "torch: $c failed (over ${FA_TORCH_VMEM_GB:-18} GiB address space or another error)"
done
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const by = {};
for (const r of rows) (by[r.bench] ??= {})[r.impl] = r;
console.log("\n| config | fovea s | torch s | speedup | fovea peak RSS MB | torch peak RSS MB | memory ratio |\n|---|---|---|---|---|---|---|");
for (const [k, v] of Object.entries(by)) {
  const f = v.fovea, t = v.torch;
  const n = (x, d = 3) => (x === undefined ? "-" : x.toFixed(d));
  console.log(`| ${k} | ${n(f?.seconds)} | ${n(t?.seconds)} | ${f && t ? (t.seconds / f.seconds).toFixed(2) + "x" : "-"} | ${n(f?.peakRssMB, 0)} | ${n(t?.peakRssMB, 0)} | ${f && t ? (f.peakRssMB / t.peakRssMB).toFixed(3) : "-"} |`);
}' "$out"
