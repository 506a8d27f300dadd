// Reads the committed reference fixtures (tools/oracle/gen_ops.py; format in
// tools/oracle/README.md): manifest.json plus one raw little-endian file per tensor.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type DType, type Tensor, tensor } from '../src/index.js';

export interface TensorEntry { file: string; dtype: string; shape: number[] }
export interface Manifest {
  case: string;
  op: string;
  params: Record<string, unknown>;
  inputs: string[];
  differentiable: string[];
  outputs: string[];
  projections?: Record<string, string>;
  tolerance?: { rtol?: number; atol?: number };
  tensors: Record<string, TensorEntry>;
}

export function loadManifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
}

/** Raw values as f64 numbers (bf16/f16 decoded; u8 as 0/1). */
export function readValues(dir: string, e: TensorEntry): number[] {
  const buf = readFileSync(join(dir, e.file));
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  switch (e.dtype) {
    case 'f32': return Array.from(new Float32Array(ab));
    case 'f64': return Array.from(new Float64Array(ab));
    case 'i32': return Array.from(new Int32Array(ab));
    case 'i64': return Array.from(new BigInt64Array(ab), Number);
    case 'u8': return Array.from(new Uint8Array(ab));
    case 'bf16': {
      const u = new Uint16Array(ab), f = new Float32Array(1), w = new Uint32Array(f.buffer);
      return Array.from(u, (b) => { w[0] = b << 16; return f[0]; });
    }
    case 'f16': {
      return Array.from(new Uint16Array(ab), (h) => {
        const s = h & 0x8000 ? -1 : 1, ex = (h >> 10) & 0x1f, m = h & 0x3ff;
        if (ex === 0) return s * m * 2 ** -24;
        if (ex === 31) return m ? NaN : s * Infinity;
        return s * (1 + m / 1024) * 2 ** (ex - 15);
      });
    }
    default: throw new Error(`fixture: unknown dtype ${e.dtype}`);
  }
}

const TENSOR_DTYPE: Record<string, DType> = { f32: 'f32', f64: 'f64', i32: 'i32', i64: 'i64', u8: 'bool', bf16: 'bf16', f16: 'f16' };

/** The fixture tensor as a Fovea tensor of the same dtype (u8 → bool). */
export function loadTensor(dir: string, e: TensorEntry): Tensor {
  const dtype = TENSOR_DTYPE[e.dtype];
  const values = readValues(dir, e);
  if (e.dtype === 'bf16' || e.dtype === 'f16') {
    // Decoded values are exactly representable, so writing them as f32 and rounding is exact.
    return tensor(Float32Array.from(values), { shape: e.shape, dtype });
  }
  return tensor(values, { shape: e.shape, dtype });
}

/** ‖a − b‖ / max(‖b‖, tiny): the norm-wise relative error used for float comparisons. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) !== Number.isNaN(b[i])) return Infinity;
    if (Number.isNaN(b[i])) continue;
    if (!Number.isFinite(b[i]) || !Number.isFinite(a[i])) { if (a[i] !== b[i]) return Infinity; continue; }
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}
