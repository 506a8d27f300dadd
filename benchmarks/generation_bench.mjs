// Rollout generation benchmark (issue 7): decode tokens/s of the paged-KV engine against
// (a) a contiguous per-sequence KV cache (one preallocated [capacity, kvHeads, headDim] buffer
// per sequence and layer, attention by flashAttention per sequence — what a non-paged cache
// does) and (b) generation by full recomputation (the whole sequence through forward() every
// step), on a small Qwen2.5-VL-shaped random model; plus KV memory per token.
// Usage: node benchmarks/generation_bench.mjs [quick]   (after `npm run build:ts`)
// One JSON line per measurement, then a summary table. Greedy decoding, f32, text prompts.
import {
  PagedKVCache, Tensor, cat, flashAttention, indexSelect, noGrad, numThreads, cpuIsa, tensor, tidy, keep,
} from '../packages/core-ts/dist/index.js';
import { parseConfig } from '../packages/models/dist/qwen2_5_vl/config.js';
import { Qwen2_5_VL } from '../packages/models/dist/qwen2_5_vl/model.js';
import { GenerationEngine } from '../packages/models/dist/generation/engine.js';

const quick = process.argv[2] === 'quick';
const STEPS = quick ? 4 : 16;

// Qwen2.5-VL-shaped, ~0.5B text side (Qwen2-0.5B widths) with a small vision tower (unused by
// text prompts, present so the model is the real class).
const cfg = parseConfig({
  model_type: 'qwen2_5_vl', hidden_size: 896, num_hidden_layers: quick ? 4 : 24, num_attention_heads: 14,
  num_key_value_heads: 2, intermediate_size: 4864, vocab_size: 151936, rms_norm_eps: 1e-6, rope_theta: 1e6,
  rope_scaling: { type: 'mrope', mrope_section: [8, 12, 12] }, tie_word_embeddings: true, hidden_act: 'silu',
  image_token_id: 151655, video_token_id: 151656, vision_start_token_id: 151652, vision_end_token_id: 151653,
  bos_token_id: 151643, eos_token_id: 151645,
  vision_config: {
    depth: 1, hidden_size: 128, num_heads: 2, intermediate_size: 256, out_hidden_size: 896, fullatt_block_indexes: [0],
    patch_size: 14, temporal_patch_size: 2, spatial_merge_size: 2, window_size: 112, in_channels: 3, hidden_act: 'silu',
  },
});
const model = Qwen2_5_VL.random(cfg, { seed: 0 });
const t = cfg.text;

let lcg = 7;
const prompt = (n) => Array.from({ length: n }, () => { lcg = (lcg * 1103515245 + 12345) >>> 0; return lcg % 151000; });
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = [];
const report = (r) => { results.push(r); console.log(JSON.stringify(r)); };

/** A non-paged cache: per sequence and layer one contiguous buffer, grown by doubling. */
class ContiguousKVCache {
  constructor(layers, kvHeads, headDim) { Object.assign(this, { layers, kvHeads, headDim, seqs: new Map(), next: 0, pending: [] }); }
  createSequence(cap = 256) {
    const id = this.next++;
    const bufs = Array.from({ length: this.layers }, () => ({
      k: keep(Tensor.empty([cap, this.kvHeads, this.headDim], 'f32', -1)), v: keep(Tensor.empty([cap, this.kvHeads, this.headDim], 'f32', -1)),
    }));
    this.seqs.set(id, { len: 0, cap, bufs });
    return id;
  }
  /** Slots are (sequence, position) pairs encoded as id·2^20 + position. */
  reserve(id, n) {
    const s = this.seqs.get(id);
    if (s.len + n > s.cap) {
      let cap = s.cap;
      while (cap < s.len + n) cap *= 2;
      s.bufs = s.bufs.map(({ k, v }) => {
        const grow = (old) => {
          const nb = keep(Tensor.empty([cap, this.kvHeads, this.headDim], 'f32', -1));
          const dst = nb.narrow(0, 0, s.len), src = old.narrow(0, 0, s.len);
          dst.copy_(src); dst.dispose(); src.dispose(); old.dispose();
          return nb;
        };
        return { k: grow(k), v: grow(v) };
      });
      s.cap = cap;
    }
    const slots = Int32Array.from({ length: n }, (_, i) => id * 2 ** 20 + s.len + i);
    s.len += n;
    return slots;
  }
  write(layer, k, v, slots) {
    // Consecutive slots of one sequence are one row range.
    let i = 0;
    while (i < slots.length) {
      const id = Math.floor(slots[i] / 2 ** 20), p0 = slots[i] % 2 ** 20;
      let j = i + 1;
      while (j < slots.length && slots[j] === slots[j - 1] + 1) j++;
      const b = this.seqs.get(id).bufs[layer];
      for (const [dstT, srcT] of [[b.k, k], [b.v, v]]) {
        const dst = dstT.narrow(0, p0, j - i), src = srcT.narrow(0, i, j - i);
        dst.copy_(src); dst.dispose(); src.dispose();
      }
      i = j;
    }
  }
  attention(layer, q, seqs, cu) {
    return tidy(() => {
      const outs = seqs.map((id, b) => {
        const s = this.seqs.get(id), T = cu[b + 1] - cu[b];
        const qs = q.narrow(0, cu[b], T), bf = s.bufs[layer];
        const k = bf.k.narrow(0, 0, s.len), v = bf.v.narrow(0, 0, s.len);
        return flashAttention(qs, k, v, {
          cuSeqlensQ: tensor([0, T], { dtype: 'i32' }), cuSeqlensK: tensor([0, s.len], { dtype: 'i32' }),
          maxSeqlenQ: T, maxSeqlenK: s.len, causal: true,
        }).out;
      });
      return outs.length === 1 ? outs[0] : cat(outs, 0);
    });
  }
  dispose() { for (const s of this.seqs.values()) for (const { k, v } of s.bufs) { k.dispose(); v.dispose(); } }
}

/** Greedy decode driver over any cache (prefill all prompts in one step, then STEPS steps). */
function decodeWithCache(cache, prompts) {
  const B = prompts.length;
  const seqs = prompts.map(() => cache.createSequence());
  const tokens = prompts.map((p) => p.slice());
  const pos = prompts.map((p) => p.length);
  const runStep = (feeds) => noGrad(() => tidy(() => {
    const T = feeds.reduce((a, f) => a + f.length, 0);
    const ids = new Int32Array(T), p3 = new Int32Array(3 * T), cu = new Int32Array(B + 1);
    const slots = new Int32Array(T);
    let o = 0;
    feeds.forEach((f, b) => {
      const start = tokens[b].length - f.length;
      slots.set(cache.reserve(seqs[b], f.length), o);
      f.forEach((tok, i) => { ids[o + i] = tok; for (let c = 0; c < 3; c++) p3[c * T + o + i] = start + i; });
      o += f.length; cu[b + 1] = o;
    });
    const h = model.forwardCached(model.embed(ids), p3, { cache, seqs, cuSeqlensQ: cu, slots });
    const rows = tensor(Int32Array.from({ length: B }, (_, b) => cu[b + 1] - 1), { dtype: 'i32' });
    const next = model.logits(indexSelect(h, 0, rows)).argmax(-1).data();
    next.forEach((tok, b) => tokens[b].push(Number(tok)));
  }));
  let t0 = performance.now();
  runStep(prompts);
  const prefill = (performance.now() - t0) / 1000;
  const times = [];
  for (let s = 0; s < STEPS; s++) {
    t0 = performance.now();
    runStep(tokens.map((tk) => [tk[tk.length - 1]]));
    times.push((performance.now() - t0) / 1000);
  }
  return { prefill, step: median(times), tokens };
}

function fullRecompute(prompts, steps) {
  const tokens = prompts.map((p) => p.slice());
  const times = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    noGrad(() => tidy(() => {
      const ids = tokens.flat();
      const cu = [0];
      for (const tk of tokens) cu.push(cu[cu.length - 1] + tk.length);
      const h = model.forward({ inputIds: ids, cuSeqlens: cu });
      const rows = tensor(Int32Array.from(cu.slice(1), (c) => c - 1), { dtype: 'i32' });
      model.logits(indexSelect(h, 0, rows)).argmax(-1).data().forEach((tok, b) => tokens[b].push(Number(tok)));
    }));
    times.push((performance.now() - t0) / 1000);
  }
  return { step: median(times), tokens };
}

const machine = { threads: numThreads(), isa: cpuIsa(), layers: t.numHiddenLayers, date: new Date().toISOString().slice(0, 10) };
console.log(JSON.stringify({ machine }));

// Warm-up (first-touch page faults, caches): one short paged and contiguous decode, discarded.
{
  const w = [prompt(32)];
  const pc = new PagedKVCache({ numLayers: t.numHiddenLayers, numKvHeads: t.numKeyValueHeads, headDim: t.headDim, numBlocks: 16, blockSize: 16 });
  decodeWithCache(pc, w); pc.dispose();
  const cc = new ContiguousKVCache(t.numHiddenLayers, t.numKeyValueHeads, t.headDim);
  decodeWithCache(cc, w); cc.dispose();
}

for (const B of [1, 8, 64]) {
  const prompts = Array.from({ length: B }, () => prompt(128));
  const paged = new PagedKVCache({ numLayers: t.numHiddenLayers, numKvHeads: t.numKeyValueHeads, headDim: t.headDim,
    numBlocks: Math.ceil((B * (128 + STEPS + 2)) / 16) + B, blockSize: 16 });
  const p = decodeWithCache(paged, prompts);
  paged.dispose();
  const contig = new ContiguousKVCache(t.numHiddenLayers, t.numKeyValueHeads, t.headDim);
  const c = decodeWithCache(contig, prompts);
  contig.dispose();
  const same = JSON.stringify(p.tokens) === JSON.stringify(c.tokens);
  report({ case: `decode batch ${B}, 128-token prompts`, pagedTokS: B / p.step, contiguousTokS: B / c.step, sameTokens: same });
  if (B <= 8) {
    const f = fullRecompute(prompts, quick ? 2 : 3);
    report({ case: `full recomputation batch ${B}`, tokS: B / f.step, pagedSpeedup: f.step / p.step,
      sameTokens: JSON.stringify(f.tokens.map((x) => x.slice(128))) === JSON.stringify(p.tokens.map((x) => x.slice(128, 128 + f.tokens[0].length - 128))) });
  }
}

// A GRPO group: 8 rollouts of one 1,000-token prompt through the engine (prompt computed once,
// blocks shared), against 8 independent copies of the prompt.
{
  const p1000 = prompt(1000);
  const engine = new GenerationEngine(model, { blockSize: 16, maxTokens: 8 * (1000 + STEPS + 16) });
  let t0 = performance.now();
  const group = engine.addGroup({ inputIds: p1000, sampling: { temperature: 1, seed: 1 }, maxNewTokens: STEPS, stopTokenIds: [] }, 8);
  engine.step();  // the shared prefill
  const prefill = (performance.now() - t0) / 1000;
  const sharedBlocks = engine.cache.usedBlocks;
  t0 = performance.now();
  engine.run();
  const decode = (performance.now() - t0) / 1000;
  const usedAtEnd = engine.cache.usedBlocks;
  const bytesPerToken = engine.cache.bytesPerToken;
  engine.dispose();
  const unshared = 8 * Math.ceil((1000 + STEPS) / 16);
  report({
    case: 'group of 8 sharing a 1,000-token prompt (engine)', prefillS: prefill, decodeTokS: (8 * (STEPS - 1)) / decode,
    blocksAfterPrefill: sharedBlocks, blocksAtEnd: usedAtEnd, blocksIfUnshared: unshared,
    kvBytesPerToken: bytesPerToken, formula: 2 * t.numHiddenLayers * t.numKeyValueHeads * t.headDim * 4,
    kvBytesGroup: usedAtEnd * 16 * bytesPerToken, kvBytesUnshared: unshared * 16 * bytesPerToken,
  });
  void group;
}
