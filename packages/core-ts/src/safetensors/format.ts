// The safetensors format, as bytes: an 8-byte little-endian u64 header length N, N bytes of UTF-8
// JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}, then
// the data buffer (offsets are relative to its start). This file parses and validates a header
// and builds one; it does no I/O. Validation follows the reference implementation
// (huggingface/safetensors, tensor.rs): header at most 100 MB, tensors packed back to back from
// offset 0 with no gap or overlap, the last one ending at the end of the file, and
// end - begin == numel * itemsize. The writer's layout is the reference's too: tensors sorted by
// dtype (widest alignment first) then by name, so every tensor starts aligned to its item size,
// compact JSON with "__metadata__" first, padded with spaces to a multiple of 8 bytes.
import type { DType } from '../dtype.js';

/** Dtype names of the format. */
export type SafetensorsDType =
  | 'BOOL' | 'F4' | 'F6_E2M3' | 'F6_E3M2' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3' | 'F8_E8M0'
  | 'I16' | 'U16' | 'F16' | 'BF16' | 'I32' | 'U32' | 'F32' | 'C64' | 'F64' | 'I64' | 'U64';

interface DTypeInfo {
  /** Bits per element (sub-byte types pack several elements per byte). */
  bits: number;
  /** Position in the reference's Dtype enum, which is in increasing alignment order; the
   * writer sorts by it, descending. */
  rank: number;
  /** The Fovea dtype holding it unchanged, or null when Fovea has none. */
  fovea: DType | null;
}

const DTYPE_TABLE: Record<SafetensorsDType, DTypeInfo> = {
  BOOL: { bits: 8, rank: 0, fovea: 'bool' },
  F4: { bits: 4, rank: 1, fovea: null },
  F6_E2M3: { bits: 6, rank: 2, fovea: null },
  F6_E3M2: { bits: 6, rank: 3, fovea: null },
  U8: { bits: 8, rank: 4, fovea: null },
  I8: { bits: 8, rank: 5, fovea: null },
  F8_E5M2: { bits: 8, rank: 6, fovea: null },
  F8_E4M3: { bits: 8, rank: 7, fovea: null },
  F8_E8M0: { bits: 8, rank: 8, fovea: null },
  I16: { bits: 16, rank: 9, fovea: null },
  U16: { bits: 16, rank: 10, fovea: null },
  F16: { bits: 16, rank: 11, fovea: 'f16' },
  BF16: { bits: 16, rank: 12, fovea: 'bf16' },
  I32: { bits: 32, rank: 13, fovea: 'i32' },
  U32: { bits: 32, rank: 14, fovea: null },
  F32: { bits: 32, rank: 15, fovea: 'f32' },
  C64: { bits: 64, rank: 16, fovea: null },
  F64: { bits: 64, rank: 17, fovea: 'f64' },
  I64: { bits: 64, rank: 18, fovea: 'i64' },
  U64: { bits: 64, rank: 19, fovea: null },
};

export const SAFETENSORS_DTYPES = Object.keys(DTYPE_TABLE) as SafetensorsDType[];

const TO_SAFETENSORS: Record<DType, SafetensorsDType> = {
  f32: 'F32', f64: 'F64', bf16: 'BF16', f16: 'F16', i32: 'I32', i64: 'I64', bool: 'BOOL',
};

/** The format's name for a Fovea dtype. */
export function safetensorsDType(d: DType): SafetensorsDType { return TO_SAFETENSORS[d]; }

/** The Fovea dtype that holds a file dtype unchanged, or null when there is none. */
export function foveaDType(d: SafetensorsDType): DType | null { return DTYPE_TABLE[d].fovea; }

/** The reference implementation's limit on the header length. */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;

/** An error about one file (and, where it applies, one tensor in it). */
export class SafetensorsError extends Error {
  readonly file: string;
  readonly tensor: string | null;
  constructor(file: string, tensor: string | null, problem: string, options?: { cause?: unknown }) {
    super(`safetensors: ${file}: ${tensor === null ? '' : `tensor ${JSON.stringify(tensor)}: `}${problem}`, options);
    this.name = 'SafetensorsError';
    this.file = file;
    this.tensor = tensor;
  }
}

/** One tensor's entry in a header. */
export interface SafetensorsTensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data buffer. */
  dataOffsets: [number, number];
  /** end - begin. */
  byteLength: number;
}

/** A parsed, validated header. */
export interface SafetensorsHeader {
  file: string;
  /** N, the JSON header's length in bytes (padding included). */
  headerLength: number;
  /** 8 + N: where the data buffer starts in the file. */
  dataStart: number;
  /** Bytes in the data buffer (file size - dataStart). */
  dataLength: number;
  /** "__metadata__" (empty when absent). */
  metadata: Record<string, string>;
  /** Every tensor, in data-offset order. */
  tensors: Map<string, SafetensorsTensorInfo>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Elements in a shape, or null when the count is not a safe integer. */
function checkedNumel(shape: readonly number[]): number | null {
  let n = 1;
  for (const s of shape) {
    n *= s;
    if (!Number.isSafeInteger(n)) return null;
  }
  return n;
}

/** Bytes numel elements of dtype take, or an explanation of why they can't be stored. */
export function dtypeByteLength(dtype: SafetensorsDType, numel: number): number | string {
  const bits = DTYPE_TABLE[dtype].bits;
  if (bits % 8 === 0) {
    const n = numel * (bits / 8);
    return Number.isSafeInteger(n) ? n : `${numel} elements of ${dtype} overflow a byte count`;
  }
  if (!Number.isSafeInteger(numel * bits)) return `${numel} elements of ${dtype} overflow a byte count`;
  if ((numel * bits) % 8 !== 0) return `${numel} elements of ${bits}-bit ${dtype} do not fill whole bytes`;
  return (numel * bits) / 8;
}

function checkTensorEntry(file: string, name: string, v: unknown): SafetensorsTensorInfo {
  const fail = (problem: string): never => { throw new SafetensorsError(file, name, problem); };
  if (!isPlainObject(v)) fail(`header entry must be an object {dtype, shape, data_offsets}, got ${JSON.stringify(v)}`);
  const e = v as Record<string, unknown>;
  const dtype = e.dtype;
  if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(DTYPE_TABLE, dtype)) {
    fail(`unknown dtype ${JSON.stringify(dtype)}; the format defines ${SAFETENSORS_DTYPES.join(', ')}`);
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && (s as number) >= 0)) {
    fail(`shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  const offs = e.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
    fail(`data_offsets must be [begin, end] with non-negative integers, got ${JSON.stringify(offs)}`);
  }
  const [begin, end] = offs as [number, number];
  if (end < begin) fail(`data_offsets [${begin}, ${end}] end before they begin`);
  const numel = checkedNumel(shape as number[]);
  if (numel === null) fail(`shape ${JSON.stringify(shape)} has more elements than can be counted`);
  const need = dtypeByteLength(dtype as SafetensorsDType, numel as number);
  if (typeof need === 'string') fail(need);
  if (end - begin !== need) {
    fail(`data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} shape ${JSON.stringify(shape)} ` +
      `needs ${need} (size mismatch)`);
  }
  return { name, dtype: dtype as SafetensorsDType, shape: (shape as number[]).slice(), dataOffsets: [begin, end], byteLength: end - begin };
}

/** Reads the header length from the first 8 bytes and checks it against the file size.
 * Returns N. */
export function checkHeaderLength(file: string, first8: Uint8Array, fileSize: number): number {
  if (fileSize < 8) {
    throw new SafetensorsError(file, null, `the file is ${fileSize} bytes, too short for the 8-byte header length ` +
      '(not a safetensors file, or truncated)');
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
    throw new SafetensorsError(file, null, `header length ${n} exceeds the format's ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit ` +
      '(not a safetensors file?)');
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new SafetensorsError(file, null, `header length ${len} runs past the end of the file (${fileSize} bytes): ` +
      'the file is truncated or not a safetensors file');
  }
  return len;
}

/** Parses and validates the JSON header (the N bytes after the length). */
export function parseHeader(file: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const headerLength = headerBytes.length;
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(file, null, 'the header is not valid UTF-8 (not a safetensors file?)');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const snippet = text.length > 60 ? `${text.slice(0, 60)}...` : text;
    throw new SafetensorsError(file, null, `the header is not valid JSON (${(e as Error).message}); it starts ${JSON.stringify(snippet)}`);
  }
  if (!isPlainObject(json)) {
    const got = Array.isArray(json) ? 'an array' : JSON.stringify(json);
    throw new SafetensorsError(file, null, `the header must be a JSON object, got ${got}`);
  }

  const metadata: Record<string, string> = {};
  const entries: SafetensorsTensorInfo[] = [];
  for (const [key, v] of Object.entries(json)) {
    if (key === '__metadata__') {
      if (v === null) continue;
      if (!isPlainObject(v)) throw new SafetensorsError(file, null, `"__metadata__" must be an object of strings, got ${JSON.stringify(v)}`);
      for (const [mk, mv] of Object.entries(v)) {
        if (typeof mv !== 'string') {
          throw new SafetensorsError(file, null, `"__metadata__" value for ${JSON.stringify(mk)} must be a string, got ${JSON.stringify(mv)}`);
        }
        metadata[mk] = mv;
      }
      continue;
    }
    entries.push(checkTensorEntry(file, key, v));
  }

  for (const e of entries) {
    if (e.dataOffsets[1] > dataLength) {
      throw new SafetensorsError(file, e.name, `data_offsets [${e.dataOffsets.join(', ')}] run past the end of the ` +
        `data buffer (${dataLength} bytes after the ${dataStart}-byte header; the file is ${fileSize} bytes): ` +
        'offsets out of range, or the file is truncated (download or copy it again)');
    }
  }
  // Sorted by offsets, the tensors must tile [0, dataLength) exactly (empty ones anywhere).
  entries.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  let owner: SafetensorsTensorInfo | null = null;  // the tensor that ends at cursor
  for (const e of entries) {
    const [begin, end] = e.dataOffsets;
    if (begin < cursor) {
      throw new SafetensorsError(file, e.name, `data_offsets [${begin}, ${end}] overlap tensor ` +
        `${JSON.stringify(owner!.name)} at [${owner!.dataOffsets.join(', ')}]`);
    }
    if (begin > cursor) {
      throw new SafetensorsError(file, e.name, `data_offsets [${begin}, ${end}] leave bytes [${cursor}, ${begin}) of the ` +
        'data buffer unused; the format packs tensors back to back');
    }
    if (end > cursor) { cursor = end; owner = e; }
  }
  if (cursor !== dataLength) {
    throw new SafetensorsError(file, null, `the tensors end at byte ${cursor} of the data buffer but it holds ` +
      `${dataLength} bytes (${dataLength - cursor} trailing bytes belong to no tensor)`);
  }
  const tensors = new Map<string, SafetensorsTensorInfo>();
  for (const e of entries) tensors.set(e.name, e);
  return { file, headerLength, dataStart, dataLength, metadata, tensors };
}

/** What the writer needs of one tensor. */
export interface HeaderEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  byteLength: number;
}

/** The bytes before the data (8-byte length + padded JSON) and the entries in data order with
 * their offsets. */
export interface BuiltHeader {
  bytes: Uint8Array;
  order: { entry: HeaderEntry; begin: number; end: number }[];
  dataLength: number;
}

/** Compares names as the reference does (Rust String order: UTF-8 bytes). */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Lays out tensors as the reference writer does (see the file comment). */
export function buildHeader(entries: readonly HeaderEntry[], metadata?: Record<string, string>): BuiltHeader {
  const sorted = entries.slice().sort((a, b) => DTYPE_TABLE[b.dtype].rank - DTYPE_TABLE[a.dtype].rank || compareUtf8(a.name, b.name));
  // Built by hand, not JSON.stringify of one object: JS objects put integer-like keys first.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const m = Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    parts.push(`"__metadata__":{${m.join(',')}}`);
  }
  const order: BuiltHeader['order'] = [];
  let offset = 0;
  for (const e of sorted) {
    const begin = offset, end = offset + e.byteLength;
    offset = end;
    order.push({ entry: e, begin, end });
    parts.push(`${JSON.stringify(e.name)}:{"dtype":${JSON.stringify(e.dtype)},"shape":[${e.shape.join(',')}],` +
      `"data_offsets":[${begin},${end}]}`);
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const bytes = Buffer.alloc(8 + padded, 0x20);  // spaces pad the JSON
  bytes.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(bytes, 8);
  return { bytes, order, dataLength: offset };
}
