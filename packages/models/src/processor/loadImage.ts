// Decoding images for the processor with sharp (libvips): JPEG, PNG, WebP, GIF (first frame),
// TIFF. The result matches what Hugging Face's load_image + convert('RGB') hand the
// processor: EXIF orientation applied, alpha dropped without compositing (Pillow's
// RGBA → RGB), grayscale and palette expanded to RGB, 16-bit reduced to 8, embedded ICC
// profiles ignored (Pillow does not colour-manage either).
// The pixel limit is checked from the header before anything is decoded, so a file that
// declares 60000×60000 never allocates gigabytes. Every error names the file.
import sharp from 'sharp';

/** A decoded image: uint8, interleaved HWC, `channels` = 3 (RGB). */
export interface RgbImage {
  data: Uint8Array;
  height: number;
  width: number;
  channels: 3;
}

export type ImageSource = string | Uint8Array | RgbImage;

export interface LoadImageOptions {
  /** Refuse images with more pixels than this (checked from the header). Default 2^28. */
  maxInputPixels?: number;
}

export const DEFAULT_MAX_INPUT_PIXELS = 2 ** 28;

/** How errors refer to a source: the path, or a short description of the buffer. */
export function describeSource(src: ImageSource): string {
  if (typeof src === 'string') return `'${src}'`;
  if (isRgbImage(src)) return `<RGB image ${src.height}x${src.width}>`;
  return `<buffer of ${src.byteLength} bytes>`;
}

export function isRgbImage(x: unknown): x is RgbImage {
  return typeof x === 'object' && x !== null && !ArrayBuffer.isView(x) &&
    (x as RgbImage).data instanceof Uint8Array && Number.isInteger((x as RgbImage).height);
}

/** Checks an already-decoded image's fields and size. */
export function checkRgbImage(img: RgbImage, where: string): RgbImage {
  const { height, width, data } = img;
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new Error(`${where}: image size must be positive integers, got ${height}x${width}`);
  }
  if (img.channels !== 3) throw new Error(`${where}: expected an RGB image (channels 3), got channels ${img.channels}`);
  if (data.byteLength !== height * width * 3) {
    throw new Error(`${where}: image data holds ${data.byteLength} bytes but ${height}x${width}x3 needs ${height * width * 3}`);
  }
  return img;
}

/** Decodes a file path or an encoded buffer to RGB uint8. */
export async function loadImage(src: string | Uint8Array, opts: LoadImageOptions = {}): Promise<RgbImage> {
  const name = describeSource(src);
  const limit = opts.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  if (typeof src !== 'string' && !(src instanceof Uint8Array)) {
    throw new Error('loadImage: expected a file path or a Uint8Array/Buffer of encoded image bytes');
  }
  // The header is read without sharp's own limit so that the refusal below can say what the
  // file declares; decoding then runs with the limit as a second guard.
  const open = (limitInputPixels: number | false) => sharp(src, {
    limitInputPixels, pages: 1, page: 0, ignoreIcc: true, failOn: 'warning', autoOrient: false,
  });
  let meta: Awaited<ReturnType<ReturnType<typeof sharp>["metadata"]>>;
  try {
    meta = await open(false).metadata();
  } catch (err) {
    throw new Error(`loadImage: cannot read ${name}: ${reason(err)}`);
  }
  const w = meta.width ?? 0, h = meta.pageHeight ?? meta.height ?? 0;
  if (w * h > limit) {
    throw new Error(`loadImage: ${name} declares ${w}x${h} = ${w * h} pixels, above the limit of ${limit}; ` +
      'raise maxInputPixels if this image is trusted');
  }
  try {
    const { data, info } = await open(limit).rotate().removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), height: info.height, width: info.width, channels: 3 };
  } catch (err) {
    throw new Error(`loadImage: cannot decode ${name}: ${reason(err)}`);
  }
}

function reason(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+$/, '');
}
