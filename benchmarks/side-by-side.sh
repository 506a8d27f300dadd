#!/usr/bin/env bash
# Side-by-side CPU benchmark: Fovea and PyTorch (Debian's python3-torch with OpenBLAS:
# `apt-get install python3-torch libopenblas0-pthread`) on the same machine, in one run, with
# the same thread count (FOVEA_NUM_THREADS, default: all cores). Prints both and the ratios;
# record them in benchmarks/RESULTS.md with the machine and date.
set -euo pipefail
cd "$(dirname "$0")/.."
export FOVEA_NUM_THREADS="${FOVEA_NUM_THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$FOVEA_NUM_THREADS"
# Debian's PyTorch calls a pthread OpenBLAS whose own thread count torch.set_num_threads
# does not control: pin it too, so both sides use the same number of threads.
export OPENBLAS_NUM_THREADS="$FOVEA_NUM_THREADS"
mkdir -p benchmarks/out
out=benchmarks/out/side-by-side.jsonl
: > "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads: $FOVEA_NUM_THREADS; $(date -u +%F)"
node benchmarks/fovea_side.mjs | tee -a "$out"
/usr/bin/python3 benchmarks/torch_side.py | tee -a "$out"
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const by = {};
for (const r of rows) (by[r.bench] ??= {})[r.impl] = r;
console.log("\n| benchmark | fovea | torch | ratio (fovea/torch) |\n|---|---|---|---|");
for (const [k, v] of Object.entries(by)) {
  const unit = v.fovea?.gflops !== undefined || v.torch?.gflops !== undefined ? "gflops" : "gbps";
  const f = v.fovea?.[unit], t = v.torch?.[unit];
  const fmt = (x) => (x === undefined ? "-" : x.toFixed(1) + (unit === "gflops" ? " GFLOP/s" : " GB/s"));
  console.log(`| ${k} | ${fmt(f)} | ${fmt(t)} | ${f && t ? (f / t).toFixed(2) + "x" : "-"} |`);
}' "$out"
