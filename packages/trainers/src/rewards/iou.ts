// IoU reward for grounding rows: intersection-over-union of the predicted box (the rollout's
// `ctx.box`, already mapped to the original image by the crop tool) and the row's `bbox`.
// Continuous IoU by default (seed 003's 1.0·IoU term), or binary with a threshold (Acc@0.5).
//
// Frames matter: row.bbox is in ORIGINAL image pixels, and so is ctx.box. Coordinates a model
// writes are in the RESIZED frame it saw; when the reward must read the box from the response
// (no grounding tool in the rollout) pass `mapToOriginal` to convert it.

import { makeReward, type Box, type DetailedReward, type RewardContext } from './types.js';

/** IoU of two boxes; 0 for degenerate boxes (x2 ≤ x1 or y2 ≤ y1) or non-finite coordinates. */
export function boxIoU(a: Box, b: Box): number {
  const coords = [a.x1, a.y1, a.x2, a.y2, b.x1, b.y1, b.x2, b.y2];
  if (!coords.every(Number.isFinite)) return 0;
  const areaA = Math.max(0, a.x2 - a.x1) * Math.max(0, a.y2 - a.y1);
  const areaB = Math.max(0, b.x2 - b.x1) * Math.max(0, b.y2 - b.y1);
  if (areaA === 0 || areaB === 0) return 0;
  const iw = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
  const ih = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const inter = iw * ih;
  return inter / (areaA + areaB - inter);
}

/** [x1, y1, x2, y2] → Box, or null when it is not four finite numbers. */
export function boxFromArray(v: unknown): Box | null {
  if (!Array.isArray(v) || v.length !== 4) return null;
  if (!v.every((x) => typeof x === 'number' && Number.isFinite(x))) return null;
  return { x1: v[0], y1: v[1], x2: v[2], y2: v[3] };
}

function asBox(v: unknown): Box | null {
  if (Array.isArray(v)) return boxFromArray(v);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (Array.isArray(o.bbox_2d)) return boxFromArray(o.bbox_2d);
    return boxFromArray([o.x1, o.y1, o.x2, o.y2]);
  }
  return null;
}

const BARE_BOX_RE = /\[\s{0,4}(-?\d{1,7}(?:\.\d{1,8})?)\s{0,4},\s{0,4}(-?\d{1,7}(?:\.\d{1,8})?)\s{0,4},\s{0,4}(-?\d{1,7}(?:\.\d{1,8})?)\s{0,4},\s{0,4}(-?\d{1,7}(?:\.\d{1,8})?)\s{0,4}\]/g;

/**
 * A box written in a response, in the model's (resized) frame: the last ```json block, else the
 * last <answer>, parsed as `[{"bbox_2d": [...]}]`, `{"bbox_2d": [...]}` or `[x1, y1, x2, y2]`;
 * else the last bare `[x1, y1, x2, y2]` in the text. Lenient on purpose: this is for rewards and
 * format checks; the crop tool's parser applies MGPO's validity rules.
 */
export function findBoxInText(text: string): Box | null {
  const candidates: string[] = [];
  const fence = text.lastIndexOf('```json');
  if (fence >= 0) {
    const end = text.indexOf('```', fence + 7);
    if (end > 0) candidates.push(text.slice(fence + 7, end));
  }
  const close = text.lastIndexOf('</answer>');
  if (close >= 0) {
    const open = text.lastIndexOf('<answer>', close);
    if (open >= 0) candidates.push(text.slice(open + 8, close));
  }
  for (const c of candidates) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(c.trim());
    } catch {
      continue;
    }
    const direct = asBox(parsed);
    if (direct) return direct;
    if (Array.isArray(parsed)) {
      for (const item of parsed) {
        const b = item && typeof item === 'object' && !Array.isArray(item) ? asBox(item) : null;
        if (b) return b;
      }
    }
  }
  let last: Box | null = null;
  BARE_BOX_RE.lastIndex = 0;
  for (let m = BARE_BOX_RE.exec(text); m !== null; m = BARE_BOX_RE.exec(text)) {
    last = { x1: Number(m[1]), y1: Number(m[2]), x2: Number(m[3]), y2: Number(m[4]) };
  }
  return last;
}

export interface IoUOptions {
  /** When set, the reward is 1 if IoU ≥ threshold else 0 (Acc@threshold); else continuous IoU. */
  threshold?: number;
  /**
   * Read the box from the response when the context has none (ctx.box === undefined: a rollout
   * without a grounding tool). Default false. ctx.box === null (an invalid box) always scores 0.
   */
  parseResponse?: boolean;
  /** Maps a box parsed from the response (resized frame) to the original frame. Default identity. */
  mapToOriginal?: (box: Box, ctx: RewardContext) => Box;
}

export function iouReward(opts: IoUOptions = {}): DetailedReward {
  const { threshold } = opts;
  if (threshold !== undefined && !(threshold >= 0 && threshold <= 1)) {
    throw new Error(`iouReward: threshold must be in [0, 1], got ${threshold}`);
  }
  return makeReward('iou', (ctx) => {
    const truth = asBox(ctx.row?.bbox);
    if (!truth) {
      const id = typeof ctx.row?.id === 'string' ? ` '${ctx.row.id}'` : '';
      throw new Error(`iouReward: row${id} has no usable bbox (got ${JSON.stringify(ctx.row?.bbox)?.slice(0, 80)}); expected [x1, y1, x2, y2] in original-image pixels`);
    }
    let pred: Box | null = ctx.box ?? null;
    let source = 'ctx.box';
    if (ctx.box === undefined && opts.parseResponse) {
      const parsed = findBoxInText(ctx.response ?? '');
      pred = parsed && opts.mapToOriginal ? opts.mapToOriginal(parsed, ctx) : parsed;
      source = 'response';
    }
    const iou = pred ? boxIoU(pred, truth) : 0;
    const score = threshold === undefined ? iou : iou >= threshold ? 1 : 0;
    return { score, details: { iou, box: pred, truth, source } };
  });
}
