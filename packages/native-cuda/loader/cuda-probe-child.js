// Run as a child process by loader/cuda.js: loads the addon given in argv[2] with the sidecar
// named by $FOVEA_CUDA_SIDECAR, queries the devices, runs two tiny kernels (a copy and a fill)
// and a 2x2 cuBLAS GEMM on cuda:0, checks the numbers, and prints one JSON line:
//   { ok, reason?, driverVersion, runtimeVersion, devices, gemmError? }
// If the driver or the sidecar is broken enough to crash, only this child dies; the parent
// reads the signal and falls back to the CPU. Never imports the loader (no recursion).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function view(storage, shape) {
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  return { storage, dtype: 0, shape, strides, offset: 0 };  // dtype 0 = f32
}
const readF32 = (addon, s, n) => Array.from(new Float32Array(addon.storageRead(s, 0, n * 4)));
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

function main() {
  const addon = require(process.argv[2]);
  const status = addon.cudaStatus();
  const base = { driverVersion: status.driverVersion ?? null, runtimeVersion: status.runtimeVersion ?? null, devices: status.devices ?? [] };
  if (!status.available) return out({ ok: false, stage: 'load', reason: status.reason, ...base });
  if (!status.devices.length) return out({ ok: false, stage: 'devices', reason: 'the sidecar loaded but cudaStatus lists no device', ...base });

  const a = addon.storageAlloc(0, 16), b = addon.storageAlloc(0, 16, true);
  addon.storageWrite(a, 0, new Float32Array([1, 2, 3, 4]));
  addon.copy(view(a, [4]), view(b, [4]));
  addon.fill(view(a, [4]), 0.5);
  addon.cudaSynchronize(0);
  const copied = readF32(addon, b, 4), filled = readF32(addon, a, 4);
  if (!same(copied, [1, 2, 3, 4]) || !same(filled, [0.5, 0.5, 0.5, 0.5])) {
    return out({ ok: false, stage: 'kernel', reason: `a test kernel on cuda:0 returned wrong numbers (copy ${copied}, fill ${filled}): the sidecar has no code for this GPU or the driver is broken`, ...base });
  }

  // cuBLAS is loaded on first GEMM; its absence disables matmul only, so report it apart.
  let gemmError = null;
  try {
    addon.storageWrite(a, 0, new Float32Array([1, 2, 3, 4]));
    const bm = addon.storageAlloc(0, 16), c = addon.storageAlloc(0, 16, true);
    addon.storageWrite(bm, 0, new Float32Array([5, 6, 7, 8]));
    addon.gemm(view(a, [1, 2, 2]), view(bm, [1, 2, 2]), view(c, [1, 2, 2]), 1, 0);
    const got = readF32(addon, c, 4);
    if (!same(got, [19, 22, 43, 50])) gemmError = `a 2x2 GEMM on cuda:0 returned ${got}, expected 19,22,43,50`;
  } catch (err) {
    gemmError = err.message;
  }
  out({ ok: true, gemmError, ...base });
}

try {
  main();
} catch (err) {
  out({ ok: false, stage: 'exception', reason: err.message });
}
