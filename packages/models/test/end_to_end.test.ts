// The README's path end to end on the tiny checkpoint: processor (chat template, tokenizer,
// images) → model forward → logits, and generation with a tool-style pause and a follow-up
// turn carrying a new image. Each piece is checked in depth elsewhere; this checks they fit.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noGrad, tidy } from '@fovea/core';
import { Qwen2_5_VL } from '../src/qwen2_5_vl/model.js';
import { Qwen2_5_VLProcessor, expandImagePlaceholders } from '../src/qwen2_5_vl/chat.js';
import { GenerationEngine } from '../src/generation/engine.js';
import type { RgbImage } from '../src/processor/loadImage.js';

const FIX = join(import.meta.dirname, 'fixtures');

function gradient(height: number, width: number): RgbImage {
  const data = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      data[o] = (x * 255) / width; data[o + 1] = (y * 255) / height; data[o + 2] = ((x + y) * 7) % 256;
    }
  }
  return { data, height, width, channels: 3 };
}

let dir: string;
let model: Qwen2_5_VL;
let proc: Qwen2_5_VLProcessor;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fovea-e2e-'));
  cpSync(join(FIX, 'qwen25vl', 'model'), dir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(dir, f));
  model = await Qwen2_5_VL.fromPretrained(dir);
  proc = await Qwen2_5_VLProcessor.fromPretrained(dir);
});
afterAll(() => { model?.dispose(); rmSync(dir, { recursive: true, force: true }); });

describe('conversation → model → generation', () => {
  it('runs a forward pass on a conversation with an image', async () => {
    const chat = await proc.apply([
      { role: 'user', content: [{ type: 'image', image: gradient(120, 90) }, { type: 'text', text: 'What is this?' }] },
    ], { addGenerationPrompt: true });
    try {
      expect(chat.imageTokenCounts.length).toBe(1);
      const pads = Array.from(chat.inputIds).filter((t) => t === model.config.imageTokenId).length;
      expect(pads).toBe(chat.imageTokenCounts[0]);
      const [next, rows] = noGrad(() => tidy(() => {
        const hidden = model.forward({ inputIds: chat.inputIds, images: chat.images, positionIds: chat.positionIds });
        const auto = model.forward({ inputIds: chat.inputIds, images: chat.images });
        expect(Array.from(auto.data() as Float32Array)).toEqual(Array.from(hidden.data() as Float32Array));
        const logits = model.logits(hidden.narrow(0, hidden.shape[0] - 1, 1));
        return [logits.argmax(-1).item(), hidden.shape[0]];
      }));
      expect(rows).toBe(chat.inputIds.length);
      expect(next).toBeGreaterThanOrEqual(0);
      expect(next).toBeLessThan(model.config.text.vocabSize);
    } finally {
      chat.images?.dispose();
    }
  });

  it('generates a group, pauses at a trigger, and continues with a tool turn carrying a new image', async () => {
    const chat = await proc.apply([
      { role: 'user', content: [{ type: 'image', image: gradient(200, 140) }, { type: 'text', text: 'Where is the sign?' }] },
    ], { addGenerationPrompt: true });
    const engine = new GenerationEngine(model, { maxTokens: 4096, blockSize: 16, tokenizer: proc.tokenizer });
    try {
      const group = engine.addGroup({
        inputIds: chat.inputIds, images: chat.images, sampling: { temperature: 1, seed: 3 }, maxNewTokens: 12, stopTokenIds: [],
        onToken: (seq) => (seq.turnTokens === 5 ? 'pause' : undefined),
      }, 4);
      engine.run();
      for (const s of group) {
        expect(s.finishReason).toBe('paused');
        expect(s.outputTokens.length).toBe(5);
        expect(s.outputLogprobs.every((l) => l <= 0 && Number.isFinite(l))).toBe(true);
      }
      // The tool's answer: a new user turn carrying a crop, in the chat template's format.
      const crop = await proc.imageProcessor.pack([gradient(60, 60)]);
      const text = expandImagePlaceholders(
        '<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>crop<|im_end|>\n<|im_start|>assistant\n',
        crop.numImageTokens);
      const ids = proc.tokenizer.encode(text);
      group[0].request.onToken = undefined;
      engine.append(group[0], { inputIds: ids, images: crop, maxNewTokens: 4 });
      engine.run();
      expect(group[0].outputTokens.length).toBe(9);
      expect(group[0].finishReason).toBe('length');
      crop.dispose();
    } finally {
      engine.dispose();
      chat.images?.dispose();
    }
  });
});
