// The SFT image cache (src/sft/imageCache.ts): encoding a conversation through the cache gives
// bit-identical tokens and patch rows to decoding the files again (images that need resizing and
// images already at their target size), repeated rows are hits, the least recently used images
// leave first once the byte budget is passed, an image over the budget is not kept, unreadable
// files fail with the path and are not cached, and the config field is validated.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qwen2_5_VLProcessor } from '@fovea/models';
import { encodeExample } from '../src/sft/encode.js';
import { ResizedImageCache } from '../src/sft/imageCache.js';
import { validateSftConfig } from '../src/sft/config.js';
import type { SftMessage } from '../src/sft/data.js';

const FIX = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures');
let tmp: string, proc: Qwen2_5_VLProcessor;
const PIXELS = { maxPixels: 112 * 112 };

/** A deterministic RGB test card of h × w pixels saved as PNG. */
async function card(name: string, h: number, w: number, seed: number): Promise<string> {
  const data = Buffer.alloc(h * w * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761 + seed * 97) % 251;
  const file = join(tmp, name);
  writeFileSync(file, await sharp(data, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer());
  return file;
}

const conversation = (images: string[]): SftMessage[] => [
  { role: 'user', content: [...images.map((image) => ({ type: 'image' as const, image })), { type: 'text' as const, text: 'What is shown?' }] },
  { role: 'assistant', content: 'A test card.' },
];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'fovea-imgcache-'));
  const modelDir = join(tmp, 'model');
  cpSync(join(FIX, 'qwen25vl', 'model'), modelDir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(modelDir, f));
  proc = await Qwen2_5_VLProcessor.fromPretrained(modelDir);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('ResizedImageCache', () => {
  it('encodes bit-identically to decoding again, for resized and already-sized images; repeats are hits', async () => {
    const big = await card('big.png', 300, 420, 1);      // resized to the 112² budget
    const small = await card('small.png', 56, 84, 2);    // already a multiple of 28 within the budget
    const cache = new ResizedImageCache(64 * 2 ** 20);
    const messages = conversation([big, small]);
    const plain = await encodeExample(proc, 'a', messages, PIXELS);
    for (let round = 0; round < 2; round++) {
      const cached = await encodeExample(proc, 'a', messages, { ...PIXELS, imageCache: cache });
      expect(Array.from(cached.inputIds)).toEqual(Array.from(plain.inputIds));
      expect(Array.from(cached.lossMask)).toEqual(Array.from(plain.lossMask));
      expect(cached.grids).toEqual(plain.grids);
      expect(cached.patchDim).toBe(plain.patchDim);
      expect(Buffer.from(cached.pixelRows!.buffer).equals(Buffer.from(plain.pixelRows!.buffer))).toBe(true);
    }
    expect(plain.grids.length).toBe(2);
    // What is kept is the resized image (the frame of the patch grid), not the decoded original.
    const kept = await cache.get(big, proc.imageProcessor, PIXELS);
    expect([kept.height, kept.width]).toEqual([plain.grids[0].h * 14, plain.grids[0].w * 14]);
    expect(kept.height * kept.width).toBeLessThan(300 * 420);
    expect(cache.stats()).toMatchObject({ hits: 3, misses: 2, entries: 2 });
    // Another pixel budget is another entry, and matches its own uncached encoding.
    const other = { maxPixels: 56 * 56 };
    const again = await encodeExample(proc, 'a', messages, { ...other, imageCache: cache });
    const plainOther = await encodeExample(proc, 'a', messages, other);
    expect(Buffer.from(again.pixelRows!.buffer).equals(Buffer.from(plainOther.pixelRows!.buffer))).toBe(true);
    expect(cache.stats().entries).toBe(4);
  });

  it('drops the least recently used images past the budget, and does not keep one larger than it', async () => {
    const files = await Promise.all([0, 1, 2].map((i) => card(`c${i}.png`, 56, 56, 10 + i)));
    const one = 56 * 56 * 3;
    const cache = new ResizedImageCache(2 * one);
    await cache.get(files[0], proc.imageProcessor, PIXELS);
    await cache.get(files[1], proc.imageProcessor, PIXELS);
    await cache.get(files[0], proc.imageProcessor, PIXELS);   // 0 is now the most recent
    await cache.get(files[2], proc.imageProcessor, PIXELS);   // evicts 1
    expect(cache.stats()).toEqual({ hits: 1, misses: 3, bytes: 2 * one, entries: 2, evictions: 1 });
    await cache.get(files[0], proc.imageProcessor, PIXELS);
    expect(cache.stats().hits).toBe(2);
    await cache.get(files[1], proc.imageProcessor, PIXELS);   // a miss again
    expect(cache.stats().misses).toBe(4);

    const tiny = new ResizedImageCache(one - 1);
    const img = await tiny.get(files[0], proc.imageProcessor, PIXELS);
    expect([img.height, img.width]).toEqual([56, 56]);
    expect(tiny.stats()).toMatchObject({ entries: 0, bytes: 0 });
    const off = new ResizedImageCache(0);
    await off.get(files[0], proc.imageProcessor, PIXELS);
    await off.get(files[0], proc.imageProcessor, PIXELS);
    expect(off.stats()).toMatchObject({ hits: 0, misses: 2, entries: 0 });
  });

  it('names an unreadable file and does not cache the failure; rejects a bad budget', async () => {
    const bad = join(tmp, 'not-an-image.png');
    writeFileSync(bad, 'this is text');
    const cache = new ResizedImageCache(2 ** 20);
    await expect(cache.get(bad, proc.imageProcessor, PIXELS)).rejects.toThrow(/not-an-image\.png/);
    await expect(cache.get(join(tmp, 'missing.png'), proc.imageProcessor, PIXELS)).rejects.toThrow(/missing\.png/);
    await expect(cache.get(bad, proc.imageProcessor, PIXELS)).rejects.toThrow(/not-an-image\.png/);
    expect(cache.stats()).toMatchObject({ entries: 0, misses: 3 });
    expect(() => new ResizedImageCache(-1)).toThrow(/maxBytes must be a non-negative integer, got -1/);
    expect(() => new ResizedImageCache(1.5)).toThrow(/maxBytes/);
  });

  it('data.imageCacheMB: default 1024, 0 allowed, negative or fractional rejected by name', () => {
    const base = { model: '/m', data: { train: '/d.jsonl' }, steps: 1, output: '/o' };
    expect(validateSftConfig(base).data.imageCacheMB).toBe(1024);
    expect(validateSftConfig({ ...base, data: { train: '/d.jsonl', imageCacheMB: 0 } }).data.imageCacheMB).toBe(0);
    expect(() => validateSftConfig({ ...base, data: { train: '/d.jsonl', imageCacheMB: -1 } })).toThrow(/data\.imageCacheMB/);
    expect(() => validateSftConfig({ ...base, data: { train: '/d.jsonl', imageCacheMB: 1.5 } })).toThrow(/data\.imageCacheMB/);
  });
});
