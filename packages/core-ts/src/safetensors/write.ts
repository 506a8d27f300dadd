// Writing safetensors files: the header in the reference writer's layout (format.ts), then each
// tensor's bytes streamed from its storage in chunks (non-contiguous views are made contiguous
// one tensor at a time). Every file is written to `<path>.tmp`, fsynced and renamed over the
// target, so a crash or an error never leaves a truncated file under the real name. saveSharded
// writes the Hugging Face layout: model-0000i-of-0000N.safetensors plus
// model.safetensors.index.json ({metadata: {total_size}, weight_map}), or a single
// model.safetensors when everything fits in one shard.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import native from '@fovea/native';
import '../ops/shape.js';  // attaches Tensor.prototype.contiguous
import { DTYPE_SIZES } from '../dtype.js';
import { Tensor } from '../tensor.js';
import { noGrad } from '../autograd/grad_mode.js';
import { type HeaderEntry, SafetensorsError, buildHeader, safetensorsDType } from './format.js';
import { INDEX_FILE_NAME, SINGLE_FILE_NAME, checkChunkBytes } from './read.js';

export type TensorDict = Record<string, Tensor> | Map<string, Tensor>;

export interface SafetensorsSaveOptions {
  /** Stored as "__metadata__" (string values only). Omitted from the header when undefined. */
  metadata?: Record<string, string>;
  /** Bytes copied out of a tensor's storage per write (default 64 MiB). */
  chunkBytes?: number;
}

export interface SafetensorsShardedSaveOptions extends SafetensorsSaveOptions {
  /** Most tensor bytes per shard (headers not counted; default 5e9, as transformers). A tensor
   * larger than this gets a shard of its own. */
  maxShardBytes?: number;
}

export interface SafetensorsShardedSaveResult {
  /** File names written in dir, in order. */
  files: string[];
  /** The index file's path, or null when one model.safetensors was written. */
  indexFile: string | null;
  /** Sum of all tensors' bytes (the index's metadata.total_size). */
  totalSize: number;
}

export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;
const SHARD_RE = /^model-\d{5}-of-\d{5}\.safetensors$/;

function checkEntries(tensors: TensorDict, where: string): [string, Tensor][] {
  let entries: [string, unknown][];
  if (tensors instanceof Map) entries = [...tensors.entries()];
  else if (tensors !== null && typeof tensors === 'object' && !Array.isArray(tensors)) entries = Object.entries(tensors);
  else throw new Error(`${where}: tensors must be a Record<string, Tensor> or a Map<string, Tensor>`);
  for (const [name, t] of entries) {
    if (typeof name !== 'string') throw new Error(`${where}: tensor names must be strings, got ${String(name)}`);
    if (name === '__metadata__') throw new Error(`${where}: "__metadata__" is reserved by the format and cannot name a tensor`);
    if (!(t instanceof Tensor)) throw new Error(`${where}: ${JSON.stringify(name)} is not a Tensor`);
    if (t.isDisposed) throw new Error(`${where}: tensor ${JSON.stringify(name)} was disposed`);
  }
  return entries as [string, Tensor][];
}

function checkMetadata(m: unknown, where: string): Record<string, string> | undefined {
  if (m === undefined) return undefined;
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new Error(`${where}: metadata must be an object of strings`);
  for (const [k, v] of Object.entries(m)) {
    if (typeof v !== 'string') throw new Error(`${where}: metadata value for ${JSON.stringify(k)} must be a string, got ${JSON.stringify(v)}`);
  }
  return m as Record<string, string>;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** Writes path via path.tmp + fsync + rename; on any error the tmp file is removed and path is
 * left as it was. */
function writeAtomic(path: string, write: (fd: number) => void): void {
  const tmp = `${path}.tmp`;
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw new SafetensorsError(path, null, `cannot create ${tmp} (${(e as Error).message})`, { cause: e });
  }
  let ok = false;
  try {
    write(fd);
    fsyncSync(fd);
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) rmSync(tmp, { force: true });
  }
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new SafetensorsError(path, null, `cannot move ${tmp} into place (${(e as Error).message})`, { cause: e });
  }
}

/** Streams a tensor's elements (row-major) to fd, chunkBytes at a time. */
function writeTensorData(fd: number, t: Tensor, chunkBytes: number): void {
  const esize = DTYPE_SIZES[t.dtype];
  const src = t.isContiguous() ? t : noGrad(() => t.contiguous());
  try {
    const total = src.size * esize, base = src.offset * esize;
    for (let pos = 0; pos < total;) {
      const len = Math.min(chunkBytes, total - pos);
      writeAll(fd, new Uint8Array(native.storageRead(src.storage.handle, base + pos, len)));
      pos += len;
    }
  } finally {
    if (src !== t) src.dispose();
  }
}

function writeFile(path: string, entries: [string, Tensor][], metadata: Record<string, string> | undefined, chunkBytes: number): void {
  const byName = new Map(entries);
  const headerEntries: HeaderEntry[] = entries.map(([name, t]) => ({
    name, dtype: safetensorsDType(t.dtype), shape: t.shape, byteLength: t.size * DTYPE_SIZES[t.dtype],
  }));
  const header = buildHeader(headerEntries, metadata);
  writeAtomic(path, (fd) => {
    writeAll(fd, header.bytes);
    for (const { entry } of header.order) {
      try {
        writeTensorData(fd, byName.get(entry.name)!, chunkBytes);
      } catch (e) {
        throw new SafetensorsError(path, entry.name, `writing failed: ${(e as Error).message}`, { cause: e });
      }
    }
  });
}

/** Writes tensors to one .safetensors file (atomically: via path.tmp and a rename). */
export function saveSafetensors(path: string, tensors: TensorDict, opts: SafetensorsSaveOptions = {}): void {
  const where = 'saveSafetensors';
  const entries = checkEntries(tensors, where);
  const metadata = checkMetadata(opts.metadata, where);
  writeFile(path, entries, metadata, checkChunkBytes(opts.chunkBytes, where));
}

/** Writes tensors into dir in the Hugging Face layout: one model.safetensors when they fit in
 * maxShardBytes, else shards (filled greedily in the given order) plus
 * model.safetensors.index.json. Files a previous save left there under these names and not
 * rewritten now (a stale index, single file or extra shards) are removed after the new files
 * are in place, so loadSafetensorsIndex(dir) never mixes two saves. */
export function saveSharded(dir: string, tensors: TensorDict, opts: SafetensorsShardedSaveOptions = {}): SafetensorsShardedSaveResult {
  const where = 'saveSharded';
  const entries = checkEntries(tensors, where);
  const metadata = checkMetadata(opts.metadata, where);
  const chunkBytes = checkChunkBytes(opts.chunkBytes, where);
  const maxShard = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!Number.isSafeInteger(maxShard) || maxShard < 1) throw new Error(`${where}: maxShardBytes must be a positive integer, got ${maxShard}`);

  const shards: [string, Tensor][][] = [];
  let cur: [string, Tensor][] = [], curBytes = 0, totalSize = 0;
  for (const e of entries) {
    const bytes = e[1].size * DTYPE_SIZES[e[1].dtype];
    if (cur.length > 0 && curBytes + bytes > maxShard) { shards.push(cur); cur = []; curBytes = 0; }
    cur.push(e);
    curBytes += bytes;
    totalSize += bytes;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);

  mkdirSync(dir, { recursive: true });
  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const files = n === 1 ? [SINGLE_FILE_NAME] : shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(n)}.safetensors`);
  shards.forEach((s, i) => writeFile(join(dir, files[i]), s, metadata, chunkBytes));

  let indexFile: string | null = null;
  if (n > 1) {
    const weightMap: Record<string, string> = {};
    const names = shards.flatMap((s, i) => s.map(([name]) => [name, files[i]] as const));
    names.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));  // sorted keys, as transformers writes them
    for (const [name, file] of names) weightMap[name] = file;
    const json = `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2)}\n`;
    indexFile = join(dir, INDEX_FILE_NAME);
    writeAtomic(indexFile, (fd) => writeAll(fd, Buffer.from(json, 'utf8')));
  }

  const keep = new Set(files);
  for (const f of readdirSync(dir)) {
    const stale = (f === INDEX_FILE_NAME && n === 1) || (f === SINGLE_FILE_NAME && n > 1) || (SHARD_RE.test(f) && !keep.has(f));
    if (stale) rmSync(join(dir, f), { force: true });
  }
  return { files, indexFile, totalSize };
}
