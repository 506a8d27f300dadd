// safetensors: our reader against an independent writer (tools/oracle/gen_safetensors.py, struct +
// json + numpy, committed fixture), our writer byte for byte against the same file and against
// the reference implementation's own golden bytes, round trips of every dtype, casts on load,
// sharded checkpoints, and malformed files (each must throw a SafetensorsError naming the file,
// the tensor and the problem, and leak nothing).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type DType, type Tensor, DTYPES, arange, cudaStatus, memoryStats, tensor } from '../src/index.js';
import {
  SafetensorsError, loadSafetensors, loadSafetensorsIndex, readSafetensorsHeader, saveSafetensors, saveSharded,
} from '../src/safetensors/index.js';

const FIXTURE_DIR = fileURLToPath(new URL('./fixtures/safetensors/', import.meta.url));
const FIXTURE = join(FIXTURE_DIR, 'reference.safetensors');

type Num = number | string;
interface ExpectedTensor { dtype: string; shape: number[]; values: Num[]; values_str?: string[]; as?: Record<string, Num[]> }
interface Expected {
  metadata: Record<string, string>;
  insertion_order: string[];
  header_length: number;
  file_size: number;
  tensors: Record<string, ExpectedTensor>;
}
const expected = JSON.parse(readFileSync(join(FIXTURE_DIR, 'expected.json'), 'utf8')) as Expected;
const FOVEA: Record<string, DType> = { F32: 'f32', F64: 'f64', BF16: 'bf16', F16: 'f16', I32: 'i32', I64: 'i64', BOOL: 'bool' };
const ITEMSIZE: Record<string, number> = { F32: 4, F64: 8, BF16: 2, F16: 2, I32: 4, I64: 8, BOOL: 1, U8: 1 };
const num = (v: Num): number => (typeof v === 'number' ? v : v === 'nan' ? NaN : v === 'inf' ? Infinity : -Infinity);

let dir: string;
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'fovea-safetensors-')); });
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

/** A file with a hand-made header: n overrides the length field. */
function rawFile(name: string, header: string | Buffer | object, data: Uint8Array | number = 0, n?: bigint): string {
  const json = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(n ?? BigInt(json.length));
  const body = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, json, body]));
  return p;
}

function fromExpected(e: ExpectedTensor): Tensor {
  const dtype = FOVEA[e.dtype];
  if (dtype === 'i64') return tensor(BigInt64Array.from(e.values_str!, BigInt), { shape: e.shape, dtype });
  if (dtype === 'f64') return tensor(Float64Array.from(e.values.map(num)), { shape: e.shape, dtype });
  if (dtype === 'i32') return tensor(Int32Array.from(e.values.map(num)), { shape: e.shape, dtype });
  if (dtype === 'bool') return tensor(e.values.map((v) => num(v) !== 0), { shape: e.shape, dtype });
  // bf16/f16 values are exact in f32, so writing them as f32 and rounding natively is exact.
  return tensor(Float32Array.from(e.values.map(num)), { shape: e.shape, dtype });
}

function expectValues(t: Tensor, e: ExpectedTensor, values: Num[] = e.values): void {
  expect(t.shape).toEqual(e.shape);
  if (t.dtype === 'i64') {
    expect(Array.from(t.data() as BigInt64Array)).toEqual(e.values_str!.map(BigInt));
    return;
  }
  // Object.is semantics: -0 and NaN are checked exactly.
  expect(t.dataNumbers()).toEqual(values.map(num));
}

/** Seeded values in [-2, 2) made on the host (a 32-bit LCG), as a tensor of the given dtype. */
function seeded(shape: number[], seed: number, dtype: DType = 'f32'): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float64Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; v[i] = (x / 2 ** 32) * 4 - 2; }
  return tensor(dtype === 'f64' ? v : Float32Array.from(v), { shape, dtype });
}

const liveCpuTensors = () => memoryStats().cpu.liveTensors;
const bytesOf = (m: Map<string, Tensor>) => new Map([...m].map(([k, t]) => [k, Buffer.from(t.rawBytes())]));
const disposeAll = (m: Map<string, Tensor>) => { for (const t of m.values()) t.dispose(); };

describe('reads the independent oracle fixture', () => {
  it('header: names in data order, dtypes, shapes, metadata', () => {
    const h = readSafetensorsHeader(FIXTURE);
    expect(h.headerLength).toBe(expected.header_length);
    expect(h.dataStart).toBe(8 + expected.header_length);
    expect(h.dataStart + h.dataLength).toBe(expected.file_size);
    expect(h.metadata).toEqual(expected.metadata);
    expect(new Set(h.tensors.keys())).toEqual(new Set(expected.insertion_order));
    let cursor = 0;
    for (const [name, info] of h.tensors) {
      const e = expected.tensors[name];
      expect(info.dtype).toBe(e.dtype);
      expect(info.shape).toEqual(e.shape);
      expect(info.dataOffsets[0]).toBe(cursor);  // data order, packed
      cursor = info.dataOffsets[1];
    }
    expect(cursor).toBe(h.dataLength);
  });

  it('loads every tensor with its values (f32, bf16, f16, f64, i64, i32, bool, 0-d, empty)', () => {
    const m = loadSafetensors(FIXTURE);
    expect([...m.keys()]).toEqual([...readSafetensorsHeader(FIXTURE).tensors.keys()]);
    for (const [name, e] of Object.entries(expected.tensors)) {
      const t = m.get(name)!;
      expect(t.dtype, name).toBe(FOVEA[e.dtype]);
      expectValues(t, e);
    }
    expect(m.get('scalar')!.ndim).toBe(0);
    expect(m.get('empty')!.size).toBe(0);
    disposeAll(m);
  });

  for (const target of ['f32', 'f64', 'bf16', 'f16'] as const) {
    it(`converts float tensors to ${target} on load as torch does (round to nearest even); ints keep their dtype`, () => {
      const m = loadSafetensors(FIXTURE, { dtype: target });
      for (const [name, e] of Object.entries(expected.tensors)) {
        const t = m.get(name)!;
        if (e.as) {
          expect(t.dtype, name).toBe(target);
          expectValues(t, e, e.as[target]);
        } else {
          expect(t.dtype, name).toBe(FOVEA[e.dtype]);
          expectValues(t, e);
        }
      }
      disposeAll(m);
    });
  }

  it('names loads a subset, in data order', () => {
    const m = loadSafetensors(FIXTURE, { names: ['mask', 'ids.i64'] });
    expect([...m.keys()]).toEqual(['ids.i64', 'mask']);
    disposeAll(m);
    expect(() => loadSafetensors(FIXTURE, { names: ['nope'] })).toThrow(/tensor "nope": no such tensor in the file; it has/);
    expect(() => loadSafetensors(FIXTURE, { dtype: 'i32' })).toThrow(/dtype converts float tensors/);
  });
});

describe('writes the reference layout', () => {
  it('reproduces the oracle file byte for byte from the same tensors and metadata', () => {
    const ts: Record<string, Tensor> = {};
    for (const name of expected.insertion_order) ts[name] = fromExpected(expected.tensors[name]);
    const p = join(dir, 'same.safetensors');
    saveSafetensors(p, ts, { metadata: expected.metadata });
    expect(readFileSync(p).equals(readFileSync(FIXTURE))).toBe(true);
    for (const t of Object.values(ts)) t.dispose();
  });

  it("matches the reference implementation's golden bytes (tensor.rs tests)", () => {
    const header = (json: string) => {
      const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(padded.length));
      return Buffer.concat([len, Buffer.from(padded)]);
    };
    const p = join(dir, 'golden.safetensors');
    saveSafetensors(p, {});
    expect(readFileSync(p)).toEqual(Buffer.from([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]));
    saveSafetensors(p, {}, { metadata: { framework: 'pt' } });
    expect(readFileSync(p)).toEqual(header('{"__metadata__":{"framework":"pt"}}'));
    expect(readFileSync(p).length).toBe(48);
    const x = arange(0, 6, 1, { dtype: 'f32' }).reshape([1, 1, 2, 3]);
    saveSafetensors(p, { attn0: x });
    const want = Buffer.concat([
      header('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}'),
      Buffer.from(new Float32Array([0, 1, 2, 3, 4, 5]).buffer),
    ]);
    expect(want.readBigUInt64LE(0)).toBe(72n);
    expect(readFileSync(p)).toEqual(want);
    x.dispose();
  });

  it('header: 8-byte multiple padded with spaces, widest dtypes first then by name, offsets packed and aligned', () => {
    const ts = {
      z_bool: tensor([true, false], { dtype: 'bool' }), b_f16: tensor([1, 2, 3], { dtype: 'f16' }),
      a_f32: tensor([1], { dtype: 'f32' }), c_i64: tensor([5], { dtype: 'i64' }), a_bf16: tensor([1], { dtype: 'bf16' }),
      'é_f32': tensor([2], { dtype: 'f32' }), z_f32: tensor([3], { dtype: 'f32' }), '0': tensor([4], { dtype: 'f64' }),
    };
    const p = join(dir, 'layout.safetensors');
    saveSafetensors(p, ts, { metadata: { b: '1', a: '2' } });
    const bytes = readFileSync(p);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = bytes.subarray(8, 8 + n).toString('utf8');
    expect(text.trimEnd().endsWith('}')).toBe(true);
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
    expect(text.startsWith('{"__metadata__":{"b":"1","a":"2"},')).toBe(true);
    const h = readSafetensorsHeader(p);
    // I64 > F64 > F32 > BF16 > F16 > BOOL (the reference enum), then UTF-8 byte order of names
    expect([...h.tensors.keys()]).toEqual(['c_i64', '0', 'a_f32', 'z_f32', 'é_f32', 'a_bf16', 'b_f16', 'z_bool']);
    let cursor = 0;
    for (const info of h.tensors.values()) {
      expect(info.dataOffsets[0]).toBe(cursor);
      expect((h.dataStart + info.dataOffsets[0]) % ITEMSIZE[info.dtype]).toBe(0);
      cursor = info.dataOffsets[1];
    }
    expect(h.dataStart + cursor).toBe(bytes.length);
    for (const t of Object.values(ts)) t.dispose();
  });
});

describe('round trips', () => {
  function sample(d: DType): Tensor {
    switch (d) {
      case 'f32': case 'f64': case 'bf16': case 'f16': return seeded([3, 5], 7, d);
      case 'i32': return tensor(Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 0, 5, -9, 12]), { shape: [2, 3], dtype: 'i32' });
      case 'i64': return tensor(BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n, 3n, -4n]), { shape: [2, 2], dtype: 'i64' });
      case 'bool': return tensor([true, false, false, true, true], { dtype: 'bool' });
    }
  }

  it('every dtype, plus a 0-d, an empty and non-contiguous views, with tiny chunks', () => {
    const before = liveCpuTensors();
    const ts = new Map<string, Tensor>();
    for (const d of DTYPES) ts.set(`x.${d}`, sample(d));
    const flat = arange(0, 24, 1, { dtype: 'f32' });
    const base = flat.reshape([2, 3, 4]);
    ts.set('transposed', base.transpose(0, 2));
    ts.set('narrowed', base.narrow(1, 1, 2));
    ts.set('scalar', tensor(3.5, { dtype: 'f64' }));
    ts.set('empty', tensor([], { shape: [0, 3], dtype: 'bf16' }));
    const p = join(dir, 'roundtrip.safetensors');
    for (const chunkBytes of [3, 1 << 20]) {
      saveSafetensors(p, ts, { chunkBytes, metadata: {} });
      const back = loadSafetensors(p, { chunkBytes });
      expect(new Set(back.keys())).toEqual(new Set(ts.keys()));
      for (const [name, t] of ts) {
        const u = back.get(name)!;
        expect(u.dtype, name).toBe(t.dtype);
        expect(u.shape, name).toEqual(t.shape);
        expect(Buffer.from(u.rawBytes()).equals(Buffer.from(t.rawBytes())), name).toBe(true);
      }
      expect(readSafetensorsHeader(p).metadata).toEqual({});
      disposeAll(back);
    }
    disposeAll(ts);
    base.dispose();
    flat.dispose();
    expect(liveCpuTensors()).toBe(before);
  });

  it('casts on load: a bf16 file read as f32 is exact; an f32 file read as bf16 rounds like tensor.to', () => {
    const x = seeded([4, 7], 3);
    const xb = x.to('bf16');
    const p = join(dir, 'cast.safetensors');
    saveSafetensors(p, { x, xb });
    const asBf16 = loadSafetensors(p, { dtype: 'bf16' });
    expect(asBf16.get('x')!.dtype).toBe('bf16');
    expect(Buffer.from(asBf16.get('x')!.rawBytes()).equals(Buffer.from(xb.rawBytes()))).toBe(true);
    const asF32 = loadSafetensors(p, { dtype: 'f32' });
    expect(asF32.get('xb')!.dtype).toBe('f32');
    expect(asF32.get('xb')!.dataNumbers()).toEqual(xb.dataNumbers());
    expect(asF32.get('x')!.dataNumbers()).toEqual(x.dataNumbers());
    disposeAll(asBf16); disposeAll(asF32); x.dispose(); xb.dispose();
  });
});

describe('sharded checkpoints (Hugging Face layout)', () => {
  it('splits greedily under maxShardBytes, writes the index, loads from the directory or the index', () => {
    const sd = join(dir, 'sharded');
    const ts = {
      a: seeded([100], 1), b: seeded([300], 2, 'bf16'),
      c: tensor(BigInt64Array.from({ length: 10 }, (_, i) => BigInt(i) * 3n), { dtype: 'i64' }), d: seeded([50], 4),
    };
    // bytes: a 400, b 600, c 80, d 200 -> [a] [b, c] [d]
    const r = saveSharded(sd, ts, { maxShardBytes: 700, metadata: { format: 'pt' } });
    const files = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];
    expect(r.files).toEqual(files);
    expect(r.totalSize).toBe(1280);
    expect(readdirSync(sd).sort()).toEqual([...files, 'model.safetensors.index.json'].sort());
    const index = JSON.parse(readFileSync(r.indexFile!, 'utf8'));
    expect(index).toEqual({ metadata: { total_size: 1280 }, weight_map: { a: files[0], b: files[1], c: files[1], d: files[2] } });
    expect(readSafetensorsHeader(join(sd, files[1])).metadata).toEqual({ format: 'pt' });

    for (const m of [loadSafetensorsIndex(sd), loadSafetensorsIndex(r.indexFile!)]) {
      expect(new Set(m.keys())).toEqual(new Set(['a', 'b', 'c', 'd']));
      for (const [k, t] of Object.entries(ts)) expect(Buffer.from(m.get(k)!.rawBytes()).equals(Buffer.from(t.rawBytes())), k).toBe(true);
      disposeAll(m);
    }
    const some = loadSafetensorsIndex(sd, { names: ['d', 'b'], dtype: 'f32' });
    expect([...some.keys()].sort()).toEqual(['b', 'd']);
    expect(some.get('b')!.dtype).toBe('f32');
    expect(some.get('b')!.dataNumbers()).toEqual(ts.b.dataNumbers());
    disposeAll(some);
    expect(() => loadSafetensorsIndex(sd, { names: ['zz'] })).toThrow(/tensor "zz": no such tensor in the weight_map/);

    // One shard's worth: a single model.safetensors, and the stale index and shards are removed.
    const r1 = saveSharded(sd, { a: ts.a });
    expect(r1).toEqual({ files: ['model.safetensors'], indexFile: null, totalSize: 400 });
    expect(readdirSync(sd)).toEqual(['model.safetensors']);
    const single = loadSafetensorsIndex(sd);
    expect([...single.keys()]).toEqual(['a']);
    disposeAll(single);
    for (const t of Object.values(ts)) t.dispose();
  });

  it('a tensor larger than the limit gets its own shard; broken indexes are reported', () => {
    const sd = join(dir, 'sharded2');
    const big = seeded([64], 5), small = seeded([2], 6);
    const r = saveSharded(sd, { small, big, small2: small }, { maxShardBytes: 100 });
    expect(r.files.length).toBe(3);
    const before = liveCpuTensors();
    rmSync(join(sd, r.files[2]));
    expect(() => loadSafetensorsIndex(sd)).toThrow(/model-00003-of-00003\.safetensors: this shard, listed in .*index\.json, is missing/);
    expect(liveCpuTensors()).toBe(before);  // the shards loaded before the failure were disposed
    writeFileSync(r.indexFile!, JSON.stringify({ weight_map: { big: '../evil.safetensors' } }));
    expect(() => loadSafetensorsIndex(sd)).toThrow(/tensor "big": weight_map entry must be a shard file name inside/);
    writeFileSync(r.indexFile!, JSON.stringify({ weight_map: { small: r.files[1] } }));
    expect(() => loadSafetensorsIndex(sd)).toThrow(/tensor "small": .*puts this tensor in this shard, but the shard does not hold it/);
    writeFileSync(r.indexFile!, '{"metadata": {}');
    expect(() => loadSafetensorsIndex(r.indexFile!)).toThrow(/cannot read the index as JSON/);
    expect(() => loadSafetensorsIndex(join(dir, 'nowhere'))).toThrow(/no such file or directory/);
    expect(() => loadSafetensorsIndex(dir)).toThrow(/holds neither model\.safetensors\.index\.json nor model\.safetensors/);
    big.dispose(); small.dispose();
  });
});

describe('malformed files throw a SafetensorsError naming the file, the tensor and the problem', () => {
  const f32x6 = { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] };
  const cases: [string, () => string, RegExp][] = [
    ['too short', () => { const p = join(dir, 'short.safetensors'); writeFileSync(p, Buffer.from([1, 2, 3])); return p; },
      /the file is 3 bytes, too short for the 8-byte header length/],
    ['header length past the end of the file', () => rawFile('hlen.safetensors', { w: f32x6 }, 24, 5000n),
      /header length 5000 runs past the end of the file \(\d+ bytes\)/],
    ['absurd header length', () => rawFile('huge.safetensors', '{}', 0, 1n << 63n), /header length 9223372036854775808 exceeds/],
    ['bad JSON', () => rawFile('json.safetensors', '{"w": {"dtype": "F32",', 0), /the header is not valid JSON/],
    ['JSON that is not an object', () => rawFile('array.safetensors', '[1, 2]', 0), /the header must be a JSON object, got an array/],
    ['invalid UTF-8', () => rawFile('utf8.safetensors', Buffer.from([0x7b, 0xff, 0x7d]), 0),
      /the header is not valid UTF-8/],
    ['unknown dtype', () => rawFile('dtype.safetensors', { w: { ...f32x6, dtype: 'F31' } }, 24),
      /tensor "w": unknown dtype "F31"; the format defines BOOL/],
    ['size mismatch', () => rawFile('size.safetensors', { w: { ...f32x6, data_offsets: [0, 20] } }, 20),
      /tensor "w": data_offsets \[0, 20\] hold 20 bytes but F32 shape \[2,3\] needs 24 \(size mismatch\)/],
    ['offsets out of range', () => rawFile('range.safetensors', { w: { ...f32x6, data_offsets: [8, 32] } }, 24),
      /tensor "w": data_offsets \[8, 32\] run past the end of the data buffer \(24 bytes/],
    ['overlapping offsets', () => rawFile('overlap.safetensors', {
      a: { dtype: 'I32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'I32', shape: [4], data_offsets: [8, 24] },
    }, 24), /tensor "b": data_offsets \[8, 24\] overlap tensor "a" at \[0, 16\]/],
    ['a gap between tensors', () => rawFile('gap.safetensors', {
      a: { dtype: 'I32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'I32', shape: [2], data_offsets: [16, 24] },
    }, 24), /tensor "b": data_offsets \[16, 24\] leave bytes \[8, 16\) of the data buffer unused/],
    ['trailing bytes', () => rawFile('trail.safetensors', { w: f32x6 }, 30), /6 trailing bytes belong to no tensor/],
    ['bad shape', () => rawFile('shape.safetensors', { w: { ...f32x6, shape: [2, -3] } }, 24), /tensor "w": shape must be an array of non-negative integers/],
    ['bad data_offsets', () => rawFile('offs.safetensors', { w: { ...f32x6, data_offsets: [0] } }, 24), /tensor "w": data_offsets must be \[begin, end\]/],
    ['reversed data_offsets', () => rawFile('rev.safetensors', { w: { ...f32x6, data_offsets: [24, 0] } }, 24), /tensor "w": data_offsets \[24, 0\] end before they begin/],
    ['non-string metadata', () => rawFile('meta.safetensors', { __metadata__: { epoch: 3 }, w: f32x6 }, 24),
      /"__metadata__" value for "epoch" must be a string, got 3/],
    ['a truncated file', () => {
      const p = join(dir, 'trunc.safetensors');
      saveSafetensors(p, { w: arange(0, 6, 1, { dtype: 'f32' }) });
      truncateSync(p, statSync(p).size - 5);
      return p;
    }, /tensor "w": data_offsets \[0, 24\] run past the end of the data buffer \(19 bytes.*truncated/],
    ['a missing file', () => join(dir, 'missing.safetensors'), /cannot open the file/],
  ];
  for (const [what, make, msg] of cases) {
    it(what, () => {
      const p = make();
      const before = liveCpuTensors();
      let err: unknown;
      try { loadSafetensors(p); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toMatch(msg);
      expect((err as Error).message).toContain(p);
      expect(() => readSafetensorsHeader(p)).toThrow(msg);
      expect(liveCpuTensors()).toBe(before);
    });
  }

  it('BOOL bytes other than 0/1 fail the load after other tensors were read, leaking nothing', () => {
    const p = rawFile('bool.safetensors', {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, m: { dtype: 'BOOL', shape: [3], data_offsets: [8, 11] },
    }, new Uint8Array([0, 0, 128, 63, 0, 0, 0, 64, 1, 2, 0]));
    const before = liveCpuTensors();
    expect(() => loadSafetensors(p)).toThrow(/tensor "m": BOOL element 1 is 2, not 0 or 1/);
    expect(liveCpuTensors()).toBe(before);
    const a = loadSafetensors(p, { names: ['a'] });
    expect(a.get('a')!.dataNumbers()).toEqual([1, 2]);
    disposeAll(a);
  });

  it('dtypes Fovea cannot hold are listed by the header and refused by the loader, which names them', () => {
    const p = rawFile('u8.safetensors', {
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, pix: { dtype: 'U8', shape: [4], data_offsets: [4, 8] },
    }, 8);
    expect(readSafetensorsHeader(p).tensors.get('pix')!.dtype).toBe('U8');
    expect(() => loadSafetensors(p)).toThrow(/tensor "pix": dtype U8 has no Fovea equivalent.*names option/);
    const m = loadSafetensors(p, { names: ['a'] });
    expect(m.size).toBe(1);
    disposeAll(m);
  });
});

describe('saving is atomic', () => {
  it('a failure while writing leaves the old file in place and no .tmp behind', () => {
    const p = join(dir, 'atomic.safetensors');
    const good = arange(0, 4, 1, { dtype: 'f32' });
    saveSafetensors(p, { good });
    const old = readFileSync(p);
    // A tensor whose storage fails when the writer reaches it (after the header and `a` are written).
    const poisoned = Object.create(good, { storage: { get() { throw new Error('boom: device lost'); } } }) as Tensor;
    expect(() => saveSafetensors(p, { a: good, z: poisoned })).toThrow(/atomic\.safetensors: tensor "z": writing failed: boom: device lost/);
    expect(readFileSync(p).equals(old)).toBe(true);
    expect(existsSync(`${p}.tmp`)).toBe(false);

    const gone = arange(0, 2, 1, { dtype: 'f32' });
    gone.dispose();
    expect(() => saveSafetensors(p, { gone })).toThrow(/tensor "gone" was disposed/);
    expect(() => saveSafetensors(p, { __metadata__: good })).toThrow(/"__metadata__" is reserved/);
    expect(() => saveSafetensors(p, { good }, { metadata: { n: 1 as unknown as string } })).toThrow(/metadata value for "n" must be a string/);
    expect(readFileSync(p).equals(old)).toBe(true);
    expect(existsSync(`${p}.tmp`)).toBe(false);
    expect(() => saveSafetensors(join(dir, 'no', 'such', 'dir.safetensors'), { good })).toThrow(/cannot create .*\.tmp/);
    good.dispose();
  });
});

describe.skipIf(!cudaStatus().available)('GPU', () => {
  it('loads onto cuda (cast on the device) and saves from cuda', () => {
    const m = loadSafetensors(FIXTURE, { device: 'cuda', dtype: 'bf16' });
    for (const [name, e] of Object.entries(expected.tensors)) {
      const t = m.get(name)!;
      expect(t.device, name).toBe('cuda:0');
      expectValues(t, e, e.as ? e.as.bf16 : e.values);
    }
    const p = join(dir, 'gpu.safetensors');
    saveSafetensors(p, m);
    const back = loadSafetensors(p);
    for (const [name, t] of m) expect(Buffer.from(back.get(name)!.rawBytes()).equals(Buffer.from(t.rawBytes())), name).toBe(true);
    disposeAll(m); disposeAll(back);
  });
});
