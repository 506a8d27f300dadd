// A 5×7 bitmap font for the demo scenes: every character is drawn as pixel-aligned square cells
// (SVG rects with crispEdges), so what a scene shows never depends on the fonts installed on the
// machine, and a test can read a character back from the rendered pixels (sample each cell's
// center and compare with the bitmap).
// Invariant: every glyph is 7 rows of 5 cells; ANSWER_CHARS are pairwise at least
// MIN_ANSWER_DISTANCE cells apart (no O/0/Q/D, I/1/L, S/5, B/8, G/6, Z/2 look-alikes among them).

const FONT: Record<string, string> = {
  A: '.###. #...# #...# ##### #...# #...# #...#',
  B: '####. #...# #...# ####. #...# #...# ####.',
  C: '.###. #...# #.... #.... #.... #...# .###.',
  D: '####. #...# #...# #...# #...# #...# ####.',
  E: '##### #.... #.... ####. #.... #.... #####',
  F: '##### #.... #.... ####. #.... #.... #....',
  G: '.###. #...# #.... #.### #...# #...# .####',
  H: '#...# #...# #...# ##### #...# #...# #...#',
  I: '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  J: '..### ...#. ...#. ...#. ...#. #..#. .##..',
  K: '#...# #..#. #.#.. ##... #.#.. #..#. #...#',
  L: '#.... #.... #.... #.... #.... #.... #####',
  M: '#...# ##.## #.#.# #.#.# #...# #...# #...#',
  N: '#...# #...# ##..# #.#.# #..## #...# #...#',
  O: '.###. #...# #...# #...# #...# #...# .###.',
  P: '####. #...# #...# ####. #.... #.... #....',
  Q: '.###. #...# #...# #...# #.#.# #..#. .##.#',
  R: '####. #...# #...# ####. #.#.. #..#. #...#',
  S: '.#### #.... #.... .###. ....# ....# ####.',
  T: '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  U: '#...# #...# #...# #...# #...# #...# .###.',
  V: '#...# #...# #...# #...# #...# .#.#. ..#..',
  W: '#...# #...# #...# #.#.# #.#.# #.#.# .#.#.',
  X: '#...# #...# .#.#. ..#.. .#.#. #...# #...#',
  Y: '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..',
  Z: '##### ....# ...#. ..#.. .#... #.... #####',
  0: '.###. #...# #..## #.#.# ##..# #...# .###.',
  1: '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
  2: '.###. #...# ....# ...#. ..#.. .#... #####',
  3: '##### ...#. ..#.. ...#. ....# #...# .###.',
  4: '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
  5: '##### #.... ####. ....# ....# #...# .###.',
  6: '..##. .#... #.... ####. #...# #...# .###.',
  7: '##### ....# ...#. ..#.. .#... .#... .#...',
  8: '.###. #...# #...# .###. #...# #...# .###.',
  9: '.###. #...# #...# .#### ....# ...#. .##..',
};

export const GLYPH_COLS = 5;
export const GLYPH_ROWS = 7;

/** Every character the font draws (clutter text uses all of them). */
export const FONT_CHARS: readonly string[] = Object.keys(FONT).sort();

/** Characters a target tile may carry: no pair of look-alikes. */
export const ANSWER_CHARS: readonly string[] = [...'ACEFHJKLMNPRTUVWXY34679'];

/** The least number of differing cells between two ANSWER_CHARS (checked by the tests). */
export const MIN_ANSWER_DISTANCE = 3;

/** The bitmap of `ch`: 7 rows × 5 columns, row-major, 1 = ink. Throws for characters the font lacks. */
export function glyphBitmap(ch: string): Uint8Array {
  const rows = FONT[ch];
  if (rows === undefined) throw new Error(`glyphBitmap: the demo font has no glyph for ${JSON.stringify(ch)}; it draws ${FONT_CHARS.join('')}`);
  const out = new Uint8Array(GLYPH_ROWS * GLYPH_COLS);
  rows.split(' ').forEach((row, r) => { for (let c = 0; c < GLYPH_COLS; c++) out[r * GLYPH_COLS + c] = row[c] === '#' ? 1 : 0; });
  return out;
}

/** Number of cells in which two glyphs differ. */
export function glyphDistance(a: string, b: string): number {
  const x = glyphBitmap(a), y = glyphBitmap(b);
  let d = 0;
  for (let i = 0; i < x.length; i++) d += x[i] ^ y[i];
  return d;
}

/**
 * SVG path data drawing `text` with its top-left corner at integer (x, y), `cell` pixels per
 * cell and one empty column between characters (a space is a blank advance). Each ink cell is
 * one closed square sub-path.
 */
export function textPath(text: string, x: number, y: number, cell: number): string {
  if (!Number.isInteger(x) || !Number.isInteger(y) || !Number.isInteger(cell) || cell < 1) {
    throw new Error(`textPath: x, y and cell must be integers (cell >= 1), got ${x}, ${y}, ${cell}`);
  }
  const parts: string[] = [];
  [...text].forEach((ch, k) => {
    if (ch === ' ') return;   // a blank advance
    const bits = glyphBitmap(ch);
    const ox = x + k * (GLYPH_COLS + 1) * cell;
    for (let r = 0; r < GLYPH_ROWS; r++) {
      for (let c = 0; c < GLYPH_COLS; c++) {
        if (bits[r * GLYPH_COLS + c]) parts.push(`M${ox + c * cell} ${y + r * cell}h${cell}v${cell}h${-cell}z`);
      }
    }
  });
  return parts.join('');
}

/** Width in pixels of `text` drawn by textPath (no trailing gap). */
export function textWidth(text: string, cell: number): number {
  const n = [...text].length;
  return n === 0 ? 0 : (n * (GLYPH_COLS + 1) - 1) * cell;
}
