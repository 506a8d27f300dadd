// The Qwen2.5-VL image processor (Hugging Face's Qwen2VLImageProcessor, slow path) for a
// batch: decode concurrently (sharp), smart-resize with Pillow-exact bicubic (native), then
// normalize + patchify every image straight into its rows of one packed pixel_values tensor
// (native, on the thread pool), plus the index tables the vision tower needs.
// NaViT packing: no padding, image boundaries are cumulative offsets (cuSeqlens).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import native from '@fovea/native';
import { Tensor, tensor } from '@fovea/core';
import { DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, smartResize } from './smartResize.js';
import {
  type ImageSource, type LoadImageOptions, type RgbImage, checkRgbImage, describeSource, isRgbImage, loadImage,
} from './loadImage.js';
import { type Grid, visionIndex } from './visionIndex.js';

export const OPENAI_CLIP_MEAN: readonly number[] = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_CLIP_STD: readonly number[] = [0.26862954, 0.26130258, 0.27577711];

export interface ProcessorConfig {
  minPixels: number;
  maxPixels: number;
  patchSize: number;
  temporalPatchSize: number;
  mergeSize: number;
  imageMean: readonly number[];
  imageStd: readonly number[];
  /** The vision tower's attention window in pixels (vision_config.window_size). */
  windowSize: number;
}

export const DEFAULT_PROCESSOR_CONFIG: ProcessorConfig = {
  minPixels: DEFAULT_MIN_PIXELS, maxPixels: DEFAULT_MAX_PIXELS, patchSize: 14, temporalPatchSize: 2, mergeSize: 2,
  imageMean: OPENAI_CLIP_MEAN, imageStd: OPENAI_CLIP_STD, windowSize: 112,
};

export interface PackOptions extends LoadImageOptions {
  minPixels?: number;
  maxPixels?: number;
}

/** One packed batch of images, ready for the vision tower. Dispose when done. */
export interface PackedImages {
  /** f32 [ΣP, 3·T·ps·ps = 1176]: rows time, merge block (raster), position in block; columns channel, time, row, col. */
  pixelValues: Tensor;
  /** i32 [n, 3]: (t, h/14, w/14) per image. */
  gridThw: Tensor;
  /** i32 [frames + 1]: full-attention segment boundaries in patches, one segment per image frame. */
  cuSeqlens: Tensor;
  /** Image tokens per image in the text (P / merge²). */
  numImageTokens: number[];
  /** i32 [ΣP, 2]: (row, column) of each patch, in pixelValues row order. */
  rotaryPosIds: Tensor;
  /** i32 [ΣP/4]: merged unit placed at each window-order slot (HF get_window_index). */
  windowIndex: Tensor;
  /** i32 [ΣP/4]: argsort(windowIndex), undoes the window order after the merger. */
  windowInverse: Tensor;
  /** i32 [windows + 1]: window-attention segment boundaries in patches (window order). */
  cuWindowSeqlens: Tensor;
  maxSeqlen: number;
  maxWindowSeqlen: number;
  /** [height, width] each image was resized to: the frame the model's coordinates live in. */
  resizedSizes: [number, number][];
  /** [height, width] of each decoded input. */
  originalSizes: [number, number][];
  dispose(): void;
}

/** Pillow-exact BICUBIC resize (Image.resize(..., BICUBIC, reducing_gap=None)) of an RGB image. */
export function resizeBicubic(img: RgbImage, height: number, width: number): RgbImage {
  checkRgbImage(img, 'resizeBicubic');
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new Error(`resizeBicubic: target size must be positive integers, got ${height}x${width}`);
  }
  const out = new Uint8Array(height * width * 3);
  native.imageResizeBicubic(img.data, img.height, img.width, 3, out, height, width);
  return { data: out, height, width, channels: 3 };
}

export class ImageProcessor {
  readonly config: ProcessorConfig;

  constructor(config: Partial<ProcessorConfig> = {}) {
    const c = { ...DEFAULT_PROCESSOR_CONFIG, ...config };
    for (const k of ['minPixels', 'maxPixels', 'patchSize', 'temporalPatchSize', 'mergeSize', 'windowSize'] as const) {
      if (!Number.isInteger(c[k]) || c[k] < 1) throw new Error(`ImageProcessor: ${k} must be a positive integer, got ${c[k]}`);
    }
    if (c.imageMean.length !== 3 || c.imageStd.length !== 3) throw new Error('ImageProcessor: imageMean and imageStd need 3 values (RGB)');
    if ((c.windowSize / c.mergeSize / c.patchSize) % 1 !== 0) {
      throw new Error(`ImageProcessor: windowSize ${c.windowSize} must be a multiple of mergeSize·patchSize`);
    }
    this.config = c;
  }

  /** Reads `preprocessor_config.json` (and vision_config.window_size from `config.json` if present). */
  static async fromPretrained(dir: string): Promise<ImageProcessor> {
    const path = join(dir, 'preprocessor_config.json');
    let raw: Record<string, any>;
    try {
      raw = JSON.parse(await readFile(path, 'utf8'));
    } catch (err) {
      throw new Error(`ImageProcessor.fromPretrained: cannot read ${path}: ${(err as Error).message}`);
    }
    const cfg: Partial<ProcessorConfig> = {};
    const minP = raw.min_pixels ?? raw.size?.shortest_edge, maxP = raw.max_pixels ?? raw.size?.longest_edge;
    if (minP !== undefined) cfg.minPixels = minP;
    if (maxP !== undefined) cfg.maxPixels = maxP;
    if (raw.patch_size !== undefined) cfg.patchSize = raw.patch_size;
    if (raw.temporal_patch_size !== undefined) cfg.temporalPatchSize = raw.temporal_patch_size;
    if (raw.merge_size !== undefined) cfg.mergeSize = raw.merge_size;
    if (raw.image_mean !== undefined) cfg.imageMean = raw.image_mean;
    if (raw.image_std !== undefined) cfg.imageStd = raw.image_std;
    try {
      const model = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
      if (model.vision_config?.window_size !== undefined) cfg.windowSize = model.vision_config.window_size;
    } catch { /* no config.json: keep the default window */ }
    return new ImageProcessor(cfg);
  }

  /** The [height, width] an image of this size is resized to. */
  targetSize(height: number, width: number, opts: PackOptions = {}): [number, number] {
    const c = this.config;
    return smartResize(height, width, {
      factor: c.patchSize * c.mergeSize, minPixels: opts.minPixels ?? c.minPixels, maxPixels: opts.maxPixels ?? c.maxPixels,
    });
  }

  /**
   * Decodes (concurrently), resizes and packs a batch. Sources are file paths, encoded
   * buffers, or decoded RgbImages. Each image is resized as soon as it is decoded, so
   * resizing overlaps the other decodes.
   */
  async pack(images: readonly ImageSource[], opts: PackOptions = {}): Promise<PackedImages> {
    this.checkBatch(images);
    const resized = await Promise.all(images.map(async (src, i) => {
      const img = isRgbImage(src) ? checkRgbImage(src, `pack: images[${i}]`) : await loadImage(src, opts);
      return this.resizeOne(img, describeSource(src), opts);
    }));
    return this.packResized(resized.map((r) => r.image), resized.map((r) => r.original));
  }

  /** pack() for images already decoded, synchronously. */
  packRgb(images: readonly RgbImage[], opts: PackOptions = {}): PackedImages {
    this.checkBatch(images);
    const resized = images.map((img, i) => this.resizeOne(checkRgbImage(img, `pack: images[${i}]`), `images[${i}]`, opts));
    return this.packResized(resized.map((r) => r.image), resized.map((r) => r.original));
  }

  private checkBatch(images: readonly unknown[]): void {
    if (!Array.isArray(images)) throw new Error('pack: images must be an array');
    if (images.length === 0) throw new Error('pack: no images given; expected at least one image');
  }

  /** The image as pack() resizes it under opts (its targetSize, Pillow-exact bicubic); the same
   *  object when it already has that size. */
  resize(img: RgbImage, opts: PackOptions = {}): RgbImage {
    const [h, w] = this.targetSize(img.height, img.width, opts);
    return h === img.height && w === img.width ? img : resizeBicubic(img, h, w);
  }

  private resizeOne(img: RgbImage, name: string, opts: PackOptions) {
    try {
      this.targetSize(img.height, img.width, opts);
    } catch (err) {
      throw new Error(`pack: image ${name}: ${(err as Error).message}`);
    }
    return { image: this.resize(img, opts), original: [img.height, img.width] as [number, number] };
  }

  private packResized(images: RgbImage[], originalSizes: [number, number][]): PackedImages {
    const c = this.config, ps = c.patchSize, T = c.temporalPatchSize, m = c.mergeSize;
    const cols = 3 * T * ps * ps;
    // One frame duplicated T times gives grid_t = 1.
    const grids: Grid[] = images.map((img) => ({ t: 1, h: img.height / ps, w: img.width / ps }));
    const rows = grids.reduce((n, g) => n + g.t * g.h * g.w, 0);
    const pixelValues = Tensor.empty([rows, cols], 'f32', -1);
    let offset = 0;
    try {
      images.forEach((img) => {
        native.imagePatchify(img.data, img.height, img.width, pixelValues.arg('pack'), offset,
          [...c.imageMean], [...c.imageStd], ps, T, m);
        offset += (img.height / ps) * (img.width / ps);
      });
    } catch (err) {
      pixelValues.dispose();
      throw err;
    }
    const idx = visionIndex(grids, m, c.windowSize / m / ps);
    const gridData = new Int32Array(grids.length * 3);
    grids.forEach((g, i) => gridData.set([g.t, g.h, g.w], i * 3));
    const i32 = (data: Int32Array, shape: number[]) => tensor(data, { dtype: 'i32', shape });
    const packed: PackedImages = {
      pixelValues,
      gridThw: i32(gridData, [grids.length, 3]),
      cuSeqlens: i32(idx.cuSeqlens, [idx.cuSeqlens.length]),
      numImageTokens: grids.map((g) => (g.t * g.h * g.w) / (m * m)),
      rotaryPosIds: i32(idx.rotaryPosIds, [rows, 2]),
      windowIndex: i32(idx.windowIndex, [idx.windowIndex.length]),
      windowInverse: i32(idx.windowInverse, [idx.windowInverse.length]),
      cuWindowSeqlens: i32(idx.cuWindowSeqlens, [idx.cuWindowSeqlens.length]),
      maxSeqlen: idx.maxSeqlen,
      maxWindowSeqlen: idx.maxWindowSeqlen,
      resizedSizes: images.map((img) => [img.height, img.width]),
      originalSizes,
      dispose() {
        for (const t of [this.pixelValues, this.gridThw, this.cuSeqlens, this.rotaryPosIds, this.windowIndex,
          this.windowInverse, this.cuWindowSeqlens]) t.dispose();
      },
    };
    return packed;
  }
}
