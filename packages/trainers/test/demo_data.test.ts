// The demo's generated visual-search task and its tiny model: scene determinism, the target tile
// (inside the scene, its size, the only yellow thing, the drawn character read back from the
// pixels equals the answer), the dataset files (RL rows readable by data/dataset.ts, grounding
// boxes that map back to the tile through the resize frame, answer/MGPO SFT rows), the small
// tokenizer's round trips and ids, and the tiny checkpoint loading and running through the same
// code path as a real one.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageProcessor, Qwen2_5_VL, Qwen2_5_VLProcessor, Qwen2Tokenizer, loadImage, type RgbImage } from '@fovea/models';
import { loadDataset } from '../src/data/dataset.js';
import { GRPO_TEMPLATE, MGPO_TEMPLATE, formatQuestion } from '../src/rollout/templates.js';
import { isParseError, parseBox } from '../src/tools/boxParser.js';
import { CROP_FAILURE_PHRASES, DEFAULT_CROP_INVALID_TEXT, DEFAULT_CROP_VALID_TEXT, modelToOriginal } from '../src/tools/crop.js';
import { fillTemplate } from '../src/tools/types.js';
import {
  ANSWER_CHARS, FONT_CHARS, GLYPH_COLS, GLYPH_ROWS, MIN_ANSWER_DISTANCE, glyphBitmap, glyphDistance,
} from '../src/demo/glyphs.js';
import { deriveSeed } from '../src/demo/rng.js';
import { type Scene, DEMO_COLOR_QUESTION, DEMO_QUESTION, MAP_RAMP, MARK_COLORS, TILE_FILL, generateScene, markSize, sceneSpec } from '../src/demo/scenes.js';
import {
  DEMO_GROUNDING_TEXT, boxedAnswer, demoCropTool, gridBox, groundingAnswer, modelFrameBox, writeDemoDataset,
} from '../src/demo/demoDataset.js';
import { renderTaskPreview } from '../src/demo/preview.js';
import { QWEN_VL_CHAT_TEMPLATE, learnMerges } from '../src/demo/demoTokenizer.js';
import { demoCorpus, writeTinyDemoModel } from '../src/demo/tinyModel.js';

const tmp = mkdtempSync(join(tmpdir(), 'fovea-demo-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const px = (img: RgbImage, x: number, y: number) => Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));
const isTileYellow = ([r, g, b]: number[]) => r > 225 && g > 180 && g < 240 && b < 60;

/** Reads the tile's glyph back: the color at the center of each font cell (ink = dark). */
function readGlyph(scene: Scene): Uint8Array {
  const { cell, glyphOrigin: [gx, gy] } = scene.target;
  const bits = new Uint8Array(GLYPH_ROWS * GLYPH_COLS);
  for (let r = 0; r < GLYPH_ROWS; r++) {
    for (let c = 0; c < GLYPH_COLS; c++) {
      const [R, G, B] = px(scene.image, gx + c * cell + (cell >> 1), gy + r * cell + (cell >> 1));
      if (R < 60 && G < 60 && B < 60) bits[r * GLYPH_COLS + c] = 1;
      else expect(isTileYellow([R, G, B])).toBe(true);   // no third color inside the tile
    }
  }
  return bits;
}

describe('the 5x7 font', () => {
  it('draws distinct glyphs, and the answer characters are pairwise far apart', () => {
    const seen = new Set(FONT_CHARS.map((c) => glyphBitmap(c).join('')));
    expect(seen.size).toBe(FONT_CHARS.length);
    for (const a of ANSWER_CHARS) for (const b of ANSWER_CHARS) if (a < b) expect(glyphDistance(a, b)).toBeGreaterThanOrEqual(MIN_ANSWER_DISTANCE);
  });

  it('names what it lacks', () => {
    expect(() => glyphBitmap('?')).toThrow(/no glyph for "\?"/);
  });
});

describe('generated scenes', () => {
  let a: Scene, b: Scene, c: Scene;
  beforeAll(async () => { [a, b, c] = [await generateScene(5), await generateScene(5), await generateScene(6)]; });

  it('are a pure function of the seed (same seed same bytes, other seeds differ)', () => {
    expect(Buffer.compare(a.png, b.png)).toBe(0);
    expect(Buffer.compare(Buffer.from(a.image.data), Buffer.from(b.image.data))).toBe(0);
    expect(Buffer.compare(a.png, c.png)).not.toBe(0);
    expect(sceneSpec(5).svg).not.toBe(sceneSpec(6).svg);
  });

  it('are high-resolution, and the PNG holds the returned pixels', async () => {
    expect([a.width, a.height]).toEqual([1568, 1568]);
    const decoded = await loadImage(new Uint8Array(a.png));
    expect([decoded.height, decoded.width]).toEqual([1568, 1568]);
    expect(Buffer.compare(Buffer.from(decoded.data), Buffer.from(a.image.data))).toBe(0);
  });

  it('place one tile of 24-40 px inside the image, on the model grid (scale 7 for 1568 -> 224)', async () => {
    expect(a.modelFrame).toEqual([224, 224]);
    for (const s of [a, c, await generateScene(7)]) {
      const [x1, y1, x2, y2] = s.target.box;
      expect(x1).toBeGreaterThanOrEqual(0); expect(y1).toBeGreaterThanOrEqual(0);
      expect(x2).toBeLessThanOrEqual(s.width); expect(y2).toBeLessThanOrEqual(s.height);
      expect(x2 - x1).toBe(s.target.size); expect(y2 - y1).toBe(s.target.size);
      expect(s.target.size).toBeGreaterThanOrEqual(24); expect(s.target.size).toBeLessThanOrEqual(40);
      for (const v of s.target.box) expect(v % 7).toBe(0);
    }
  });

  it('draw the answer character on the tile (read back from the pixels)', async () => {
    for (const s of [a, c, await generateScene(8), await generateScene(9)]) {
      expect(s.question).toBe(DEMO_QUESTION);
      expect(s.choices).toHaveLength(4);
      expect(new Set(s.choices).size).toBe(4);
      expect(s.answer).toBe('ABCD'[s.answerIndex]);
      expect(s.choices[s.answerIndex]).toBe(s.target.char);
      expect(ANSWER_CHARS).toContain(s.target.char);
      expect(Array.from(readGlyph(s))).toEqual(Array.from(glyphBitmap(s.target.char)));
    }
  });

  it('shrink the glyph below one pixel per font cell in the model view, and enlarge it in the crop', () => {
    for (const s of [a, c]) {
      const scale = s.modelFrame[0] / s.height;
      expect(s.target.size * scale).toBeLessThan(GLYPH_ROWS);            // the whole tile spans < 7 model pixels
      const box = modelFrameBox(s.target.box, [s.height, s.width], s.modelFrame);
      const crop = demoCropTool().crop(groundingAnswer(box), { original: s.image, modelFrame: s.modelFrame });
      expect(crop.ok).toBe(true);
      expect(crop.imageFrame).toEqual([224, 224]);                        // 64 image tokens, the model's budget
      expect(s.target.cell * crop.imageFrame[0] / crop.cropSize![0]).toBeGreaterThanOrEqual(3);  // ≥ 3 px per cell
    }
  });

  it('render a three-panel preview (scene, model view, crop)', async () => {
    const png = await renderTaskPreview(a, { panel: 256 });
    const img = await loadImage(new Uint8Array(png));
    expect([img.height, img.width]).toEqual([256 + 40 + 16, 3 * 256 + 32]);
    await expect(renderTaskPreview(a, { panel: 20 })).rejects.toThrow(/panel must be an integer in \[128, 2048\]/);
  });

  it('keep the tile the only yellow thing (clutter and other tiles avoid its colors)', () => {
    for (const s of [a, c]) {
      const [x1, y1, x2, y2] = s.target.box;
      let inside = 0, outside = 0;
      for (let y = 0; y < s.height; y++) {
        for (let x = 0; x < s.width; x++) {
          if (!isTileYellow(px(s.image, x, y))) continue;
          if (x >= x1 && x < x2 && y >= y1 && y < y2) inside++; else outside++;
        }
      }
      expect(inside).toBeGreaterThan(s.target.size * s.target.size / 3);
      expect(outside).toBe(0);
      expect(s.distractors.length).toBeGreaterThan(0);
    }
  });

  it('reject bad options with the field and the expected range', async () => {
    await expect(generateScene(-1)).rejects.toThrow(/seed must be a non-negative safe integer/);
    expect(() => sceneSpec(1, { width: 1000 })).toThrow(/width must be an integer in \[1536, 8192\]/);
    expect(() => sceneSpec(1, { tileSizeRange: [29, 34] })).toThrow(/no tile size in \[29, 34\] is a multiple of 7/);
    expect(() => sceneSpec(1, { numChoices: 1 })).toThrow(/numChoices must be an integer in \[2, /);
    expect(() => sceneSpec(1, { modelMinPixels: 9e4, modelMaxPixels: 5e4 })).toThrow(/modelMinPixels <= modelMaxPixels/);
    expect(() => sceneSpec(1, { shapes: -3 })).toThrow(/shapes must be an integer/);
  });
});

describe('color-detail scenes', () => {
  it('put a mark of the answer color at the tile center; options are the fixed color list', async () => {
    for (const seed of [3, 4, 5, 6]) {
      const sc = await generateScene(seed, { detail: 'color', shapes: 40, texts: 10 });
      expect(sc.question).toBe(DEMO_COLOR_QUESTION);
      expect(sc.choices).toEqual(MARK_COLORS.map((c) => c.name));
      const want = MARK_COLORS[sc.answerIndex];
      expect(sc.answer).toBe('ABCD'[sc.answerIndex]);
      expect(sc.target.char).toBe(want.name);
      const [x1, y1] = sc.target.box, size = sc.target.size, m = markSize(size);
      const px = (x: number, y: number) => { const o = (y * sc.width + x) * 3; return [sc.image.data[o], sc.image.data[o + 1], sc.image.data[o + 2]]; };
      const hex = (h: string) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
      const c = x1 + Math.floor(size / 2), r = y1 + Math.floor(size / 2);
      expect(px(c, r)).toEqual(hex(want.hex));
      // Outside the mark but inside the tile: the tile's yellow.
      expect(px(x1 + 3, y1 + 3)).toEqual(hex('#ffd200'));
      expect(m).toBeGreaterThanOrEqual(4);
    }
    expect(() => sceneSpec(1, { detail: 'shape' as never })).toThrow(/detail must be 'char' or 'color'/);
  });

  it('scale the mark with markFraction, and reject fractions outside [0.05, 0.6]', async () => {
    const sc = await generateScene(7, { detail: 'color', shapes: 0, texts: 0, distractorTiles: 0, tileSizeRange: [35, 35], markFraction: 0.4 });
    const want = MARK_COLORS[sc.answerIndex].hex;
    const hex = (h: string) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
    let marked = 0;
    for (let p = 0; p < sc.image.data.length; p += 3) {
      if ([0, 1, 2].every((k) => sc.image.data[p + k] === hex(want)[k])) marked++;
    }
    expect(markSize(35, 0.4)).toBe(14);
    expect(marked).toBe(14 * 14);
    expect(() => sceneSpec(1, { markFraction: 0.9 })).toThrow(/markFraction must be a number in \[0.05, 0.6\]/);
  });
});

describe('scene layout options', () => {
  it("'cool' palette: every clutter color has R + G - 2B <= 0 (the yellow tile is the only thing a color feature fires on)", () => {
    for (const seed of [1, 2, 3]) {
      const spec = sceneSpec(seed, { detail: 'color', palette: 'cool' });
      const fixed = new Set([TILE_FILL, '#101010', ...MARK_COLORS.map((c) => c.hex)]);
      const colors = [...spec.svg.matchAll(/(?:fill|stroke)="(#[0-9a-f]{6})"/g)].map((m) => m[1]).filter((c) => !fixed.has(c));
      expect(colors.length).toBeGreaterThan(300);
      for (const c of colors) {
        const [r, g, b] = [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
        expect(r + g - 2 * b, c).toBeLessThanOrEqual(2);   // 2: HSL -> 8-bit rounding
      }
    }
    expect(() => sceneSpec(1, { palette: 'warm' as never })).toThrow(/palette must be 'any' or 'cool'/);
  });

  it("'map' background: one flat color per 28-px model cell, red by column, green by row (a position cue, within the cool palette)", async () => {
    const sc = await generateScene(5, { palette: 'cool', background: 'map', shapes: 0, texts: 0, distractorTiles: 0 });
    expect(sc.modelFrame).toEqual([224, 224]);
    const px = (x: number, y: number) => { const o = (y * sc.width + x) * 3; return [sc.image.data[o], sc.image.data[o + 1], sc.image.data[o + 2]]; };
    const [tx1, ty1, tx2, ty2] = sc.target.box;
    const onTile = (x: number, y: number) => x >= tx1 - 2 && x < tx2 + 2 && y >= ty1 - 2 && y < ty2 + 2;
    // 8 × 8 cells of 196 px: flat inside a cell, MAP_RAMP's levels from cell to cell.
    for (let j = 0; j < 8; j++) {
      for (let i = 0; i < 8; i++) {
        const want = [Math.round(MAP_RAMP.r[0] + ((MAP_RAMP.r[1] - MAP_RAMP.r[0]) * i) / 7), Math.round(MAP_RAMP.g[0] + ((MAP_RAMP.g[1] - MAP_RAMP.g[0]) * j) / 7), MAP_RAMP.b];
        for (const [dx, dy] of [[1, 1], [194, 1], [1, 194], [194, 194], [97, 97]]) {
          const x = 196 * i + dx, y = 196 * j + dy;
          if (onTile(x, y)) continue;
          expect(px(x, y), `cell (${i}, ${j}) at ${x},${y}`).toEqual(want);
        }
        expect(want[0] + want[1] - 2 * want[2]).toBeLessThanOrEqual(0);
      }
    }
    expect(() => sceneSpec(1, { background: 'noise' as never })).toThrow(/background must be 'plain' or 'map'/);
  });

  it('tileInCell puts the whole tile inside one 28-px cell of the model frame (196 px of the original)', () => {
    const cells = new Set<string>();
    for (let seed = 0; seed < 40; seed++) {
      const { target } = sceneSpec(seed, { tileInCell: true, tileSizeRange: [28, 40], shapes: 0, texts: 0, distractorTiles: 0 });
      const [x1, y1, x2, y2] = target.box;
      expect(Math.floor(x1 / 196)).toBe(Math.floor((x2 - 1) / 196));
      expect(Math.floor(y1 / 196)).toBe(Math.floor((y2 - 1) / 196));
      cells.add(`${Math.floor(x1 / 196)},${Math.floor(y1 / 196)}`);
    }
    expect(cells.size).toBeGreaterThan(20);   // spread over the 8x8 cells
    expect(() => sceneSpec(1, { tileInCell: true, tileSizeRange: [196, 200] })).toThrow(/tileInCell needs .* tiles of at most 182 px/);
    expect(() => sceneSpec(1, { tileInCell: 'yes' as never })).toThrow(/tileInCell must be a boolean/);
  });
});

describe('the dataset on disk', () => {
  const dir = join(tmp, 'data');
  let res: Awaited<ReturnType<typeof writeDemoDataset>>;
  const scenes: Scene[] = [];
  beforeAll(async () => { res = await writeDemoDataset(dir, { split: 'train', n: 3, seed: 11, onItem: (_, s) => scenes.push(s) }); });
  const jsonl = (file: string) => readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

  it('writes RL rows that data/dataset.ts reads, with the hidden tile box', async () => {
    const { rows, stats } = await loadDataset(res.rows);
    expect(stats.skippedTotal).toBe(0);
    expect(rows).toHaveLength(3);
    rows.forEach((r, i) => {
      expect(r.question).toBe(DEMO_QUESTION);
      expect(r.choices).toEqual(scenes[i].choices);
      expect(r.answer).toBe(scenes[i].answer);
      expect(r.bbox).toEqual({ image: 0, box: scenes[i].target.box });
      expect(r.extra?.sceneSeed).toBe(deriveSeed(11, i));
    });
    expect(Buffer.compare(readFileSync(rows[0].images[0]), scenes[0].png)).toBe(0);
  });

  it('grounding answers are boxes in the resized frame that map back onto the tile', () => {
    const proc = new ImageProcessor({ maxPixels: 224 * 224, minPixels: 56 * 56 });
    jsonl(res.grounding).forEach((row, i) => {
      const [user, assistant] = row.messages;
      expect(user.content[0]).toEqual({ type: 'image', image: `train/train-0000${i}-scene.png` });
      expect(user.content[1]).toEqual({ type: 'text', text: DEMO_GROUNDING_TEXT });
      const parsed = parseBox(assistant.content);
      if (isParseError(parsed)) throw new Error(parsed.error);
      expect(parsed.label).toBe('tile');
      const frame = proc.targetSize(scenes[i].height, scenes[i].width);
      expect(frame).toEqual(res.modelFrame);
      const back = modelToOriginal(parsed.box, frame, [scenes[i].height, scenes[i].width]);
      back.forEach((v, k) => expect(Math.abs(v - scenes[i].target.box[k])).toBeLessThanOrEqual(1));
    });
  });

  it('answer rows pair a close-up holding the tile with the boxed letter', async () => {
    const rows = jsonl(res.answer);
    for (const [i, row] of rows.entries()) {
      const [user, assistant] = row.messages;
      expect(assistant).toEqual({ role: 'assistant', content: `\\boxed{${scenes[i].answer}}` });
      expect(user.content[1].text).toBe(fillTemplate(MGPO_TEMPLATE.turn2, { question: formatQuestion(DEMO_QUESTION, scenes[i].choices) }, 't'));
      const img = await loadImage(join(dir, user.content[0].image));
      expect([img.height, img.width]).toEqual([224, 224]);   // stored in the frame the crop tool packs it in
      let yellow = 0;
      for (let p = 0; p < img.data.length; p += 3) if (isTileYellow([img.data[p], img.data[p + 1], img.data[p + 2]])) yellow++;
      expect(yellow).toBeGreaterThan(100);                   // the tile is in the close-up
    }
  });

  it('MGPO transcripts follow the rollout templates and the crop tool', () => {
    jsonl(res.mgpo).forEach((row, i) => {
      expect(row.messages.map((m: { role: string }) => m.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant']);
      expect(row.messages[0].content).toBe(MGPO_TEMPLATE.system);
      const box = parseBox(row.messages[2].content);
      if (isParseError(box)) throw new Error(box.error);
      const crop = row.messages[3].content;
      expect(crop[0].text).toMatch(/^This is the region you selected \(\[\d+, \d+, \d+, \d+\] in original pixels\)/);
      const [x1, y1, x2, y2] = JSON.parse(crop[0].text.match(/\[[^\]]+\]/)[0]);
      const t = scenes[i].target.box;
      expect(x1 <= t[0] && y1 <= t[1] && x2 >= t[2] && y2 >= t[3]).toBe(true);
      expect(crop[1].type).toBe('image');
      expect(row.messages[4].content).toBe(boxedAnswer(scenes[i].answer));
    });
  });

  it("groundingBox 'grid': the token-grid box covering the tile; name: a second set in the same directory", async () => {
    const tiles: Scene[] = [];
    const g = await writeDemoDataset(dir, {
      split: 'train', name: 'warmup', n: 3, seed: 12, groundingBox: 'grid', onItem: (_, sc) => tiles.push(sc),
      mgpoTemplate: { ...MGPO_TEMPLATE, system: '', turn2: 'Q: {question}' },
      scene: { detail: 'color', palette: 'cool', tileInCell: true, tileSizeRange: [35, 35], shapes: 30, texts: 5 },
    });
    expect(g.grounding).toBe(join(dir, 'warmup_grounding.jsonl'));
    jsonl(g.grounding).forEach((row, i) => {
      expect(row.messages[0].content[0].image).toBe(`warmup/warmup-0000${i}-scene.png`);
      const parsed = parseBox(row.messages[1].content);
      if (isParseError(parsed)) throw new Error(parsed.error);
      const tile = modelFrameBox(tiles[i].target.box, [1568, 1568], g.modelFrame);
      expect(parsed.box).toEqual(gridBox(tile));
      expect(parsed.box[2] - parsed.box[0]).toBe(28);        // tileInCell: exactly one cell
      expect(parsed.box.every((v) => v % 28 === 0)).toBe(true);
    });
    expect(gridBox([30, 5, 60, 27])).toEqual([28, 0, 84, 28]);
    // The transcripts follow the given template; an empty system text leaves the system turn out (as rollouts do).
    for (const row of jsonl(g.mgpo)) {
      expect(row.messages.map((m: { role: string }) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
      expect(row.messages[2].content[2].text).toMatch(/^Q: /);
    }
    await expect(writeDemoDataset(dir, { split: 'test', n: 1, seed: 1, mgpoTemplate: { ...MGPO_TEMPLATE, turn1: '{nope} {question}' } })).rejects.toThrow(/turn1/);
    expect(jsonl(res.rows)).toHaveLength(3);                  // the 'train' set is untouched
    await expect(writeDemoDataset(dir, { split: 'test', n: 1, seed: 1, groundingBox: 'cell' as never })).rejects.toThrow(/groundingBox must be 'tile' or 'grid'/);
    await expect(writeDemoDataset(dir, { split: 'test', n: 1, seed: 1, name: '../x' })).rejects.toThrow(/name must be 1-64 letters/);
  });

  it('missRate: that share of close-ups is a grid cell clear of the tile, still labeled with the true letter', async () => {
    const tiles: Scene[] = [];
    const m = await writeDemoDataset(dir, {
      split: 'train', name: 'miss', n: 8, seed: 13, groundingBox: 'grid', missRate: 0.5, answerPrefix: 'Region {box}:', onItem: (_, sc) => tiles.push(sc),
      scene: { detail: 'color', palette: 'cool', tileInCell: true, tileSizeRange: [35, 35], shapes: 30, texts: 5 },
    });
    let misses = 0;
    jsonl(m.answer).forEach((row, i) => {
      const [ox1, oy1, ox2, oy2] = JSON.parse(row.messages[0].content[0].text.match(/\[[^\]]+\]/)[0]);
      const t = tiles[i].target.box;
      const holds = ox1 <= t[0] && oy1 <= t[1] && ox2 >= t[2] && oy2 >= t[3];
      const clear = ox2 <= t[0] || ox1 >= t[2] || oy2 <= t[1] || oy1 >= t[3];
      expect(holds || clear).toBe(true);                      // the tile is either whole in view or absent
      if (clear) misses++;
      expect(row.messages[1].content).toBe(boxedAnswer(tiles[i].answer));
    });
    expect(misses).toBeGreaterThan(0);
    expect(misses).toBeLessThan(8);
    await expect(writeDemoDataset(dir, { split: 'test', n: 1, seed: 1, missRate: 2 })).rejects.toThrow(/missRate must be a number in \[0, 1\]/);
  });

  it('gives train and test different scenes, and rejects bad options', async () => {
    for (let i = 0; i < 5; i++) expect(deriveSeed(1, i)).not.toBe(deriveSeed(2, i));
    await expect(writeDemoDataset(dir, { split: 'val' as 'train', n: 1, seed: 1 })).rejects.toThrow(/split must be 'train' or 'test'/);
    await expect(writeDemoDataset(dir, { split: 'test', n: 0, seed: 1 })).rejects.toThrow(/n must be an integer/);
    await expect(writeDemoDataset(dir, { split: 'test', n: 1, seed: 1.5 })).rejects.toThrow(/seed must be a non-negative safe integer/);
  });
});

describe('the tiny demo model', () => {
  const dir = join(tmp, 'model');
  let written: ReturnType<typeof writeTinyDemoModel>;
  beforeAll(() => { written = writeTinyDemoModel(dir, { seed: 3 }); });

  it('has a small tokenizer whose special ids are the config ids', async () => {
    const tok = await Qwen2Tokenizer.fromDir(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(tok.vocabSize).toBe(512);
    expect(cfg.vocab_size).toBe(512);
    for (const [name, key] of [['<|image_pad|>', 'image_token_id'], ['<|video_pad|>', 'video_token_id'],
      ['<|vision_start|>', 'vision_start_token_id'], ['<|vision_end|>', 'vision_end_token_id'], ['<|im_end|>', 'eos_token_id']] as const) {
      expect(tok.tokenToId(name)).toBe(cfg[key]);
      expect(tok.encode(name)).toEqual([cfg[key]]);
    }
    expect(tok.eosTokenId).toBe(cfg.eos_token_id);
    expect(tok.chatTemplate).toBe(QWEN_VL_CHAT_TEMPLATE);
    const fixture = JSON.parse(readFileSync(new URL('../../models/test/fixtures/tokenizer/tokenizer_config.json', import.meta.url), 'utf8'));
    expect(QWEN_VL_CHAT_TEMPLATE).toBe(fixture.chat_template);
  });

  it('round-trips every string the demo uses, and any other text', async () => {
    const tok = await Qwen2Tokenizer.fromDir(dir);
    const question = formatQuestion(DEMO_QUESTION, ['A', 'C', '7', 'W']);
    const texts = [
      ...demoCorpus(), MGPO_TEMPLATE.system, GRPO_TEMPLATE.user, question, DEFAULT_CROP_VALID_TEXT, DEFAULT_CROP_INVALID_TEXT,
      ...Object.values(CROP_FAILURE_PHRASES), groundingAnswer([0, 7, 123, 224]), '\\boxed{D}', '{"bbox_2d": [1.5, -2, 3e2, 40]}',
      'Größe 日本語 😀 tabs\tand\r\nnewlines', '0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz',
    ];
    for (const t of texts) expect(tok.decode(tok.encode(t))).toBe(t);
    // Learned merges keep the demo's prompts short.
    expect(tok.encode(MGPO_TEMPLATE.system).length).toBeLessThan(MGPO_TEMPLATE.system.length / 3);
    expect(tok.encode(groundingAnswer([12, 34, 17, 39])).length).toBeLessThan(40);
  });

  it('learns merges deterministically and says when the corpus runs out', () => {
    expect(learnMerges(['abc abd abc'], 3)).toEqual(learnMerges(['abc abd abc'], 3));
    expect(() => learnMerges(['ab'], 5)).toThrow(/allows only 1 merges, 5 asked/);
  });

  it('loads through Qwen2_5_VL.fromPretrained and the processor, and runs a forward pass on a scene', async () => {
    const proc = await Qwen2_5_VLProcessor.fromPretrained(dir);
    const model = await Qwen2_5_VL.fromPretrained(dir);
    try {
      expect(model.config.text.vocabSize).toBe(512);
      expect(model.config.imageTokenId).toBe(proc.imageTokenId);
      let n = 0;
      for (const t of model.stateDict().values()) n += t.size;
      expect(n).toBe(written.numParameters);
      const scene = await generateScene(21);
      const chat = await proc.apply([{ role: 'user', content: [{ type: 'image', image: scene.image }, { type: 'text', text: DEMO_GROUNDING_TEXT }] }],
        { addGenerationPrompt: true });
      try {
        expect(chat.imageTokenCounts).toEqual([64]);            // 224x224 → 16x16 patches → 8x8 merged tokens
        expect(chat.images!.resizedSizes).toEqual([[224, 224]]);
        const hidden = model.forward({ inputIds: chat.inputIds, images: chat.images });
        const logits = model.logits(hidden);
        expect(logits.shape).toEqual([chat.inputIds.length, 512]);
        const data = logits.data() as Float32Array;
        expect(data.every(Number.isFinite)).toBe(true);
        hidden.dispose(); logits.dispose();
      } finally {
        chat.images?.dispose();
      }
    } finally {
      model.dispose();
    }
  });

  it('is a pure function of its options, and rejects bad ones', () => {
    const again = join(tmp, 'model2');
    writeTinyDemoModel(again, { seed: 3 });
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json']) {
      expect(Buffer.compare(readFileSync(join(dir, f)), readFileSync(join(again, f)))).toBe(0);
    }
    expect(() => writeTinyDemoModel(join(tmp, 'bad'), { hidden: 60, heads: 8 })).toThrow(/hidden 60 must split into 8 heads of even size/);
    expect(() => writeTinyDemoModel(join(tmp, 'bad'), { minPixels: 9e4, maxPixels: 5e4 })).toThrow(/minPixels 90000 is above maxPixels 50000/);
    expect(() => writeTinyDemoModel(join(tmp, 'bad'), { layers: 0 })).toThrow(/layers must be a positive integer/);
    expect(() => writeTinyDemoModel(join(tmp, 'bad'), { ropeTheta: 0.5 })).toThrow(/ropeTheta must be a number > 1/);
    // A small RoPE base so the row/column sections of M-RoPE can tell image positions apart.
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).rope_theta).toBe(10);
  });
});
