// The generation engine against full recomputation: for every case the engine (paged KV
// cache, continuous batching, forks, preemption, multi-turn) must produce the tokens that a
// loop re-running the whole sequence through Qwen2_5_VL.forward produces, with per-step logits
// within 1e-4, using the same sampler and seed.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Tensor, cat, keep, noGrad, randn, tidy } from '@fovea/core';
import { Qwen2_5_VL } from '../src/qwen2_5_vl/model.js';
import { GenerationEngine, type GenerationRequest } from '../src/generation/engine.js';
import { SeededRandom, type SamplingParams, resolveSampling, sampleToken } from '../src/generation/sampling.js';

const MODEL_DIR = join(import.meta.dirname, 'fixtures', 'qwen25vl', 'model');
const IMG = 743, VS = 740, VE = 741, EOS = 733;

interface Img { pixelValues: Tensor; gridThw: { t: number; h: number; w: number }[] }
const image = (h: number, w: number, seed: number): Img =>
  ({ pixelValues: keep(randn([h * w, 1176], { seed })), gridThw: [{ t: 1, h, w }] });
const withImage = (img: Img, before: number[], after: number[]) =>
  [...before, VS, ...Array((img.gridThw[0].h * img.gridThw[0].w) / 4).fill(IMG), VE, ...after];
const joinImages = (imgs: Img[]): Img | null => imgs.length === 0 ? null
  : { pixelValues: keep(cat(imgs.map((i) => i.pixelValues))), gridThw: imgs.flatMap((i) => i.gridThw) };

/** Generation by full recomputation: the whole sequence through forward() at every step. */
function reference(
  model: Qwen2_5_VL, ids: number[], images: Img | null, n: number, sampling: SamplingParams = { temperature: 0 }, stopAtEos = true,
) {
  const p = resolveSampling(sampling);
  const rng = new SeededRandom(p.seed);
  const seq = ids.slice(), logits: Float32Array[] = [], out: number[] = [];
  for (let i = 0; i < n; i++) {
    const row = noGrad(() => tidy(() => {
      const h = model.forward({ inputIds: seq, images });
      return Float32Array.from(model.logits(h.narrow(0, seq.length - 1, 1)).data() as Float32Array);
    }));
    const s = sampleToken(row, p, rng);
    logits.push(row); out.push(s.token); seq.push(s.token);
    if (stopAtEos && s.token === EOS) break;
  }
  return { tokens: out, logits };
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function expectSame(seq: { outputTokens: number[]; stepLogits: Float32Array[] }, ref: { tokens: number[]; logits: Float32Array[] }) {
  expect(seq.outputTokens).toEqual(ref.tokens);
  ref.logits.forEach((l, i) => expect(maxDiff(seq.stepLogits[i], l), `step ${i}`).toBeLessThan(1e-4));
}

let model: Qwen2_5_VL;
let imgA: Img, imgB: Img;
beforeAll(async () => {
  model = await Qwen2_5_VL.fromPretrained(MODEL_DIR);
  imgA = image(4, 6, 11);
  imgB = image(2, 4, 12);
});
afterAll(() => { model?.dispose(); imgA?.pixelValues.dispose(); imgB?.pixelValues.dispose(); });

const req = (inputIds: number[], images: Img | null, extra: Partial<GenerationRequest> = {}): GenerationRequest =>
  ({ inputIds, images, maxNewTokens: 10, sampling: { temperature: 0 }, keepLogits: true, stopTokenIds: [EOS], ...extra });

describe('greedy generation equals full recomputation', () => {
  it('text-only, one image and two images, batched together in one engine', () => {
    const prompts: [number[], Img | null][] = [
      [[1, 2, 3, 4, 5, 6, 7], null],
      [withImage(imgA, [10, 11], [12, 13, 14]), imgA],
      [[...withImage(imgA, [20], [21]), ...withImage(imgB, [22], [23, 24])], joinImages([imgA, imgB])],
    ];
    const engine = new GenerationEngine(model, { blockSize: 4, numBlocks: 64 });
    try {
      const seqs = prompts.map(([ids, im]) => engine.add(req(ids, im)));
      engine.run();
      for (const [i, s] of seqs.entries()) {
        expect(s.finishReason).toMatch(/eos|length/);
        expectSame(s, reference(model, prompts[i][0], prompts[i][1], 10));
      }
    } finally {
      engine.dispose();
    }
  });

  it('prompts chunked across steps (maxBatchTokens smaller than a prompt) give the same result', () => {
    const ids = withImage(imgA, [30, 31, 32], [33, 34, 35, 36]);
    const engine = new GenerationEngine(model, { blockSize: 4, numBlocks: 32, maxBatchTokens: 5 });
    try {
      const s = engine.add(req(ids, imgA));
      engine.run();
      expectSame(s, reference(model, ids, imgA, 10));
      expect(engine.stats.steps).toBeGreaterThan(10);
    } finally {
      engine.dispose();
    }
  });
});

describe('groups share the prompt', () => {
  it('a group of 8 stores the prompt once, copies the shared partial block on write, and each rollout equals its own recomputation', () => {
    const ids = withImage(imgA, [40, 41, 42], [43, 44, 45, 46, 47]);  // 16 tokens = 3 full blocks of 5 + 1
    const engine = new GenerationEngine(model, { blockSize: 5, numBlocks: 64 });
    try {
      const group = engine.addGroup(req(ids, imgA, { sampling: { temperature: 1.5, seed: 100 }, maxNewTokens: 6 }), 8);
      // Run only the prompt step: one prefill, then the fork.
      engine.step();
      const promptBlocks = Math.ceil(ids.length / 5);
      // 8 rollouts, one shared prompt: the blocks in use are the prompt's plus at most one
      // copy-on-write block per rollout, not 8 prompts' worth.
      expect(engine.cache.usedBlocks).toBe(promptBlocks);
      engine.step();
      // Each rollout but the last to write copied the shared partial block once (the last one
      // found it no longer shared).
      expect(engine.cache.usedBlocks).toBe(promptBlocks + 7);
      engine.run();
      for (const [i, s] of group.entries()) {
        expectSame(s, reference(model, ids, imgA, s.outputTokens.length, { temperature: 1.5, seed: 100 + i }, false));
      }
      const distinct = new Set(group.map((s) => s.outputTokens.join(',')));
      // Top candidates come with every sampled token when asked for.
      expect(group[0].topCandidates.length).toBe(0);
      expect(distinct.size).toBeGreaterThan(1);
    } finally {
      engine.dispose();
    }
  });
});

describe('top candidates', () => {
  it('returns the k most likely tokens of each step, in order, with log-probs', () => {
    const engine = new GenerationEngine(model, { blockSize: 4, numBlocks: 16 });
    try {
      const s = engine.add(req([1, 2, 3, 4], null, { sampling: { temperature: 0, topLogprobs: 3 }, maxNewTokens: 3, stopTokenIds: [] }));
      engine.run();
      expect(s.topCandidates.length).toBe(3);
      for (const [i, top] of s.topCandidates.entries()) {
        const row = s.stepLogits[i];
        const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a]).slice(0, 3);
        expect(top.map((c) => c.token)).toEqual(order);
        expect(top[0].token).toBe(s.outputTokens[i]);
        const lz = Math.log(row.reduce((a, v) => a + Math.exp(v), 0));
        top.forEach((c) => expect(c.logprob).toBeCloseTo(row[c.token] - lz, 4));
      }
    } finally {
      engine.dispose();
    }
  });
});

describe('preemption', () => {
  it('a pool too small for every sequence preempts and recomputes without changing the results', () => {
    const prompts = [0, 1, 2, 3, 4].map((k) => Array.from({ length: 9 + k }, (_, i) => 50 + 7 * k + i));
    // 5 sequences × (up to 13 prompt + 12 new) tokens need ~35 blocks of 4; give 12.
    const engine = new GenerationEngine(model, { blockSize: 4, numBlocks: 12 });
    try {
      const seqs = prompts.map((p) => engine.add(req(p, null, { maxNewTokens: 12, stopTokenIds: [] })));
      engine.run();
      expect(engine.stats.preemptions).toBeGreaterThan(0);
      for (const [i, s] of seqs.entries()) expectSame(s, reference(model, prompts[i], null, 12, { temperature: 0 }, false));
    } finally {
      engine.dispose();
    }
  });

  it('a single sequence larger than the whole pool is an error that says both sizes', () => {
    const engine = new GenerationEngine(model, { blockSize: 4, numBlocks: 3 });
    try {
      engine.add(req(Array.from({ length: 20 }, (_, i) => i + 1), null));
      expect(() => engine.run()).toThrow(/20.*12|12.*20/);
    } finally {
      engine.dispose();
    }
  });
});

describe('multi-turn continuation', () => {
  it('pausing at a tool trigger, appending a turn with a new image, and continuing equals recomputing the conversation', () => {
    const first = withImage(imgA, [60, 61], [62, 63]);
    const engine = new GenerationEngine(model, { blockSize: 4, numBlocks: 64 });
    try {
      const s = engine.add(req(first, imgA, {
        stopTokenIds: [], maxNewTokens: 20,
        onToken: (seq) => (seq.turnTokens === 4 ? 'pause' : undefined),
      }));
      engine.run();
      expect(s.finishReason).toBe('paused');
      expect(s.outputTokens.length).toBe(4);
      const turn1 = reference(model, first, imgA, 4, { temperature: 0 }, false);
      expectSame(s, turn1);
      const computedBefore = engine.stats.forwardTokens;
      const second = [VE, 70, ...withImage(imgB, [71], [72, 73])];
      engine.append(s, { inputIds: second, images: imgB, maxNewTokens: 6 });
      (s.request as GenerationRequest).onToken = undefined;
      engine.run();
      // The cached prefix was not recomputed: only the last sampled token and the new turn were fed.
      expect(engine.stats.forwardTokens - computedBefore).toBe(1 + second.length + 5);
      const convo = [...first, ...turn1.tokens, ...second];
      const turn2 = reference(model, convo, joinImages([imgA, imgB]), 6, { temperature: 0 }, false);
      expect(s.outputTokens.slice(4)).toEqual(turn2.tokens);
      turn2.logits.forEach((l, i) => expect(maxDiff(s.stepLogits[4 + i], l)).toBeLessThan(1e-4));
      expect(s.sampled.filter(Boolean).length).toBe(10);
    } finally {
      engine.dispose();
    }
  });
});

describe('bad input', () => {
  it('gives clear errors', () => {
    const engine = new GenerationEngine(model, { blockSize: 4, numBlocks: 16 });
    try {
      expect(() => engine.add(req([1, 2], null, { sampling: { temperature: -1 } }))).toThrow(/temperature must be a finite number >= 0/);
      expect(() => engine.add(req([1, 2], null, { sampling: { topP: 0 } }))).toThrow(/topP must be in \(0, 1\]/);
      expect(() => engine.add(req([1, 2], null, { sampling: { topP: 1.2 } }))).toThrow(/topP must be in \(0, 1\]/);
      expect(() => engine.add(req([], null))).toThrow(/inputIds is empty/);
      expect(() => engine.add(req([1, 5000], null))).toThrow(/inputIds\[1\] = 5000 is outside the vocabulary/);
      expect(() => engine.addGroup(req([1, 2], null), 0)).toThrow(/n must be a positive integer/);
      expect(() => engine.add(req([1, 2], null, { stopStrings: ['x'] }))).toThrow(/stopStrings need a tokenizer/);
      expect(() => engine.add(req([1, VS, IMG, VE], null))).toThrow(/image/);
      const s = engine.add(req([1, 2, 3], null, { maxNewTokens: 2 }));
      expect(() => engine.append(s, { inputIds: [4] })).toThrow(/is waiting; append after it stops/);
      engine.run();
      engine.release(s);
      expect(() => engine.append(s, { inputIds: [4] })).toThrow(/not in this engine/);
      expect(() => engine.release(s)).toThrow(/not in this engine/);
    } finally {
      engine.dispose();
    }
  });
});
