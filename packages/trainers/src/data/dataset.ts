// Training data: a streaming, validating JSONL reader, deterministic per-epoch shuffling and a
// resumable position for checkpoints.
//
// Row format, one JSON object per line (blank lines are ignored):
//   { "id": string | number,             numbers are stringified
//     "images": string[],                 ≥ 1 path, relative to the JSONL file's directory
//     "question": string,
//     "choices"?: string[],               multiple choice (≥ 1 entry)
//     "answer": string | number,          numbers are stringified
//     "bbox"?: { "box": [x1, y1, x2, y2], "image": i }   pixels of images[i] (original file), x1 < x2, y1 < y2
//     "dataSource"?: string }
// Other keys are kept, untouched, in `extra`.
//
// Invariant: a bad row never throws. It is reported (file:line, reason, detail) through
// `onBadRow`, collected (first `maxReported`) in `stats.reported`, counted per reason in
// `stats.skipped`, and skipped. Only an unreadable dataset *file* throws.
//
// Image paths cannot leave the dataset directory (the JSONL file's directory) unless
// `allowOutside: true`: absolute paths, `..` segments that climb out, and symlinks whose real
// target lies outside are all rejected as 'path_escape'. The check runs on the lexical path first
// and then on the realpath (so a symlink inside the directory pointing out is caught too).
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';

export type SkipReason = 'invalid_json' | 'invalid_field' | 'missing_image' | 'path_escape';
export const SKIP_REASONS: readonly SkipReason[] = ['invalid_json', 'invalid_field', 'missing_image', 'path_escape'];

export interface BBoxRef { box: [number, number, number, number]; image: number }

/** A validated row. `images` are absolute paths (resolved against the dataset directory). */
export interface DataRow {
  id: string;
  images: string[];
  question: string;
  choices?: string[];
  answer: string;
  bbox?: BBoxRef;
  dataSource?: string;
  extra?: Record<string, unknown>;
  source: { file: string; line: number };
}

export interface BadRow { file: string; line: number; reason: SkipReason; message: string }

export interface DatasetStats {
  lines: number;                           // non-blank lines seen
  rows: number;                            // rows yielded
  skipped: Record<SkipReason, number>;
  skippedTotal: number;
  reported: BadRow[];                      // the first maxReported bad rows
}

export interface ReadOptions {
  allowOutside?: boolean;       // false: images must stay inside the dataset directory
  checkImages?: boolean;        // true: each image must exist and be a regular file
  onBadRow?: (bad: BadRow) => void;
  maxReported?: number;         // 100
  stats?: DatasetStats;         // pass one to read the counts while (or after) iterating
}

export function emptyStats(): DatasetStats {
  return { lines: 0, rows: 0, skipped: { invalid_json: 0, invalid_field: 0, missing_image: 0, path_escape: 0 }, skippedTotal: 0, reported: [] };
}

/** "file:line: reason: detail" — the one-line form used in logs. */
export function formatBadRow(b: BadRow): string { return `${b.file}:${b.line}: ${b.reason}: ${b.message}`; }

export type Check<T> = { ok: true; value: T } | { ok: false; reason: SkipReason; message: string };
const fail = (reason: SkipReason, message: string): { ok: false; reason: SkipReason; message: string } => ({ ok: false, reason, message });

const KNOWN = new Set(['id', 'images', 'question', 'choices', 'answer', 'bbox', 'dataSource']);

function typeName(v: unknown): string { return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v; }

/** Field validation only (no file system): the shape of a row. */
export function validateRowFields(raw: unknown): Check<Omit<DataRow, 'source'>> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail('invalid_field', `row must be a JSON object, got ${typeName(raw)}`);
  const r = raw as Record<string, unknown>;
  const bad = (field: string, want: string) => fail('invalid_field', `"${field}" must be ${want}, got ${field in r ? typeName(r[field]) : 'nothing (missing)'}`);
  let id: string;
  if (typeof r.id === 'string' && r.id.length > 0) id = r.id;
  else if (typeof r.id === 'number' && Number.isFinite(r.id)) id = String(r.id);
  else return bad('id', 'a non-empty string or a number');
  if (!Array.isArray(r.images) || r.images.length === 0) return bad('images', 'a non-empty array of paths');
  for (let i = 0; i < r.images.length; i++) {
    const p = r.images[i];
    if (typeof p !== 'string' || p.length === 0 || p.includes('\0')) return fail('invalid_field', `"images[${i}]" must be a non-empty path string, got ${typeName(p)}`);
  }
  if (typeof r.question !== 'string') return bad('question', 'a string');
  let answer: string;
  if (typeof r.answer === 'string') answer = r.answer;
  else if (typeof r.answer === 'number' && Number.isFinite(r.answer)) answer = String(r.answer);
  else return bad('answer', 'a string or a number');
  const out: Omit<DataRow, 'source'> = { id, images: r.images as string[], question: r.question, answer };
  if (r.choices !== undefined) {
    if (!Array.isArray(r.choices) || r.choices.length === 0 || r.choices.some((c) => typeof c !== 'string')) return bad('choices', 'a non-empty array of strings');
    out.choices = r.choices as string[];
  }
  if (r.bbox !== undefined) {
    const b = r.bbox as Record<string, unknown>;
    if (typeof b !== 'object' || b === null || Array.isArray(b)) return bad('bbox', 'an object {box: [x1, y1, x2, y2], image: index}');
    const box = b.box;
    if (!Array.isArray(box) || box.length !== 4 || box.some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
      return fail('invalid_field', `"bbox.box" must be 4 finite numbers [x1, y1, x2, y2], got ${JSON.stringify(box)}`);
    }
    const [x1, y1, x2, y2] = box as number[];
    if (!(x1 >= 0 && y1 >= 0 && x1 < x2 && y1 < y2)) return fail('invalid_field', `"bbox.box" ${JSON.stringify(box)} must satisfy 0 <= x1 < x2 and 0 <= y1 < y2`);
    const img = b.image ?? 0;
    if (typeof img !== 'number' || !Number.isInteger(img) || img < 0 || img >= r.images.length) {
      return fail('invalid_field', `"bbox.image" must be an integer index into images [0, ${r.images.length}), got ${JSON.stringify(b.image)}`);
    }
    out.bbox = { box: [x1, y1, x2, y2], image: img };
  }
  if (r.dataSource !== undefined) {
    if (typeof r.dataSource !== 'string') return bad('dataSource', 'a string');
    out.dataSource = r.dataSource;
  }
  const extraKeys = Object.keys(r).filter((k) => !KNOWN.has(k));
  if (extraKeys.length) out.extra = Object.fromEntries(extraKeys.map((k) => [k, r[k]]));
  return { ok: true, value: out };
}

/** True when `child` is `dir` itself or lies below it (both absolute, normalized). */
function isInside(dir: string, child: string): boolean {
  const rel = path.relative(dir, child);
  return rel === '' || (rel !== '..' && !rel.startsWith('..' + path.sep) && !path.isAbsolute(rel));
}

/** Context for resolving image paths of one dataset directory. */
export interface PathContext { dir: string; realDir: string; allowOutside: boolean; checkImages: boolean }

export async function makePathContext(dir: string, opts: { allowOutside?: boolean; checkImages?: boolean } = {}): Promise<PathContext> {
  const abs = path.resolve(dir);
  let realDir = abs;
  try { realDir = await fsp.realpath(abs); } catch { /* the dir of an opened file exists; keep abs */ }
  return { dir: abs, realDir, allowOutside: opts.allowOutside ?? false, checkImages: opts.checkImages ?? true };
}

/** Resolves one image path under the dataset rules (see the file comment). */
export async function resolveImagePath(p: string, ctx: PathContext): Promise<Check<string>> {
  const absolute = path.isAbsolute(p) || path.win32.isAbsolute(p);
  if (!ctx.allowOutside && absolute) return fail('path_escape', `image path "${p}" is absolute; paths must be relative to the dataset directory (or set allowOutside: true)`);
  const resolved = path.resolve(ctx.dir, p);
  if (!ctx.allowOutside && !isInside(ctx.dir, resolved)) return fail('path_escape', `image path "${p}" leaves the dataset directory ${ctx.dir} (or set allowOutside: true)`);
  if (!ctx.checkImages && ctx.allowOutside) return { ok: true, value: resolved };
  let real: string;
  try { real = await fsp.realpath(resolved); } catch (e) {
    if (!ctx.checkImages) return { ok: true, value: resolved };
    return fail('missing_image', `image "${p}" not found (${resolved}): ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if (!ctx.allowOutside && !isInside(ctx.realDir, real)) return fail('path_escape', `image path "${p}" is a symlink to ${real}, outside the dataset directory ${ctx.realDir} (or set allowOutside: true)`);
  if (ctx.checkImages) {
    const st = await fsp.stat(real).catch(() => null);
    if (!st || !st.isFile()) return fail('missing_image', `image "${p}" (${resolved}) is not a regular file`);
  }
  return { ok: true, value: resolved };
}

/** Validates one parsed row against the fields and the file system. */
export async function validateRow(raw: unknown, ctx: PathContext, source: { file: string; line: number }): Promise<Check<DataRow>> {
  const f = validateRowFields(raw);
  if (!f.ok) return f;
  const images: string[] = [];
  for (const p of f.value.images) {
    const r = await resolveImagePath(p, ctx);
    if (!r.ok) return r;
    images.push(r.value);
  }
  return { ok: true, value: { ...f.value, images, source } };
}

/** Non-blank lines of a text file with their 1-based line numbers, streamed (any file size). */
export async function* readLines(file: string): AsyncGenerator<{ line: number; text: string }> {
  const stream = createReadStream(file, { encoding: 'utf8' });
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  let n = 0;
  try {
    for await (let text of rl) {
      n++;
      if (n === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);  // UTF-8 BOM
      if (text.trim() === '') continue;
      yield { line: n, text };
    }
  } finally { rl.close(); stream.destroy(); }
}

/** Records a bad row in the stats and hands it to the callback. */
export function reportBadRow(stats: DatasetStats, bad: BadRow, opts: { onBadRow?: (b: BadRow) => void; maxReported?: number }): void {
  stats.skipped[bad.reason]++;
  stats.skippedTotal++;
  if (stats.reported.length < (opts.maxReported ?? 100)) stats.reported.push(bad);
  opts.onBadRow?.(bad);
}

/**
 * Streams the rows of a JSONL file that `validate` accepts, line by line (constant memory). Bad
 * rows are reported and skipped; the file itself must be readable (else this throws, naming the
 * file and `who` asked). Shared by the RL rows (readRows) and the SFT conversations (readSftRows).
 */
export async function* readValidatedJsonl<T>(
  file: string, validate: (raw: unknown, ctx: PathContext, source: { file: string; line: number }) => Promise<Check<T>>,
  opts: ReadOptions, who: string,
): AsyncGenerator<T> {
  const abs = path.resolve(file);
  const st = await fsp.stat(abs).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${who}: cannot open dataset ${abs}: ${e.code ?? e.message}; pass the path of a JSONL file`);
  });
  if (!st.isFile()) throw new Error(`${who}: dataset ${abs} is not a file; pass the path of a JSONL file`);
  const ctx = await makePathContext(path.dirname(abs), opts);
  const stats = opts.stats ?? emptyStats();
  for await (const { line, text } of readLines(abs)) {
    stats.lines++;
    let raw: unknown;
    try { raw = JSON.parse(text); } catch (e) {
      reportBadRow(stats, { file: abs, line, reason: 'invalid_json', message: (e as Error).message }, opts);
      continue;
    }
    const v = await validate(raw, ctx, { file: abs, line });
    if (!v.ok) { reportBadRow(stats, { file: abs, line, reason: v.reason, message: v.message }, opts); continue; }
    stats.rows++;
    yield v.value;
  }
}

/** Streams the validated rows of a Fovea JSONL file (see readValidatedJsonl). */
export function readRows(file: string, opts: ReadOptions = {}): AsyncGenerator<DataRow> {
  return readValidatedJsonl(file, validateRow, opts, 'readRows');
}

/** Reads every valid row into memory (needed for shuffling); returns the rows and the counts. */
export async function loadDataset(file: string, opts: Omit<ReadOptions, 'stats'> = {}): Promise<{ rows: DataRow[]; stats: DatasetStats }> {
  const stats = emptyStats();
  const rows: DataRow[] = [];
  for await (const r of readRows(file, { ...opts, stats })) rows.push(r);
  return { rows, stats };
}

// ---- Deterministic shuffling and the resumable position ----
//
// The order of epoch e is a Fisher–Yates permutation drawn from a PRNG seeded by (seed, e) alone,
// so it never depends on how many rows were drawn before: resuming at (epoch, index) replays
// exactly what an uninterrupted run would have drawn next.

/** 32-bit integer mix (the finalizer of MurmurHash3). */
function fmix32(h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** mulberry32: a small, fast, well-mixed 32-bit PRNG (state: one uint32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function checkSeed(op: string, seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`${op}: seed must be a non-negative safe integer, got ${seed}`);
}

/** The permutation of [0, n) for (seed, epoch): Fisher–Yates with 53-bit uniform draws. */
export function epochPermutation(n: number, seed: number, epoch: number): Uint32Array {
  checkSeed('epochPermutation', seed);
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`epochPermutation: n must be an integer in [0, 2^32), got ${n}`);
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new Error(`epochPermutation: epoch must be a non-negative integer, got ${epoch}`);
  const lo = seed >>> 0, hi = Math.floor(seed / 0x100000000) >>> 0;
  const rand = mulberry32(fmix32(fmix32(lo ^ 0x9e3779b9) ^ fmix32(hi + 0x7f4a7c15) ^ fmix32(Math.imul(epoch + 1, 0x632be5ab))));
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const u = (rand() * 0x200000 + (rand() >>> 11)) / 0x20000000000000;  // 53-bit uniform in [0, 1)
    const j = Math.floor(u * (i + 1));
    const t = p[i]; p[i] = p[j]; p[j] = t;
  }
  return p;
}

/** Where the next draw comes from: position `index` of epoch `epoch`'s order. */
export interface DataPosition { epoch: number; index: number }

/** Everything a checkpoint needs to resume the iterator (size guards against a changed dataset). */
export interface DataIteratorState { seed: number; shuffle: boolean; size: number; epoch: number; index: number }

/** Draws rows epoch after epoch in a deterministic (optionally shuffled) order. */
export class DataIterator<T> {
  readonly seed: number;
  readonly shuffle: boolean;
  private epoch = 0;
  private index = 0;
  private order: Uint32Array | null = null;
  private orderEpoch = -1;

  constructor(readonly rows: readonly T[], opts: { seed?: number; shuffle?: boolean; position?: DataPosition } = {}) {
    if (rows.length === 0) throw new Error('DataIterator: the dataset has no valid rows (check the skipped-row report)');
    this.seed = opts.seed ?? 0;
    checkSeed('DataIterator', this.seed);
    this.shuffle = opts.shuffle ?? true;
    if (opts.position) this.seek(opts.position);
  }

  /** The position of the next draw. */
  get position(): DataPosition { return { epoch: this.epoch, index: this.index }; }

  seek(pos: DataPosition): void {
    if (!Number.isSafeInteger(pos.epoch) || pos.epoch < 0 || !Number.isSafeInteger(pos.index) || pos.index < 0 || pos.index > this.rows.length) {
      throw new Error(`DataIterator.seek: position ${JSON.stringify(pos)} must have integer epoch >= 0 and 0 <= index <= ${this.rows.length}`);
    }
    this.epoch = pos.epoch; this.index = pos.index;
  }

  /** The row order of an epoch (indices into rows). */
  orderOf(epoch: number): Uint32Array {
    if (this.orderEpoch !== epoch || !this.order) {
      if (this.shuffle) this.order = epochPermutation(this.rows.length, this.seed, epoch);
      else { this.order = new Uint32Array(this.rows.length); for (let i = 0; i < this.rows.length; i++) this.order[i] = i; }
      this.orderEpoch = epoch;
    }
    return this.order;
  }

  /** The next row; rolls over into the next epoch after the last row. */
  next(): { row: T; rowIndex: number; epoch: number; index: number } {
    if (this.index >= this.rows.length) { this.epoch++; this.index = 0; }
    const epoch = this.epoch, index = this.index;
    const rowIndex = this.orderOf(epoch)[index];
    this.index++;
    return { row: this.rows[rowIndex], rowIndex, epoch, index };
  }

  /** The next k rows (may span an epoch boundary). */
  take(k: number): T[] {
    if (!Number.isSafeInteger(k) || k < 0) throw new Error(`DataIterator.take: k must be a non-negative integer, got ${k}`);
    const out: T[] = [];
    for (let i = 0; i < k; i++) out.push(this.next().row);
    return out;
  }

  toJSON(): DataIteratorState {
    return { seed: this.seed, shuffle: this.shuffle, size: this.rows.length, epoch: this.epoch, index: this.index };
  }

  /** Resumes from a checkpointed state; the dataset must have the same number of valid rows. */
  static fromJSON<T>(rows: readonly T[], state: DataIteratorState): DataIterator<T> {
    if (!state || typeof state !== 'object') throw new Error('DataIterator.fromJSON: state must be an object from toJSON()');
    if (state.size !== rows.length) {
      throw new Error(`DataIterator.fromJSON: the checkpoint was taken over ${state.size} valid rows but the dataset now has ${rows.length}; resume with the same data file (and the same allowOutside/checkImages options)`);
    }
    return new DataIterator(rows, { seed: state.seed, shuffle: state.shuffle, position: { epoch: state.epoch, index: state.index } });
  }
}
