// Importer for MGPO-style rows (the public MGPO / verl / R1-V style data: a prompt holding an
// `<image>` placeholder, an image path, choices and a ground truth) into Fovea's row format
// (see dataset.ts). Either convert a file once (`importMgpoFile`, writes Fovea JSONL) or read an
// MGPO file directly as validated rows (`readMgpoRows`).
//
// Accepted variants, first match wins:
//   question  "prompt" (a string, or a chat-message array [{role, content}] whose user messages'
//             text is joined; content may be a string or [{type: "text", text}, {type: "image"}]),
//             "problem", "question"
//   images    "image_path" (string or string[]), "images" (string[] or [{path|image|image_path}]),
//             "image" (string). Relative paths resolve against `imageRoot` (default: the input
//             file's directory). Inline image bytes (parquet exports) are not supported.
//   choices   "choices" or "options": string[] or an object {"A": "...", "B": "..."} (taken in key order)
//   answer    "answer", "solution", "ground_truth", "gt_answer", "reward_model.ground_truth";
//             numbers are stringified; an <answer>…</answer> or \boxed{…} wrapper is removed, and
//             a lone choice letter written "(B)" or "B." becomes "B"
//   id        "id", "question_id", "qid", "index", "extra_info.index"; else "<file name>:<line>"
//   source    "data_source", "dataSource", "source"
//   bbox      "bbox": [x1, y1, x2, y2] (image 0) or {box, image}
// Every `<image>` placeholder is removed from the question (Fovea's templates place images
// themselves); when placeholders are present their count must equal the number of images.
// The input is JSONL, or one JSON array (a file whose first non-blank character is '[').
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  type BadRow, type DataRow, type DatasetStats, type PathContext, type SkipReason,
  emptyStats, makePathContext, readLines, reportBadRow, validateRow, validateRowFields,
} from './dataset.js';

/** A Fovea row as written to JSONL (image paths not yet resolved). */
export interface FoveaRowJson {
  id: string; images: string[]; question: string; choices?: string[]; answer: string;
  bbox?: { box: [number, number, number, number]; image: number }; dataSource?: string;
}

type Converted = { ok: true; row: FoveaRowJson } | { ok: false; reason: SkipReason; message: string };

const IMAGE_TAG = /<image>/g;

function textOfContent(c: unknown): string | null {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) {
    const parts: string[] = [];
    for (const p of c) {
      if (typeof p === 'string') parts.push(p);
      else if (p && typeof p === 'object') {
        const o = p as Record<string, unknown>;
        if (o.type === 'text' && typeof o.text === 'string') parts.push(o.text);
        else if (o.type === 'image') parts.push('<image>');
      }
    }
    return parts.join('');
  }
  return null;
}

function pickQuestion(r: Record<string, unknown>): string | null {
  const p = r.prompt;
  if (typeof p === 'string') return p;
  if (Array.isArray(p)) {
    const users = p.filter((m) => m && typeof m === 'object' && (m as Record<string, unknown>).role === 'user');
    const texts = users.map((m) => textOfContent((m as Record<string, unknown>).content));
    if (texts.length && texts.every((t) => t !== null)) return texts.join('\n');
    return null;
  }
  for (const k of ['problem', 'question']) if (typeof r[k] === 'string') return r[k] as string;
  return null;
}

function pickImages(r: Record<string, unknown>): string[] | string {
  const one = (v: unknown): string | null => {
    if (typeof v === 'string') return v;
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      for (const k of ['path', 'image', 'image_path']) if (typeof o[k] === 'string') return o[k] as string;
    }
    return null;
  };
  for (const k of ['image_path', 'images', 'image']) {
    const v = r[k];
    if (v === undefined) continue;
    const list = Array.isArray(v) ? v.map(one) : [one(v)];
    if (list.length === 0 || list.some((x) => x === null)) return `"${k}" must be a path, a list of paths or a list of {path}; got ${JSON.stringify(v).slice(0, 80)}`;
    return list as string[];
  }
  return 'no image field: expected "image_path", "images" or "image"';
}

function pickChoices(r: Record<string, unknown>): string[] | undefined | string {
  for (const k of ['choices', 'options']) {
    const v = r[k];
    if (v === undefined || v === null) continue;
    if (Array.isArray(v) && v.length > 0 && v.every((c) => typeof c === 'string')) return v as string[];
    if (typeof v === 'object' && !Array.isArray(v)) {
      const keys = Object.keys(v as object).sort();
      const vals = keys.map((key) => (v as Record<string, unknown>)[key]);
      if (vals.length > 0 && vals.every((c) => typeof c === 'string')) return vals as string[];
    }
    return `"${k}" must be a non-empty list of strings or an object of strings`;
  }
  return undefined;
}

/** Removes an <answer>…</answer> or \boxed{…} wrapper; "(B)" / "B." become "B". */
export function normalizeGroundTruth(s: string): string {
  let t = s.trim();
  const tag = /^<answer>([\s\S]*)<\/answer>$/.exec(t);
  if (tag) t = tag[1].trim();
  const boxed = /^\\boxed\{([\s\S]*)\}$/.exec(t);
  if (boxed) t = boxed[1].trim();
  const letter = /^\(?([A-Z])\)?\.?$/.exec(t);
  if (letter) t = letter[1];
  return t;
}

function pickAnswer(r: Record<string, unknown>): string | null {
  const rm = r.reward_model as Record<string, unknown> | undefined;
  const cands = [r.answer, r.solution, r.ground_truth, r.gt_answer, rm && typeof rm === 'object' ? rm.ground_truth : undefined];
  for (const v of cands) {
    if (typeof v === 'string') return normalizeGroundTruth(v);
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  }
  return null;
}

function pickId(r: Record<string, unknown>, fallback: string): string {
  const ei = r.extra_info as Record<string, unknown> | undefined;
  for (const v of [r.id, r.question_id, r.qid, r.index, ei && typeof ei === 'object' ? ei.index : undefined]) {
    if (typeof v === 'string' && v.length > 0) return v;
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  }
  return fallback;
}

/** Converts one parsed MGPO-style row (pure: no file system). Image paths are returned as given. */
export function convertMgpoRow(raw: unknown, fallbackId: string): Converted {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, reason: 'invalid_field', message: 'row must be a JSON object' };
  const r = raw as Record<string, unknown>;
  const q = pickQuestion(r);
  if (q === null) return { ok: false, reason: 'invalid_field', message: 'no question: expected a string "prompt" (or chat messages), "problem" or "question"' };
  const images = pickImages(r);
  if (typeof images === 'string') return { ok: false, reason: 'invalid_field', message: images };
  const tags = (q.match(IMAGE_TAG) ?? []).length;
  if (tags > 0 && tags !== images.length) {
    return { ok: false, reason: 'invalid_field', message: `the prompt has ${tags} <image> placeholder(s) but the row lists ${images.length} image(s)` };
  }
  const question = q.replace(IMAGE_TAG, '').replace(/^\s+|\s+$/g, '');
  const choices = pickChoices(r);
  if (typeof choices === 'string') return { ok: false, reason: 'invalid_field', message: choices };
  const answer = pickAnswer(r);
  if (answer === null) return { ok: false, reason: 'invalid_field', message: 'no ground truth: expected "answer", "solution", "ground_truth", "gt_answer" or "reward_model.ground_truth" (string or number)' };
  const row: FoveaRowJson = { id: pickId(r, fallbackId), images, question, answer };
  if (choices) row.choices = choices;
  if (r.bbox !== undefined) row.bbox = (Array.isArray(r.bbox) ? { box: r.bbox, image: 0 } : r.bbox) as FoveaRowJson['bbox'];
  for (const k of ['data_source', 'dataSource', 'source']) if (typeof r[k] === 'string') { row.dataSource = r[k] as string; break; }
  const v = validateRowFields(row);  // same field rules as native Fovea rows
  if (!v.ok) return v;
  return { ok: true, row };
}

/** Parsed items of an MGPO file with their line (JSONL) or 1-based item number (JSON array). */
async function* readItems(file: string, onJsonError: (line: number, msg: string) => void): AsyncGenerator<{ line: number; raw: unknown }> {
  const fh = await fsp.open(file, 'r');
  const head = Buffer.alloc(4096);
  const { bytesRead } = await fh.read(head, 0, head.length, 0);
  await fh.close();
  if (head.subarray(0, bytesRead).toString('utf8').replace(/^\uFEFF/, '').trimStart().startsWith('[')) {
    let arr: unknown;
    try { arr = JSON.parse((await fsp.readFile(file, 'utf8')).replace(/^\uFEFF/, '')); } catch (e) {
      throw new Error(`importMgpo: ${file} looks like a JSON array but does not parse: ${(e as Error).message}`);
    }
    if (!Array.isArray(arr)) throw new Error(`importMgpo: ${file} must hold a JSON array of rows`);
    for (let i = 0; i < arr.length; i++) yield { line: i + 1, raw: arr[i] };
    return;
  }
  for await (const { line, text } of readLines(file)) {
    try { yield { line, raw: JSON.parse(text) }; } catch (e) { onJsonError(line, (e as Error).message); }
  }
}

export interface MgpoOptions {
  imageRoot?: string;           // where relative image paths resolve (default: the input file's directory)
  allowOutside?: boolean;       // readMgpoRows: images may lie outside imageRoot
  checkImages?: boolean;        // readMgpoRows: images must exist (default true)
  onBadRow?: (b: BadRow) => void;
  maxReported?: number;
  stats?: DatasetStats;
}

async function openInput(op: string, file: string): Promise<string> {
  const abs = path.resolve(file);
  const st = await fsp.stat(abs).catch((e: NodeJS.ErrnoException) => { throw new Error(`${op}: cannot open ${abs}: ${e.code ?? e.message}`); });
  if (!st.isFile()) throw new Error(`${op}: ${abs} is not a file`);
  return abs;
}

/** Streams an MGPO-style file as validated Fovea rows (same path policy as readRows, rooted at imageRoot). */
export async function* readMgpoRows(file: string, opts: MgpoOptions = {}): AsyncGenerator<DataRow> {
  const abs = await openInput('readMgpoRows', file);
  const ctx: PathContext = await makePathContext(opts.imageRoot ?? path.dirname(abs), opts);
  const stats = opts.stats ?? emptyStats();
  const bad = (line: number, reason: SkipReason, message: string) => reportBadRow(stats, { file: abs, line, reason, message }, opts);
  for await (const { line, raw } of readItems(abs, (line, msg) => { stats.lines++; bad(line, 'invalid_json', msg); })) {
    stats.lines++;
    const c = convertMgpoRow(raw, `${path.basename(abs)}:${line}`);
    if (!c.ok) { bad(line, c.reason, c.message); continue; }
    const v = await validateRow(c.row, ctx, { file: abs, line });
    if (!v.ok) { bad(line, v.reason, v.message); continue; }
    stats.rows++;
    yield v.value;
  }
}

/**
 * Converts an MGPO-style file into a Fovea JSONL file. Image paths are rewritten relative to the
 * output file's directory (rows whose images then lie outside it are counted in `outsideImages`:
 * read such a file with allowOutside: true). Images are not opened here; readRows checks them.
 * The output is written to a temporary file and renamed, so a killed import leaves no half file.
 */
export async function importMgpoFile(inFile: string, outFile: string, opts: Omit<MgpoOptions, 'allowOutside' | 'checkImages'> = {}): Promise<DatasetStats & { outsideImages: number }> {
  const abs = await openInput('importMgpoFile', inFile);
  const out = path.resolve(outFile);
  const outDir = path.dirname(out);
  const root = path.resolve(opts.imageRoot ?? path.dirname(abs));
  const stats = Object.assign(opts.stats ?? emptyStats(), { outsideImages: 0 });
  const tmp = `${out}.tmp-${process.pid}`;
  const fh = await fsp.open(tmp, 'w');
  try {
    for await (const { line, raw } of readItems(abs, (line, msg) => { stats.lines++; reportBadRow(stats, { file: abs, line, reason: 'invalid_json', message: msg }, opts); })) {
      stats.lines++;
      const c = convertMgpoRow(raw, `${path.basename(abs)}:${line}`);
      if (!c.ok) { reportBadRow(stats, { file: abs, line, reason: c.reason, message: c.message }, opts); continue; }
      c.row.images = c.row.images.map((p) => path.relative(outDir, path.resolve(root, p)).split(path.sep).join('/'));
      if (c.row.images.some((p) => p === '..' || p.startsWith('../') || path.isAbsolute(p))) stats.outsideImages++;
      await fh.write(JSON.stringify(c.row) + '\n');
      stats.rows++;
    }
    await fh.sync();
  } catch (e) {
    await fh.close(); await fsp.rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await fsp.rename(tmp, out);
  return stats;
}
