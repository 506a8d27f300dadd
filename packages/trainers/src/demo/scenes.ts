// The generated high-resolution visual-search task of `fovea demo`: a large cluttered scene
// (random shapes, colors and text fragments, drawn as one SVG and rendered by sharp) holding one
// small yellow tile with a character on it (or, detail 'color', a small colored mark); the question
// asks which character (or color), multiple choice. Optional 'map' background: each token cell of
// the model's view has its own flat color, so where a thing is can be read off its pixels.
//
// Invariants:
// - A scene is a pure function of (seed, options): same seed → identical RGB bytes and PNG.
// - The target tile is the only yellow thing: clutter colors avoid the tile's hue band
//   (TILE_HUE ± TILE_HUE_GAP for saturated colors), distractor tiles have other fills. Nothing
//   is drawn over the target tile.
// - Characters are the 5×7 bitmap font of glyphs.ts on pixel-aligned cells (no system fonts).
// - Frames: the model sees the scene smart-resized to `modelFrame` [h, w] (maxPixels budget,
//   default 224·224). When the original is an integer multiple of that frame (the default:
//   1568 = 7·224) the tile's edges and size are snapped to multiples of that scale, so its box
//   is exactly an integer box in the model frame too.
// - Boxes are [x1, y1, x2, y2] pixel edges of the original (the tile covers x1 ≤ x < x2).
import sharp from 'sharp';
import { type RgbImage, smartResize } from '@fovea/models';
import { ANSWER_CHARS, FONT_CHARS, GLYPH_COLS, GLYPH_ROWS, textPath, textWidth } from './glyphs.js';
import { Rng } from './rng.js';

export type Box = [number, number, number, number];

export interface SceneOptions {
  /** Scene size in pixels; default 1568 × 1568 (each side ≥ 1536). */
  width?: number;
  height?: number;
  /** The pixel budget of the model's view (the processor's maxPixels); default 224·224. */
  modelMaxPixels?: number;
  modelMinPixels?: number;
  /** Side of the target tile in pixels, inclusive range; default [24, 40]. */
  tileSizeRange?: [number, number];
  /** Clutter counts: random shapes, text fragments, tiles of other colors. */
  shapes?: number;
  texts?: number;
  distractorTiles?: number;
  /** Answer options per question (2..ANSWER_CHARS.length); default 4. */
  numChoices?: number;
  /** What the question asks about the target: 'char' (default), the character on the tile; or
   *  'color', the color of a small square mark at the tile's center (about a fifth of the tile's
   *  side), asked with the fixed options of MARK_COLORS. */
  detail?: 'char' | 'color';
  /** Side of the 'color' mark as a fraction of the tile's side; default 0.2 (0.05..0.6). */
  markFraction?: number;
  /** Clutter colors: 'any' (every hue outside the tile's band; default) or 'cool' (hues 170–310
   *  and grays: cyan, blue, violet, magenta — colors whose R + G − 2B ≤ 0, so the yellow tile is the
   *  only thing a per-pixel color feature fires on). */
  palette?: 'any' | 'cool';
  /** Place the target inside one merged-token cell of the model frame (28 model px = 196 original
   *  px at the default scale), so the cell's box always contains the whole tile. Default false. */
  tileInCell?: boolean;
  /** Background: 'plain' (one light tint; default) or 'map' (one flat color per 28-px cell of the
   *  model frame: red steps with the cell's column, green with its row, blue fixed — every cell's
   *  color says where it is, as sky and ground do in a photograph; within the 'cool' palette's
   *  R + G − 2B ≤ 0). The map is what lets a tiny model trained from random weights learn to write
   *  coordinates: M-RoPE alone did not teach it in minutes (benchmarks/RESULTS.md). */
  background?: 'plain' | 'map';
}

export interface SceneTarget {
  box: Box;
  char: string;
  size: number;
  /** Pixels per font cell and the glyph's top-left corner (original pixels). */
  cell: number;
  glyphOrigin: [number, number];
}

export interface Scene {
  seed: number;
  width: number;
  height: number;
  /** Decoded pixels (RGB) and the same image as PNG bytes. */
  image: RgbImage;
  png: Buffer;
  target: SceneTarget;
  /** Tiles of other colors (clutter), for inspection. */
  distractors: { box: Box; char: string; fill: string }[];
  /** [h, w] of the resized image the model sees under the modelMaxPixels budget. */
  modelFrame: [number, number];
  question: string;
  choices: string[];
  /** The correct option's letter (A, B, …) and index. */
  answer: string;
  answerIndex: number;
}

export const DEMO_SCENE_SIZE = 1568;
export const DEMO_MAX_PIXELS = 224 * 224;
export const DEMO_MIN_PIXELS = 56 * 56;
export const TILE_FILL = '#ffd200';
export const TILE_HUE = 49;
export const TILE_HUE_GAP = 40;
export const DEMO_QUESTION = 'What character is written on the small yellow tile?';
export const DEMO_COLOR_QUESTION = 'What color is the mark on the small yellow tile?';
/** The 'color' detail's marks and options, in option order (A, B, C, D). */
export const MARK_COLORS: readonly { name: string; hex: string }[] = [
  { name: 'red', hex: '#e0182d' }, { name: 'green', hex: '#0f9d3a' }, { name: 'blue', hex: '#1f4fe0' }, { name: 'black', hex: '#101010' },
];
const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const FACTOR = 28;   // patch 14 · merge 2: smart_resize's rounding unit

interface Resolved {
  width: number; height: number; maxPixels: number; minPixels: number; tileSizes: number[]; grid: number;
  shapes: number; texts: number; distractorTiles: number; numChoices: number; modelFrame: [number, number];
  detail: 'char' | 'color';
  markFraction: number; palette: 'any' | 'cool'; tileInCell: boolean; cell: number; background: 'plain' | 'map';
}

function count(v: number | undefined, dflt: number, name: string, max: number): number {
  const n = v ?? dflt;
  if (!Number.isInteger(n) || n < 0 || n > max) throw new Error(`generateScene: ${name} must be an integer in [0, ${max}], got ${v}`);
  return n;
}

/** Validates the options and derives the model frame, the snapping grid and the allowed tile sizes. */
export function resolveSceneOptions(opts: SceneOptions = {}): Resolved {
  const width = opts.width ?? DEMO_SCENE_SIZE, height = opts.height ?? DEMO_SCENE_SIZE;
  for (const [k, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v < 1536 || v > 8192) throw new Error(`generateScene: ${k} must be an integer in [1536, 8192] (a high-resolution scene), got ${v}`);
  }
  const maxPixels = opts.modelMaxPixels ?? DEMO_MAX_PIXELS, minPixels = opts.modelMinPixels ?? DEMO_MIN_PIXELS;
  if (!Number.isInteger(maxPixels) || !Number.isInteger(minPixels) || minPixels < 1 || maxPixels < minPixels) {
    throw new Error(`generateScene: need integers 1 <= modelMinPixels <= modelMaxPixels, got ${minPixels} and ${maxPixels}`);
  }
  const modelFrame = smartResize(height, width, { factor: FACTOR, minPixels, maxPixels }) as [number, number];
  const sy = height / modelFrame[0], sx = width / modelFrame[1];
  const grid = Number.isInteger(sx) && sx === sy ? sx : 1;
  const [lo, hi] = opts.tileSizeRange ?? [24, 40];
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 14 || hi < lo || hi > 200) {
    throw new Error(`generateScene: tileSizeRange must be integers [lo, hi] with 14 <= lo <= hi <= 200, got ${JSON.stringify(opts.tileSizeRange)}`);
  }
  const tileSizes: number[] = [];
  for (let s = lo; s <= hi; s++) if (s % grid === 0) tileSizes.push(s);
  if (tileSizes.length === 0) {
    throw new Error(`generateScene: no tile size in [${lo}, ${hi}] is a multiple of ${grid} (the scene-to-model scale the tile is snapped to); widen tileSizeRange`);
  }
  const numChoices = opts.numChoices ?? 4;
  if (!Number.isInteger(numChoices) || numChoices < 2 || numChoices > ANSWER_CHARS.length) {
    throw new Error(`generateScene: numChoices must be an integer in [2, ${ANSWER_CHARS.length}], got ${opts.numChoices}`);
  }
  const detail = opts.detail ?? 'char';
  if (detail !== 'char' && detail !== 'color') throw new Error(`generateScene: detail must be 'char' or 'color', got ${JSON.stringify(opts.detail)}`);
  const markFraction = opts.markFraction ?? 0.2;
  if (typeof markFraction !== 'number' || !(markFraction >= 0.05 && markFraction <= 0.6)) {
    throw new Error(`generateScene: markFraction must be a number in [0.05, 0.6], got ${opts.markFraction}`);
  }
  const palette = opts.palette ?? 'any';
  if (palette !== 'any' && palette !== 'cool') throw new Error(`generateScene: palette must be 'any' or 'cool', got ${JSON.stringify(opts.palette)}`);
  const tileInCell = opts.tileInCell ?? false;
  if (typeof tileInCell !== 'boolean') throw new Error(`generateScene: tileInCell must be a boolean, got ${JSON.stringify(opts.tileInCell)}`);
  const cell = FACTOR * grid;
  if (tileInCell && (grid === 1 || tileSizes[tileSizes.length - 1] > cell - 2 * grid)) {
    throw new Error(`generateScene: tileInCell needs a scene that is an integer multiple of the model frame and tiles of at most ${cell - 2 * grid} px (one ${FACTOR}-px cell of the model frame less a grid step on each side), got scale ${grid} and tiles up to ${tileSizes[tileSizes.length - 1]} px`);
  }
  const background = opts.background ?? 'plain';
  if (background !== 'plain' && background !== 'map') throw new Error(`generateScene: background must be 'plain' or 'map', got ${JSON.stringify(opts.background)}`);
  return {
    markFraction, palette, tileInCell, cell, background,
    detail, width, height, maxPixels, minPixels, tileSizes, grid, modelFrame, numChoices,
    shapes: count(opts.shapes, 320, 'shapes', 20000), texts: count(opts.texts, 90, 'texts', 5000),
    distractorTiles: count(opts.distractorTiles, 10, 'distractorTiles', 500),
  };
}

/** Tile geometry: border, font cell and glyph origin for a tile of side `size` at (x, y). */
export function tileLayout(x: number, y: number, size: number): { border: number; cell: number; glyphOrigin: [number, number] } {
  const border = size >= 32 ? 2 : 1;
  const cell = Math.floor((size - 2 * border - 2) / GLYPH_ROWS);
  if (cell < 1) throw new Error(`tileLayout: a ${size} px tile is too small for a ${GLYPH_COLS}x${GLYPH_ROWS} glyph`);
  return { border, cell, glyphOrigin: [x + Math.floor((size - GLYPH_COLS * cell) / 2), y + Math.floor((size - GLYPH_ROWS * cell) / 2)] };
}

function hslHex(h: number, s: number, l: number): string {
  const k = (n: number) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => Math.round(255 * (l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1))));
  return '#' + [f(0), f(8), f(4)].map((v) => v.toString(16).padStart(2, '0')).join('');
}

/** A clutter color: any hue but the tile's band (grays are always allowed). */
function clutterColor(rng: Rng, lightness: [number, number], palette: 'any' | 'cool' = 'any'): string {
  const l = rng.range(lightness[0], lightness[1]);
  if (rng.float() < 0.15) return hslHex(0, 0, l);
  if (palette === 'cool') return hslHex(rng.range(COOL_HUES[0], COOL_HUES[1]), rng.range(0.35, 0.95), l);
  let h = rng.range(0, 360 - 2 * TILE_HUE_GAP);
  if (h > TILE_HUE - TILE_HUE_GAP) h += 2 * TILE_HUE_GAP;   // skip the band around the tile's hue
  return hslHex(h % 360, rng.range(0.35, 0.95), l);
}

/** Hue range of the 'cool' palette (degrees). */
export const COOL_HUES: [number, number] = [170, 310];

const f1 = (v: number) => (Math.round(v * 10) / 10).toString();

function shapeSvg(rng: Rng, W: number, H: number, palette: 'any' | 'cool'): string {
  const size = Math.exp(rng.range(Math.log(10), Math.log(170)));
  const cx = rng.range(0, W), cy = rng.range(0, H);
  const fill = clutterColor(rng, [0.2, 0.8], palette);
  switch (rng.int(0, 5)) {
    case 0: return `<rect x="${f1(cx - size / 2)}" y="${f1(cy - size * 0.35)}" width="${f1(size)}" height="${f1(size * rng.range(0.3, 1.2))}" fill="${fill}"/>`;
    case 1: return `<circle cx="${f1(cx)}" cy="${f1(cy)}" r="${f1(size / 2)}" fill="${fill}"/>`;
    case 2: return `<ellipse cx="${f1(cx)}" cy="${f1(cy)}" rx="${f1(size / 2)}" ry="${f1(size * rng.range(0.15, 0.45))}" transform="rotate(${f1(rng.range(0, 180))} ${f1(cx)} ${f1(cy)})" fill="${fill}"/>`;
    case 3: {
      const pts = [0, 1, 2].map(() => `${f1(cx + rng.range(-size, size) / 2)},${f1(cy + rng.range(-size, size) / 2)}`).join(' ');
      return `<polygon points="${pts}" fill="${fill}"/>`;
    }
    case 4: {
      const a = rng.range(0, Math.PI);
      return `<line x1="${f1(cx - Math.cos(a) * size)}" y1="${f1(cy - Math.sin(a) * size)}" x2="${f1(cx + Math.cos(a) * size)}" y2="${f1(cy + Math.sin(a) * size)}" stroke="${fill}" stroke-width="${f1(rng.range(1.5, 6))}"/>`;
    }
    default: return `<circle cx="${f1(cx)}" cy="${f1(cy)}" r="${f1(size / 2)}" fill="none" stroke="${fill}" stroke-width="${f1(rng.range(2, 8))}"/>`;
  }
}

function textSvg(rng: Rng, W: number, H: number, palette: 'any' | 'cool'): string {
  const cell = rng.int(2, 6);
  const text = Array.from({ length: rng.int(2, 7) }, () => rng.pick(FONT_CHARS)).join('');
  const w = textWidth(text, cell), h = GLYPH_ROWS * cell;
  const x = rng.int(0, W - w - 1), y = rng.int(0, H - h - 1);
  return `<path d="${textPath(text, x, y, cell)}" fill="${clutterColor(rng, [0.05, 0.45], palette)}" shape-rendering="crispEdges"/>`;
}

/** Side of the 'color' detail's mark: `fraction` of the tile (default a fifth: 6–8 px for 28–40 px tiles). */
export const markSize = (size: number, fraction = 0.2) => Math.max(4, Math.round(size * fraction));

function tileSvg(x: number, y: number, size: number, char: string, fill: string, mark?: string, markFraction = 0.2): string {
  const { border, cell, glyphOrigin } = tileLayout(x, y, size);
  const inner = mark === undefined
    ? `<path d="${textPath(char, glyphOrigin[0], glyphOrigin[1], cell)}" fill="#101010"/>`
    : (() => { const m = markSize(size, markFraction), o = Math.floor((size - m) / 2); return `<rect x="${x + o}" y="${y + o}" width="${m}" height="${m}" fill="${mark}"/>`; })();
  return `<g shape-rendering="crispEdges"><rect x="${x}" y="${y}" width="${size}" height="${size}" fill="#101010"/>` +
    `<rect x="${x + border}" y="${y + border}" width="${size - 2 * border}" height="${size - 2 * border}" fill="${fill}"/>` +
    inner + '</g>';
}

/** The 'map' background's channel levels: red steps with the cell's column, green with its row. */
export const MAP_RAMP = { r: [30, 220], g: [30, 220], b: 240 } as const;

/** The 'map' background: one flat color per cell of the model frame's 28-px token grid (scaled to
 *  the original: `nx` × `ny` cells), red by column, green by row, blue fixed. */
function mapSvg(W: number, H: number, nx: number, ny: number): string {
  const { r, g, b } = MAP_RAMP;
  const hex = (v: number) => Math.round(v).toString(16).padStart(2, '0');
  const level = (lo: number, hi: number, i: number, n: number) => (n === 1 ? lo : lo + ((hi - lo) * i) / (n - 1));
  const parts: string[] = ['<g shape-rendering="crispEdges">'];
  for (let j = 0; j < ny; j++) {
    const y0 = Math.round((j * H) / ny), y1 = Math.round(((j + 1) * H) / ny);
    for (let i = 0; i < nx; i++) {
      const x0 = Math.round((i * W) / nx), x1 = Math.round(((i + 1) * W) / nx);
      parts.push(`<rect x="${x0}" y="${y0}" width="${x1 - x0}" height="${y1 - y0}" fill="#${hex(level(r[0], r[1], i, nx))}${hex(level(g[0], g[1], j, ny))}${hex(b)}"/>`);
    }
  }
  parts.push('</g>');
  return parts.join('');
}

/** Whether boxes `a` and `b` (half-open pixel edges) overlap or come within `margin` px of each other. */
export const overlaps = (a: Box, b: Box, margin: number) =>
  a[0] < b[2] + margin && b[0] < a[2] + margin && a[1] < b[3] + margin && b[1] < a[3] + margin;

/** Draws the scene's SVG and its labels (no rendering; see generateScene). */
export function sceneSpec(seed: number, opts: SceneOptions = {}): Omit<Scene, 'image' | 'png'> & { svg: string } {
  const o = resolveSceneOptions(opts);
  const rng = new Rng(seed);
  const { width: W, height: H, grid } = o;
  const bgHue = o.palette === 'cool' ? rng.range(COOL_HUES[0], COOL_HUES[1]) : rng.range(TILE_HUE + TILE_HUE_GAP, 360 + TILE_HUE - TILE_HUE_GAP) % 360;
  const bg = hslHex(bgHue, rng.range(0, 0.2), rng.range(0.82, 0.95));

  // The question first, so the distractor tiles can carry the other options.
  const char = rng.pick(ANSWER_CHARS);
  const others = rng.shuffled(ANSWER_CHARS.filter((c) => c !== char)).slice(0, o.numChoices - 1);
  const colorMode = o.detail === 'color';
  const markIndex = colorMode ? rng.int(0, MARK_COLORS.length - 1) : -1;
  const choices = colorMode ? MARK_COLORS.map((c) => c.name) : rng.shuffled([char, ...others]);
  const answerIndex = colorMode ? markIndex : choices.indexOf(char);

  const size = rng.pick(o.tileSizes);
  const margin = Math.max(16, grid);
  const snap = (lo: number, hi: number) => grid * rng.int(Math.ceil(lo / grid), Math.floor(hi / grid));
  // tileInCell: pick a model-frame cell, then a snapped spot inside it at least one grid step from its edges.
  const inCell = (span: number) => o.cell * rng.int(0, Math.floor(span / o.cell) - 1) + snap(grid, o.cell - size - grid);
  const tx = o.tileInCell ? inCell(W) : snap(margin, W - margin - size), ty = o.tileInCell ? inCell(H) : snap(margin, H - margin - size);
  const box: Box = [tx, ty, tx + size, ty + size];
  const layout = tileLayout(tx, ty, size);

  const parts: string[] = [o.background === 'map' ? mapSvg(W, H, o.modelFrame[1] / FACTOR, o.modelFrame[0] / FACTOR) : `<rect width="${W}" height="${H}" fill="${bg}"/>`];
  for (let i = 0; i < o.shapes; i++) parts.push(shapeSvg(rng, W, H, o.palette));
  for (let i = 0; i < o.texts; i++) parts.push(textSvg(rng, W, H, o.palette));
  const distractors: Scene['distractors'] = [];
  for (let i = 0; i < o.distractorTiles; i++) {
    const s = rng.pick(o.tileSizes);
    const dChar = i < others.length ? others[i] : rng.pick(ANSWER_CHARS);
    const fill = clutterColor(rng, [0.55, 0.85], o.palette);
    for (let attempt = 0; attempt < 50; attempt++) {
      const x = rng.int(4, W - s - 4), y = rng.int(4, H - s - 4);
      const b: Box = [x, y, x + s, y + s];
      if (overlaps(b, box, 3 * size) || distractors.some((d) => overlaps(b, d.box, 4))) continue;
      distractors.push({ box: b, char: dChar, fill });
      parts.push(tileSvg(x, y, s, dChar, fill, colorMode ? rng.pick(MARK_COLORS).hex : undefined, o.markFraction));
      break;
    }
  }
  parts.push(tileSvg(tx, ty, size, char, TILE_FILL, colorMode ? MARK_COLORS[markIndex].hex : undefined, o.markFraction));   // last: nothing covers the target
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${parts.join('')}</svg>`;
  return {
    seed, width: W, height: H, svg, distractors, modelFrame: o.modelFrame,
    target: { box, char: colorMode ? MARK_COLORS[markIndex].name : char, size, cell: layout.cell, glyphOrigin: layout.glyphOrigin },
    question: colorMode ? DEMO_COLOR_QUESTION : DEMO_QUESTION, choices, answer: LETTERS[answerIndex], answerIndex,
  };
}

/** Renders the scene of `seed` (see the file comment for what it holds and guarantees). */
export async function generateScene(seed: number, opts: SceneOptions = {}): Promise<Scene> {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`generateScene: seed must be a non-negative safe integer, got ${seed}`);
  const { svg, ...spec } = sceneSpec(seed, opts);
  let raw: Buffer;
  try {
    raw = await sharp(Buffer.from(svg), { limitInputPixels: false }).removeAlpha().toColourspace('srgb').raw().toBuffer();
  } catch (err) {
    throw new Error(`generateScene: sharp could not render the scene SVG of seed ${seed}: ${(err as Error).message}`);
  }
  if (raw.byteLength !== spec.width * spec.height * 3) {
    throw new Error(`generateScene: sharp rendered ${raw.byteLength} bytes, expected ${spec.width}x${spec.height}x3`);
  }
  const data = new Uint8Array(raw.byteLength);
  data.set(raw);
  const png = await encodePng({ data, height: spec.height, width: spec.width, channels: 3 });
  return { ...spec, image: { data, height: spec.height, width: spec.width, channels: 3 }, png };
}

/** PNG bytes of an RGB image (deterministic: fixed compression settings). */
export async function encodePng(img: RgbImage): Promise<Buffer> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .png({ compressionLevel: 3, adaptiveFiltering: false, palette: false }).toBuffer();
}
