// Element types. The numeric codes are the native contract (src/core/dtype.h in
// @fovea/native); keep both in sync. f64 exists for gradcheck and oracles.

export type DType = 'f32' | 'f64' | 'bf16' | 'f16' | 'i32' | 'i64' | 'bool';

export const DTYPES: readonly DType[] = ['f32', 'f64', 'bf16', 'f16', 'i32', 'i64', 'bool'];
export const DTYPE_CODES: Record<DType, number> = { f32: 0, f64: 1, bf16: 2, f16: 3, i32: 4, i64: 5, bool: 6 };
export const DTYPE_SIZES: Record<DType, number> = { f32: 4, f64: 8, bf16: 2, f16: 2, i32: 4, i64: 8, bool: 1 };

export function isFloat(d: DType): boolean {
  return d === 'f32' || d === 'f64' || d === 'bf16' || d === 'f16';
}

export function checkDType(d: unknown, where: string): DType {
  if (typeof d !== 'string' || !(DTYPES as readonly string[]).includes(d)) {
    throw new Error(`${where}: unknown dtype ${JSON.stringify(d)}; expected one of ${DTYPES.join(', ')}`);
  }
  return d as DType;
}

/** Type promotion for binary ops (PyTorch's category rules): float beats integer beats bool;
 * among floats the wider wins, and bf16 with f16 gives f32. */
export function promoteTypes(a: DType, b: DType): DType {
  if (a === b) return a;
  const fa = isFloat(a), fb = isFloat(b);
  if (fa && !fb) return a;
  if (fb && !fa) return b;
  if (fa && fb) {
    if (a === 'f64' || b === 'f64') return 'f64';
    return 'f32';  // f32 with a 16-bit type, or bf16 with f16
  }
  if (a === 'bool') return b;
  if (b === 'bool') return a;
  return 'i64';  // i32 with i64
}

/** Default float dtype for tensors built from JS numbers. */
export const DEFAULT_FLOAT: DType = 'f32';

// ---- host conversions for 16-bit floats (used when reading/writing from JS) ----
const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function f32ToBf16Bits(x: number): number {
  f32buf[0] = x;
  const u = u32buf[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  const lsb = (u >>> 16) & 1;
  return ((u + 0x7fff + lsb) >>> 16) & 0xffff;
}
export function bf16BitsToF32(b: number): number {
  u32buf[0] = (b & 0xffff) << 16;
  return f32buf[0];
}
export function f16BitsToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
