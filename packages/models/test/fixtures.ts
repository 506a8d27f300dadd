// Reads the processor fixtures (tools/oracle/gen_processor.py): manifest.json plus one raw
// little-endian file per tensor.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const FIXTURES = join(import.meta.dirname, 'fixtures', 'processor');

export interface Entry { file: string; dtype: 'u8' | 'i32' | 'f32'; shape: number[]; full_shape?: number[] }
export interface Case { dir: string; params: Record<string, any>; tensors: Record<string, Entry> }

export function loadCase(dir: string): Case {
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  return { dir, params: m.params, tensors: m.tensors };
}

export function read(c: Case, name: string): Uint8Array | Int32Array | Float32Array {
  const e = c.tensors[name];
  if (!e) throw new Error(`fixture ${c.dir} has no tensor ${name}`);
  const b = readFileSync(join(c.dir, e.file));
  const ab = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  return e.dtype === 'u8' ? new Uint8Array(ab) : e.dtype === 'i32' ? new Int32Array(ab) : new Float32Array(ab);
}
