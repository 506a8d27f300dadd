// Checkpoint load time for Qwen2.5-VL: writes a random Qwen2.5-VL-3B-shaped checkpoint with our
// own writer (saveWeights: full 32-block vision tower, the 3B text shapes with fewer layers so the
// file is ~3.5 GB of bf16, sharded at 1 GB like a Hub checkpoint, with the index), then times
// loadWeights(dir, cfg, {dtype}) for bf16 (as stored) and f32 (converted on load), each twice,
// every run in its own fresh Node process so its peak RSS (getrusage high-water mark) is the
// load's alone. The files are in the page cache after writing (warm reads; dropping caches needs
// root and would disturb others on a shared machine), so this measures our parse + copy + cast
// path, not the disk. With --torch, the same shards are loaded by PyTorch the way safetensors'
// torch backend does (mmap, torch.frombuffer, copy / .float()), as a baseline.
// Run: npm run build:ts && node benchmarks/qwen_load.mjs [--layers 10] [--shard-gb 1] [--torch]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randn, numThreads } from '@fovea/core';
import { loadWeights, saveWeights, expectedParameterShapes } from '../packages/models/dist/qwen2_5_vl/weights.js';
import { parseConfig, loadConfig } from '../packages/models/dist/qwen2_5_vl/config.js';

const argv = process.argv.slice(2);
const arg = (name, def) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : def; };
const SELF = fileURLToPath(import.meta.url);

/** Qwen2.5-VL-3B's config.json with num_hidden_layers overridden. */
function config3b(layers) {
  return parseConfig({
    model_type: 'qwen2_5_vl', hidden_size: 2048, intermediate_size: 11008, num_hidden_layers: layers,
    num_attention_heads: 16, num_key_value_heads: 2, vocab_size: 151936, rms_norm_eps: 1e-6, rope_theta: 1e6,
    max_position_embeddings: 128000, tie_word_embeddings: true, hidden_act: 'silu',
    rope_scaling: { type: 'mrope', mrope_section: [16, 24, 24] },
    image_token_id: 151655, video_token_id: 151656, vision_start_token_id: 151652, vision_end_token_id: 151653,
    bos_token_id: 151643, eos_token_id: 151645,
    vision_config: {
      depth: 32, hidden_size: 1280, hidden_act: 'silu', intermediate_size: 3420, num_heads: 16, in_channels: 3,
      patch_size: 14, spatial_merge_size: 2, temporal_patch_size: 2, window_size: 112, out_hidden_size: 2048,
      fullatt_block_indexes: [7, 15, 23, 31],
    },
  }, 'qwen_load benchmark config');
}

/** Child: one timed load, printed as JSON. */
function loadPhase(dir, dtype) {
  const cfg = loadConfig(dir);
  const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
  const w = loadWeights(dir, cfg, { dtype });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(c0);
  let bytes = 0;
  for (const t of w.values()) bytes += t.size * (t.dtype === 'f32' ? 4 : 2);
  const n = w.size;
  for (const t of w.values()) t.dispose();
  const maxRssMB = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify({ s, n, bytes, maxRssMB, user: cpu.user / 1e6, sys: cpu.system / 1e6 }));
}

const TORCH = String.raw`
import json, mmap, os, resource, struct, sys, time, torch
torch.set_num_threads(2)
d, want = sys.argv[1], sys.argv[2]
DT = {'F32': torch.float32, 'BF16': torch.bfloat16, 'F16': torch.float16}
t0 = time.perf_counter()
idx = json.load(open(os.path.join(d, 'model.safetensors.index.json')))
out = {}
for shard in sorted(set(idx['weight_map'].values())):
    with open(os.path.join(d, shard), 'rb') as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        n = struct.unpack('<Q', mm[:8])[0]
        h = json.loads(mm[8:8 + n]); h.pop('__metadata__', None)
        for k, e in h.items():
            b, en = e['data_offsets']
            dt = DT[e['dtype']]
            t = torch.frombuffer(mm, dtype=dt, count=(en - b) // torch.tensor([], dtype=dt).element_size(), offset=8 + n + b).reshape(e['shape'])
            out[k] = t.float() if want == 'f32' else t.clone()
        del t
        mm.close()
s = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({'s': s, 'user': ru.ru_utime, 'sys': ru.ru_stime, 'n': len(out), 'bytes': sum(t.numel() * t.element_size() for t in out.values()),
                  'maxRssMB': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
`;

function child(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

function main() {
  const layers = Number(arg('layers', 10)), shardGB = Number(arg('shard-gb', 1));
  const cfg = config3b(layers);
  const dir = mkdtempSync(join(tmpdir(), 'fovea-qwen-load-'));
  try {
    const shapes = expectedParameterShapes(cfg);
    const tw = process.hrtime.bigint();
    const tensors = new Map();
    // One random pool as large as the largest tensor; each tensor is a contiguous slice of it at
    // its own offset (the writer streams views), so setup does not dominate the run.
    const numel = (s) => s.reduce((a, b) => a * b, 1);
    const poolSize = Math.max(...[...shapes.values()].map(numel)) + 65536;
    const pool = randn([poolSize], { dtype: 'bf16', std: 0.02, seed: 1 });
    let k = 0;
    for (const [name, s] of shapes) {
      const n = numel(s), off = (k++ * 7919) % (poolSize - n + 1);
      tensors.set(name, pool.narrow(0, off, n).reshape(s));
    }
    const tg = Number(process.hrtime.bigint() - tw) / 1e9;
    const ts = process.hrtime.bigint();
    const r = saveWeights(dir, cfg, tensors, { maxShardBytes: shardGB * 1e9 });
    const tsave = Number(process.hrtime.bigint() - ts) / 1e9;
    for (const t of tensors.values()) t.dispose();
    pool.dispose();
    const onDisk = readdirSync(dir).reduce((a, f) => a + statSync(join(dir, f)).size, 0);
    const GB = r.totalSize / 1e9;
    console.log(`checkpoint: ${shapes.size} tensors, ${GB.toFixed(2)} GB bf16 in ${r.files.length} shards ` +
      `(${(onDisk / 1e9).toFixed(2)} GB on disk); random init ${tg.toFixed(1)} s, saveWeights ${tsave.toFixed(1)} s ` +
      `(${(GB / tsave).toFixed(2)} GB/s)`);
    console.log(`machine: ${cpus()[0].model}, ${cpus().length} cores, ${numThreads()} Fovea threads; load ${execFileSync('uptime').toString().trim().split('load average: ')[1]}`);

    const rows = [];
    for (const dtype of ['bf16', 'f32']) {
      for (let run = 1; run <= 2; run++) {
        const res = child(process.execPath, [SELF, '--phase', 'load', '--dir', dir, '--dtype', dtype]);
        rows.push({ who: 'Fovea loadWeights', dtype, run, ...res });
      }
    }
    if (argv.includes('--torch')) {
      for (const dtype of ['bf16', 'f32']) {
        for (let run = 1; run <= 2; run++) {
          const res = child('/usr/bin/python3', ['-c', TORCH, dir, dtype]);
          rows.push({ who: 'PyTorch mmap+frombuffer', dtype, run, ...res });
        }
      }
    }
    console.log('\n| loader | dtype | run | time s | user / sys s | read GB/s | result GB | peak RSS MB | peak RSS / result |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const x of rows) {
      console.log(`| ${x.who} | ${x.dtype} | ${x.run} | ${x.s.toFixed(2)} | ${x.user.toFixed(1)} / ${x.sys.toFixed(1)} | ${(GB / x.s).toFixed(2)} | ${(x.bytes / 1e9).toFixed(2)} | ` +
        `${x.maxRssMB.toFixed(0)} | ${(x.maxRssMB * 1024 * 1024 / x.bytes).toFixed(2)}× |`);
    }
    const best = (d) => rows.filter((x) => x.who.startsWith('Fovea') && x.dtype === d).reduce((a, b) => (a.s < b.s ? a : b));
    const b16 = best('bf16'), b32 = best('f32');
    console.log(`\nRESULTS: Qwen2.5-VL load, ${GB.toFixed(2)} GB bf16 checkpoint (${r.files.length} shards, page cache warm): ` +
      `bf16 ${b16.s.toFixed(2)} s (${(GB / b16.s).toFixed(2)} GB/s, peak RSS ${(b16.maxRssMB / 1024).toFixed(2)} GB = ` +
      `${(b16.maxRssMB * 1048576 / b16.bytes).toFixed(2)}× the weights), f32 ${b32.s.toFixed(2)} s ` +
      `(${(GB / b32.s).toFixed(2)} GB/s read, peak RSS ${(b32.maxRssMB / 1024).toFixed(2)} GB = ${(b32.maxRssMB * 1048576 / b32.bytes).toFixed(2)}× the f32 weights)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (arg('phase') === 'load') loadPhase(arg('dir'), arg('dtype'));
else main();
