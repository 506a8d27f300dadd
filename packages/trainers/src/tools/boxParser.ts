// Parsing the box a grounding model writes. Qwen2.5-VL answers grounding prompts with a
// fenced JSON block, ```json\n[{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}]\n```, and
// sometimes with a bare `[x1, y1, x2, y2]`. The model's text is untrusted: it may be huge,
// truncated, nested junk, hold NaN/Infinity, several boxes, or lists of the wrong length.
// Every path here runs in time linear in the text (indexOf scans and one hand-written list
// scanner that never backtracks; JSON.parse only on the extracted region) and returns a
// reason instead of throwing.
//
// Order of attempts (the first that finds a box-shaped thing decides):
//   1. region = the body of the first ```json fence (an unclosed fence runs to the end), or the
//      whole text when there is none;
//   2. strict JSON of the region: an object or a list of objects with "bbox_2d" → the first
//      entry whose bbox_2d is four finite numbers wins (as MGPO's code: first valid item);
//      `count` is the number of entries carrying bbox_2d. A top-level [n, n, n, n] is 'bare';
//   3. lenient scan (invalid JSON: trailing commas, truncation, objects not in a list): each
//      `bbox_2d` key followed by a [ … ] number list, first valid one wins;
//   4. bare form: the first [ … ] holding exactly four numbers anywhere in the region.
// Numbers follow JSON's grammar (so 1e2 is accepted as 100; NaN, Infinity and 0x10 are not
// numbers); values must be finite. Signs and bounds are NOT judged here: a negative or
// out-of-image box parses fine and is rejected (or clamped) by validation in crop.ts.

/** [x1, y1, x2, y2]: left, top, right, bottom. */
export type Box = [number, number, number, number];

export interface ParsedBox {
  box: Box;
  /** 'json': from a bbox_2d key; 'bare': a plain [x1, y1, x2, y2] list. */
  source: 'json' | 'bare';
  label?: string;
  /** How many boxes the text offered (entries with bbox_2d, or bare 4-number lists). */
  count: number;
}

export interface BoxParseError {
  error: string;
}

export type BoxParseResult = ParsedBox | BoxParseError;

export interface ParseBoxOptions {
  /** Texts longer than this are refused (default 4 Mi characters). */
  maxChars?: number;
}

export const DEFAULT_MAX_BOX_TEXT_CHARS = 1 << 22;

export function isParseError(r: BoxParseResult): r is BoxParseError {
  return 'error' in r;
}

/** Finds the model's box in its text. Never throws; see the file comment for the rules. */
export function parseBox(text: string, opts: ParseBoxOptions = {}): BoxParseResult {
  if (typeof text !== 'string') return { error: `parseBox: expected the model's text as a string, got ${text === null ? 'null' : typeof text}` };
  const maxChars = opts.maxChars ?? DEFAULT_MAX_BOX_TEXT_CHARS;
  if (text.length > maxChars) {
    return { error: `parseBox: text of ${text.length} characters is longer than the limit of ${maxChars}` };
  }
  const region = jsonFenceBody(text) ?? text;
  return strictJson(region) ?? lenientBboxKeys(region) ?? bareList(region) ??
    { error: 'no box found: expected a ```json block with "bbox_2d": [x1, y1, x2, y2] or a bare [x1, y1, x2, y2] list' };
}

/** Body of the first ```json fence (case-insensitive tag), or null. Unclosed → to the end. */
function jsonFenceBody(text: string): string | null {
  for (let i = text.indexOf('```'); i >= 0; i = text.indexOf('```', i + 3)) {
    if (text.slice(i + 3, i + 7).toLowerCase() === 'json') {
      const start = i + 7;
      const end = text.indexOf('```', start);
      return text.slice(start, end < 0 ? text.length : end);
    }
  }
  return null;
}

/** Why `v` is not four finite numbers, or null when it is. */
function boxProblem(v: unknown): string | null {
  if (!Array.isArray(v)) return `bbox_2d is ${v === null ? 'null' : typeof v}, expected a list [x1, y1, x2, y2]`;
  if (v.length !== 4) return `bbox_2d holds ${v.length} values, expected 4 [x1, y1, x2, y2]`;
  for (let i = 0; i < 4; i++) {
    if (typeof v[i] !== 'number' || !Number.isFinite(v[i])) return `bbox_2d value ${i} (${String(v[i]).slice(0, 32)}) is not a finite number`;
  }
  return null;
}

function strictJson(region: string): BoxParseResult | null {
  const t = region.trim();
  if (!(t.startsWith('[') || t.startsWith('{'))) return null;
  let v: unknown;
  try {
    v = JSON.parse(t);
  } catch {
    return null; // not JSON (or nested beyond the parser's stack): the lenient scans decide
  }
  if (Array.isArray(v) && v.length === 4 && v.every((x) => typeof x === 'number')) {
    const why = boxProblem(v);
    return why ? { error: why } : { box: v.slice() as Box, source: 'bare', count: 1 };
  }
  const entries = Array.isArray(v) ? v : [v];
  const withBox = entries.filter((e): e is Record<string, unknown> =>
    typeof e === 'object' && e !== null && !Array.isArray(e) && 'bbox_2d' in e);
  if (withBox.length === 0) return null;
  for (const e of withBox) {
    if (boxProblem(e.bbox_2d) === null) {
      const out: ParsedBox = { box: (e.bbox_2d as number[]).slice() as Box, source: 'json', count: withBox.length };
      if (typeof e.label === 'string') out.label = e.label;
      return out;
    }
  }
  return { error: `no valid box among ${withBox.length} bbox_2d entr${withBox.length === 1 ? 'y' : 'ies'}: first: ${boxProblem(withBox[0].bbox_2d)}` };
}

interface ListScan {
  /** The first four numbers (the rest are only counted). */
  nums: number[];
  count: number;
  /** Index just past the closing ']' on success, or of the offending character on failure. */
  end: number;
  ok: boolean;
}

const isDigit = (c: number) => c >= 48 && c <= 57;
const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13;

/** Index just past a JSON number starting at p, or -1. Consumes each character once. */
function scanNumber(s: string, p: number): number {
  let q = p;
  if (s.charCodeAt(q) === 45 /* - */) q++;
  const intStart = q;
  while (isDigit(s.charCodeAt(q))) q++;
  let digits = q - intStart;
  if (s.charCodeAt(q) === 46 /* . */) {
    const f = ++q;
    while (isDigit(s.charCodeAt(q))) q++;
    digits += q - f;
  }
  if (digits === 0) return -1;
  const e = s.charCodeAt(q);
  if (e === 101 || e === 69 /* e E */) {
    let r = q + 1;
    const sign = s.charCodeAt(r);
    if (sign === 43 || sign === 45) r++;
    const expStart = r;
    while (isDigit(s.charCodeAt(r))) r++;
    if (r > expStart) q = r; // "3e" without digits: the number ends before the 'e'
  }
  return q;
}

/** Scans `[ n, n, ... ]` starting at s[p] === '['. Never moves backwards. */
function scanList(s: string, p: number): ListScan {
  const nums: number[] = [];
  let count = 0;
  let q = p + 1;
  while (isSpace(s.charCodeAt(q))) q++;
  if (s.charCodeAt(q) === 93 /* ] */) return { nums, count, end: q + 1, ok: true };
  for (;;) {
    while (isSpace(s.charCodeAt(q))) q++;
    const e = scanNumber(s, q);
    if (e < 0) return { nums, count, end: q, ok: false };
    if (count < 4) nums.push(Number(s.slice(q, e)));
    count++;
    q = e;
    while (isSpace(s.charCodeAt(q))) q++;
    const c = s.charCodeAt(q);
    if (c === 93) return { nums, count, end: q + 1, ok: true };
    if (c !== 44 /* , */) return { nums, count, end: q, ok: false };
    q++;
  }
}

function listProblem(l: ListScan): string | null {
  if (!l.ok) return 'bbox_2d is not a list of numbers';
  if (l.count !== 4) return `bbox_2d holds ${l.count} values, expected 4 [x1, y1, x2, y2]`;
  const bad = l.nums.findIndex((x) => !Number.isFinite(x));
  return bad >= 0 ? `bbox_2d value ${bad} is not a finite number` : null;
}

const LABEL_AFTER = /^\s*,\s*["']label["']\s*:\s*"((?:[^"\\\n]|\\.){0,256})"/;

function lenientBboxKeys(region: string): BoxParseResult | null {
  let firstProblem: string | null = null;
  let found = 0;
  let best: ParsedBox | null = null;
  for (let i = region.indexOf('bbox_2d'); i >= 0; i = region.indexOf('bbox_2d', i + 7)) {
    found++;
    if (best) continue; // keep counting
    let q = i + 7;
    const quote = region.charCodeAt(q);
    if (quote === 34 || quote === 39) q++;
    while (isSpace(region.charCodeAt(q))) q++;
    if (region.charCodeAt(q) === 58 /* : */) q++;
    while (isSpace(region.charCodeAt(q))) q++;
    if (region.charCodeAt(q) !== 91 /* [ */) {
      firstProblem ??= 'bbox_2d is not followed by a list [x1, y1, x2, y2]';
      continue;
    }
    const l = scanList(region, q);
    const why = listProblem(l);
    if (why) {
      firstProblem ??= why;
      continue;
    }
    best = { box: l.nums.slice() as Box, source: 'json', count: 0 };
    // Bounded look-ahead for the label that usually follows the box.
    const m = LABEL_AFTER.exec(region.slice(l.end, l.end + 300));
    if (m) {
      try { best.label = JSON.parse(`"${m[1]}"`); } catch { /* undecodable escape: no label */ }
    }
  }
  if (best) return { ...best, count: found };
  return found > 0 ? { error: `no valid box among ${found} bbox_2d entr${found === 1 ? 'y' : 'ies'}: first: ${firstProblem}` } : null;
}

function bareList(region: string): BoxParseResult | null {
  let first: ListScan | null = null;
  let count = 0;
  for (let i = region.indexOf('['); i >= 0; ) {
    const l = scanList(region, i);
    if (l.ok && l.count === 4) {
      count++;
      first ??= l;
    }
    // Resume at the offending character (it may itself be a '['), or past the list.
    i = region.indexOf('[', l.end);
  }
  if (!first) return null;
  const bad = first.nums.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) return { error: `box value ${bad} is not a finite number` };
  return { box: first.nums.slice() as Box, source: 'bare', count };
}
