// Fovea half of the Qwen2.5-VL model benchmark (qwen_model_side.sh runs it next to
// qwen_model_torch.py, one configuration per process so the peak RSS is that configuration's).
// Usage: node benchmarks/qwen_model_fovea.mjs CONFIG_JSON fwd|fwdbwd|ckpt|profile
//   fwd      forward to the final hidden states under noGrad (no logits)
//   fwdbwd   forward + mean next-token cross-entropy over the 512 text tokens through the
//            lm_head logits of the rows that predict them, backward to every parameter
//   ckpt     fwdbwd with gradientCheckpointing (each vision block and decoder layer recomputed)
//   eagerfree  EXPERIMENT, not Fovea's behaviour: fwdbwd with every autograd node wrapped (in
//            this script) so that its incoming gradients and saved tensors are disposed as soon
//            as it has run, instead of when backward() ends — measures what freeing during the
//            walk would buy (time lost to first-touch page faults, peak memory)
//   profile  one timed forward with wall time per vision block / decoder layer (hooks), plus
//            the pieces of one vision block and one decoder layer timed separately; then one
//            forward + backward with every autograd node's backward timed, summed by op name
// Input: <|vision_start|> + 256 <|image_pad|> + <|vision_end|> + 512 random text ids (770
// tokens), one 448×448 image as 1024 random-normal patch rows (grid 1×32×32). f32.
// Prints one JSON line: median seconds of BENCH_REPS (default 3) runs after one warm-up,
// tokens/s, process peak RSS (getrusage high-water) and the parameter bytes. BENCH_TAG, when
// set, is appended to the configuration's name (e.g. a run under another FOVEA_HOST_CACHE_MB).
import { readFileSync } from 'node:fs';
import {
  crossEntropy, noGrad, numThreads, cpuIsa, randn, tensor, tidy, Generator, rmsNorm, linear, flashAttention, rotary, silu,
} from '../packages/core-ts/dist/index.js';
import { parseConfig } from '../packages/models/dist/qwen2_5_vl/config.js';
import { Qwen2_5_VL } from '../packages/models/dist/qwen2_5_vl/model.js';

const [configPath, mode = 'fwd'] = process.argv.slice(2);
if (!configPath || !['fwd', 'fwdbwd', 'ckpt', 'eagerfree', 'profile'].includes(mode)) {
  console.error('usage: node benchmarks/qwen_model_fovea.mjs CONFIG_JSON fwd|fwdbwd|ckpt|eagerfree|profile');
  process.exit(2);
}
const cfg = parseConfig(JSON.parse(readFileSync(configPath, 'utf8')), configPath);
const rssMB = () => process.resourceUsage().maxRSS / 1024;

const model = Qwen2_5_VL.random(cfg, { seed: 0, dtype: 'f32' });
const paramBytes = model.parameters().reduce((n, p) => n + p.size * 4, 0);

// Inputs: text ids from a small LCG (values do not matter for speed; all below 151643).
const nImg = (32 * 32) / cfg.vision.spatialMergeSize ** 2, nText = 512;
const ids = new Int32Array(2 + nImg + nText);
ids[0] = cfg.visionStartTokenId;
ids.fill(cfg.imageTokenId, 1, 1 + nImg);
ids[1 + nImg] = cfg.visionEndTokenId;
let s = 12345;
for (let i = 2 + nImg; i < ids.length; i++) { s = (s * 1103515245 + 12345) >>> 0; ids[i] = s % 151643; }
const L = ids.length;
const pixelValues = randn([32 * 32, 1176], { generator: new Generator(1) });
const input = { inputIds: ids, images: { pixelValues, gridThw: [{ t: 1, h: 32, w: 32 }] } };
const targets = tensor(ids.slice(L - nText), { dtype: 'i32' });
const initRss = rssMB();

let lossValue = null, gradCount = 0;
function step() {
  if (mode === 'fwd') {
    noGrad(() => tidy(() => { model.forward(input); }));
    return;
  }
  tidy(() => {
    const hidden = model.forward(input, { gradientCheckpointing: mode === 'ckpt' });
    // Row i predicts token i + 1: rows L-513 .. L-2 predict the 512 text tokens.
    const logits = model.logits(hidden.slice(0, L - nText - 1, L - 1));
    const loss = crossEntropy(logits, targets);
    if (mode === 'eagerfree') freeDuringWalk(loss);
    loss.backward();
    lossValue = loss.item();
  });
  gradCount = model.parameters().filter((p) => p.grad).length;
  model.zeroGrad();
}

/** The eagerfree experiment: wraps each node of loss's graph so that, once it has run, its saved
 * tensors and the incoming gradients nobody else holds are disposed. A gradient handed along
 * several node edges is disposed by its last consumer; one handed to a leaf is left alone (the
 * walk sums leaf gradients after it ends). Sums made by the walk itself are held only by it. */
function freeDuringWalk(loss) {
  const uses = new Map(), pinned = new Set(), seen = new Set(), stack = [loss.gradFn];
  while (stack.length) {
    const n = stack.pop();
    if (!n || seen.has(n)) continue;
    seen.add(n);
    const fn = n.fn;
    n.fn = (grads, saved) => {
      const r = fn(grads, saved);
      r.forEach((g, i) => {
        const e = n.edges[i];
        if (!g || !e) return;
        if (e.leaf) pinned.add(g); else uses.set(g, (uses.get(g) ?? 0) + 1);
      });
      for (const g of new Set(grads)) {
        if (!g || pinned.has(g) || r.includes(g)) continue;
        const left = (uses.get(g) ?? 1) - 1;
        if (left > 0) { uses.set(g, left); continue; }
        uses.delete(g);
        g.dispose();
      }
      for (const t of saved) t.dispose();
      n.saved = [];
      return r;
    };
    for (const e of n.edges) if (e && e.node) stack.push(e.node);
  }
}

function time(fn) {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

if (mode === 'profile') {
  profile();
  profileBackward();
} else {
  const reps = Number(process.env.BENCH_REPS ?? 3);
  step();
  const ts = [];
  for (let i = 0; i < reps; i++) ts.push(time(step));
  ts.sort((a, b) => a - b);
  const med = ts[Math.floor(ts.length / 2)];
  console.log(JSON.stringify({
    impl: 'fovea', bench: `qwen25vl_${{ ckpt: 'fwdbwd_ckpt', eagerfree: 'fwdbwd_eagerfree_experiment' }[mode] ?? mode}${process.env.BENCH_TAG ? `_${process.env.BENCH_TAG}` : ''}`, threads: numThreads(), isa: cpuIsa(), tokens: L,
    seconds: med, all_seconds: ts, tokens_per_s: L / med, loss: lossValue, paramsWithGrad: mode === 'fwd' ? undefined : gradCount,
    numParams: model.parameters().length, peakRssMB: rssMB(), initRssMB: initRss, paramMB: paramBytes / 2 ** 20,
  }));
}

/** Where the forward's time goes: per block / layer (hooks), then one block's pieces in isolation. */
function profile() {
  noGrad(() => tidy(() => { model.forward(input); }));  // warm-up
  const marks = [];
  let last;
  const mark = (what) => { const now = process.hrtime.bigint(); marks.push([what, Number(now - last) / 1e6]); last = now; };
  noGrad(() => tidy(() => {
    last = process.hrtime.bigint();
    const t0 = last;
    model.forward(input, {
      onVisionBlock: (i) => mark(`vision block ${i}${cfg.vision.fullattBlockIndexes.includes(i) ? ' (full)' : ' (window)'}`),
      onImageFeatures: () => mark('merger + inverse permutation'),
      onInputEmbeds: () => mark('embedding + scatter'),
      onLayer: (i) => mark(`decoder layer ${i}`),
    });
    mark('final norm');
    marks.push(['total', Number(process.hrtime.bigint() - t0) / 1e6]);
  }));
  const sum = (re) => marks.filter(([w]) => re.test(w)).reduce((n, [, ms]) => n + ms, 0);
  const out = {
    visionWindowBlocksMs: sum(/window/), visionFullBlocksMs: sum(/\(full\)/), mergerMs: sum(/merger/),
    decoderLayersMs: sum(/decoder/), totalMs: marks.at(-1)[1],
  };
  // One vision block and one decoder layer, piece by piece, on inputs of the real sizes.
  const v = cfg.vision, t = cfg.text, P = 1024;
  const med = (fn, n = 3) => { fn(); const xs = Array.from({ length: n }, () => time(fn) * 1e3).sort((a, b) => a - b); return xs[1]; };
  noGrad(() => tidy(() => {
    const blk = model.visual.blocks[0];
    const x = randn([P, v.hiddenSize], { generator: new Generator(2) });
    const cos = randn([P, v.headDim]), sin = randn([P, v.headDim]);
    const cuW = tensor(Int32Array.from({ length: 17 }, (_, i) => i * 64), { dtype: 'i32' });
    const cuF = tensor([0, P], { dtype: 'i32' });
    const q = randn([P, v.numHeads, v.headDim]);
    out.visionBlockPiecesMs = {
      norm: med(() => tidy(() => { rmsNorm(x, blk.norm1.weight, 1e-6); })),
      qkv: med(() => tidy(() => { blk.attn.qkv.forward(x); })),
      rotary_q: med(() => tidy(() => { rotary(q, cos, sin); })),
      attnWindow64: med(() => tidy(() => { flashAttention(q, q, q, { cuSeqlensQ: cuW, cuSeqlensK: cuW, maxSeqlenQ: 64, maxSeqlenK: 64 }); })),
      attnFull1024: med(() => tidy(() => { flashAttention(q, q, q, { cuSeqlensQ: cuF, cuSeqlensK: cuF, maxSeqlenQ: P, maxSeqlenK: P }); })),
      proj: med(() => tidy(() => { blk.attn.proj.forward(x); })),
      mlp: med(() => tidy(() => { blk.mlp.forward(x); })),
    };
    const lay = model.model.layers[0];
    const h = randn([L, t.hiddenSize], { generator: new Generator(3) });
    const qt = randn([L, t.numAttentionHeads, t.headDim]), kt = randn([L, t.numKeyValueHeads, t.headDim]);
    const cuT = tensor([0, L], { dtype: 'i32' });
    const gate = randn([L, t.intermediateSize]);
    out.decoderLayerPiecesMs = {
      qkvo: med(() => tidy(() => { const a = lay.self_attn; a.q_proj.forward(h); a.k_proj.forward(h); a.v_proj.forward(h); a.o_proj.forward(h); })),
      attnCausal: med(() => tidy(() => { flashAttention(qt, kt, kt, { cuSeqlensQ: cuT, cuSeqlensK: cuT, maxSeqlenQ: L, maxSeqlenK: L, causal: true }); })),
      mlp: med(() => tidy(() => { lay.mlp.forward(h); })),
      silu_mul: med(() => tidy(() => { silu(gate).mul(gate); })),
    };
    const rows = randn([nText, t.hiddenSize]);
    out.logits512Ms = med(() => tidy(() => { linear(rows, model.lmHeadWeight); }));
  }));
  out.marks = marks;
  console.log(JSON.stringify({ impl: 'fovea', bench: 'qwen25vl_profile', threads: numThreads(), ...out }));
}

/** Backward time by op: wraps each graph node's backward function (a runtime property of
 * @fovea/core's Node) with a timer before loss.backward(); the rest is the walk's overhead
 * (releasing nodes, summing leaf gradients, JS). Also reports live tensor bytes at the end. */
async function profileBackward() {
  const { memoryStats } = await import('../packages/core-ts/dist/index.js');
  const byOp = new Map();
  let fwdS = 0, bwdS = 0, liveBeforeBwdMB = 0;
  tidy(() => {
    let hidden, loss;
    fwdS = time(() => {
      hidden = model.forward(input);
      loss = crossEntropy(model.logits(hidden.slice(0, L - nText - 1, L - 1)), targets);
    });
    liveBeforeBwdMB = memoryStats().cpu.liveBytes / 2 ** 20;
    const seen = new Set(), stack = [loss.gradFn];
    while (stack.length) {
      const n = stack.pop();
      if (!n || seen.has(n)) continue;
      seen.add(n);
      const fn = n.fn;
      if (typeof fn === 'function') {
        n.fn = (g, s) => {
          const t0 = process.hrtime.bigint();
          const r = fn(g, s);
          const e = byOp.get(n.name) ?? { ms: 0, calls: 0 };
          e.ms += Number(process.hrtime.bigint() - t0) / 1e6; e.calls++;
          byOp.set(n.name, e);
          return r;
        };
      }
      for (const e of n.edges) if (e && e.node) stack.push(e.node);
    }
    bwdS = time(() => loss.backward());
  });
  model.zeroGrad();
  const ops = [...byOp.entries()].sort((a, b) => b[1].ms - a[1].ms).map(([k, v]) => [k, Math.round(v.ms), v.calls]);
  const inOps = ops.reduce((n, [, ms]) => n + ms, 0);
  console.log(JSON.stringify({
    impl: 'fovea', bench: 'qwen25vl_profile_backward', forwardS: fwdS, backwardS: bwdS, backwardInOpsMs: inOps,
    backwardOverheadMs: Math.round(bwdS * 1e3 - inOps), liveBeforeBackwardMB: Math.round(liveBeforeBwdMB),
    peakRssMB: Math.round(rssMB()), opsMsCalls: ops,
  }));
}
