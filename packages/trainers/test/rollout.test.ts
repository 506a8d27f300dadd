// MGPO/GRPO rollouts on the tiny Qwen2.5-VL checkpoint: loss masks token by token (prompt and
// tool turn 0, sampled tokens 1, in both turns), the tool turn's exact ids, the invalid-box path
// (original image + invalid-coordinates turn), and training positions = get_rope_index over the
// whole conversation, crop included.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenerationEngine, Qwen2_5_VL, Qwen2_5_VLProcessor, type RgbImage, expandImagePlaceholders, getRopeIndex } from '@fovea/models';
import { generateRollouts, type Rollout } from '../src/rollout/rollout.js';
import { mgpoToolTurn } from '../src/rollout/mgpo.js';
import { MGPO_TEMPLATE, formatQuestion } from '../src/rollout/templates.js';
import { buildTrainingBatch } from '../src/algorithms/grpoStep.js';
import { type CropTool, cropRgb, cropTool } from '../src/tools/crop.js';

const FIX = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures');
function gradient(height: number, width: number): RgbImage {
  const data = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    const o = (y * width + x) * 3;
    data[o] = (x * 255) / width; data[o + 1] = (y * 255) / height; data[o + 2] = ((x + y) * 7) % 256;
  }
  return { data, height, width, channels: 3 };
}

let dir: string, model: Qwen2_5_VL, proc: Qwen2_5_VLProcessor, engine: GenerationEngine, tool: CropTool;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fovea-rollout-'));
  cpSync(join(FIX, 'qwen25vl', 'model'), dir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(dir, f));
  model = await Qwen2_5_VL.fromPretrained(dir);
  proc = await Qwen2_5_VLProcessor.fromPretrained(dir);
  engine = new GenerationEngine(model, { maxTokens: 8192, tokenizer: proc.tokenizer });
  tool = cropTool({ processor: proc.imageProcessor, minPixels: 3136 * 4, maxPixels: 100352 });
});
afterAll(() => { engine?.dispose(); model?.dispose(); rmSync(dir, { recursive: true, force: true }); });

const IM_END = 733;
const question = 'What color is the sign?';
const choices = ['red', 'blue'];
const image = gradient(300, 220);

/** The tool turn as the Qwen template writes it, built by hand (independent of mgpo.ts). */
function expectedToolIds(before: string, after: string, nTokens: number, lastSampled: number): number[] {
  const text = `<|im_end|>\n<|im_start|>user\n${before}<|vision_start|><|image_pad|><|vision_end|>${after}<|im_end|>\n<|im_start|>assistant\n`;
  const ids = proc.tokenizer.encode(expandImagePlaceholders(text, [nTokens]), { addSpecialTokens: false });
  return lastSampled === IM_END ? ids.slice(1) : ids;
}

/** Checks a two-turn rollout token by token; returns [turn1 length, tool turn length, turn2 length]. */
function checkMgpoMasks(r: Rollout, toolIds: (lastSampled: number) => number[]): [number, number, number] {
  let i = 0;
  for (; i < r.promptLength; i++) expect(r.lossMask[i]).toBe(0);
  const t1 = i;
  while (i < r.tokens.length && r.lossMask[i] === 1) i++;
  const n1 = i - t1;
  expect(n1).toBeGreaterThan(0);
  const want = toolIds(r.tokens[i - 1]);
  expect(Array.from(r.tokens.slice(i, i + want.length))).toEqual(want);
  for (let k = 0; k < want.length; k++) expect(r.lossMask[i + k]).toBe(0);
  i += want.length;
  const n2 = r.tokens.length - i;
  expect(n2).toBeGreaterThan(0);
  for (; i < r.tokens.length; i++) expect(r.lossMask[i]).toBe(1);
  for (let k = 0; k < r.tokens.length; k++) {
    if (r.lossMask[k] === 1) { expect(r.oldLogprobs[k]).toBeLessThanOrEqual(0); expect(Number.isFinite(r.oldLogprobs[k])).toBe(true); }
    else expect(r.oldLogprobs[k]).toBe(0);
  }
  return [n1, want.length, n2];
}

function checkPositions(rollouts: Rollout[]) {
  const b = buildTrainingBatch(model, rollouts, rollouts.map(() => 0));
  const L = b.inputIds.length;
  for (const [s, r] of rollouts.entries()) {
    const { positionIds } = getRopeIndex(r.tokens, r.images.map((im) => im.grid),
      { imageTokenId: model.config.imageTokenId, visionStartTokenId: model.config.visionStartTokenId }, { spatialMergeSize: 2 });
    const n = r.tokens.length, a = b.cuSeqlens[s];
    for (let c = 0; c < 3; c++) {
      expect(Array.from(b.positionIds.subarray(c * L + a, c * L + a + n))).toEqual(Array.from(positionIds.subarray(c * n, (c + 1) * n)));
    }
    // The crop's image tokens have 3-D image positions (h or w differs from t somewhere), not text positions.
    if (r.images.length > 1) {
      let imageLike = false;
      for (let i = r.promptLength; i < n; i++) if (positionIds[n + i] !== positionIds[i] || positionIds[2 * n + i] !== positionIds[i]) imageLike = true;
      expect(imageLike).toBe(true);
    }
  }
}

describe('MGPO rollout', () => {
  it('valid box: crop of the original, masks token by token, positions over the whole conversation', async () => {
    // The tiny model cannot write a box: the tool reads a box we control instead of the model's text.
    const fixed: CropTool = { ...tool, crop: (_t, input) => tool.crop('```json\n[{"bbox_2d": [20, 30, 120, 150], "label": "sign"}]\n```', input) };
    const rollouts = await generateRollouts(model, proc, engine, [{ question, choices, images: [image] }], {
      mode: 'mgpo', G: 3, tool: fixed, sampling: { temperature: 1, seed: 11 }, maxNewTokens: 8,
    });
    expect(rollouts.length).toBe(3);
    const q = formatQuestion(question, choices);
    for (const r of rollouts) {
      expect(r.invalidToken).toBe(false);
      expect(r.turns).toBe(2);
      expect(r.tool!.ok).toBe(true);
      expect(r.images.map((im) => im.source)).toEqual(['prompt', 'crop']);
      const { boxOriginal, numImageTokens, imageFrame } = r.tool!;
      expect(r.images[1].grid).toEqual({ t: 1, h: imageFrame[0] / 14, w: imageFrame[1] / 14 });
      const before = MGPO_TEMPLATE.cropValid.replace('{box}', `[${boxOriginal!.join(', ')}]`);
      const after = MGPO_TEMPLATE.turn2.replace('{question}', q);
      checkMgpoMasks(r, (last) => expectedToolIds(before, after, numImageTokens, last));
      // The crop's pixels are the crop of the ORIGINAL image, packed with the tool's budget.
      const ref = proc.imageProcessor.packRgb([cropRgb(image, boxOriginal!)], { minPixels: 3136 * 4, maxPixels: 100352 });
      expect(Array.from(r.images[1].pixelValues)).toEqual(Array.from(ref.pixelValues.data() as Float32Array));
      ref.dispose();
    }
    // G samples differ (seeds seed + i) and share the prompt.
    expect(new Set(rollouts.map((r) => Array.from(r.tokens).join(','))).size).toBe(3);
    expect(rollouts[0].promptLength).toBe(rollouts[1].promptLength);
    checkPositions(rollouts);
  });

  it('invalid box from the model output: the original image again and the invalid-coordinates turn', async () => {
    // The untrained model writes no box: the tool sees the model's real turn-1 text.
    const rollouts = await generateRollouts(model, proc, engine, [{ question, images: [image] }], {
      mode: 'mgpo', G: 2, tool, sampling: { temperature: 1, seed: 5 }, maxNewTokens: 6,
    });
    for (const r of rollouts) {
      expect(r.tool!.ok).toBe(false);
      expect(r.tool!.reason).toBe('no-box');
      expect(r.images.map((im) => im.source)).toEqual(['prompt', 'original']);
      const before = MGPO_TEMPLATE.cropInvalid.replace('{reason}', 'no box was found');
      const after = MGPO_TEMPLATE.turn2.replace('{question}', question);
      checkMgpoMasks(r, (last) => expectedToolIds(before, after, r.tool!.numImageTokens, last));
      // The returned image is the original, packed with the tool's pixel budget.
      const ref = proc.imageProcessor.packRgb([image], { minPixels: 3136 * 4, maxPixels: 100352 });
      expect(Array.from(r.images[1].pixelValues)).toEqual(Array.from(ref.pixelValues.data() as Float32Array));
      ref.dispose();
    }
    checkPositions(rollouts);
  });

  it('an out-of-bounds box (controlled text) gives the original image and the invalid turn', () => {
    const frame: [number, number] = [224, 168];
    const turn = mgpoToolTurn(proc, tool, MGPO_TEMPLATE, '```json\n[{"bbox_2d": [0, 0, 5000, 90], "label": "x"}]\n```', image, frame, question, 42);
    try {
      expect(turn.result.ok).toBe(false);
      expect(turn.result.reason).toBe('out-of-bounds');
      expect(turn.result.image).toBe(image);
      const before = MGPO_TEMPLATE.cropInvalid.replace('{reason}', 'the box is not inside the image');
      const after = MGPO_TEMPLATE.turn2.replace('{question}', question);
      expect(Array.from(turn.inputIds)).toEqual(expectedToolIds(before, after, turn.result.numImageTokens, 42));
      // When the model already closed its turn with <|im_end|>, it is not inserted twice.
      const t2 = mgpoToolTurn(proc, tool, MGPO_TEMPLATE, 'no box', image, frame, question, IM_END);
      expect(t2.inputIds[0]).not.toBe(IM_END);
      expect(Array.from(t2.inputIds)).toEqual(expectedToolIds(MGPO_TEMPLATE.cropInvalid.replace('{reason}', 'no box was found'), after, t2.result.numImageTokens, IM_END));
      t2.packed.dispose();
    } finally {
      turn.packed.dispose();
    }
  });
});

describe('GRPO rollout', () => {
  it('one turn: prompt 0, every sampled token 1, log-probs aligned', async () => {
    const rollouts = await generateRollouts(model, proc, engine, [{ question, images: [image] }, { question: 'Count the dots.', images: [gradient(100, 140)] }], {
      mode: 'grpo', G: 2, sampling: { temperature: 1, seed: 1 }, maxNewTokens: 5,
    });
    expect(rollouts.map((r) => [r.promptIndex, r.sample])).toEqual([[0, 0], [0, 1], [1, 0], [1, 1]]);
    for (const r of rollouts) {
      expect(r.turns).toBe(1);
      for (let i = 0; i < r.tokens.length; i++) expect(r.lossMask[i]).toBe(i < r.promptLength ? 0 : 1);
      expect(r.tokens.length - r.promptLength).toBeLessThanOrEqual(5);
      expect(r.tool).toBeUndefined();
    }
    checkPositions(rollouts);
  });

  it('rejects bad options clearly', async () => {
    await expect(generateRollouts(model, proc, engine, [{ question, images: [image] }], { mode: 'mgpo', G: 2 })).rejects.toThrow(/needs a crop tool/);
    await expect(generateRollouts(model, proc, engine, [{ question, images: [image] }], { mode: 'grpo', G: 0 })).rejects.toThrow(/G must be a positive integer/);
    await expect(generateRollouts(model, proc, engine, [{ question, images: [image] }], { mode: 'grpo', G: 1, maxTotalTokens: 10 })).rejects.toThrow(/leaves no room/);
  });
});
