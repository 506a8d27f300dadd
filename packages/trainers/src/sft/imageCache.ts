// The SFT trainer's cache of decoded, resized images, so that a dataset seen for many epochs is
// decoded once instead of every time a row comes round (decoding a 1568×1568 PNG costs ~37 ms on a
// 2-core machine; resizing and packing the result ~3 ms).
//
// What is cached is the image the processor's pack() would make from the file — decoded, then
// smart-resized (Pillow-exact bicubic) to its target size under the given pixel budget — as RGB
// bytes. Packing a cached image gives bit-identical patch rows, because the processor resizes an
// image that already has its target size not at all; get() checks that this holds for every image
// it stores (targetSize of the target size is the target size) and otherwise keeps the original.
// Keys are (path, minPixels, maxPixels). Least recently used entries are dropped once the stored
// bytes pass maxBytes; an image larger than maxBytes on its own is returned without being stored.
import { type ImageProcessor, type RgbImage, loadImage } from '@fovea/models';

export interface ImageCacheStats { hits: number; misses: number; bytes: number; entries: number; evictions: number }

export class ResizedImageCache {
  private readonly entries = new Map<string, RgbImage>();
  private readonly pending = new Map<string, Promise<RgbImage>>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(readonly maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new Error(`ResizedImageCache: maxBytes must be a non-negative integer, got ${maxBytes}`);
  }

  /** The image at `path` as the processor would resize it under opts (see the file comment). */
  async get(path: string, processor: ImageProcessor, opts: { minPixels?: number; maxPixels?: number } = {}): Promise<RgbImage> {
    const key = `${path}\u0000${opts.minPixels ?? ''}\u0000${opts.maxPixels ?? ''}`;
    const hit = this.entries.get(key);
    if (hit) {
      this.hits++;
      this.entries.delete(key);   // re-insert: Map order is the recency order
      this.entries.set(key, hit);
      return hit;
    }
    const inFlight = this.pending.get(key);
    if (inFlight) { this.hits++; return inFlight; }
    this.misses++;
    const load = (async () => {
      const original = await loadImage(path);
      const image = processor.resize(original, opts);
      const [h, w] = processor.targetSize(image.height, image.width, opts);
      return h === image.height && w === image.width ? image : original;   // pack() must not resize it again
    })();
    if (this.maxBytes === 0) return load;
    this.pending.set(key, load);
    try {
      const image = await load;
      const size = image.data.byteLength;
      if (size <= this.maxBytes) {
        this.entries.set(key, image);
        this.bytes += size;
        for (const [k, v] of this.entries) {
          if (this.bytes <= this.maxBytes) break;
          this.entries.delete(k);
          this.bytes -= v.data.byteLength;
          this.evictions++;
        }
      }
      return image;
    } finally {
      this.pending.delete(key);
    }
  }

  stats(): ImageCacheStats {
    return { hits: this.hits, misses: this.misses, bytes: this.bytes, entries: this.entries.size, evictions: this.evictions };
  }
}
