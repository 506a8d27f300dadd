// Training checkpoints that survive a kill at any instant.
//
// Layout of a run directory:
//   checkpoint-<step>/            one complete checkpoint: model/ (HF layout or LoRA adapter, written
//                                 by the caller's `model(dir)`), named files (optimizer.json,
//                                 scheduler.json, rng.json, data.json, ...), named tensor sets as
//                                 <name>.safetensors, and complete.json written LAST
//   latest                        "checkpoint-<step>\n", a hint for people and scripts
//   checkpoint-<step>.tmp-<pid>/  a save in progress (or killed midway)
//   checkpoint-<step>.del-<pid>/  an old checkpoint being deleted by keepLast
//
// Invariant: a directory named exactly `checkpoint-<step>` only ever appears by rename(2) of a
// fully written, fsync'ed temporary directory whose last file is complete.json (a manifest of
// every other file's size and sha256). rename is atomic, so after a kill a reader sees either the
// whole checkpoint or none of it; the manifest additionally catches later corruption (a truncated
// or edited file, a missing marker). Old checkpoints are removed only after the new one and the
// `latest` pointer are durable, and are first renamed out of the `checkpoint-<step>` namespace so
// a half-deleted directory is never mistaken for a checkpoint.
//
// Leftover .tmp-/.del- directories are removed on the next save or load, but only when the
// process that made them is gone (a viewer calling loadLatestCheckpoint while training saves must
// not delete the save in flight).
import { createHash } from 'node:crypto';
import {
  closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync,
} from 'node:fs';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { saveSafetensors, type Tensor } from '@fovea/core';
import { fsyncPath, writeFileAtomic, writeFileDurable } from './atomic.js';

export const CHECKPOINT_MARKER = 'complete.json';
export const CHECKPOINT_MODEL_DIR = 'model';
export const LATEST_POINTER = 'latest';
const FORMAT = 'fovea-checkpoint-v1';
const DIR_RE = /^checkpoint-(\d+)$/;
const LEFTOVER_RE = /^(?:checkpoint-\d+\.(?:tmp|del)|latest\.tmp)-(\d+)$/;

export interface CheckpointParts {
  /** Writes the model (HF layout, or the LoRA adapter) into the given empty directory. Synchronous. */
  model?: (dir: string) => void;
  /** Small state files: a Buffer or string is written as is, anything else as pretty JSON. */
  files?: Record<string, Buffer | string | object>;
  /** Tensor sets, each written as <name>.safetensors (e.g. optimizer moments). */
  tensors?: Record<string, Map<string, Tensor>>;
}

export interface SaveCheckpointOptions {
  /** Keep this many newest complete checkpoints (the new one included); default: keep all. */
  keepLast?: number;
}

export interface ManifestEntry { size: number; sha256: string }
export interface CheckpointManifest {
  format: string;
  step: number;
  createdAt: string;
  /** Relative paths ('/'-separated) → size and digest; every file except complete.json. */
  files: Record<string, ManifestEntry>;
}

export interface CheckpointInfo { step: number; dir: string; manifest: CheckpointManifest }
export interface SkippedCheckpoint { dir: string; reason: string }
export interface LoadedCheckpoint extends CheckpointInfo {
  /** Checkpoint directories newer than the one returned that failed verification, with why. */
  skipped: SkippedCheckpoint[];
}

export interface LoadCheckpointOptions {
  /** 'sha256' (default) re-hashes every file; 'size' only checks sizes (fast for big models). */
  verify?: 'sha256' | 'size';
}

// ---------------------------------------------------------------- file helpers

function sha256File(path: string): string {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
  const fd = openSync(path, 'r');
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally { closeSync(fd); }
  return h.digest('hex');
}

/** Every regular file under dir (relative, '/'-separated), sorted; fsyncs files and directories
 * on the way when `sync` is set. Symlinks and other special files are refused. */
function walk(dir: string, sync: boolean, rel = '', out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const r = rel ? `${rel}/${name}` : name;
    const st = lstatSync(p);
    if (st.isDirectory()) walk(p, sync, r, out);
    else if (st.isFile()) { if (sync) fsyncPath(p); out.push(r); }
    else throw new Error(`saveCheckpoint: ${p} is not a regular file or directory (symlinks are not allowed in a checkpoint)`);
  }
  if (sync) fsyncPath(dir);
  return out;
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return false;   // our own leftovers come from a save that threw
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

function checkRunDir(runDir: unknown, where: string): string {
  if (typeof runDir !== 'string' || runDir === '') throw new Error(`${where}: runDir must be a non-empty path string, got ${JSON.stringify(runDir)}`);
  return runDir;
}

function checkStep(step: unknown, where: string): number {
  if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) {
    throw new Error(`${where}: step must be a non-negative integer, got ${JSON.stringify(step)}`);
  }
  return step;
}

/** A relative file name inside the checkpoint: no absolute paths, no '..', not the marker. */
function checkRelName(name: string, what: string): string {
  const n = normalize(name);
  if (name === '' || isAbsolute(name) || n.startsWith('..') || n.split(sep).includes('..') || n === '.' || name.includes('\0')) {
    throw new Error(`saveCheckpoint: ${what} name ${JSON.stringify(name)} must be a relative path inside the checkpoint (no '..', not absolute)`);
  }
  const top = n.split(sep)[0];
  if (n === CHECKPOINT_MARKER || top === CHECKPOINT_MODEL_DIR) {
    throw new Error(`saveCheckpoint: ${what} name ${JSON.stringify(name)} is reserved (${CHECKPOINT_MARKER} and ${CHECKPOINT_MODEL_DIR}/ belong to the checkpoint itself)`);
  }
  return n;
}

function encodeFile(name: string, v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (v === undefined || typeof v === 'function' || typeof v === 'symbol' || typeof v === 'bigint') {
    throw new Error(`saveCheckpoint: file ${JSON.stringify(name)} must be a Buffer, a string or a JSON-serializable value, got ${typeof v}`);
  }
  let s: string | undefined;
  try { s = JSON.stringify(v, null, 2); } catch (e) {
    throw new Error(`saveCheckpoint: file ${JSON.stringify(name)} is not JSON-serializable (${(e as Error).message})`);
  }
  if (s === undefined) throw new Error(`saveCheckpoint: file ${JSON.stringify(name)} is not JSON-serializable`);
  return Buffer.from(s + '\n', 'utf8');
}

// ---------------------------------------------------------------- cleanup and listing

/** Removes .tmp-/.del- directories (and a latest.tmp- file) left by processes that no longer run; returns their names. */
export function removeCheckpointLeftovers(runDir: string): string[] {
  checkRunDir(runDir, 'removeCheckpointLeftovers');
  if (!existsSync(runDir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(runDir)) {
    const m = LEFTOVER_RE.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    rmSync(join(runDir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** Reads and checks one checkpoint directory; returns its manifest or why it is not usable. */
export function verifyCheckpoint(dir: string, opts: LoadCheckpointOptions = {}): { ok: true; manifest: CheckpointManifest } | { ok: false; reason: string } {
  const verify = opts.verify ?? 'sha256';
  if (verify !== 'sha256' && verify !== 'size') throw new Error(`verifyCheckpoint: verify must be 'sha256' or 'size', got ${JSON.stringify(verify)}`);
  const marker = join(dir, CHECKPOINT_MARKER);
  if (!existsSync(marker)) return { ok: false, reason: `missing ${CHECKPOINT_MARKER} (the save did not finish)` };
  let m: CheckpointManifest;
  try { m = JSON.parse(readFileSync(marker, 'utf8')); } catch (e) {
    return { ok: false, reason: `${CHECKPOINT_MARKER} is not valid JSON (${(e as Error).message})` };
  }
  if (!m || typeof m !== 'object' || m.format !== FORMAT || !Number.isSafeInteger(m.step) || !m.files || typeof m.files !== 'object') {
    return { ok: false, reason: `${CHECKPOINT_MARKER} is not a ${FORMAT} manifest` };
  }
  const dm = DIR_RE.exec(dir.split(/[\\/]/).pop() ?? '');
  if (dm && Number(dm[1]) !== m.step) return { ok: false, reason: `${CHECKPOINT_MARKER} says step ${m.step} but the directory is for step ${dm[1]}` };
  let present: string[];
  try { present = walk(dir, false).filter((f) => f !== CHECKPOINT_MARKER); } catch (e) { return { ok: false, reason: (e as Error).message }; }
  for (const f of present) if (!(f in m.files)) return { ok: false, reason: `file ${f} is not in the manifest` };
  for (const [f, e] of Object.entries(m.files)) {
    const p = join(dir, ...f.split('/'));
    if (!existsSync(p)) return { ok: false, reason: `file ${f} listed in the manifest is missing` };
    const size = statSync(p).size;
    if (size !== e.size) return { ok: false, reason: `file ${f} has ${size} bytes, the manifest says ${e.size}` };
    if (verify === 'sha256') {
      const h = sha256File(p);
      if (h !== e.sha256) return { ok: false, reason: `file ${f} has sha256 ${h.slice(0, 12)}…, the manifest says ${String(e.sha256).slice(0, 12)}…` };
    }
  }
  return { ok: true, manifest: m };
}

/** Every `checkpoint-<step>` directory in runDir, newest first (not verified). */
export function listCheckpointDirs(runDir: string): { step: number; dir: string }[] {
  checkRunDir(runDir, 'listCheckpointDirs');
  if (!existsSync(runDir)) return [];
  const out: { step: number; dir: string }[] = [];
  for (const name of readdirSync(runDir)) {
    const m = DIR_RE.exec(name);
    if (m && Number.isSafeInteger(Number(m[1]))) out.push({ step: Number(m[1]), dir: join(runDir, name) });
  }
  return out.sort((a, b) => b.step - a.step);
}

/** The newest checkpoint that verifies, or null. Incomplete or corrupt ones are skipped and
 * listed with the reason in `skipped`. The `latest` pointer is not trusted over the directories
 * themselves (a kill between the rename and the pointer update leaves it one step behind). */
export function loadLatestCheckpoint(runDir: string, opts: LoadCheckpointOptions = {}): LoadedCheckpoint | null {
  checkRunDir(runDir, 'loadLatestCheckpoint');
  if (existsSync(runDir) && !statSync(runDir).isDirectory()) throw new Error(`loadLatestCheckpoint: ${runDir} is not a directory`);
  removeCheckpointLeftovers(runDir);
  const skipped: SkippedCheckpoint[] = [];
  for (const c of listCheckpointDirs(runDir)) {
    const v = verifyCheckpoint(c.dir, opts);
    if (v.ok) return { step: c.step, dir: c.dir, manifest: v.manifest, skipped };
    skipped.push({ dir: c.dir, reason: v.reason });
  }
  return null;
}

// ---------------------------------------------------------------- saving

/** Writes checkpoint-<step> atomically (see the file comment), updates `latest`, then prunes to
 * keepLast. Returns the final directory. */
export function saveCheckpoint(runDir: string, step: number, parts: CheckpointParts, opts: SaveCheckpointOptions = {}): CheckpointInfo {
  const where = 'saveCheckpoint';
  checkRunDir(runDir, where);
  checkStep(step, where);
  if (!parts || typeof parts !== 'object') throw new Error(`${where}: parts must be an object { model?, files?, tensors? }`);
  const keepLast = opts.keepLast ?? Infinity;
  if (keepLast !== Infinity && (!Number.isSafeInteger(keepLast) || keepLast < 1)) {
    throw new Error(`${where}: keepLast must be a positive integer, got ${JSON.stringify(opts.keepLast)}`);
  }
  if (parts.model !== undefined && typeof parts.model !== 'function') throw new Error(`${where}: parts.model must be a function (dir) => void`);
  const files = parts.files ?? {};
  const tensors = parts.tensors ?? {};
  if (typeof files !== 'object' || Array.isArray(files)) throw new Error(`${where}: parts.files must be an object of name → Buffer | string | JSON value`);
  if (typeof tensors !== 'object' || Array.isArray(tensors)) throw new Error(`${where}: parts.tensors must be an object of name → Map<string, Tensor>`);
  // Validate every name before touching the disk.
  const names = new Set<string>();
  const fileNames = Object.keys(files).map((n) => { const r = checkRelName(n, 'file'); names.add(r); return r; });
  for (const n of Object.keys(tensors)) {
    if (!(tensors[n] instanceof Map)) throw new Error(`${where}: parts.tensors[${JSON.stringify(n)}] must be a Map<string, Tensor>`);
    const r = checkRelName(`${n}.safetensors`, 'tensor set');
    if (names.has(r)) throw new Error(`${where}: tensor set ${JSON.stringify(n)} would overwrite file ${JSON.stringify(r)}`);
    names.add(r);
  }
  if (names.size !== fileNames.length + Object.keys(tensors).length) throw new Error(`${where}: two file names normalize to the same path`);

  mkdirSync(runDir, { recursive: true });
  removeCheckpointLeftovers(runDir);
  const finalName = `checkpoint-${step}`;
  const finalDir = join(runDir, finalName);
  if (existsSync(finalDir)) {
    const v = verifyCheckpoint(finalDir, { verify: 'size' });
    if (v.ok) throw new Error(`${where}: ${finalDir} already exists and is complete; refusing to overwrite step ${step}`);
    // A corrupt directory under the final name: move it out of the namespace, then delete.
    const del = join(runDir, `${finalName}.del-${process.pid}`);
    renameSync(finalDir, del);
    rmSync(del, { recursive: true, force: true });
  }

  const tmp = join(runDir, `${finalName}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    if (parts.model) {
      const md = join(tmp, CHECKPOINT_MODEL_DIR);
      mkdirSync(md);
      const r = parts.model(md) as unknown;
      if (r && typeof (r as Promise<unknown>).then === 'function') throw new Error(`${where}: parts.model must write synchronously (it returned a Promise)`);
    }
    Object.entries(files).forEach(([n, v], i) => {
      const p = join(tmp, fileNames[i]);
      mkdirSync(join(p, '..'), { recursive: true });
      writeFileDurable(p, encodeFile(n, v));
    });
    for (const [n, m] of Object.entries(tensors)) saveSafetensors(join(tmp, `${n}.safetensors`), m);
    // fsync every file and directory, then hash them into the manifest, written last.
    const all = walk(tmp, true);
    const manifest: CheckpointManifest = { format: FORMAT, step, createdAt: new Date().toISOString(), files: {} };
    for (const f of all) {
      const p = join(tmp, ...f.split('/'));
      manifest.files[f] = { size: statSync(p).size, sha256: sha256File(p) };
    }
    writeFileDurable(join(tmp, CHECKPOINT_MARKER), Buffer.from(JSON.stringify(manifest, null, 1) + '\n'));
    fsyncPath(tmp);
    renameSync(tmp, finalDir);
    fsyncPath(runDir);
    writeFileAtomic(join(runDir, LATEST_POINTER), `${finalName}\n`, runDir);
    pruneCheckpoints(runDir, step, keepLast);
    return { step, dir: finalDir, manifest };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Deletes checkpoints older than `newStep` beyond the keepLast newest (rename out, then rm). */
function pruneCheckpoints(runDir: string, newStep: number, keepLast: number): void {
  if (keepLast === Infinity) return;
  const older = listCheckpointDirs(runDir).filter((c) => c.step < newStep);
  for (const c of older.slice(Math.max(0, keepLast - 1))) {
    const del = join(runDir, `checkpoint-${c.step}.del-${process.pid}`);
    renameSync(c.dir, del);
    rmSync(del, { recursive: true, force: true });
  }
  fsyncPath(runDir);
}
