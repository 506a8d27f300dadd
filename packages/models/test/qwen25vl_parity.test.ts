// Qwen2.5-VL against Hugging Face transformers: the tiny random checkpoint in
// fixtures/qwen25vl/model and what transformers' Qwen2_5_VLForConditionalGeneration computed
// for it (copied from ../shared/fixtures/qwen25vl; see tools/oracle/README.md). Targets from the
// issue: logits relative error ≤ 1e-4 in f32, gradients ≤ 1e-3, position ids and token counts
// exact, bf16 within 2e-2 of f32. Relative error is ‖a − b‖₂ / ‖b‖₂ over the compared values.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Tensor, backward, gather, logSoftmax, noGrad, tensor, tidy } from '@fovea/core';
import { Qwen2_5_VL } from '../src/qwen2_5_vl/model.js';
import { getRopeIndexPacked } from '../src/qwen2_5_vl/ropeIndex.js';
import { type Case, loadCase, read } from './fixtures.js';

const ROOT = join(import.meta.dirname, 'fixtures', 'qwen25vl');
const MODEL_DIR = join(ROOT, 'model');

function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

const f32 = (t: Tensor) => Float32Array.from(t.data() as ArrayLike<number>);

/** One packed batch built from a fixture case: the unmasked tokens of each row back to back. */
interface Packed {
  ids: Int32Array;
  pos: Int32Array;            // [3, L]
  cu: Int32Array;
  slots: number[];            // fixture flat index (b·S + s) of each packed token
  targets: Int32Array;
  lossMask: Float32Array;
  images: { pixelValues: Tensor; gridThw: { t: number; h: number; w: number }[] } | null;
}

function pack(c: Case): Packed {
  const [B, S] = c.tensors.input_ids.shape;
  const ids = read(c, 'input_ids') as Int32Array, mask = read(c, 'attention_mask') as Int32Array;
  const pos = read(c, 'position_ids') as Int32Array, tg = read(c, 'targets') as Int32Array;
  const lm = read(c, 'loss_mask') as Int32Array;
  const slots: number[] = [], cu = [0];
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) if (mask[b * S + s]) slots.push(b * S + s);
    cu.push(slots.length);
  }
  const L = slots.length;
  const p = new Int32Array(3 * L);
  for (let k = 0; k < 3; k++) slots.forEach((slot, i) => { p[k * L + i] = pos[k * B * S + slot]; });
  let images: Packed['images'] = null;
  if (c.tensors.pixel_values) {
    const g = read(c, 'image_grid_thw') as Int32Array;
    const grids = [];
    for (let i = 0; i < g.length; i += 3) grids.push({ t: g[i], h: g[i + 1], w: g[i + 2] });
    images = { pixelValues: tensor(read(c, 'pixel_values') as Float32Array, { shape: c.tensors.pixel_values.shape }), gridThw: grids };
  }
  return {
    ids: Int32Array.from(slots, (s) => ids[s]), pos: p, cu: Int32Array.from(cu), slots,
    targets: Int32Array.from(slots, (s) => tg[s]), lossMask: Float32Array.from(slots, (s) => lm[s]), images,
  };
}

/** Rows of a [B, S, ...] fixture tensor at the packed slots. */
function rows(c: Case, name: string, slots: number[]): Float32Array {
  const all = read(c, name) as Float32Array;
  const shape = c.tensors[name].shape;
  const w = shape.slice(2).reduce((a, b) => a * b, 1);
  const out = new Float32Array(slots.length * w);
  slots.forEach((s, i) => out.set(all.subarray(s * w, (s + 1) * w), i * w));
  return out;
}

/** Σ log p(target) · mask over the packed tokens, as the fixtures' backward objective. */
function objective(logits: Tensor, p: Packed): Tensor {
  return tidy(() => {
    const lp = gather(logSoftmax(logits, -1), 1, tensor(p.targets, { dtype: 'i32', shape: [p.targets.length, 1] }));
    return lp.reshape([-1]).mul(tensor(p.lossMask)).sum();
  });
}

let model: Qwen2_5_VL;
beforeAll(async () => { model = await Qwen2_5_VL.fromPretrained(MODEL_DIR, { dtype: 'f32' }); });
afterAll(() => model?.dispose());

describe('Qwen2.5-VL matches Hugging Face (f32)', () => {
  for (const name of ['multi_image', 'batch2_right_padded', 'text_only']) {
    it(`${name}: position ids, vision tower, embeddings, hidden states and logits`, () => {
      const c = loadCase(join(ROOT, name));
      const p = pack(c);
      // Position ids computed from the ids and grids equal HF's get_rope_index exactly.
      const computed = getRopeIndexPacked(p.ids, p.cu, p.images?.gridThw ?? [],
        { imageTokenId: model.config.imageTokenId, visionStartTokenId: model.config.visionStartTokenId });
      expect(Array.from(computed)).toEqual(Array.from(p.pos));

      const seen: Record<string, Float32Array> = {};
      noGrad(() => tidy(() => {
        const hidden = model.forward({ inputIds: p.ids, images: p.images, cuSeqlens: p.cu, positionIds: p.pos }, {
          onImageFeatures: (f) => { seen.vision_embeds = f32(f); },
          onVisionBlock: (i, h) => { seen[`vision/block${i}_out`] = f32(h); },
          onInputEmbeds: (e) => { seen.inputs_embeds = f32(e); },
          onLayer: (i, h) => { if (i === 0) seen.hidden_after_layer0 = f32(h); },
        });
        seen.final_hidden = f32(hidden);
        seen.logits = f32(model.logits(hidden));
        // Forward without positionIds computes them (same result).
        const again = model.forward({ inputIds: p.ids, images: p.images, cuSeqlens: p.cu });
        seen.final_hidden_auto = f32(again);
      }));
      if (p.images) {
        const nTok = p.images.gridThw.reduce((n, g) => n + (g.t * g.h * g.w) / 4, 0);
        expect(seen.vision_embeds.length / 64).toBe(nTok);
        expect(relError(seen.vision_embeds, read(c, 'vision_embeds') as Float32Array)).toBeLessThan(1e-5);
        for (const b of [0, 1]) {
          expect(relError(seen[`vision/block${b}_out`], read(c, `vision/block${b}_out`) as Float32Array)).toBeLessThan(1e-5);
        }
      }
      expect(relError(seen.inputs_embeds, rows(c, 'inputs_embeds', p.slots))).toBeLessThan(1e-6);
      expect(relError(seen.hidden_after_layer0, rows(c, 'hidden_after_layer0', p.slots))).toBeLessThan(1e-5);
      expect(relError(seen.final_hidden, rows(c, 'final_hidden', p.slots))).toBeLessThan(1e-5);
      expect(relError(seen.logits, rows(c, 'logits', p.slots))).toBeLessThan(1e-4);
      expect(seen.final_hidden_auto).toEqual(seen.final_hidden);
      p.images?.pixelValues.dispose();
    });
  }

  for (const [name, ckpt] of [['multi_image', false], ['batch2_right_padded', false], ['multi_image', true]] as const) {
    it(`${name}: gradients of Σ target log-prob × loss mask${ckpt ? ' with gradient checkpointing' : ''}`, () => {
      const c = loadCase(join(ROOT, name));
      const p = pack(c);
      model.zeroGrad();
      tidy(() => {
        const hidden = model.forward({ inputIds: p.ids, images: p.images, cuSeqlens: p.cu, positionIds: p.pos },
          { gradientCheckpointing: ckpt });
        const obj = objective(model.logits(hidden), p);
        const want = JSON.parse(readFileSync(join(c.dir, 'manifest.json'), 'utf8')).scalars.objective_sum_masked_logprob;
        expect(Math.abs(obj.item() - want) / Math.abs(want)).toBeLessThan(1e-5);
        backward(obj);
      });
      const grads = Object.keys(c.tensors).filter((k) => k.startsWith('grads/'));
      const params = model.stateDict();
      expect(grads.length).toBe(params.size);
      for (const g of grads) {
        const pname = g.slice('grads/'.length);
        const param = params.get(pname);
        expect(param, pname).toBeDefined();
        expect(param!.grad, pname).toBeTruthy();
        const err = relError(f32(param!.grad!), read(c, g) as Float32Array);
        expect(err, `${pname}: relative error ${err}`).toBeLessThan(1e-3);
      }
      model.zeroGrad();
      p.images?.pixelValues.dispose();
    });
  }
});

describe('Qwen2.5-VL in bf16', () => {
  it('logits within 2e-2 of the f32 model', async () => {
    const bf = await Qwen2_5_VL.fromPretrained(MODEL_DIR, { dtype: 'bf16' });
    try {
      expect(bf.dtype).toBe('bf16');
      for (const name of ['multi_image', 'text_only']) {
        const p = pack(loadCase(join(ROOT, name)));
        const [a, b] = noGrad(() => tidy(() => {
          const input = { inputIds: p.ids, images: p.images, cuSeqlens: p.cu, positionIds: p.pos };
          const ref = f32(model.logits(model.forward(input)));
          const lo = bf.logits(bf.forward(input));
          expect(lo.dtype).toBe('bf16');
          return [f32(lo.to('f32')), ref];
        }));
        const err = relError(a, b);
        expect(err, `${name}: ${err}`).toBeLessThan(2e-2);
        p.images?.pixelValues.dispose();
      }
    } finally {
      bf.dispose();
    }
  });
});
