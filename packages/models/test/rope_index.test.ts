// getRopeIndex against Hugging Face's Qwen2_5_VLForConditionalGeneration.get_rope_index
// (transformers 4.50, fixtures copied from ../shared/fixtures/qwen25vl): position_ids [3, B, S]
// and rope_deltas must match exactly for three images in one sequence, a right-padded batch
// and text only. Then packing (positions restart per sequence), decode steps and bad input.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodePositions, getRopeIndex, getRopeIndexPacked, type GridThw } from '../src/qwen2_5_vl/ropeIndex.js';

const DIR = join(import.meta.dirname, 'fixtures', 'qwen25vl');
const config = JSON.parse(readFileSync(join(DIR, 'model', 'config.json'), 'utf8'));
const TOKENS = { imageTokenId: config.image_token_id as number, visionStartTokenId: config.vision_start_token_id as number };
const MERGE = config.vision_config.spatial_merge_size as number;

interface Loaded { ids: Int32Array[]; mask: Int32Array[]; grids: GridThw[]; pos: Int32Array; deltas: Int32Array; B: number; S: number }

function i32(caseName: string, name: string): { data: Int32Array; shape: number[] } {
  const m = JSON.parse(readFileSync(join(DIR, caseName, 'manifest.json'), 'utf8'));
  const e = m.tensors[name];
  if (!e || e.dtype !== 'i32') throw new Error(`fixture ${caseName}: no i32 tensor ${name}`);
  const b = readFileSync(join(DIR, caseName, e.file));
  return { data: new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), shape: e.shape };
}

function load(caseName: string): Loaded {
  const ids = i32(caseName, 'input_ids'), mask = i32(caseName, 'attention_mask');
  const [B, S] = ids.shape;
  const rows = (t: Int32Array) => Array.from({ length: B }, (_, b) => t.subarray(b * S, (b + 1) * S));
  let grids: GridThw[] = [];
  try {
    const g = i32(caseName, 'image_grid_thw');
    grids = Array.from({ length: g.shape[0] }, (_, i) => ({ t: g.data[3 * i], h: g.data[3 * i + 1], w: g.data[3 * i + 2] }));
  } catch { /* text only */ }
  return { ids: rows(ids.data), mask: rows(mask.data), grids, pos: i32(caseName, 'position_ids').data, deltas: i32(caseName, 'rope_deltas').data, B, S };
}

/** Row b of HF's [3, B, S] position ids as our [3, S] layout. */
function hfRow(c: Loaded, b: number): Int32Array {
  const out = new Int32Array(3 * c.S);
  for (let k = 0; k < 3; k++) out.set(c.pos.subarray((k * c.B + b) * c.S, (k * c.B + b + 1) * c.S), k * c.S);
  return out;
}

/** Which grids each batch row uses (images counted as vision_start + image_pad pairs). */
function gridsPerRow(c: Loaded): GridThw[][] {
  let gi = 0;
  return c.ids.map((row) => {
    let n = 0;
    for (let i = 0; i + 1 < row.length; i++) if (row[i] === TOKENS.visionStartTokenId && row[i + 1] === TOKENS.imageTokenId) n++;
    const g = c.grids.slice(gi, gi + n);
    gi += n;
    return g;
  });
}

describe('getRopeIndex matches HF get_rope_index', () => {
  for (const name of ['multi_image', 'batch2_right_padded', 'text_only']) {
    it(name, () => {
      const c = load(name);
      const per = gridsPerRow(c);
      for (let b = 0; b < c.B; b++) {
        const r = getRopeIndex(c.ids[b], per[b], TOKENS, { spatialMergeSize: MERGE, attentionMask: c.mask[b] });
        expect(Array.from(r.positionIds)).toEqual(Array.from(hfRow(c, b)));
        expect(r.ropeDelta).toBe(c.deltas[b]);
      }
    });
  }

  it('multi_image really has three images and a non-trivial layout', () => {
    const c = load('multi_image');
    expect(c.grids.length).toBe(3);
    const r = getRopeIndex(c.ids[0], c.grids, TOKENS);
    // Positions are not simply 0..L-1: the h and w rows differ somewhere.
    const L = c.S;
    let differ = 0;
    for (let i = 0; i < L; i++) if (r.positionIds[L + i] !== r.positionIds[2 * L + i]) differ++;
    expect(differ).toBeGreaterThan(0);
    expect(r.ropeDelta).toBeLessThan(0);
  });

  it('without a mask, all tokens count (equals an all-ones mask)', () => {
    const c = load('multi_image');
    const a = getRopeIndex(c.ids[0], c.grids, TOKENS);
    const b = getRopeIndex(c.ids[0], c.grids, TOKENS, { attentionMask: new Int32Array(c.S).fill(1) });
    expect(a).toEqual(b);
  });

  it('hand-computed layout: text, a 1×4×6 image (2×3 tokens), text', () => {
    const V = TOKENS.visionStartTokenId, P = TOKENS.imageTokenId;
    const ids = [5, 6, V, P, P, P, P, P, P, 741, 7];
    const r = getRopeIndex(ids, [{ t: 1, h: 4, w: 6 }], TOKENS);
    const L = ids.length;
    const row = (k: number) => Array.from(r.positionIds.subarray(k * L, (k + 1) * L));
    // text 0,1,2 (vision_start at 2); image st = 3: (3,3+r,3+c); next text at 3 + max(2,3) = 6.
    expect(row(0)).toEqual([0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7]);
    expect(row(1)).toEqual([0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7]);
    expect(row(2)).toEqual([0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7]);
    expect(r.ropeDelta).toBe(8 - L);
  });
});

describe('getRopeIndexPacked', () => {
  it('two fixture sequences packed back to back give each one\'s own ids', () => {
    const mi = load('multi_image'), to = load('text_only');
    const a = getRopeIndex(mi.ids[0], mi.grids, TOKENS), b = getRopeIndex(to.ids[0], [], TOKENS);
    // Also the unpadded rows of the padded batch, with the image in the first row.
    const bp = load('batch2_right_padded');
    const rows = bp.ids.map((row, i) => row.subarray(0, bp.mask[i].reduce((s, x) => s + x, 0)));
    const c0 = getRopeIndex(rows[0], gridsPerRow(bp)[0], TOKENS), c1 = getRopeIndex(rows[1], gridsPerRow(bp)[1], TOKENS);
    const seqs = [
      { ids: to.ids[0], pos: b.positionIds }, { ids: mi.ids[0], pos: a.positionIds },
      { ids: rows[0], pos: c0.positionIds }, { ids: rows[1], pos: c1.positionIds },
    ];
    const total = seqs.reduce((s, q) => s + q.ids.length, 0);
    const ids = new Int32Array(total);
    const cu = [0];
    for (const q of seqs) { ids.set(q.ids, cu[cu.length - 1]); cu.push(cu[cu.length - 1] + q.ids.length); }
    const grids = [...mi.grids, ...gridsPerRow(bp)[0], ...gridsPerRow(bp)[1]];
    const packed = getRopeIndexPacked(ids, cu, grids, TOKENS);
    const want = new Int32Array(3 * total);
    seqs.forEach((q, s) => {
      const n = q.ids.length;
      for (let k = 0; k < 3; k++) want.set(q.pos.subarray(k * n, (k + 1) * n), k * total + cu[s]);
    });
    expect(Array.from(packed)).toEqual(Array.from(want));
  });

  it('empty sequences in cuSeqlens are allowed', () => {
    const r = getRopeIndexPacked([1, 2, 3], [0, 0, 2, 2, 3], [], TOKENS);
    expect(Array.from(r)).toEqual([0, 1, 0, 0, 1, 0, 0, 1, 0]);
  });
});

describe('decodePositions', () => {
  it('cache position + rope delta, same in t, h, w', () => {
    expect(Array.from(decodePositions(10, -3))).toEqual([7, 7, 7]);
    expect(Array.from(decodePositions(10, -3, 2))).toEqual([7, 8, 7, 8, 7, 8]);
  });
  it('continues the prefill positions of a fixture', () => {
    const c = load('multi_image');
    const r = getRopeIndex(c.ids[0], c.grids, TOKENS);
    let max = 0;
    for (const p of r.positionIds) max = Math.max(max, p);
    expect(decodePositions(c.S, r.ropeDelta)[0]).toBe(max + 1);
  });
  it('rejects bad arguments', () => {
    expect(() => decodePositions(-1, 0)).toThrow(/cacheLength/);
    expect(() => decodePositions(1, 0.5)).toThrow(/ropeDelta/);
    expect(() => decodePositions(1, 0, 0)).toThrow(/count/);
  });
});

describe('bad input', () => {
  const V = TOKENS.visionStartTokenId, P = TOKENS.imageTokenId;
  const g = { t: 1, h: 4, w: 4 }; // 4 tokens
  it('image tokens without <|vision_start|>', () => {
    expect(() => getRopeIndex([1, P, P, P, P], [g], TOKENS)).toThrow(/not preceded by <\|vision_start\|>/);
  });
  it('image token count does not match the grid (says both)', () => {
    expect(() => getRopeIndex([1, V, P, P, P, 2], [g], TOKENS)).toThrow(/has 3 <\|image_pad\|> tokens.*needs 4/);
    expect(() => getRopeIndex([1, V, P, P, P, P, P, 2], [g], TOKENS)).toThrow(/has 5 .*needs 4/);
  });
  it('more images than grids, and more grids than images', () => {
    expect(() => getRopeIndex([V, P, P, P, P, V, P, P, P, P], [g], TOKENS)).toThrow(/more images than grids.*image 2 of 2.*1 grid/);
    expect(() => getRopeIndex([V, P, P, P, P], [g, g], TOKENS)).toThrow(/2 grid\(s\) given but the text has 1 image/);
    expect(() => getRopeIndex([1, 2], [g], TOKENS)).toThrow(/1 grid\(s\) given but the text has 0/);
  });
  it('bad grids, ids, masks, merge size', () => {
    expect(() => getRopeIndex([V, P], [{ t: 1, h: 3, w: 4 }], TOKENS)).toThrow(/multiples of spatialMergeSize 2/);
    expect(() => getRopeIndex([V, P], [{ t: 0, h: 2, w: 2 }], TOKENS)).toThrow(/grids\[0\] must be positive integers/);
    expect(() => getRopeIndex([1, 2.5], [], TOKENS)).toThrow(/inputIds\[1\]/);
    expect(() => getRopeIndex([1, 2], [], TOKENS, { attentionMask: [1] })).toThrow(/attentionMask has length 1 but inputIds has 2/);
    expect(() => getRopeIndex([1, 2], [], TOKENS, { attentionMask: [1, 2] })).toThrow(/expected 0 or 1/);
    expect(() => getRopeIndex([1, 2], [], TOKENS, { attentionMask: [0, 0] })).toThrow(/no tokens/);
    expect(() => getRopeIndex([1, 2], [], TOKENS, { spatialMergeSize: 0 })).toThrow(/spatialMergeSize/);
    expect(() => getRopeIndex([1, 2], [], { imageTokenId: 1.5, visionStartTokenId: 2 })).toThrow(/imageTokenId/);
  });
  it('a masked-out vision_start does not start an image', () => {
    expect(() => getRopeIndex([V, P, P, P, P], [g], TOKENS, { attentionMask: [0, 1, 1, 1, 1] })).toThrow(/not preceded/);
  });
  it('packed: bad cuSeqlens, an image split across sequences, grid count', () => {
    expect(() => getRopeIndexPacked([1, 2], [0, 1], [], TOKENS)).toThrow(/end at the number of tokens 2/);
    expect(() => getRopeIndexPacked([1, 2], [0, 2, 1, 2], [], TOKENS)).toThrow(/non-decreasing/);
    expect(() => getRopeIndexPacked([1, 2], [0], [], TOKENS)).toThrow(/at least 2/);
    expect(() => getRopeIndexPacked([V, P, P, P, P], [0, 2, 5], [g], TOKENS)).toThrow(/sequence 0: image 0 has 1/);
    expect(() => getRopeIndexPacked([V, P, P, P, P, 1], [0, 5, 6], [g, g], TOKENS)).toThrow(/2 grid\(s\) given but the packed sequences hold 1/);
    expect(() => getRopeIndexPacked([1, V, P, P, P, P], [0, 1, 6], [], TOKENS)).toThrow(/sequence 1: the text has more images than grids/);
  });
});
