// Image processor side by side: Fovea's ImageProcessor.pack (sharp decode in parallel,
// native Pillow-exact bicubic + patchify on the thread pool) against the same pipeline in
// Pillow + NumPy (processor_pillow.py, transformers' slow Qwen2VLImageProcessor path), on the
// same 16 JPEGs of 4032x3024 (noise + gradients, quality 90, generated once into a temp dir),
// packed at maxPixels = 1,003,520 (840x1148 each, 4,920 patches). Best of N runs each.
// Run: npm run build:ts && node benchmarks/processor_side.mjs [--repeat 3] [--images 16]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { numThreads, cpuIsa } from '@fovea/core';
import { ImageProcessor } from '../packages/models/dist/index.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg('images', 16), REPEAT = arg('repeat', 3), MAX_PIXELS = 1003520;
const W = 4032, H = 3024;

async function makeImages(dir) {
  mkdirSync(dir, { recursive: true });
  const paths = [];
  for (let k = 0; k < N; k++) {
    const path = join(dir, `img${k}.jpg`);
    paths.push(path);
    if (existsSync(path)) continue;
    const raw = Buffer.alloc(W * H * 3);
    let s = 12345 + k * 7919;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        s = (s * 1103515245 + 12345) >>> 0;
        const n = (s >>> 24) % 48 - 24, i = (y * W + x) * 3;
        raw[i] = Math.max(0, Math.min(255, ((x * 255) / W + k * 13) % 256 + n));
        raw[i + 1] = Math.max(0, Math.min(255, (y * 255) / H + n));
        raw[i + 2] = Math.max(0, Math.min(255, 128 + 100 * Math.sin((x + y) / 97 + k) + n));
      }
    }
    await sharp(raw, { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 90 }).toFile(path);
  }
  return paths;
}

const dir = join(tmpdir(), 'fovea-bench-processor');
const paths = await makeImages(dir);
const proc = new ImageProcessor();

// Fovea: warm up once, then best of REPEAT.
let best = Infinity, rows = 0, checksum = 0;
for (let r = 0; r <= REPEAT; r++) {
  const t0 = performance.now();
  const packed = await proc.pack(paths, { maxPixels: MAX_PIXELS });
  const dt = (performance.now() - t0) / 1000;
  if (r > 0) best = Math.min(best, dt);
  rows = packed.pixelValues.shape[0];
  if (r === REPEAT) {
    const v = packed.pixelValues.data();
    checksum = 0;
    for (let i = 0; i < v.length; i++) checksum += v[i];
  }
  packed.dispose();
}

const here = fileURLToPath(new URL('.', import.meta.url));
const py = JSON.parse(execFileSync('/usr/bin/python3',
  [join(here, 'processor_pillow.py'), '--max-pixels', String(MAX_PIXELS), '--repeat', String(REPEAT), ...paths],
  { encoding: 'utf8', env: { ...process.env, OPENBLAS_NUM_THREADS: '2', OMP_NUM_THREADS: '2' } }));

const fovea = N / best;
console.log(`processor: ${N} JPEGs ${W}x${H} q90 -> maxPixels ${MAX_PIXELS}; ${cpus().length} cores, ` +
  `fovea ${numThreads()} threads (${cpuIsa()}), sharp ${sharp.versions.sharp} / libvips ${sharp.versions.vips}, ` +
  `Pillow ${py.pillow} / NumPy ${py.numpy}`);
console.log(`  fovea  ImageProcessor.pack : ${best.toFixed(3)} s  ${fovea.toFixed(2)} images/s  rows ${rows}  checksum ${checksum.toFixed(1)}`);
console.log(`  Pillow + NumPy (HF slow)   : ${py.seconds.toFixed(3)} s  ${py.images_per_s.toFixed(2)} images/s  rows ${py.rows}  checksum ${py.checksum.toFixed(1)}`);
console.log(`  speedup: ${(fovea / py.images_per_s).toFixed(2)}x`);
