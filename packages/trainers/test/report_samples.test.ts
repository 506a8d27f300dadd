// Tests of the report's rollout sample cards (src/report/sampleImage.ts and the samples part of
// src/report/html.ts): boxes are drawn on the right pixels after downscaling (decoded back with
// sharp), clipping, the rollout → card helper (IoU, validity, crop thumbnail), hostile text stays
// text, the sample and picture-byte caps, old-style samples still render as before, and — when
// /usr/bin/chromium exists — a headless screenshot of a generated report is not blank and shows
// the plot lines and the drawn boxes. Set FOVEA_KEEP_REPORT=<dir> to keep that report and shot.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import type { RgbImage } from '@fovea/models';
import { MetricsWriter } from '../src/metrics/jsonl.js';
import { renderReport, writeReport, type ReportSample } from '../src/report/html.js';
import {
  MODEL_BOX_COLOR, TRUTH_BOX_COLOR, boxToPixels, describeBoxes, renderSampleImage, rolloutReportSample, scaledSize,
} from '../src/report/sampleImage.js';
import type { CropReport } from '../src/tools/crop.js';

const root = mkdtempSync(join(tmpdir(), 'fovea-samples-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A w×h image filled with one color. */
function solid(w: number, h: number, rgb: [number, number, number]): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) data.set(rgb, i * 3);
  return { data, width: w, height: h, channels: 3 };
}

/** A small "scene": a sky-to-grass gradient with a dark square (the object to find) at [x1, y1, x2, y2). */
function scene(w: number, h: number, obj: [number, number, number, number]): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const o = (y * w + x) * 3;
    const t = y / h;
    const inObj = x >= obj[0] && x < obj[2] && y >= obj[1] && y < obj[3];
    data[o] = inObj ? 60 : Math.round(135 * (1 - t) + 70 * t);
    data[o + 1] = inObj ? 40 : Math.round(190 * (1 - t) + 150 * t + ((x * 7) % 13));
    data[o + 2] = inObj ? 90 : Math.round(235 * (1 - t) + 60 * t);
  }
  return { data, width: w, height: h, channels: 3 };
}

async function decode(png: Uint8Array): Promise<{ w: number; h: number; at: (x: number, y: number) => number[] }> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { w: info.width, h: info.height, at: (x, y) => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)] };
}

const near = (a: number[], b: readonly number[], tol = 3) => a.every((v, i) => Math.abs(v - b[i]) <= tol);

describe('renderSampleImage', () => {
  it('downscales to maxSide and outlines the box on its own pixels (edges colored, inside and outside not)', async () => {
    const gray: [number, number, number] = [128, 128, 128];
    const png = await renderSampleImage({ image: solid(200, 100, gray), boxes: [{ box: [50, 20, 150, 80] }], maxSide: 100 });
    const img = await decode(png);
    expect([img.w, img.h]).toEqual([100, 50]);
    // Scale 0.5: the box covers output pixels x 25..74, y 10..39; default line width max(2, round(100/128)) = 2.
    const red = MODEL_BOX_COLOR;
    for (const [x, y] of [[25, 25], [26, 25], [74, 25], [73, 25], [50, 10], [50, 11], [50, 39], [50, 38], [25, 10], [74, 39]]) {
      expect(img.at(x, y), `edge pixel ${x},${y}`).toEqual([...red]);
    }
    for (const [x, y] of [[27, 25], [72, 25], [50, 12], [50, 37], [50, 25], [24, 25], [75, 25], [50, 9], [50, 40], [0, 0], [99, 49]]) {
      expect(near(img.at(x, y), gray), `pixel ${x},${y} = ${img.at(x, y)}`).toBe(true);
    }
  });

  it('keeps a small image at its size and its pixels exact outside the boxes; colors, clipping, off-image boxes', async () => {
    const im = scene(60, 40, [10, 10, 20, 20]);
    const plain = await decode(await renderSampleImage({ image: im }));
    expect([plain.w, plain.h]).toEqual([60, 40]);
    for (const [x, y] of [[0, 0], [33, 17], [59, 39], [15, 15]]) {
      const o = (y * 60 + x) * 3;
      expect(plain.at(x, y)).toEqual([...im.data.subarray(o, o + 3)]);
    }
    // A box half outside the image is clipped (its right edge falls off), one wholly outside draws nothing.
    const png = await renderSampleImage({
      image: im, lineWidth: 1,
      boxes: [{ box: [40, 5, 90, 30], color: '#00ff00' }, { box: [100, 100, 120, 120], color: [0, 0, 255] }],
    });
    const d = await decode(png);
    expect(d.at(40, 20)).toEqual([0, 255, 0]);   // left edge
    expect(d.at(50, 5)).toEqual([0, 255, 0]);    // top edge
    expect(d.at(59, 20)).not.toEqual([0, 255, 0]); // no right edge: it is at x = 89, off the image
    expect(d.at(50, 29)).toEqual([0, 255, 0]);   // bottom edge (y2 = 30 exclusive → row 29)
    let blue = 0;
    for (let y = 0; y < 40; y++) for (let x = 0; x < 60; x++) if (near(d.at(x, y), [0, 0, 255], 0)) blue++;
    expect(blue).toBe(0);
  });

  it('maps boxes through a non-uniform rounding of the size', () => {
    expect(scaledSize(1000, 333, 384)).toEqual({ width: 384, height: 128 });
    expect(scaledSize(10, 2000, 384)).toEqual({ width: 2, height: 384 });
    expect(scaledSize(100, 50, 384)).toEqual({ width: 100, height: 50 });   // never upscaled
    const sx = 384 / 1000, sy = 128 / 333;
    // [500, 111, 750, 222] → x 192 .. ceil(288) − 1 = 287, y floor(42.67) = 42 .. ceil(85.33) − 1 = 85.
    expect(boxToPixels([500, 111, 750, 222], sx, sy, 384, 128)).toEqual([192, 42, 287, 85]);
    // A box thinner than one output pixel still covers one pixel.
    expect(boxToPixels([500, 111, 500.5, 111.2], sx, sy, 384, 128)).toEqual([192, 42, 192, 42]);
    expect(boxToPixels([2000, 0, 2100, 10], sx, sy, 384, 128)).toBeNull();
    expect(boxToPixels([-10, 0, 100, 10], sx, sy, 384, 128)).toEqual([-4, 0, 38, 3]);   // not clipped: edges past the border stay there
  });

  it('rejects bad input clearly', async () => {
    const im = solid(8, 8, [0, 0, 0]);
    await expect(renderSampleImage({ image: { data: new Uint8Array(10), width: 8, height: 8, channels: 3 } })).rejects.toThrow(/image must be an RgbImage/);
    await expect(renderSampleImage({ image: im, boxes: [{ box: [1, 2, 3] }] })).rejects.toThrow(/boxes\[0\]\.box must be \[x1, y1, x2, y2\]/);
    await expect(renderSampleImage({ image: im, boxes: [{ box: [1, 2, 3, NaN] }] })).rejects.toThrow(/finite numbers/);
    await expect(renderSampleImage({ image: im, boxes: [{ box: [1, 2, 3, 4], color: 'red' }] })).rejects.toThrow(/color must be '#rrggbb'/);
    await expect(renderSampleImage({ image: im, maxSide: 0 })).rejects.toThrow(/maxSide must be a positive integer/);
    await expect(renderSampleImage({ image: im, lineWidth: 0.5 })).rejects.toThrow(/lineWidth must be a positive integer/);
  });
});

const okTool = (boxRaw: number[], boxOriginal: number[]): CropReport => ({
  ok: true, parsed: { source: 'json', label: 'cup', count: 1 } as CropReport['parsed'], boxRaw: boxRaw as never, boxModel: boxRaw as never,
  boxOriginal: boxOriginal as never, adjusted: [], cropSize: [boxOriginal[3] - boxOriginal[1], boxOriginal[2] - boxOriginal[0]], imageFrame: [56, 56], numImageTokens: 4,
});

describe('rolloutReportSample', () => {
  it('draws the model box (red) and the ground truth (green), adds the crop and computes IoU', async () => {
    const im = scene(400, 200, [100, 50, 200, 150]);
    const s = await rolloutReportSample({
      step: 3, reward: 1, correct: true, image: im, groundTruth: [100, 50, 200, 150], maxSide: 200,
      rollout: { responses: ['look {"bbox_2d": [50, 25, 100, 75]}', 'the answer is B'], tool: okTool([50, 25, 100, 75], [100, 50, 200, 100]) },
    });
    expect(s.turns).toEqual(['look {"bbox_2d": [50, 25, 100, 75]}', 'the answer is B']);
    expect(s.text).toBe('look {"bbox_2d": [50, 25, 100, 75]}\n---\nthe answer is B');
    expect(s.valid).toBe(true);
    expect(s.correct).toBe(true);
    expect(s.iou).toBeCloseTo(0.5, 12);   // [100,50,200,100] inside [100,50,200,150]: half of it
    expect(s.box).toEqual({ model: [50, 25, 100, 75], original: [100, 50, 200, 100] });
    expect(s.images!.map((i) => i.caption)).toEqual([
      'original 400×200 · red: model box [100, 50, 200, 100] · green: ground truth [100, 50, 200, 150]', 'crop 100×50',
    ]);
    const orig = await decode(s.images![0].png as Uint8Array);
    expect([orig.w, orig.h]).toEqual([200, 100]);
    // Scale 0.5: the model box's left edge is column 50 (red, drawn first, then green draws over the
    // shared left edge); the truth box's bottom edge is row 74, the model box's row 49.
    expect(orig.at(60, 74)).toEqual([...TRUTH_BOX_COLOR]);
    expect(orig.at(60, 49)).toEqual([...MODEL_BOX_COLOR]);
    const crop = await decode(s.images![1].png as Uint8Array);
    expect([crop.w, crop.h]).toEqual([100, 50]);
    expect(near(crop.at(50, 25), [60, 40, 90])).toBe(true);   // the object's pixels
  });

  it('an invalid call: no model box, valid false, only the original with the truth', async () => {
    const im = scene(64, 64, [8, 8, 24, 24]);
    const tool: CropReport = { ok: false, reason: 'no-box', message: 'no box', parsed: null, adjusted: [], imageFrame: [56, 56], numImageTokens: 4 };
    const s = await rolloutReportSample({ step: 1, reward: 0, image: im, groundTruth: [8, 8, 24, 24], rollout: { responses: ['nothing'], tool } });
    expect(s.valid).toBe(false);
    expect(s.iou).toBeUndefined();
    expect(s.box).toBeUndefined();
    expect(s.images!.length).toBe(1);
    expect(s.images![0].caption).toBe('original 64×64 · green: ground truth [8, 8, 24, 24]');
    const noImage = await rolloutReportSample({ step: 1, reward: 0.5, rollout: { responses: ['a', 'b'] } });
    expect(noImage.images).toBeUndefined();
    expect(noImage.valid).toBeUndefined();
    await expect(rolloutReportSample({ step: 1, reward: 0, rollout: {} as never })).rejects.toThrow(/rollout: \{responses/);
    await expect(rolloutReportSample({ step: 1, reward: 0, groundTruth: [1, 2], rollout: { responses: [] } })).rejects.toThrow(/groundTruth must be/);
    expect(describeBoxes([{ box: [1.26, 2, 3, 4], color: '#123456', label: 'x' }])).toBe('rgb(18,52,86): x [1.3, 2, 3, 4]');
  });
});

const HOSTILE = '</script><img src=x onerror="alert(1)"><script>alert(2)</script> & </pre>';

describe('sample cards in the report', () => {
  it('inlines pictures as data: URIs and keeps hostile turn text and captions as text', async () => {
    const png = await renderSampleImage({ image: scene(40, 30, [5, 5, 15, 15]), boxes: [{ box: [5, 5, 15, 15] }] });
    const { html } = renderReport([{ step: 1, reward_mean: 0.5 }], {
      title: 't',
      samples: [{ step: 1, text: 'unused', reward: 1, turns: [HOSTILE, 'turn two'], images: [{ png, caption: HOSTILE }], valid: true, iou: 0.25, correct: false }],
    });
    // The only <img> tags are ours; no script tag survives; the hostile strings appear escaped.
    expect(html.match(/<img /g)!.length).toBe(1);
    expect(html).toContain(`src="data:image/png;base64,${Buffer.from(png).toString('base64')}"`);
    expect(html).not.toMatch(/<script|onerror="/i);
    const esc = '&lt;/script&gt;&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt; &amp; &lt;/pre&gt;';
    expect(html).toContain(`<div class="meta">turn 1</div><pre>${esc}</pre><div class="meta">turn 2</div><pre>turn two</pre>`);
    expect(html).toContain(`<figcaption class="meta">${esc}</figcaption>`);
    expect(html).not.toContain('unused');   // turns replace the joined text
    expect(html).toContain('step 1 · reward 1 · <span class="bad">wrong</span> · <span class="good">valid box</span> · IoU 0.25');
    // Base64 strings work too; a picture that is not a PNG is refused with its path in the sample.
    const b64 = Buffer.from(png).toString('base64');
    expect(renderReport([], { title: 't', samples: [{ step: 1, text: 'x', reward: 0, images: [{ png: b64 }] }] }).html).toContain(`base64,${b64}"`);
    expect(() => renderReport([], { title: 't', samples: [{ step: 1, text: 'x', reward: 0, images: [{ png: new Uint8Array([1, 2, 3]) }] }] })).toThrow(/samples\[0\]\.images\[0\]\.png is not a PNG/);
    expect(() => renderReport([], { title: 't', samples: [{ step: 1, text: 'x', reward: 0, images: [{ png: 'a"b' }] }] })).toThrow(/images\[0\]\.png is not base64/);
    expect(() => renderReport([], { title: 't', samples: [{ step: 1, text: 'x', reward: 0, turns: [1] as never }] })).toThrow(/turns must be an array of strings/);
    expect(() => renderReport([], { title: 't', samples: [{ step: 1, text: 'x', reward: 0, box: { model: [1] } }] })).toThrow(/box\.model must be \[x1, y1, x2, y2\]/);
    expect(() => renderReport([], { title: 't', maxSamples: -1, samples: [] })).toThrow(/maxSamples must be a non-negative integer/);
  });

  it('keeps the last maxSamples, newest first, and pictures only until the byte budget', async () => {
    const png = await renderSampleImage({ image: scene(40, 30, [5, 5, 15, 15]) });
    const samples: ReportSample[] = Array.from({ length: 30 }, (_, i) => ({ step: i, text: `sample-${i}-end`, reward: i / 30, images: [{ png, caption: `pic-${i}` }] }));
    const { html } = renderReport([], { title: 't', samples, maxSamples: 10, maxSampleImageBytes: 3 * png.byteLength });
    const shown = [...html.matchAll(/sample-(\d+)-end/g)].map((m) => Number(m[1]));
    expect(shown).toEqual([29, 28, 27, 26, 25, 24, 23, 22, 21, 20]);
    expect(html).toContain('showing the last 10 of 30 samples, newest first');
    const pics = [...html.matchAll(/pic-(\d+)/g)].map((m) => Number(m[1]));
    expect(pics).toEqual([29, 28, 27]);
    expect((html.match(/1 picture\(s\) left out \(report image budget reached\)/g) ?? []).length).toBe(7);
    // Defaults: 24 samples.
    const d = renderReport([], { title: 't', samples });
    expect([...d.html.matchAll(/sample-(\d+)-end/g)].length).toBe(24);
  });

  it('renders old-style samples as before (text only; legacy PNG with its box overlay)', async () => {
    const png = Buffer.from(await renderSampleImage({ image: solid(40, 30, [200, 200, 200]) })).toString('base64');
    const { html } = renderReport([], {
      title: 't',
      samples: [
        { step: 2, text: 'legacy <b>', reward: 0.5, imagePngBase64: png, box: [4, 3, 20, 15] },
        { step: 1, text: 'plain', reward: 0 },
        { step: 1, text: 'box only', reward: 0, box: [1, 2, 3, 4] },
      ],
    });
    expect(html).toContain('<div class="meta">step 1 · reward 0</div><pre>plain</pre>');
    expect(html).toContain(`src="data:image/png;base64,${png}"`);
    expect(html).toContain('viewBox="0 0 40 30" preserveAspectRatio="none"><rect x="4" y="3" width="16" height="12"');
    expect(html).toContain('40×30 · box [4, 3, 20, 15]');
    expect(html).toContain('<pre>legacy &lt;b&gt;</pre>');
    expect(html).toContain('box [1,2,3,4] (no image)');
  });
});

const CHROMIUM = '/usr/bin/chromium';
const SCRIPT = fileURLToPath(new URL('../../../tools/screenshot-report.mjs', import.meta.url));

describe('headless screenshot', () => {
  it.skipIf(!existsSync(CHROMIUM))('a generated report opens in Chromium and the screenshot shows plots and boxes', async () => {
    const dir = process.env.FOVEA_KEEP_REPORT ? resolve(process.env.FOVEA_KEEP_REPORT) : join(root, 'shot');
    mkdirSync(dir, { recursive: true });
    const metricsFile = join(dir, 'metrics.jsonl');
    const w = new MetricsWriter(metricsFile, { truncate: true });
    const samples: ReportSample[] = [];
    for (let step = 1; step <= 20; step++) {
      const t = step / 20;
      w.write(step, {
        reward_mean: 0.25 + 0.5 * t - 0.08 * Math.sin(step), reward_std: 0.4 - 0.1 * t, accuracy: 0.2 + 0.55 * t, zero_var_frac: 0.5 - 0.3 * t,
        loss: 0.05 * Math.cos(step) - 0.01 * t, grad_norm: 2 + Math.sin(step * 0.7), lr: step < 5 ? 1e-6 * step / 5 : 1e-6,
        clip_frac: 0.02 + 0.01 * Math.sin(step), approx_kl: 0.001 * (1 + t), response_length: 120 - 30 * t, valid_box_ratio: 0.6 + 0.35 * t,
        step_time_s: 4 + 0.3 * Math.cos(step), tokens_per_s: 900 + 40 * Math.sin(step), epoch: 0,
      });
      if (step >= 19) {
        for (const k of [0, 1]) {
          const obj: [number, number, number, number] = [180 + 40 * k, 90, 300 + 40 * k, 200];
          const pred = k ? [210, 60, 360, 190] : [170, 100, 290, 210];
          samples.push(await rolloutReportSample({
            step, reward: k ? 0 : 1, correct: !k, image: scene(640, 360, obj), groundTruth: obj,
            rollout: { responses: [`The mug is here: {"bbox_2d": [${pred.map((v) => v / 2).join(', ')}], "label": "mug"}`, k ? 'Answer: C' : 'Answer: A'], tool: okTool(pred.map((v) => v / 2), pred) },
          }));
        }
      }
    }
    w.close();
    const { file } = writeReport(dir, { metricsFile, title: 'fovea mgpo — report layout check (synthetic metrics, rendered sample images)', samples });
    const out = join(dir, 'report.png');
    const r = spawnSync(process.execPath, [SCRIPT, file, out, '--width', '1280', '--height', '2600'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const { data, info } = await sharp(readFileSync(out)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([1280, 2600]);
    // Not blank: real variance, some plot-line blue (#2563eb) and some model-box red (drawn boxes).
    let sum = 0, sum2 = 0, blue = 0, red = 0;
    for (let i = 0; i < data.length; i += 3) {
      const v = (data[i] + data[i + 1] + data[i + 2]) / 3;
      sum += v; sum2 += v * v;
      if (near([data[i], data[i + 1], data[i + 2]], [0x25, 0x63, 0xeb], 20)) blue++;
      if (near([data[i], data[i + 1], data[i + 2]], MODEL_BOX_COLOR, 20)) red++;
    }
    const n = data.length / 3;
    expect(sum2 / n - (sum / n) ** 2).toBeGreaterThan(100);
    expect(blue).toBeGreaterThan(500);
    expect(red).toBeGreaterThan(200);
  });
});
