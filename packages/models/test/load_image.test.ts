// Decoding (sharp) against what transformers' load_image + Pillow convert('RGB') give for the
// same files (tools/oracle/gen_processor.py wrote both), and bad input: every failure is a
// clear error that names the file, and an oversized image is refused from its header alone.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { ImageProcessor } from '../src/processor/imageProcessor.js';
import { loadImage } from '../src/processor/loadImage.js';
import { FIXTURES, loadCase, read } from './fixtures.js';

const ENC = join(FIXTURES, 'encoded');
const expected = loadCase(join(ENC, 'expected'));
const tmp = mkdtempSync(join(tmpdir(), 'fovea-img-'));

// Lossless formats must match Pillow exactly; JPEG goes through two IDCT implementations
// (mozjpeg in sharp, libjpeg-turbo in Pillow), allowed one level of difference.
const FILES: [string, number][] = [
  ['rgb.png', 0], ['rgba.png', 0], ['gray.png', 0], ['palette.gif', 0], ['rgb.tiff', 0], ['rgb.webp', 0],
  ['rgb.jpg', 1], ['orient6.jpg', 1],
];

describe('loadImage', () => {
  it.each(FILES)('%s decodes like Pillow convert(RGB)', async (file, tol) => {
    const key = file.replace('.', '_');
    const want = read(expected, key) as Uint8Array;
    const [h, w] = expected.tensors[key].shape;
    for (const src of [join(ENC, file), readFileSync(join(ENC, file))]) {
      const img = await loadImage(src);
      expect([img.height, img.width, img.channels]).toEqual([h, w, 3]);
      let maxDiff = 0;
      for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(img.data[i] - want[i]));
      expect(maxDiff).toBeLessThanOrEqual(tol);
    }
  });

  it('applies EXIF orientation (40x56 stored, shown 56x40)', async () => {
    const img = await loadImage(join(ENC, 'orient6.jpg'));
    expect([img.height, img.width]).toEqual([56, 40]);
  });
});

/** A tiny PNG that declares w×h pixels: signature, IHDR, a few bytes of IDAT, IEND (valid CRCs). */
function pngHeaderOnly(w: number, h: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2;  // 8-bit RGB
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(64))), chunk('IEND', Buffer.alloc(0))]);
}

describe('bad input', () => {
  const proc = new ImageProcessor();

  it('missing file', async () => {
    const path = join(tmp, 'does-not-exist.png');
    await expect(loadImage(path)).rejects.toThrow(/loadImage: cannot read '.*does-not-exist\.png'/);
    await expect(proc.pack([path])).rejects.toThrow(/does-not-exist\.png/);
  });

  it('truncated JPEG and PNG', async () => {
    for (const f of ['rgb.jpg', 'rgb.png']) {
      const bytes = readFileSync(join(ENC, f));
      const path = join(tmp, `truncated-${f}`);
      writeFileSync(path, bytes.subarray(0, Math.floor(bytes.length / 2)));
      await expect(proc.pack([path])).rejects.toThrow(new RegExp(`loadImage: cannot (read|decode) '.*truncated-${f.replace('.', '\\.')}'`));
    }
  });

  it('corrupt PNG data (bad IDAT checksum) and corrupt JPEG', async () => {
    const png = Buffer.from(readFileSync(join(ENC, 'rgb.png')));
    const idat = png.indexOf('IDAT');
    for (let i = idat + 8; i < idat + 40; i++) png[i] ^= 0x5a;
    const p1 = join(tmp, 'corrupt.png');
    writeFileSync(p1, png);
    await expect(loadImage(p1)).rejects.toThrow(/loadImage: cannot (read|decode) '.*corrupt\.png'/);
    const jpg = Buffer.from(readFileSync(join(ENC, 'rgb.jpg')));
    jpg.fill(0xff, 2, 200);  // wipe the quantisation/Huffman tables
    const p2 = join(tmp, 'corrupt.jpg');
    writeFileSync(p2, jpg);
    await expect(loadImage(p2)).rejects.toThrow(/loadImage: cannot (read|decode) '.*corrupt\.jpg'/);
  });

  it('a file that is not an image', async () => {
    const path = join(tmp, 'notes.txt');
    writeFileSync(path, 'this is not an image\n'.repeat(20));
    await expect(loadImage(path)).rejects.toThrow(/loadImage: cannot read '.*notes\.txt'.*unsupported image format/);
  });

  it('an image declaring 60000x60000 is refused before decoding', async () => {
    const path = join(tmp, 'huge.png');
    writeFileSync(path, pngHeaderOnly(60000, 60000));
    const before = process.memoryUsage().rss;
    await expect(loadImage(path)).rejects.toThrow(/'.*huge\.png' declares 60000x60000 = 3600000000 pixels, above the limit of 268435456/);
    await expect(proc.pack([path])).rejects.toThrow(/huge\.png/);
    expect(process.memoryUsage().rss - before).toBeLessThan(512 * 2 ** 20);
    // The limit is configurable.
    await expect(loadImage(join(ENC, 'rgb.png'), { maxInputPixels: 1000 })).rejects.toThrow(/declares 56x40 = 2240 pixels, above the limit of 1000/);
  });

  it('a 1x1000 image (aspect ratio above 200)', async () => {
    const path = join(tmp, 'line.png');
    await sharp({ create: { width: 1000, height: 1, channels: 3, background: '#808080' } }).png().toFile(path);
    await expect(proc.pack([path])).rejects.toThrow(/pack: image '.*line\.png': smartResize: absolute aspect ratio must be smaller than 200, got 1000/);
    const img = { data: new Uint8Array(3000), height: 1, width: 1000, channels: 3 as const };
    expect(() => proc.packRgb([img])).toThrow(/pack: image images\[0\].*aspect ratio/);
  });

  it('zero images and malformed decoded images', async () => {
    await expect(proc.pack([])).rejects.toThrow(/pack: no images given/);
    expect(() => proc.packRgb([])).toThrow(/pack: no images given/);
    expect(() => proc.packRgb([{ data: new Uint8Array(10), height: 4, width: 4, channels: 3 }])).toThrow(/pack: images\[0\]: image data holds 10 bytes but 4x4x3 needs 48/);
  });
});
