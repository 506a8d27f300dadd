// Pictures for the report's rollout cards: a downscaled copy of an RgbImage with boxes drawn on it,
// encoded as PNG bytes, plus `rolloutReportSample`, which turns one rollout into a ReportSample
// (original with the model's box in red and the ground truth in green, the crop as a thumbnail).
//
// Invariants:
// - Boxes are [x1, y1, x2, y2] in the INPUT image's pixels, edges as continuous coordinates
//   (x2, y2 exclusive, the crop tool's half-open convention). The picture is scaled by
//   sx = outW / width, sy = outH / height and a box's outline covers the output pixels
//   floor(x1·sx) … ceil(x2·sx) − 1 (same for y), so the outline sits on the box's own pixels,
//   drawn inward from the edge. Parts outside the image are clipped (an edge past the border is
//   not drawn at the border); a box wholly outside draws nothing.
// - The longer side of the output is at most maxSide (never upscaled); each side is at least 1.
// - Outlines are drawn into the raw pixels after resizing (no fonts, no SVG renderer), so the
//   result is the same on every machine; labels go to the card's caption, not the picture.
import sharp from 'sharp';
import type { RgbImage } from '@fovea/models';
import type { CropReport } from '../tools/crop.js';
import { boxIoU } from '../rewards/iou.js';
import type { ReportImage, ReportSample } from './html.js';

export type Rgb = readonly [number, number, number];

export interface SampleBox {
  /** [x1, y1, x2, y2] in the input image's pixels. */
  box: readonly number[];
  /** '#rrggbb' or [r, g, b]; default red, then green, blue, amber for later boxes. */
  color?: string | Rgb;
  /** Named in the caption `describeBoxes` builds (not drawn: no fonts in the picture). */
  label?: string;
}

export interface SampleImageOptions {
  image: RgbImage;
  boxes?: readonly SampleBox[];
  /** Longest side of the output in pixels (default 384). */
  maxSide?: number;
  /** Outline width in output pixels (default max(2, round(longest output side / 128))). */
  lineWidth?: number;
}

export const DEFAULT_SAMPLE_MAX_SIDE = 384;
export const BOX_COLORS: readonly Rgb[] = [[239, 68, 68], [34, 197, 94], [59, 130, 246], [245, 158, 11]];
export const MODEL_BOX_COLOR: Rgb = BOX_COLORS[0];
export const TRUTH_BOX_COLOR: Rgb = BOX_COLORS[1];

function checkImage(img: RgbImage, where: string): void {
  const ok = img && typeof img === 'object' && img.data instanceof Uint8Array && Number.isInteger(img.width) && Number.isInteger(img.height)
    && img.width > 0 && img.height > 0 && img.data.byteLength === img.width * img.height * 3;
  if (!ok) throw new Error(`${where}: image must be an RgbImage {data: Uint8Array of height·width·3 bytes, height, width, channels: 3} (loadImage's output)`);
}

export function parseColor(c: string | Rgb | undefined, fallback: Rgb, where: string): Rgb {
  if (c === undefined) return fallback;
  if (typeof c === 'string') {
    const m = /^#([0-9a-f]{6})$/i.exec(c);
    if (!m) throw new Error(`${where}: color must be '#rrggbb' or [r, g, b], got ${JSON.stringify(c)}`);
    const n = parseInt(m[1], 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  if (Array.isArray(c) && c.length === 3 && c.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) return c;
  throw new Error(`${where}: color must be '#rrggbb' or [r, g, b] with integers 0..255, got ${JSON.stringify(c)}`);
}

function checkBox(b: unknown, where: string): [number, number, number, number] {
  if (!Array.isArray(b) || b.length !== 4 || !b.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new Error(`${where} must be [x1, y1, x2, y2] of finite numbers, got ${JSON.stringify(b)}`);
  }
  return [Math.min(b[0], b[2]), Math.min(b[1], b[3]), Math.max(b[0], b[2]), Math.max(b[1], b[3])];
}

/** Output size for an input of width × height: longest side ≤ maxSide, aspect kept, never upscaled. */
export function scaledSize(width: number, height: number, maxSide: number): { width: number; height: number } {
  const s = Math.min(1, maxSide / Math.max(width, height));
  return { width: Math.max(1, Math.round(width * s)), height: Math.max(1, Math.round(height * s)) };
}

/** The output pixel rectangle [px1, py1, px2, py2] (inclusive, NOT clipped: it may reach past the
 * image) a box covers, or null when it is wholly outside. sx, sy: output pixels per input pixel. */
export function boxToPixels(box: readonly number[], sx: number, sy: number, outW: number, outH: number): [number, number, number, number] | null {
  const [x1, y1, x2, y2] = box;
  const px1 = Math.floor(x1 * sx), py1 = Math.floor(y1 * sy);
  const px2 = Math.max(px1, Math.ceil(x2 * sx) - 1), py2 = Math.max(py1, Math.ceil(y2 * sy) - 1);
  return px2 < 0 || py2 < 0 || px1 > outW - 1 || py1 > outH - 1 ? null : [px1, py1, px2, py2];
}

/** PNG bytes of the image, downscaled to maxSide, with each box outlined in its color. */
export async function renderSampleImage(opts: SampleImageOptions): Promise<Uint8Array> {
  const where = 'renderSampleImage';
  if (!opts || typeof opts !== 'object') throw new Error(`${where}: expected {image, boxes?, maxSide?}`);
  checkImage(opts.image, where);
  const maxSide = opts.maxSide ?? DEFAULT_SAMPLE_MAX_SIDE;
  if (!Number.isInteger(maxSide) || maxSide < 1) throw new Error(`${where}: maxSide must be a positive integer, got ${JSON.stringify(opts.maxSide)}`);
  const boxes = opts.boxes ?? [];
  if (!Array.isArray(boxes)) throw new Error(`${where}: boxes must be an array of {box, color?, label?}`);
  const drawn = boxes.map((b, i) => ({
    box: checkBox(b?.box, `${where}: boxes[${i}].box`),
    color: parseColor(b.color, BOX_COLORS[i % BOX_COLORS.length], `${where}: boxes[${i}]`),
  }));
  const { width: W, height: H, data } = opts.image;
  const out = scaledSize(W, H, maxSide);
  const lw = opts.lineWidth ?? Math.max(2, Math.round(Math.max(out.width, out.height) / 128));
  if (!Number.isInteger(lw) || lw < 1) throw new Error(`${where}: lineWidth must be a positive integer, got ${JSON.stringify(opts.lineWidth)}`);
  const raw = { width: W, height: H, channels: 3 as const };
  let px: Buffer;
  if (out.width === W && out.height === H) px = Buffer.from(data);
  else px = await sharp(data, { raw }).resize(out.width, out.height, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer();
  const sx = out.width / W, sy = out.height / H;
  for (const { box, color } of drawn) {
    const r = boxToPixels(box, sx, sy, out.width, out.height);
    if (!r) continue;
    const [x1, y1, x2, y2] = r;
    // Inward outline: pixels within lw of an edge of the (unclipped) rectangle, drawn where they
    // fall inside the image; an edge past the border is not drawn at the border.
    for (let y = Math.max(0, y1); y <= Math.min(out.height - 1, y2); y++) {
      const rowEdge = y - y1 < lw || y2 - y < lw;
      for (let x = Math.max(0, x1); x <= Math.min(out.width - 1, x2); x++) {
        if (!rowEdge && x - x1 >= lw && x2 - x >= lw) { x = x2 - lw; continue; }
        const o = (y * out.width + x) * 3;
        px[o] = color[0]; px[o + 1] = color[1]; px[o + 2] = color[2];
      }
    }
  }
  const png = await sharp(px, { raw: { width: out.width, height: out.height, channels: 3 } }).png({ compressionLevel: 9 }).toBuffer();
  return new Uint8Array(png.buffer, png.byteOffset, png.byteLength);
}

/** "red: model box [..] · green: ground truth [..]" for a caption. */
export function describeBoxes(boxes: readonly SampleBox[]): string {
  const names: Record<string, string> = { '239,68,68': 'red', '34,197,94': 'green', '59,130,246': 'blue', '245,158,11': 'amber' };
  return boxes.map((b, i) => {
    const c = parseColor(b.color, BOX_COLORS[i % BOX_COLORS.length], 'describeBoxes');
    const name = names[c.join(',')] ?? `rgb(${c.join(',')})`;
    return `${name}: ${b.label ?? `box ${i + 1}`} [${b.box.map((v) => Math.round(v * 10) / 10).join(', ')}]`;
  }).join(' · ');
}

export interface RolloutSampleInput {
  step: number;
  reward: number;
  /** The rollout (only its assistant turns and crop-tool report are read). */
  rollout: { responses: readonly string[]; tool?: CropReport };
  /** The image the boxes refer to (the prompt's cropImage, original pixels); no picture without it. */
  image?: RgbImage;
  /** The row's ground-truth bbox in `image`'s pixels (pass it only when row.bbox.image is that image). */
  groundTruth?: readonly number[];
  correct?: boolean;
  maxSide?: number;
  /** Also add the crop (the tool's box cut from the original) as a second picture. Default true. */
  cropThumbnail?: boolean;
}

/** One rollout as a report card: turns, reward, the original with the model's box (red, original
 * frame) and the ground truth (green), the crop thumbnail, box validity and IoU with the truth. */
export async function rolloutReportSample(inp: RolloutSampleInput): Promise<ReportSample> {
  const where = 'rolloutReportSample';
  if (!inp || typeof inp !== 'object' || !inp.rollout || !Array.isArray(inp.rollout.responses)) {
    throw new Error(`${where}: expected {step, reward, rollout: {responses: string[], tool?}, image?, groundTruth?}`);
  }
  const tool = inp.rollout.tool;
  const modelBox = tool?.ok && tool.boxOriginal ? checkBox(tool.boxOriginal, `${where}: rollout.tool.boxOriginal`) : undefined;
  const truth = inp.groundTruth !== undefined ? checkBox(inp.groundTruth, `${where}: groundTruth`) : undefined;
  const sample: ReportSample = {
    step: inp.step, reward: inp.reward, text: inp.rollout.responses.join('\n---\n'), turns: [...inp.rollout.responses],
    ...(tool ? { valid: tool.ok } : {}),
    ...(inp.correct !== undefined ? { correct: inp.correct } : {}),
    ...(modelBox && truth ? { iou: boxIoU(toXY(modelBox), toXY(truth)) } : {}),
    ...(tool?.boxRaw || modelBox ? { box: { ...(tool?.boxRaw ? { model: [...tool.boxRaw] } : {}), ...(modelBox ? { original: modelBox } : {}) } } : {}),
  };
  if (inp.image) {
    checkImage(inp.image, where);
    const boxes: SampleBox[] = [];
    if (modelBox) boxes.push({ box: modelBox, color: MODEL_BOX_COLOR, label: 'model box' });
    if (truth) boxes.push({ box: truth, color: TRUTH_BOX_COLOR, label: 'ground truth' });
    const images: ReportImage[] = [{
      png: await renderSampleImage({ image: inp.image, boxes, maxSide: inp.maxSide }),
      caption: `original ${inp.image.width}×${inp.image.height}${boxes.length ? ' · ' + describeBoxes(boxes) : ''}`,
    }];
    if (modelBox && inp.cropThumbnail !== false) {
      const crop = cropImage(inp.image, modelBox);
      if (crop) images.push({ png: await renderSampleImage({ image: crop, maxSide: Math.round((inp.maxSide ?? DEFAULT_SAMPLE_MAX_SIDE) / 2) }), caption: `crop ${crop.width}×${crop.height}` });
    }
    sample.images = images;
  }
  return sample;
}

function toXY(b: readonly number[]): { x1: number; y1: number; x2: number; y2: number } {
  return { x1: b[0], y1: b[1], x2: b[2], y2: b[3] };
}

/** The pixels of [x1, y1, x2, y2) rounded outward and clipped, or null when empty. (Like the crop
 * tool's cropRgb, kept here so the report does not load the tools and the native addon.) */
function cropImage(img: RgbImage, box: readonly number[]): RgbImage | null {
  const x1 = Math.max(0, Math.floor(box[0])), y1 = Math.max(0, Math.floor(box[1]));
  const x2 = Math.min(img.width, Math.ceil(box[2])), y2 = Math.min(img.height, Math.ceil(box[3]));
  if (x2 <= x1 || y2 <= y1) return null;
  const w = x2 - x1, h = y2 - y1;
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) data.set(img.data.subarray(((y1 + y) * img.width + x1) * 3, ((y1 + y) * img.width + x2) * 3), y * w * 3);
  return { data, width: w, height: h, channels: 3 };
}
