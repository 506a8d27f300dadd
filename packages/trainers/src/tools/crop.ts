// The crop/grounding tool of MGPO: the model names a key region as a box, the system crops
// that region from the ORIGINAL full-resolution image and returns it, enlarged by the image
// processor, in the next user turn.
//
// Frames (the thing that goes wrong most often):
// - model frame [h, w]: the smart-resized image the model saw (PackedImages.resizedSizes);
//   Qwen2.5-VL box coordinates are absolute pixels in this frame, real numbers.
// - original frame [H, W]: the decoded file. A model-frame box maps with x·W/w and y·H/h;
//   the crop is the integer pixel box [ox1, ox2) × [oy1, oy2) (half-open, in original pixels).
// Validation (MGPO's rules) runs in the MODEL frame, as MGPO's code does: inside [0, w]×[0, h],
// x1 < x2 and y1 < y2, each side > minSide (28 px = one merged vision token), aspect ratio
// (long side / short side) < maxAspectRatio (100). The rule is about what the model pointed
// at, in the units it sees; the original-frame crop of a valid box is always non-empty.
// Options instead of rejecting: `clamp` (clip the box to the image first) and `growSmall`
// (a side ≤ minSide is grown around its center to `growTo`, shifted to stay inside).
// Mapping to original pixels: 'outward' (default) floors the start and ceils the end so the crop
// contains the whole region the model named; 'floor' floors both ends as MGPO's code does
// (the far edges then differ by under one original pixel).
// The crop is returned at original resolution together with the frame the processor will
// resize it to (same min/max pixel budget the rollout packs it with: `pack(result)`); the
// default minPixels is MGPO's 200,704 (256·28²) so a small region is enlarged.
import { ImageProcessor, type PackedImages, type RgbImage } from '@fovea/models';
import { type Box, type ParsedBox, isParseError, parseBox } from './boxParser.js';
import { type Tool, type ToolOutput, checkTemplate, fillTemplate } from './types.js';

export type CropFailure =
  | 'no-box' | 'not-ordered' | 'out-of-bounds' | 'too-small' | 'aspect-ratio' | 'image-too-small' | 'crop-resize';

export interface BoxRules {
  /** Each side must be strictly greater than this, in model-frame pixels. Default 28. */
  minSide?: number;
  /** long side / short side must be strictly below this. Default 100. */
  maxAspectRatio?: number;
  /** Clip the box to the image before judging it. Default false (MGPO rejects). */
  clamp?: boolean;
  /** Grow a side ≤ minSide around its center to `growTo`, staying inside. Default false. */
  growSmall?: boolean;
  /** Side length a small side grows to (model frame). Default minSide + 1. */
  growTo?: number;
}

export interface BoxCheck {
  ok: boolean;
  reason?: CropFailure;
  message?: string;
  /** The box after clamp/grow (model frame); present when ok. */
  box?: Box;
  adjusted: ('clamped' | 'grown')[];
}

/** Judges a model-frame box against MGPO's rules (see the file comment). `frame` is [h, w]. */
export function checkBox(box: Box, frame: [number, number], rules: BoxRules = {}): BoxCheck {
  const [h, w] = frame;
  const minSide = rules.minSide ?? 28, maxAspect = rules.maxAspectRatio ?? 100;
  const growTo = rules.growTo ?? minSide + 1;
  const adjusted: BoxCheck['adjusted'] = [];
  const fail = (reason: CropFailure, message: string): BoxCheck => ({ ok: false, reason, message, adjusted });
  let [x1, y1, x2, y2] = box;
  if (![x1, y1, x2, y2].every(Number.isFinite)) return fail('no-box', 'box values must be finite numbers');
  if (rules.clamp) {
    const c = [Math.min(Math.max(x1, 0), w), Math.min(Math.max(y1, 0), h), Math.min(Math.max(x2, 0), w), Math.min(Math.max(y2, 0), h)];
    if (c[0] !== x1 || c[1] !== y1 || c[2] !== x2 || c[3] !== y2) adjusted.push('clamped');
    [x1, y1, x2, y2] = c;
    if (adjusted.length && (x1 >= x2 || y1 >= y2) && box[0] < box[2] && box[1] < box[3]) {
      return fail('out-of-bounds', `box [${box.join(', ')}] lies outside the ${w}x${h} image (width x height)`);
    }
  }
  if (!(x1 < x2 && y1 < y2)) return fail('not-ordered', `box [${box.join(', ')}] needs x1 < x2 and y1 < y2`);
  if (x1 < 0 || y1 < 0 || x2 > w || y2 > h) {
    return fail('out-of-bounds', `box [${box.join(', ')}] is not inside the ${w}x${h} image (width x height) the model saw`);
  }
  if (rules.growSmall) {
    const grow = (a: number, b: number, size: number): [number, number] => {
      const start = Math.min(Math.max((a + b) / 2 - growTo / 2, 0), size - growTo);
      return [start, start + growTo];
    };
    if (x2 - x1 <= minSide || y2 - y1 <= minSide) {
      if ((x2 - x1 <= minSide && w < growTo) || (y2 - y1 <= minSide && h < growTo)) {
        return fail('image-too-small', `cannot grow the box to ${growTo} px: the image the model saw is only ${w}x${h}`);
      }
      if (x2 - x1 <= minSide) [x1, x2] = grow(x1, x2, w);
      if (y2 - y1 <= minSide) [y1, y2] = grow(y1, y2, h);
      adjusted.push('grown');
    }
  }
  const bw = x2 - x1, bh = y2 - y1;
  if (!(bw > minSide && bh > minSide)) {
    return fail('too-small', `box is ${bw}x${bh} px in the image the model saw; each side must be > ${minSide}`);
  }
  const aspect = Math.max(bw, bh) / Math.min(bw, bh);
  if (!(aspect < maxAspect)) return fail('aspect-ratio', `box aspect ratio ${aspect.toFixed(1)} is not below ${maxAspect}`);
  return { ok: true, box: [x1, y1, x2, y2], adjusted };
}

/** Whether `outer` holds the whole of `inner` ([x1, y1, x2, y2] in one frame, edges included). */
export function boxContains(outer: Box, inner: Box): boolean {
  return outer[0] <= inner[0] && outer[1] <= inner[1] && outer[2] >= inner[2] && outer[3] >= inner[3];
}

export type Rounding = 'outward' | 'floor';

/** Maps a model-frame box to integer original pixels [ox1, oy1, ox2, oy2) (clipped to the image). */
export function modelToOriginal(box: Box, modelFrame: [number, number], originalSize: [number, number], rounding: Rounding = 'outward'): Box {
  const [h, w] = modelFrame, [H, W] = originalSize;
  // (x·W)/w: exact whenever the true value is an integer (IEEE division is correctly rounded).
  const sx = (x: number) => (x * W) / w, sy = (y: number) => (y * H) / h;
  const up = rounding === 'outward' ? Math.ceil : Math.floor;
  const clip = (v: number, hi: number) => Math.min(Math.max(v, 0), hi);
  return [clip(Math.floor(sx(box[0])), W), clip(Math.floor(sy(box[1])), H), clip(up(sx(box[2])), W), clip(up(sy(box[3])), H)];
}

/** Maps an original-frame box to the model frame (real-valued): the inverse scale. */
export function originalToModel(box: Box, originalSize: [number, number], modelFrame: [number, number]): Box {
  const [h, w] = modelFrame, [H, W] = originalSize;
  return [(box[0] * w) / W, (box[1] * h) / H, (box[2] * w) / W, (box[3] * h) / H];
}

/** Copies the integer pixel box [x1, x2) × [y1, y2) out of an RGB image (row copies, no re-encode). */
export function cropRgb(img: RgbImage, box: Box): RgbImage {
  const [x1, y1, x2, y2] = box;
  if (![x1, y1, x2, y2].every(Number.isInteger) || x1 < 0 || y1 < 0 || x2 > img.width || y2 > img.height || x1 >= x2 || y1 >= y2) {
    throw new Error(`cropRgb: box [${box.join(', ')}] must be integers with 0 <= x1 < x2 <= ${img.width} and 0 <= y1 < y2 <= ${img.height}`);
  }
  const cw = x2 - x1, ch = y2 - y1, rowIn = img.width * 3, rowOut = cw * 3;
  const out = new Uint8Array(ch * rowOut);
  for (let r = 0; r < ch; r++) {
    const src = (y1 + r) * rowIn + x1 * 3;
    out.set(img.data.subarray(src, src + rowOut), r * rowOut);
  }
  return { data: out, height: ch, width: cw, channels: 3 };
}

export interface CropToolOptions extends BoxRules {
  /** Resizes the returned image. Default: new ImageProcessor() (Qwen defaults). */
  processor?: ImageProcessor;
  /** Pixel budget of the returned image. Defaults: 200,704 (MGPO) and the processor's maxPixels. */
  minPixels?: number;
  maxPixels?: number;
  rounding?: Rounding;
  /** Longest model text parseBox accepts. */
  maxChars?: number;
  /** Turn text on a valid box; placeholder {box} (original-frame box). */
  validText?: string;
  /** Turn text on an invalid or missing box; placeholders {reason} (short phrase), {detail} (full message). */
  invalidText?: string;
}

export const MGPO_CROP_MIN_PIXELS = 256 * 28 * 28;
export const DEFAULT_CROP_VALID_TEXT = 'Here is the region you chose, cropped from the original image and enlarged.';
export const DEFAULT_CROP_INVALID_TEXT = 'The coordinates you gave were invalid ({reason}), so here is the original image again.';

/** Short phrases for {reason} in the invalid-box turn (the report keeps the full message). */
export const CROP_FAILURE_PHRASES: Record<CropFailure, string> = {
  'no-box': 'no box was found',
  'not-ordered': 'x1 < x2 and y1 < y2 are required',
  'out-of-bounds': 'the box is not inside the image',
  'too-small': 'the box is too small',
  'aspect-ratio': 'the box is too thin',
  'image-too-small': 'the image is too small to crop',
  'crop-resize': 'the region cannot be enlarged',
};

/** The image the tool works on: the decoded original and the [h, w] frame the model saw it in. */
export interface CropInput {
  original: RgbImage;
  modelFrame: [number, number];
}

/** Per-call facts for metrics and reports. */
export interface CropReport {
  ok: boolean;
  reason?: CropFailure;
  message?: string;
  /** What the parser found (null when no box was found). */
  parsed: Pick<ParsedBox, 'source' | 'label' | 'count'> | null;
  /** The box as the model wrote it (model frame). */
  boxRaw?: Box;
  /** The box used, after clamp/grow (model frame, real-valued). Present when ok. */
  boxModel?: Box;
  /** The crop in original pixels, [x1, y1, x2, y2) half-open. Present when ok. */
  boxOriginal?: Box;
  adjusted: ('clamped' | 'grown')[];
  /** [h, w] of the crop in original pixels. Present when ok. */
  cropSize?: [number, number];
  /** [h, w] the returned image is resized to when packed: the frame of its image tokens. */
  imageFrame: [number, number];
  numImageTokens: number;
}

export interface CropResult extends CropReport {
  /** The crop at original resolution, or the original image when the box is invalid. */
  image: RgbImage;
}

export interface CropTool extends Tool<CropInput, CropReport> {
  /** The synchronous core: parse, validate, map, crop. */
  crop(modelText: string, input: CropInput): CropResult;
  /** Packs the returned image with the tool's pixel budget (the enlarged crop). Dispose it. */
  pack(result: CropResult): PackedImages;
}

/** True when the text (trailing whitespace ignored) ends by closing a ```json fence. */
export function endsWithJsonFence(text: string): boolean {
  const t = text.trimEnd();
  if (!t.endsWith('```')) return false;
  const close = t.length - 3;
  const open = t.lastIndexOf('```', close - 1);
  return open >= 0 && open + 3 <= close && t.slice(open + 3, open + 7).toLowerCase() === 'json';
}

function checkFrame(input: CropInput): void {
  const o = input?.original;
  if (!o || !(o.data instanceof Uint8Array) || !Number.isInteger(o.height) || !Number.isInteger(o.width) || o.height < 1 || o.width < 1 ||
    o.data.byteLength !== o.height * o.width * 3) {
    throw new Error('cropTool: input.original must be an RgbImage {data: Uint8Array of height·width·3 bytes, height, width, channels: 3}');
  }
  const f = input.modelFrame;
  if (!Array.isArray(f) || f.length !== 2 || !f.every((v) => Number.isInteger(v) && v > 0)) {
    throw new Error(`cropTool: input.modelFrame must be [height, width] of the resized image the model saw (positive integers), got ${JSON.stringify(f)}`);
  }
}

/** Builds the crop/grounding tool. See the file comment for frames, rules and options. */
export function cropTool(opts: CropToolOptions = {}): CropTool {
  const proc = opts.processor ?? new ImageProcessor();
  const budget = { minPixels: opts.minPixels ?? MGPO_CROP_MIN_PIXELS, maxPixels: opts.maxPixels ?? proc.config.maxPixels };
  if (budget.minPixels > budget.maxPixels) {
    throw new Error(`cropTool: minPixels ${budget.minPixels} is above maxPixels ${budget.maxPixels}`);
  }
  const rounding = opts.rounding ?? 'outward';
  if (rounding !== 'outward' && rounding !== 'floor') throw new Error(`cropTool: rounding must be 'outward' or 'floor', got ${String(rounding)}`);
  for (const k of ['minSide', 'maxAspectRatio', 'growTo'] as const) {
    if (opts[k] !== undefined && !(Number.isFinite(opts[k]) && (opts[k] as number) > 0)) throw new Error(`cropTool: ${k} must be a positive number, got ${opts[k]}`);
  }
  const validText = checkTemplate(opts.validText ?? DEFAULT_CROP_VALID_TEXT, ['box'], 'cropTool validText');
  const invalidText = checkTemplate(opts.invalidText ?? DEFAULT_CROP_INVALID_TEXT, ['reason', 'detail'], 'cropTool invalidText');
  const unit = proc.config.patchSize * proc.config.mergeSize;
  const frameOf = (img: RgbImage): [number, number] => proc.targetSize(img.height, img.width, budget);

  function crop(modelText: string, input: CropInput): CropResult {
    checkFrame(input);
    const { original, modelFrame } = input;
    const invalid = (reason: CropFailure, message: string, rest: Partial<CropReport> = {}): CropResult => {
      const imageFrame = frameOf(original);
      return {
        ok: false, reason, message, parsed: null, adjusted: [], ...rest, image: original, imageFrame,
        numImageTokens: (imageFrame[0] * imageFrame[1]) / (unit * unit),
      };
    };
    const p = parseBox(modelText, { maxChars: opts.maxChars });
    if (isParseError(p)) return invalid('no-box', p.error);
    const parsed = { source: p.source, label: p.label, count: p.count };
    const check = checkBox(p.box, modelFrame, opts);
    if (!check.ok) return invalid(check.reason!, check.message!, { parsed, boxRaw: p.box, adjusted: check.adjusted });
    const boxModel = check.box!;
    const boxOriginal = modelToOriginal(boxModel, modelFrame, [original.height, original.width], rounding);
    const rest = { parsed, boxRaw: p.box, boxModel, boxOriginal, adjusted: check.adjusted };
    if (boxOriginal[2] <= boxOriginal[0] || boxOriginal[3] <= boxOriginal[1]) {
      return invalid('too-small', `box maps to an empty region of the ${original.width}x${original.height} original`, rest);
    }
    const image = cropRgb(original, boxOriginal);
    let imageFrame: [number, number];
    try {
      imageFrame = frameOf(image);
    } catch (err) {
      return invalid('crop-resize', `the crop cannot be resized for the model: ${(err as Error).message}`, rest);
    }
    return {
      ok: true, ...rest, cropSize: [image.height, image.width], image, imageFrame,
      numImageTokens: (imageFrame[0] * imageFrame[1]) / (unit * unit),
    };
  }

  return {
    name: 'crop',
    trigger: endsWithJsonFence,
    crop,
    pack: (result) => proc.packRgb([result.image], budget),
    async run(modelText: string, input: CropInput): Promise<ToolOutput<CropReport>> {
      const { image, ...report } = crop(modelText, input);
      const text = report.ok
        ? fillTemplate(validText, { box: `[${report.boxOriginal!.join(', ')}]` }, 'cropTool validText')
        : fillTemplate(invalidText, { reason: CROP_FAILURE_PHRASES[report.reason!], detail: report.message! }, 'cropTool invalidText');
      return { ok: report.ok, text, images: [image], report };
    },
  };
}
