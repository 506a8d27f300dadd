// Loading safetensors files tensor by tensor. The header is read and validated first (format.ts),
// so nothing is allocated for a file that is malformed; then each tensor's bytes stream from
// disk through one reused host buffer (at most chunkBytes) into a tensor of the file's dtype
// on the target device, and a requested float dtype is reached with a native cast (round to
// nearest even). Peak host memory is the loaded tensors plus that buffer: multi-GB files load
// without the whole file ever being in memory. Sharded checkpoints go through the HF index
// (model.safetensors.index.json, {weight_map: {name: shard file}}), each shard opened once.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import native from '@fovea/native';
import '../ops/shape.js';  // attaches Tensor.prototype.to
import { type DType, checkDType, isFloat } from '../dtype.js';
import { parseDevice } from '../device.js';
import { Tensor } from '../tensor.js';
import { noGrad } from '../autograd/grad_mode.js';
import {
  type SafetensorsHeader, type SafetensorsTensorInfo, SafetensorsError, checkHeaderLength, foveaDType, parseHeader,
} from './format.js';

export interface SafetensorsLoadOptions {
  /** Float dtype for every float tensor (F32, F64, BF16, F16 on disk); integer and bool tensors
   * keep theirs. Default: each tensor keeps the file's dtype. */
  dtype?: DType;
  /** 'cpu' (default), 'cuda' or 'cuda:N'. Bytes go straight to the device; casts run there. */
  device?: string;
  /** Load only these tensors (each must exist). Default: all. */
  names?: readonly string[];
  /** Size of the staging buffer for reads, in bytes (default 64 MiB, at most 1 GiB). */
  chunkBytes?: number;
}

export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;
export const MAX_CHUNK_BYTES = 1024 * 1024 * 1024;  // below readSync's 2 GiB per-call limit
export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

interface ResolvedLoad { dtype: DType | null; ordinal: number; chunkBytes: number }

export function checkChunkBytes(v: unknown, where: string): number {
  if (v === undefined) return DEFAULT_CHUNK_BYTES;
  if (!Number.isSafeInteger(v) || (v as number) < 1 || (v as number) > MAX_CHUNK_BYTES) {
    throw new Error(`${where}: chunkBytes must be an integer in [1, ${MAX_CHUNK_BYTES}], got ${String(v)}`);
  }
  return v as number;
}

function resolveLoadOptions(opts: SafetensorsLoadOptions, where: string): ResolvedLoad {
  if (opts === null || typeof opts !== 'object') throw new Error(`${where}: options must be an object`);
  let dtype: DType | null = null;
  if (opts.dtype !== undefined) {
    dtype = checkDType(opts.dtype, where);
    if (!isFloat(dtype)) throw new Error(`${where}: dtype converts float tensors, so it must be f32, f64, bf16 or f16; got ${dtype}`);
  }
  if (opts.names !== undefined && (!Array.isArray(opts.names) || !opts.names.every((n) => typeof n === 'string'))) {
    throw new Error(`${where}: names must be an array of strings`);
  }
  return { dtype, ordinal: parseDevice(opts.device, where).ordinal, chunkBytes: checkChunkBytes(opts.chunkBytes, where) };
}

/** Reads exactly len bytes at position into buf, or says where the file ended. */
function readFully(fd: number, buf: Uint8Array, len: number, position: number, file: string, tensor: string | null): void {
  let done = 0;
  while (done < len) {
    const n = readSync(fd, buf, done, len - done, position + done);
    if (n === 0) {
      throw new SafetensorsError(file, tensor, `the file ended at byte ${position + done} while reading ` +
        `${len} bytes at ${position} (it was truncated or changed while loading)`);
    }
    done += n;
  }
}

interface OpenFile { fd: number; header: SafetensorsHeader }

/** Opens a file and reads and validates its header; the caller closes fd. */
function openSafetensors(path: string): OpenFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new SafetensorsError(path, null, `cannot open the file (${(e as Error).message})`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new SafetensorsError(path, null, 'not a regular file');
    const size = st.size;
    const first8 = Buffer.alloc(8);
    readFully(fd, first8, Math.min(8, size), 0, path, null);
    const n = checkHeaderLength(path, first8, size);
    const headerBytes = Buffer.alloc(n);
    readFully(fd, headerBytes, n, 8, path, null);
    return { fd, header: parseHeader(path, headerBytes, size) };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Names, dtypes, shapes, offsets and metadata of a file, without reading its tensors. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const f = openSafetensors(path);
  closeSync(f.fd);
  return f.header;
}

function describeNames(names: Iterable<string>): string {
  const all = [...names];
  const shown = all.slice(0, 8).map((n) => JSON.stringify(n)).join(', ');
  return all.length > 8 ? `${shown}, ... (${all.length} in all)` : shown || '(none)';
}

/** The requested entries in data order (all when names is undefined). */
function selectTensors(header: SafetensorsHeader, names: readonly string[] | undefined): SafetensorsTensorInfo[] {
  if (names === undefined) return [...header.tensors.values()];
  const wanted = new Set(names);
  for (const n of wanted) {
    if (!header.tensors.has(n)) {
      throw new SafetensorsError(header.file, n, `no such tensor in the file; it has ${describeNames(header.tensors.keys())}`);
    }
  }
  return [...header.tensors.values()].filter((t) => wanted.has(t.name));
}

function checkBoolBytes(chunk: Uint8Array, first: number, file: string, tensor: string): void {
  for (let i = 0; i < chunk.length; i++) {
    if (chunk[i] > 1) throw new SafetensorsError(file, tensor, `BOOL element ${first + i} is ${chunk[i]}, not 0 or 1`);
  }
}

/** Loads infos from an open file into out (disposing nothing: the caller owns out on error). */
function loadTensors(f: OpenFile, infos: SafetensorsTensorInfo[], o: ResolvedLoad, out: Map<string, Tensor>): void {
  const file = f.header.file;
  let largest = 0;
  for (const info of infos) {
    if (foveaDType(info.dtype) === null) {
      throw new SafetensorsError(file, info.name, `dtype ${info.dtype} has no Fovea equivalent (Fovea holds F32, F64, BF16, ` +
        'F16, I32, I64, BOOL); leave it out with the names option or convert the file');
    }
    largest = Math.max(largest, info.byteLength);
  }
  const staging = Buffer.allocUnsafe(Math.max(1, Math.min(o.chunkBytes, largest)));
  for (const info of infos) {
    const disk = foveaDType(info.dtype)!;
    let t = Tensor.empty(info.shape, disk, o.ordinal);
    try {
      for (let pos = 0; pos < info.byteLength;) {
        const len = Math.min(staging.length, info.byteLength - pos);
        readFully(f.fd, staging, len, f.header.dataStart + info.dataOffsets[0] + pos, file, info.name);
        const chunk = staging.subarray(0, len);
        if (disk === 'bool') checkBoolBytes(chunk, pos, file, info.name);
        native.storageWrite(t.storage.handle, pos, chunk);
        pos += len;
      }
      if (o.dtype !== null && isFloat(disk) && disk !== o.dtype) {
        const target = o.dtype;
        const cast = noGrad(() => t.to(target));
        t.dispose();
        t = cast;
      }
    } catch (e) {
      t.dispose();
      if (e instanceof SafetensorsError) throw e;
      throw new SafetensorsError(file, info.name, `loading failed: ${(e as Error).message}`, { cause: e });
    }
    out.set(info.name, t);
  }
}

function disposeAll(m: Map<string, Tensor>): void {
  for (const t of m.values()) t.dispose();
  m.clear();
}

/** Loads the tensors of one .safetensors file, in data order. */
export function loadSafetensors(path: string, opts: SafetensorsLoadOptions = {}): Map<string, Tensor> {
  const o = resolveLoadOptions(opts, 'loadSafetensors');
  const f = openSafetensors(path);
  const out = new Map<string, Tensor>();
  try {
    loadTensors(f, selectTensors(f.header, opts.names), o, out);
    return out;
  } catch (e) {
    disposeAll(out);
    throw e;
  } finally {
    closeSync(f.fd);
  }
}

/** Reads an index file's weight_map (tensor name -> shard path, resolved). */
function readIndex(indexPath: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new SafetensorsError(indexPath, null, `cannot read the index as JSON (${(e as Error).message})`, { cause: e });
  }
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) {
    throw new SafetensorsError(indexPath, null, 'the index has no "weight_map" object {tensor name: shard file}');
  }
  const dir = dirname(indexPath);
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(wm)) {
    if (typeof shard !== 'string' || shard === '' || isAbsolute(shard) || normalize(shard).split(/[\\/]/)[0] === '..') {
      throw new SafetensorsError(indexPath, name, `weight_map entry must be a shard file name inside ${dir}, got ${JSON.stringify(shard)}`);
    }
    out.set(name, join(dir, shard));
  }
  return out;
}

/** Loads a sharded checkpoint: a directory (its model.safetensors.index.json, or a single
 * model.safetensors), an index file, or a .safetensors file. Each shard is opened once. */
export function loadSafetensorsIndex(location: string, opts: SafetensorsLoadOptions = {}): Map<string, Tensor> {
  const o = resolveLoadOptions(opts, 'loadSafetensorsIndex');
  let indexPath = location;
  let st;
  try { st = statSync(location); } catch (e) {
    throw new SafetensorsError(location, null, `no such file or directory (${(e as Error).message})`, { cause: e });
  }
  if (st.isDirectory()) {
    indexPath = join(location, INDEX_FILE_NAME);
    if (!existsSync(indexPath)) {
      const single = join(location, SINGLE_FILE_NAME);
      if (existsSync(single)) return loadSafetensors(single, opts);
      throw new SafetensorsError(location, null, `the directory holds neither ${INDEX_FILE_NAME} nor ${SINGLE_FILE_NAME}; ` +
        'pass the index file or a .safetensors file instead');
    }
  } else if (location.endsWith('.safetensors')) {
    return loadSafetensors(location, opts);
  }
  const weightMap = readIndex(indexPath);
  const names = opts.names ?? [...weightMap.keys()];
  const byShard = new Map<string, Set<string>>();  // shard path -> names, in first-seen order
  for (const n of names) {
    const shard = weightMap.get(n);
    if (shard === undefined) {
      throw new SafetensorsError(indexPath, n, `no such tensor in the weight_map; it has ${describeNames(weightMap.keys())}`);
    }
    const list = byShard.get(shard);
    if (list) list.add(n); else byShard.set(shard, new Set([n]));
  }
  const out = new Map<string, Tensor>();
  try {
    for (const [shard, shardNames] of byShard) {
      if (!existsSync(shard)) {
        throw new SafetensorsError(shard, null, `this shard, listed in ${indexPath}, is missing (download it again)`);
      }
      const f = openSafetensors(shard);
      try {
        for (const n of shardNames) {
          if (!f.header.tensors.has(n)) {
            throw new SafetensorsError(shard, n, `${indexPath} puts this tensor in this shard, but the shard does not hold it ` +
              '(the index and the shards come from different saves?)');
          }
        }
        loadTensors(f, selectTensors(f.header, [...shardNames]), o, out);
      } finally {
        closeSync(f.fd);
      }
    }
    return out;
  } catch (e) {
    disposeAll(out);
    throw e;
  }
}
