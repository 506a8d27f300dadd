// Qwen's smart_resize: the size an image is resized to before patchify. Both sides become
// multiples of `factor` (patch 14 × merge 2 = 28) and the area lands in [minPixels,
// maxPixels] while keeping the aspect ratio as well as those constraints allow.
// Python's round() is round-half-to-even and the Hugging Face rule depends on it
// (42/28 = 1.5 → 2 but 70/28 = 2.5 → 2), so it is reproduced here; every other step is
// plain IEEE double arithmetic in the same order as transformers, so results agree exactly.

export interface SmartResizeOptions {
  /** Both output sides are multiples of this (patch × merge). Default 28. */
  factor?: number;
  /** Lower bound on h·w. Default 56·56 = 3136. */
  minPixels?: number;
  /** Upper bound on h·w. Default 28·28·1280 = 1,003,520 (the processor class default). */
  maxPixels?: number;
}

export const DEFAULT_MIN_PIXELS = 56 * 56;
export const DEFAULT_MAX_PIXELS = 28 * 28 * 1280;
export const MAX_ASPECT_RATIO = 200;

/** Python's round(): nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Returns [height, width] after Qwen's resize rule. Throws on an aspect ratio above 200. */
export function smartResize(height: number, width: number, opts: SmartResizeOptions = {}): [number, number] {
  const factor = opts.factor ?? 28;
  const minPixels = opts.minPixels ?? DEFAULT_MIN_PIXELS;
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  for (const [name, v] of [['height', height], ['width', width], ['factor', factor]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`smartResize: ${name} must be a positive integer, got ${v}`);
  }
  if (!(minPixels > 0) || !(maxPixels >= minPixels)) {
    throw new Error(`smartResize: need 0 < minPixels <= maxPixels, got minPixels ${minPixels}, maxPixels ${maxPixels}`);
  }
  const ratio = Math.max(height, width) / Math.min(height, width);
  if (ratio > MAX_ASPECT_RATIO) {
    throw new Error(`smartResize: absolute aspect ratio must be smaller than ${MAX_ASPECT_RATIO}, got ${ratio} (image ${height}x${width})`);
  }
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return [h, w];
}
