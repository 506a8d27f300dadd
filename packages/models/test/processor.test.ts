// The processor against Hugging Face's Qwen2VLImageProcessor (transformers 4.50, copied from
// ../shared/fixtures by tools/oracle/gen_processor.py) and against Pillow's own resize:
// resized sizes, resized pixels, pixel_values, grids, token counts, window index,
// cu_window_seqlens and rotary positions. Our resize reproduces Pillow's integer arithmetic,
// so everything is compared bit for bit; the looser bound (|Δ| ≤ 0.02 on ≥ 99.9%
// of normalized values) is asserted as well so a failure says which bound broke.
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ImageProcessor, type PackedImages, resizeBicubic } from '../src/processor/imageProcessor.js';
import type { RgbImage } from '../src/processor/loadImage.js';
import { FIXTURES, loadCase, read, type Case } from './fixtures.js';

const HF = join(FIXTURES, 'hf');
const rgb = (c: Case, name: string): RgbImage => {
  const [height, width] = c.tensors[name].shape;
  return { data: read(c, name) as Uint8Array, height, width, channels: 3 };
};
const i32 = (t: { data(): unknown }) => Array.from(t.data() as Int32Array);

/** Compares normalized values: returns [fraction within 0.02, number of bit-unequal values]. */
function comparePixels(got: Float32Array, want: Float32Array): [number, number] {
  expect(got.length).toBe(want.length);
  let close = 0, unequal = 0;
  for (let i = 0; i < got.length; i++) {
    if (Math.abs(got[i] - want[i]) <= 0.02) close++;
    if (got[i] !== want[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) unequal++;
  }
  return [close / got.length, unequal];
}

/** pixel_values rows the fixture kept (all, or a subset named by pixel_values_rows). */
function checkPixelValues(c: Case, packed: PackedImages) {
  if (!c.tensors.pixel_values) return;
  const want = read(c, 'pixel_values') as Float32Array;
  const all = packed.pixelValues.data() as Float32Array;
  const cols = packed.pixelValues.shape[1];
  let got = all;
  if (c.tensors.pixel_values_rows) {
    expect(packed.pixelValues.shape).toEqual(c.tensors.pixel_values.full_shape);
    const rows = read(c, 'pixel_values_rows') as Int32Array;
    got = new Float32Array(rows.length * cols);
    rows.forEach((r, i) => got.set(all.subarray(r * cols, (r + 1) * cols), i * cols));
  } else {
    expect(packed.pixelValues.shape).toEqual(c.tensors.pixel_values.shape);
  }
  const [closeFraction, unequal] = comparePixels(got, want);
  expect(closeFraction).toBeGreaterThanOrEqual(0.999);
  expect(unequal).toBe(0);
}

describe('ImageProcessor vs Hugging Face fixtures', () => {
  const proc = new ImageProcessor();
  const cases = readdirSync(HF).filter((d) => d !== 'packed');

  it.each(cases)('%s', (name) => {
    const c = loadCase(join(HF, name));
    const p = c.params;
    const packed = proc.packRgb([rgb(c, 'image')], { minPixels: p.min_pixels, maxPixels: p.max_pixels });
    try {
      expect(packed.resizedSizes).toEqual([[p.resized_height, p.resized_width]]);
      expect(packed.originalSizes).toEqual([[p.height, p.width]]);
      const resized = resizeBicubic(rgb(c, 'image'), p.resized_height, p.resized_width);
      expect(Buffer.from(resized.data).equals(Buffer.from(read(c, 'resized_image')))).toBe(true);
      expect(i32(packed.gridThw)).toEqual(Array.from(read(c, 'image_grid_thw')));
      expect(packed.numImageTokens).toEqual([p.num_image_tokens]);
      expect(packed.pixelValues.shape).toEqual([p.num_patches, 1176]);
      expect(i32(packed.cuSeqlens)).toEqual([0, p.num_patches]);
      expect(i32(packed.windowIndex)).toEqual(Array.from(read(c, 'window_index')));
      expect(i32(packed.cuWindowSeqlens)).toEqual(Array.from(read(c, 'cu_window_seqlens')));
      expect(i32(packed.rotaryPosIds)).toEqual(Array.from(read(c, 'rotary_pos_ids')));
      const inv = i32(packed.windowInverse), idx = i32(packed.windowIndex);
      idx.forEach((u, slot) => expect(inv[u]).toBe(slot));
      checkPixelValues(c, packed);
    } finally {
      packed.dispose();
    }
  });

  it('packs several images in one call exactly as HF (packed)', () => {
    const c = loadCase(join(HF, 'packed'));
    const images = [0, 1, 2, 3].map((i) => rgb(c, `images/${i}`));
    const packed = proc.packRgb(images, { minPixels: c.params.min_pixels, maxPixels: c.params.max_pixels });
    try {
      expect(i32(packed.gridThw)).toEqual(Array.from(read(c, 'image_grid_thw')));
      expect(i32(packed.windowIndex)).toEqual(Array.from(read(c, 'window_index')));
      expect(i32(packed.cuWindowSeqlens)).toEqual(Array.from(read(c, 'cu_window_seqlens')));
      expect(i32(packed.rotaryPosIds)).toEqual(Array.from(read(c, 'rotary_pos_ids')));
      const g = Array.from(read(c, 'image_grid_thw'));
      const sizes = [0, 1, 2, 3].map((i) => g[i * 3 + 1] * g[i * 3 + 2]);
      expect(i32(packed.cuSeqlens)).toEqual(sizes.reduce((a, s) => [...a, a[a.length - 1] + s], [0]));
      expect(packed.numImageTokens).toEqual(sizes.map((s) => s / 4));
      expect(packed.maxSeqlen).toBe(Math.max(...sizes));
      checkPixelValues(c, packed);
    } finally {
      packed.dispose();
    }
  });

  it('packing several images of different sizes gives the rows of each image alone', async () => {
    const names = ['wide_300x1200', 'small_30x45', 'tall_1100x250', 'half_round_42x70'];
    const cs = names.map((n) => loadCase(join(HF, n)));
    const opts = { minPixels: 3136, maxPixels: 200704 };
    const together = await proc.pack(cs.map((c) => rgb(c, 'image')), opts);
    try {
      const all = together.pixelValues.data() as Float32Array;
      const pos = i32(together.rotaryPosIds);
      let row = 0;
      for (const c of cs) {
        const alone = proc.packRgb([rgb(c, 'image')], opts);
        const n = alone.pixelValues.shape[0];
        const a = alone.pixelValues.data() as Float32Array;
        expect(Buffer.from(all.buffer, row * 1176 * 4, n * 1176 * 4).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength))).toBe(true);
        expect(pos.slice(row * 2, (row + n) * 2)).toEqual(i32(alone.rotaryPosIds));
        row += n;
        alone.dispose();
      }
      expect(row).toBe(together.pixelValues.shape[0]);
    } finally {
      together.dispose();
    }
  });
});

describe('resizeBicubic vs Pillow', () => {
  const dirs = [
    ...readdirSync(join(FIXTURES, 'pillow_resize')).map((d) => join(FIXTURES, 'pillow_resize', d)),
    ...readdirSync(join(FIXTURES, 'hf_model_images')).map((d) => join(FIXTURES, 'hf_model_images', d)),
  ];
  it.each(dirs)('%s', (dir) => {
    const c = loadCase(dir);
    const [h, w] = c.tensors.resized_image.shape;
    const out = resizeBicubic(rgb(c, 'image'), h, w);
    expect(Buffer.from(out.data).equals(Buffer.from(read(c, 'resized_image')))).toBe(true);
  });

  it('rejects bad sizes and buffers', () => {
    const img: RgbImage = { data: new Uint8Array(12), height: 2, width: 2, channels: 3 };
    expect(() => resizeBicubic(img, 0, 4)).toThrow(/resizeBicubic: target size/);
    expect(() => resizeBicubic({ ...img, data: new Uint8Array(5) }, 4, 4)).toThrow(/holds 5 bytes/);
  });
});

describe('ImageProcessor config', () => {
  it('fromPretrained reads preprocessor_config.json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fovea-proc-'));
    writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({
      min_pixels: 3136, max_pixels: 12845056, patch_size: 14, temporal_patch_size: 2, merge_size: 2,
      image_mean: [0.5, 0.5, 0.5], image_std: [0.25, 0.25, 0.25], image_processor_type: 'Qwen2VLImageProcessor',
    }));
    const p = await ImageProcessor.fromPretrained(dir);
    expect(p.config.maxPixels).toBe(12845056);
    expect(p.config.imageMean).toEqual([0.5, 0.5, 0.5]);
    expect(p.targetSize(3024, 4032)).toEqual([3024, 4032]);
    await expect(ImageProcessor.fromPretrained(join(dir, 'missing'))).rejects.toThrow(/cannot read .*preprocessor_config.json/);
  });

  it('uses the class defaults (CLIP mean/std, 3136..1003520)', () => {
    const p = new ImageProcessor();
    expect(p.config.imageStd).toEqual([0.26862954, 0.26130258, 0.27577711]);
    expect(p.targetSize(768, 1024)).toEqual([756, 1036]);
    expect(() => new ImageProcessor({ patchSize: 0 })).toThrow(/patchSize must be a positive integer/);
  });
});
