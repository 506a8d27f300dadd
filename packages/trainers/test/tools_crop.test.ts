// The crop/grounding tool: coordinate mapping between the model frame (smart-resized) and the
// original file, crop pixel content, MGPO's validation with clamp/grow, invalid boxes.
import { describe, expect, it } from 'vitest';
import { ImageProcessor, smartResize, type RgbImage } from '@fovea/models';
import { type Box } from '../src/tools/boxParser.js';
import {
  checkBox, cropRgb, cropTool, endsWithJsonFence, modelToOriginal, originalToModel, MGPO_CROP_MIN_PIXELS,
  CROP_FAILURE_PHRASES, type CropFailure,
} from '../src/tools/crop.js';

/** A synthetic image whose pixel encodes its coordinates: R = x mod 256, G = y mod 256, B = (x>>8) | (y>>8)<<4. */
function gradient(height: number, width: number): RgbImage {
  const data = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      data[o] = x & 255;
      data[o + 1] = y & 255;
      data[o + 2] = (x >> 8) | ((y >> 8) << 4);
    }
  }
  return { data, height, width, channels: 3 };
}

/** Checks every pixel of `crop` against the gradient at offset (x0, y0). */
function expectRegion(crop: RgbImage, x0: number, y0: number): void {
  let bad = 0;
  for (let y = 0; y < crop.height; y++) {
    for (let x = 0; x < crop.width; x++) {
      const o = (y * crop.width + x) * 3, gx = x0 + x, gy = y0 + y;
      if (crop.data[o] !== (gx & 255) || crop.data[o + 1] !== (gy & 255) || crop.data[o + 2] !== ((gx >> 8) | ((gy >> 8) << 4))) bad++;
    }
  }
  expect(bad).toBe(0);
}

const fenced = (b: number[]) => `The key region:\n\`\`\`json\n[{"bbox_2d": [${b.join(', ')}], "label": "key"}]\n\`\`\``;

// Original 3000x2000 (width x height), as the model sees it under Qwen's default budget.
const H = 2000, W = 3000;
const FRAME = smartResize(H, W) as [number, number];
const big = gradient(H, W);

describe('coordinate mapping across resize frames', () => {
  it('the model frame of a 3000x2000 original is 1204x812 (width x height)', () => {
    expect(FRAME).toEqual([812, 1204]);
  });

  it('outward mapping contains the exact region and is within one original pixel of it', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    for (let i = 0; i < 500; i++) {
      const x1 = rnd(1100), y1 = rnd(700), box: Box = [x1, y1, x1 + 29 + rnd(1204 - x1 - 29 + 1), y1 + 29 + rnd(812 - y1 - 29 + 1)];
      const o = modelToOriginal(box, FRAME, [H, W]);
      const exact = [box[0] * W / 1204, box[1] * H / 812, box[2] * W / 1204, box[3] * H / 812];
      expect(o[0]).toBeLessThanOrEqual(exact[0]); expect(exact[0] - o[0]).toBeLessThan(1);
      expect(o[1]).toBeLessThanOrEqual(exact[1]); expect(exact[1] - o[1]).toBeLessThan(1);
      expect(o[2]).toBeGreaterThanOrEqual(exact[2]); expect(o[2] - exact[2]).toBeLessThan(1);
      expect(o[3]).toBeGreaterThanOrEqual(exact[3]); expect(o[3] - exact[3]).toBeLessThan(1);
      expect(o[2]).toBeLessThanOrEqual(W); expect(o[3]).toBeLessThanOrEqual(H);
      // Round trip model → original → model contains the model box, within one model pixel.
      const back = originalToModel(o, [H, W], FRAME);
      expect(back[0]).toBeLessThanOrEqual(box[0] + 1e-9); expect(box[0] - back[0]).toBeLessThan(1);
      expect(back[3]).toBeGreaterThanOrEqual(box[3] - 1e-9); expect(back[3] - box[3]).toBeLessThan(1);
    }
    // A hand-checked case: 100·3000/1204 = 249.17, 200·2000/812 = 492.6, 500·3000/1204 = 1245.8, 600·2000/812 = 1477.8.
    expect(modelToOriginal([100, 200, 500, 600], FRAME, [H, W])).toEqual([249, 492, 1246, 1478]);
    expect(modelToOriginal([100, 200, 500, 600], FRAME, [H, W], 'floor')).toEqual([249, 492, 1245, 1477]);
    expect(modelToOriginal([0, 0, 1204, 812], FRAME, [H, W])).toEqual([0, 0, 3000, 2000]);
  });

  it('maps exactly and round-trips when the scale is exact (2800x1400 → 1400x700)', () => {
    const frame = smartResize(1400, 2800) as [number, number];
    expect(frame).toEqual([700, 1400]);
    const model: Box = [100, 50, 300, 251];
    const orig = modelToOriginal(model, frame, [1400, 2800]);
    expect(orig).toEqual([200, 100, 600, 502]);
    expect(originalToModel(orig, [1400, 2800], frame)).toEqual(model);
    expect(modelToOriginal(originalToModel([2, 4, 1000, 1398], [1400, 2800], frame), frame, [1400, 2800])).toEqual([2, 4, 1000, 1398]);
  });

  it('upscaled originals (smaller than the model frame) map down', () => {
    const frame = smartResize(50, 60) as [number, number]; // min pixels 3136 enlarges it
    expect(frame[0] * frame[1]).toBeGreaterThanOrEqual(3136);
    const o = modelToOriginal([0, 0, frame[1], frame[0]], frame, [50, 60]);
    expect(o).toEqual([0, 0, 60, 50]);
  });
});

describe('crop content', () => {
  it('cropRgb copies exactly the half-open region', () => {
    const img = gradient(300, 400);
    const c = cropRgb(img, [17, 260, 399, 300]);
    expect([c.height, c.width]).toEqual([40, 382]);
    expectRegion(c, 17, 260);
    expect(() => cropRgb(img, [0, 0, 401, 10])).toThrow(/cropRgb: box \[0, 0, 401, 10\] must be integers with 0 <= x1 < x2 <= 400/);
    expect(() => cropRgb(img, [0.5, 0, 10, 10])).toThrow(/must be integers/);
  });

  it('the tool crops the original full-resolution pixels of the mapped box', () => {
    const tool = cropTool();
    const r = tool.crop(fenced([100, 200, 500, 600]), { original: big, modelFrame: FRAME });
    expect(r.ok).toBe(true);
    expect(r.boxModel).toEqual([100, 200, 500, 600]);
    expect(r.boxOriginal).toEqual([249, 492, 1246, 1478]);
    expect(r.cropSize).toEqual([1478 - 492, 1246 - 249]);
    expect([r.image.height, r.image.width]).toEqual(r.cropSize);
    expect(r.parsed).toEqual({ source: 'json', label: 'key', count: 1 });
    expectRegion(r.image, 249, 492);
  });

  it('a small region is enlarged by the processor budget (MGPO min pixels)', () => {
    const tool = cropTool();
    const r = tool.crop('[40, 40, 80, 90]', { original: big, modelFrame: FRAME });
    expect(r.ok).toBe(true);
    expect(r.parsed?.source).toBe('bare');
    const [ch, cw] = r.cropSize!;
    expect(r.imageFrame).toEqual(new ImageProcessor().targetSize(ch, cw, { minPixels: MGPO_CROP_MIN_PIXELS }));
    expect(r.imageFrame[0] * r.imageFrame[1]).toBeGreaterThanOrEqual(MGPO_CROP_MIN_PIXELS);
    expect(r.imageFrame[0]).toBeGreaterThan(ch * 2);
    expect(r.numImageTokens).toBe((r.imageFrame[0] * r.imageFrame[1]) / 784);
    const packed = tool.pack(r);
    try {
      expect(packed.resizedSizes).toEqual([r.imageFrame]);
      expect(packed.originalSizes).toEqual([r.cropSize]);
      expect(packed.numImageTokens).toEqual([r.numImageTokens]);
    } finally {
      packed.dispose();
    }
  });
});

describe('validation (model frame) with clamp and grow', () => {
  const frame = FRAME; // [812, 1204]
  it('MGPO rules: ordered, inside, each side > 28, aspect < 100', () => {
    expect(checkBox([10, 10, 39, 39], frame)).toEqual({ ok: true, box: [10, 10, 39, 39], adjusted: [] });
    expect(checkBox([10, 10, 38, 39], frame)).toMatchObject({ ok: false, reason: 'too-small', message: expect.stringMatching(/28x29 px.*> 28/) });
    expect(checkBox([300, 10, 100, 400], frame)).toMatchObject({ ok: false, reason: 'not-ordered', message: expect.stringMatching(/x1 < x2/) });
    expect(checkBox([-1, 10, 100, 400], frame)).toMatchObject({ ok: false, reason: 'out-of-bounds' });
    expect(checkBox([0, 0, 1205, 400], frame)).toMatchObject({ ok: false, reason: 'out-of-bounds', message: expect.stringMatching(/1204x812/) });
    expect(checkBox([0, 0, 1204, 812], frame).ok).toBe(true);
    expect(checkBox([0, 0, 3000, 29], [100, 5000])).toMatchObject({ ok: false, reason: 'aspect-ratio' });
    expect(checkBox([0, 0, 2899, 29], [100, 5000]).ok).toBe(true);
    expect(checkBox([0, 0, 50, 50], frame, { minSide: 60 })).toMatchObject({ ok: false, reason: 'too-small' });
  });

  it('clamp clips to the image; a box wholly outside is still rejected', () => {
    expect(checkBox([-50, -20, 300, 900], frame, { clamp: true })).toEqual({ ok: true, box: [0, 0, 300, 812], adjusted: ['clamped'] });
    expect(checkBox([1300, 10, 1400, 400], frame, { clamp: true })).toMatchObject({ ok: false, reason: 'out-of-bounds', adjusted: ['clamped'] });
    expect(checkBox([1190, 10, 1300, 400], frame, { clamp: true })).toMatchObject({ ok: false, reason: 'too-small' }); // 14 px after clamping
    expect(checkBox([1190, 10, 1300, 400], frame, { clamp: true, growSmall: true })).toEqual({
      ok: true, box: [1175, 10, 1204, 400], adjusted: ['clamped', 'grown'],
    });
  });

  it('growSmall grows around the center to minSide + 1, staying inside', () => {
    expect(checkBox([100, 200, 110, 300], frame, { growSmall: true })).toEqual({ ok: true, box: [90.5, 200, 119.5, 300], adjusted: ['grown'] });
    expect(checkBox([0, 0, 10, 10], frame, { growSmall: true })).toEqual({ ok: true, box: [0, 0, 29, 29], adjusted: ['grown'] });
    expect(checkBox([1200, 805, 1204, 812], frame, { growSmall: true })).toEqual({ ok: true, box: [1175, 783, 1204, 812], adjusted: ['grown'] });
    expect(checkBox([0, 0, 10, 10], frame, { growSmall: true, growTo: 64 }).box).toEqual([0, 0, 64, 64]);
    expect(checkBox([0, 0, 10, 10], [28, 5600], { growSmall: true })).toMatchObject({ ok: false, reason: 'image-too-small' });
  });

  it('the tool applies clamp/grow and reports both frames', () => {
    const tool = cropTool({ clamp: true, growSmall: true });
    const r = tool.crop(fenced([1200, -5, 1300, 10]), { original: big, modelFrame: FRAME });
    expect(r.ok).toBe(true);
    expect(r.boxRaw).toEqual([1200, -5, 1300, 10]);
    expect(r.boxModel).toEqual([1175, 0, 1204, 29]);
    expect(r.adjusted).toEqual(['clamped', 'grown']);
    expect(r.boxOriginal).toEqual(modelToOriginal([1175, 0, 1204, 29], FRAME, [H, W]));
    expectRegion(r.image, r.boxOriginal![0], r.boxOriginal![1]);
  });
});

describe('invalid or missing boxes return the original image', () => {
  const tool = cropTool();
  const input = { original: big, modelFrame: FRAME };
  it.each([
    ['no box', 'The answer is B.', 'no-box'],
    ['malformed', '```json\n[{"bbox_2d": [1, 2, 3]}]\n```', 'no-box'],
    ['outside', fenced([1000, 700, 1300, 900]), 'out-of-bounds'],
    ['negative', fenced([-10, 0, 100, 100]), 'out-of-bounds'],
    ['too small', fenced([10, 10, 30, 300]), 'too-small'],
    ['reversed', fenced([300, 10, 100, 300]), 'not-ordered'],
  ])('%s', async (_name, text, reason) => {
    const r = tool.crop(text, input);
    expect(r).toMatchObject({ ok: false, reason });
    expect(r.image).toBe(big);
    expect(r.boxModel).toBeUndefined();
    expect(r.imageFrame).toEqual(new ImageProcessor().targetSize(H, W, { minPixels: MGPO_CROP_MIN_PIXELS }));
    const out = await tool.run(text, input);
    expect(out.ok).toBe(false);
    expect(out.images).toEqual([big]);
    expect(out.text).toBe(`The coordinates you gave were invalid (${CROP_FAILURE_PHRASES[reason as CropFailure]}), so here is the original image again.`);
    expect(out.report.reason).toBe(reason);
    expect('image' in out.report).toBe(false);
  });

  it('the invalid-turn template can quote the full message', async () => {
    const out = await cropTool({ invalidText: 'Invalid: {detail}' }).run(fenced([10, 10, 30, 300]), input);
    expect(out.text).toBe('Invalid: box is 20x290 px in the image the model saw; each side must be > 28');
  });

  it('a valid call yields the crop and the valid-turn text', async () => {
    const out = await cropTool({ validText: 'Crop {box}:' }).run(fenced([100, 200, 500, 600]), input);
    expect(out.ok).toBe(true);
    expect(out.text).toBe('Crop [249, 492, 1246, 1478]:');
    expect(out.images[0].width).toBe(997);
  });
});

describe('trigger and bad configuration', () => {
  it('trigger fires only when the text ends by closing a ```json fence', () => {
    const tool = cropTool();
    expect(tool.name).toBe('crop');
    expect(tool.trigger(fenced([1, 2, 3, 4]))).toBe(true);
    expect(tool.trigger(fenced([1, 2, 3, 4]) + '\n  ')).toBe(true);
    expect(tool.trigger('```json\n[{"bbox_2d": [1, 2')).toBe(false);
    expect(tool.trigger('```json')).toBe(false);
    expect(tool.trigger('```')).toBe(false);
    expect(tool.trigger('```python\nx = 1\n```')).toBe(false);
    expect(endsWithJsonFence(fenced([1, 2, 3, 4]) + ' and more')).toBe(false);
  });

  it('bad inputs and options throw clear errors', () => {
    const tool = cropTool();
    expect(() => tool.crop('[1,2,3,4]', { original: big, modelFrame: [0, 5] as [number, number] })).toThrow(/modelFrame must be \[height, width\].*got \[0,5\]/);
    expect(() => tool.crop('[1,2,3,4]', { original: { ...big, height: 10 }, modelFrame: FRAME })).toThrow(/input.original must be an RgbImage/);
    expect(() => cropTool({ validText: 'see {crop}' })).toThrow(/cropTool validText: unknown placeholder \{crop\}.*allowed: \{box\}/);
    expect(() => cropTool({ minPixels: 2_000_000 })).toThrow(/minPixels 2000000 is above maxPixels 1003520/);
    expect(() => cropTool({ rounding: 'round' as 'floor' })).toThrow(/rounding must be 'outward' or 'floor'/);
    expect(() => cropTool({ minSide: -1 })).toThrow(/minSide must be a positive number/);
  });
});
