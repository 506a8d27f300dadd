// Dumps real rollouts of the tiny Qwen2.5-VL fixture for the two-step GRPO/MGPO oracle
// (tools/oracle/gen_two_step.py recomputes both optimizer steps with PyTorch from this dump;
// packages/trainers/test/grpo_two_step_torch.test.ts replays them with Fovea's grpoStep).
//
// Cases (fixed seeds, so the dump is deterministic on one machine):
//   grpo_single_turn  generateRollouts mode 'grpo': 2 prompts × G = 3, one assistant turn.
//   mgpo_two_turn     generateRollouts mode 'mgpo': 2 prompts × G = 2, turn 1 → crop tool → turn 2.
//                     The untrained model writes no box, so the tool sees a fixed valid box (as
//                     grpo_step.test.ts does): turn 2 then carries a real crop image.
// Rewards are crafted per rollout (the model never answers correctly) so that every group has
// spread and the advantages (groupAdvantages, 'grpo') are non-zero.
//
// Written to packages/trainers/test/fixtures/two_step/<case>/ (the folder is wiped first):
//   manifest.json  model (fixture dir, relative to the repo root — the weights are NOT copied),
//                  rollouts (token counts, prompt length, image indices, tool report), images
//                  (grid, source, rows), rewards, advantages, the training config of both steps,
//                  and `tensors` {name: {file, dtype, shape}} for:
//   tokens.bin i32 [L], lossMask.bin f32 [L], oldLogprobs.bin f32 [L]   (rollouts back to back)
//   pixels.bin f32 [rows, patchDim]   (distinct images once each, in first-use order)
// Invariant: concatenating rollout s's images (manifest.rollouts[s].images → manifest.images)
// gives exactly the RolloutImage list generateRollouts returned, in token order.
//
// Run from the repository root after `npx tsc -b packages/core-ts packages/models packages/trainers`:
//   node tools/oracle/dump_two_step.mjs && /usr/bin/python3 tools/oracle/gen_two_step.py
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GenerationEngine, Qwen2_5_VL, Qwen2_5_VLProcessor } from '@fovea/models';
import { cropTool, generateRollouts, groupAdvantages } from '@fovea/trainers';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIX = join(ROOT, 'packages', 'models', 'test', 'fixtures');
const MODEL_DIR = join(FIX, 'qwen25vl', 'model');
const OUT = join(ROOT, 'packages', 'trainers', 'test', 'fixtures', 'two_step');

/** A synthetic RGB image (deterministic pattern; `k` varies it). */
function pattern(height, width, k) {
  const data = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    const o = (y * width + x) * 3;
    data[o] = (x * 255) / width; data[o + 1] = (y * 255) / height; data[o + 2] = ((x + k * y) * 13) % 256;
  }
  return { data, height, width, channels: 3 };
}

// Small pixel budgets keep the fixture small: prompt images 84×56 in the model frame (24 patch
// rows), crops enlarged to at least 56×56 (16 rows).
const PIXELS = { minPixels: 3136, maxPixels: 6272 };
const PROMPTS = [
  { question: 'What is in the bright corner?', choices: ['a cat', 'a sign'], images: [pattern(120, 80, 1)] },
  { question: 'Which colour dominates?', images: [pattern(96, 72, 5)] },
];
const ADAMW = { lr: 2e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 };
const CASES = [
  {
    name: 'grpo_single_turn', mode: 'grpo', G: 3, seed: 11, maxNewTokens: 8,
    rewards: [1, 0, 0.3, 0.2, 0.9, 0.4],
    // Two grpoStep calls (one update each) on the same rollouts: the second sees ratio != 1.
    train: { calls: 2, loss: { epsLow: 0.2, epsHigh: 0.28, aggregation: 'token-mean' }, ppoEpochs: 1, maxGradNorm: 0.5 },
  },
  {
    name: 'mgpo_two_turn', mode: 'mgpo', G: 2, seed: 24, maxNewTokens: 6,
    rewards: [0, 1, 0.7, 0.1],
    // One grpoStep call, two mini-batches of one group each (two updates; the second mini-batch
    // is scored by the once-updated policy), KL k3 to the initial weights, dual clip.
    train: {
      calls: 1, ppoEpochs: 1, miniBatchSize: 2, maxGradNorm: 0.5, gradientCheckpointing: true, refModel: 'initial',
      loss: { epsLow: 0.2, epsHigh: 0.28, dualClip: 3, aggregation: 'seq-mean-token-mean', beta: 0.04, kl: 'k3' },
    },
  },
];

function tensorEntry(dir, name, arr, dtype, shape) {
  writeFileSync(join(dir, `${name}.bin`), Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength));
  return { file: `${name}.bin`, dtype, shape };
}

async function dumpCase(c, model, proc, engine) {
  const base = cropTool({ processor: proc.imageProcessor, ...PIXELS });
  // The fixed box [0, 0, 56, 56] is valid in both prompts' model frames (each side > 28 px).
  const tool = { ...base, crop: (_t, input) => base.crop('```json\n[{"bbox_2d": [0, 0, 56, 56], "label": "corner"}]\n```', input) };
  const rollouts = await generateRollouts(model, proc, engine, PROMPTS, {
    mode: c.mode, G: c.G, tool, ...PIXELS, maxNewTokens: c.maxNewTokens, sampling: { temperature: 1, topK: 0, topP: 1, seed: c.seed },
  });
  if (rollouts.length !== c.rewards.length) throw new Error(`${c.name}: ${rollouts.length} rollouts, ${c.rewards.length} rewards`);
  for (const r of rollouts) {
    if (r.invalidToken) throw new Error(`${c.name}: rollout ${r.promptIndex}/${r.sample} sampled a vision token; pick another seed`);
    if (c.mode === 'mgpo' && (r.turns !== 2 || !r.tool?.ok)) throw new Error(`${c.name}: rollout ${r.promptIndex}/${r.sample} has ${r.turns} turn(s), crop ok = ${r.tool?.ok}`);
  }
  const { advantages } = groupAdvantages(c.rewards, c.G);
  if (Array.from(advantages).some((a) => a === 0)) throw new Error(`${c.name}: a zero advantage; craft the rewards with spread`);

  const dir = join(OUT, c.name);
  mkdirSync(dir, { recursive: true });
  const L = rollouts.reduce((a, r) => a + r.tokens.length, 0);
  const tokens = new Int32Array(L), lossMask = new Float32Array(L), oldLogprobs = new Float32Array(L);
  const images = [], pixelParts = [];
  const imageIndex = (im) => {
    const k = images.findIndex((e) => e.ref === im.pixelValues || (e.rows * e.patchDim === im.pixelValues.length && e.ref.every((v, i) => v === im.pixelValues[i])));
    if (k >= 0) return k;
    images.push({ ref: im.pixelValues, grid: im.grid, source: im.source, rows: im.pixelValues.length / im.patchDim, patchDim: im.patchDim });
    pixelParts.push(im.pixelValues);
    return images.length - 1;
  };
  let o = 0;
  const meta = rollouts.map((r) => {
    tokens.set(r.tokens, o); lossMask.set(r.lossMask, o); oldLogprobs.set(r.oldLogprobs, o);
    o += r.tokens.length;
    return {
      promptIndex: r.promptIndex, sample: r.sample, length: r.tokens.length, promptLength: r.promptLength, turns: r.turns,
      images: r.images.map(imageIndex), finishReason: r.finishReason, truncated: r.truncated,
      ...(r.tool ? { tool: { ok: r.tool.ok, boxModel: r.tool.boxModel, boxOriginal: r.tool.boxOriginal, numImageTokens: r.tool.numImageTokens } } : {}),
    };
  });
  const patchDim = images[0].patchDim;
  const rows = images.reduce((a, im) => a + im.rows, 0);
  const pixels = new Float32Array(rows * patchDim);
  let po = 0;
  for (const p of pixelParts) { pixels.set(p, po); po += p.length; }
  const tensors = {
    tokens: tensorEntry(dir, 'tokens', tokens, 'i32', [L]),
    lossMask: tensorEntry(dir, 'lossMask', lossMask, 'f32', [L]),
    oldLogprobs: tensorEntry(dir, 'oldLogprobs', oldLogprobs, 'f32', [L]),
    pixels: tensorEntry(dir, 'pixels', pixels, 'f32', [rows, patchDim]),
  };
  const manifest = {
    case: c.name, generator: 'tools/oracle/dump_two_step.mjs', mode: c.mode, G: c.G,
    model: relative(ROOT, MODEL_DIR), sampling: { temperature: 1, topK: 0, topP: 1, seed: c.seed }, maxNewTokens: c.maxNewTokens,
    rollouts: meta,
    images: images.map(({ grid, source, rows: n }) => ({ grid, source, rows: n })),
    rewards: c.rewards, advantages: Array.from(advantages),
    train: c.train, adamw: ADAMW, tensors,
  };
  writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);
  const masked = lossMask.reduce((a, m) => a + m, 0);
  console.log(`${c.name}: ${rollouts.length} rollouts, ${L} tokens (${masked} in the loss), ${images.length} images (${rows} patch rows)`);
}

async function main() {
  const tmp = mkdtempSync(join(tmpdir(), 'fovea-two-step-'));
  try {
    cpSync(MODEL_DIR, tmp, { recursive: true });
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(tmp, f));
    const model = await Qwen2_5_VL.fromPretrained(tmp);
    const proc = await Qwen2_5_VLProcessor.fromPretrained(tmp);
    // Keep gen_two_step.py's outputs (expected.json, expected_params.bin) only if they are rewritten.
    rmSync(OUT, { recursive: true, force: true });
    for (const c of CASES) {
      const engine = new GenerationEngine(model, { maxTokens: 4096, tokenizer: proc.tokenizer });
      try { await dumpCase(c, model, proc, engine); } finally { engine.dispose(); }
    }
    model.dispose();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
