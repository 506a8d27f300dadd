// Qwen2_5_VL beyond the HF fixtures: packed batches (sequences packed into one forward equal
// separate forwards), tied heads, save → load round trips, memory hygiene, and bad input.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Tensor, backward, cat, memoryStats, noGrad, randn, tidy } from '@fovea/core';
import { Qwen2_5_VL } from '../src/qwen2_5_vl/model.js';
import { parseConfig } from '../src/qwen2_5_vl/config.js';

const MODEL_DIR = join(import.meta.dirname, 'fixtures', 'qwen25vl', 'model');
const baseJson = () => JSON.parse(readFileSync(join(MODEL_DIR, 'config.json'), 'utf8'));
const IMG = 743, VS = 740, VE = 741;

/** A sequence with one image of grid (1, gh, gw): text, vision_start, pads, vision_end, text. */
function sequence(gh: number, gw: number, before: number[], after: number[]): number[] {
  return [...before, VS, ...Array((gh * gw) / 4).fill(IMG), VE, ...after];
}

const f32 = (t: Tensor) => Float32Array.from(t.data() as ArrayLike<number>);

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let model: Qwen2_5_VL;
beforeAll(async () => { model = await Qwen2_5_VL.fromPretrained(MODEL_DIR); });
afterAll(() => model?.dispose());

describe('packed batches', () => {
  it('three packed sequences (two with images) equal three separate forwards', () => {
    const a = sequence(4, 6, [1, 2, 3], [4, 5, 6, 7]);
    const b = [9, 8, 7, 6, 5, 4, 3];
    const c = sequence(2, 4, [11], [12, 13]);
    noGrad(() => tidy(() => {
      const pa = randn([24, 1176], { seed: 1 }), pc = randn([8, 1176], { seed: 2 });
      const ga = { t: 1, h: 4, w: 6 }, gc = { t: 1, h: 2, w: 4 };
      const ha = f32(model.forward({ inputIds: a, images: { pixelValues: pa, gridThw: [ga] } }));
      const hb = f32(model.forward({ inputIds: b }));
      const hc = f32(model.forward({ inputIds: c, images: { pixelValues: pc, gridThw: [gc] } }));
      const packed = f32(model.forward({
        inputIds: [...a, ...b, ...c],
        images: { pixelValues: cat([pa, pc]), gridThw: [ga, gc] },
        cuSeqlens: [0, a.length, a.length + b.length, a.length + b.length + c.length],
      }));
      expect(maxDiff(packed, new Float32Array([...ha, ...hb, ...hc]))).toBeLessThan(1e-5);
    }));
  });
});

describe('tied head', () => {
  it('a tied config has no lm_head parameter; logits use embed_tokens and its gradient gets both uses', () => {
    const json = baseJson();
    json.tie_word_embeddings = true;
    const m = Qwen2_5_VL.random(parseConfig(json), { seed: 3 });
    try {
      expect(m.stateDict().has('lm_head.weight')).toBe(false);
      expect(m.lmHeadWeight).toBe(m.model.embedWeight);
      tidy(() => {
        const h = m.forward({ inputIds: [1, 2, 3, 4] });
        backward(m.logits(h).sum());
      });
      expect(m.model.embedWeight.grad).toBeTruthy();
      // Rows of ids never seen still get the head's gradient (every row is an output class).
      const g = f32(m.model.embedWeight.grad!);
      expect(Math.abs(g[900 * 64])).toBeGreaterThan(0);
    } finally {
      m.dispose();
    }
  });
});

describe('save and load', () => {
  it('a saved model (sharded, nested layout) loads back with identical outputs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fovea-qwen-'));
    try {
      model.save(dir, { maxShardBytes: 300_000, layout: 'nested' });
      cpSync(join(MODEL_DIR, 'preprocessor_config.json'), join(dir, 'preprocessor_config.json'));
      const back = await Qwen2_5_VL.fromPretrained(dir);
      try {
        for (const [k, p] of model.stateDict()) expect(f32(back.stateDict().get(k)!), k).toEqual(f32(p));
        const ids = sequence(2, 4, [5], [6, 7]);
        noGrad(() => tidy(() => {
          const pv = randn([8, 1176], { seed: 4 });
          const images = { pixelValues: pv, gridThw: [{ t: 1, h: 2, w: 4 }] };
          expect(f32(back.forward({ inputIds: ids, images }))).toEqual(f32(model.forward({ inputIds: ids, images })));
        }));
      } finally {
        back.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads generation_config.json when present and names it when it is broken', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fovea-qwen-'));
    try {
      cpSync(MODEL_DIR, dir, { recursive: true });
      writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [733], temperature: 0.7 }));
      const m = await Qwen2_5_VL.fromPretrained(dir);
      expect(m.generationConfig).toEqual({ eos_token_id: [733], temperature: 0.7 });
      m.dispose();
      writeFileSync(join(dir, 'generation_config.json'), '{oops');
      await expect(Qwen2_5_VL.fromPretrained(dir)).rejects.toThrow(/generation_config\.json is not valid JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('memory', () => {
  it('forward + backward with and without checkpointing leaves no live tensors behind', () => {
    const ids = sequence(4, 4, [1, 2], [3, 4, 5]);
    const run = (ckpt: boolean) => {
      tidy(() => {
        const pv = randn([16, 1176], { seed: 5 });
        const h = model.forward({ inputIds: ids, images: { pixelValues: pv, gridThw: [{ t: 1, h: 4, w: 4 }] } },
          { gradientCheckpointing: ckpt });
        backward(model.logits(h).square().mean());
      });
      model.zeroGrad();
    };
    run(false); run(true);
    const before = memoryStats().cpu;
    for (let i = 0; i < 3; i++) { run(false); run(true); }
    const after = memoryStats().cpu;
    expect(after.liveTensors).toBe(before.liveTensors);
  });
});

describe('bad input', () => {
  const pv = () => randn([16, 1176], { seed: 6 });
  const grid = [{ t: 1, h: 4, w: 4 }];
  it('names both counts when image pads and image features disagree', () => {
    tidy(() => {
      expect(() => model.forward({ inputIds: [1, VS, IMG, IMG, VE], images: { pixelValues: pv(), gridThw: grid } }))
        .toThrow(/2 <\|image_pad\|> tokens .* 4 features \(1 image\)/);
      expect(() => model.forward({ inputIds: sequence(4, 4, [1], [2]) }))
        .toThrow(/4 <\|image_pad\|> tokens .* 0 features/);
    });
  });
  it('rejects ids outside the vocabulary, bad cuSeqlens and bad position ids', () => {
    expect(() => model.forward({ inputIds: [1, 2, 1024] })).toThrow(/inputIds\[2\] = 1024 is outside the vocabulary \[0, 1024\)/);
    expect(() => model.forward({ inputIds: [1, -1] })).toThrow(/outside the vocabulary/);
    expect(() => model.forward({ inputIds: [] })).toThrow(/inputIds is empty/);
    expect(() => model.forward({ inputIds: [1, 2, 3], cuSeqlens: [0, 2] })).toThrow(/cuSeqlens must start at 0 and end at the 3 tokens/);
    expect(() => model.forward({ inputIds: [1, 2, 3], cuSeqlens: [0, 2, 1, 3] })).toThrow(/must not decrease/);
    expect(() => model.forward({ inputIds: [1, 2, 3], positionIds: new Int32Array(6) })).toThrow(/positionIds must be \[3, 3\]/);
    expect(() => model.forward(null as never)).toThrow(/input must be an object/);
  });
  it('rejects pixel values and grids that do not fit the config', () => {
    tidy(() => {
      const ids = sequence(4, 4, [1], [2]);
      expect(() => model.forward({ inputIds: ids, images: { pixelValues: randn([15, 1176]), gridThw: grid } }))
        .toThrow(/pixelValues is \[15, 1176\], expected \[16, 1176\]/);
      expect(() => model.forward({ inputIds: ids, images: { pixelValues: randn([16, 588]), gridThw: grid } }))
        .toThrow(/expected \[16, 1176\]/);
      expect(() => model.forward({ inputIds: ids, images: { pixelValues: pv(), gridThw: [{ t: 1, h: 3, w: 4 }] } }))
        .toThrow(/grid 0 \(1, 3, 4\) .* multiples of 2/);
    });
  });
  it('names a missing checkpoint directory or config', async () => {
    await expect(Qwen2_5_VL.fromPretrained('/nonexistent/qwen')).rejects.toThrow(/cannot read \/nonexistent\/qwen\/config\.json/);
  });
});
