// Fuzzing the safetensors reader: seeded random byte strings and seeded mutations of a valid
// file (flipped header bytes, a rewritten length prefix, truncation, trailing junk, and JSON-level
// splices: negative / huge / fractional offsets, shapes whose element count overflows, odd dtype
// strings, duplicate keys, non-string __metadata__ values, hostile names). Every input must
// either be rejected with a SafetensorsError naming the file, or load with every tensor's byte
// range inside the file and its bytes equal to those bytes — never crash, hang, read out of
// bounds, allocate more than the file holds, or leak a tensor. Seeds are fixed so a failure
// replays; the failing input is written next to the message.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Tensor, arange, memoryStats, tensor } from '../src/index.js';
import { SafetensorsError, loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../src/safetensors/index.js';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let dir: string;
let valid: Buffer;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fovea-st-fuzz-'));
  const p = join(dir, 'valid.safetensors');
  const ts: Record<string, Tensor> = {
    'w.f32': arange(0, 12, 1, { dtype: 'f32' }).reshape([3, 4]),
    'w.bf16': arange(0, 6, 1, { dtype: 'bf16' }),
    'w.f16': arange(0, 5, 1, { dtype: 'f16' }),
    'ids.i64': arange(0, 3, 1, { dtype: 'i64' }),
    'ids.i32': arange(0, 4, 1, { dtype: 'i32' }),
    mask: tensor([true, false, true], { dtype: 'bool' }),
    scalar: tensor(2.5, { dtype: 'f64' }),
    empty: tensor(new Float32Array(0), { shape: [0, 7], dtype: 'f32' }),
  };
  saveSafetensors(p, ts, { metadata: { format: 'pt', note: 'fuzz' } });
  for (const t of Object.values(ts)) t.dispose();
  valid = readFileSync(p);
});
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

const liveCpu = () => memoryStats().cpu.liveTensors;

/** Runs the reader on bytes; returns 'ok' or 'rejected', and fails the test on anything else. */
function check(bytes: Buffer, what: string): 'ok' | 'rejected' {
  const p = join(dir, 'case.safetensors');
  writeFileSync(p, bytes);
  const ctx = `${what}: input (base64) ${bytes.length > 600 ? `${bytes.length} bytes` : bytes.toString('base64')}`;
  const expectRejection = (e: unknown) => {
    if (!(e instanceof SafetensorsError)) throw new Error(`${ctx}: expected a SafetensorsError, got ${String(e)}`, { cause: e });
    if (!e.message.includes(p) || e.message.length < p.length + 20) throw new Error(`${ctx}: unhelpful message ${e.message}`);
  };
  let header;
  try {
    header = readSafetensorsHeader(p);
  } catch (e) {
    expectRejection(e);
    const before = liveCpu();
    try { loadSafetensors(p); } catch (e2) { expectRejection(e2); }
    if (liveCpu() !== before) throw new Error(`${ctx}: a rejected file leaked tensors`);
    return 'rejected';
  }
  // The header was accepted: every range lies in the file, and the ranges tile the data.
  let covered = 0;
  for (const info of header.tensors.values()) {
    const [b, e] = info.dataOffsets;
    if (!(b >= 0 && e >= b && header.dataStart + e <= bytes.length)) throw new Error(`${ctx}: ${info.name} range [${b}, ${e}) outside the file`);
    covered += e - b;
  }
  if (covered !== header.dataLength || header.dataStart + header.dataLength !== bytes.length) {
    throw new Error(`${ctx}: accepted ranges cover ${covered} of ${header.dataLength} data bytes`);
  }
  const before = liveCpu();
  let loaded: Map<string, Tensor>;
  try {
    loaded = loadSafetensors(p);
  } catch (e) {
    expectRejection(e);  // e.g. a dtype Fovea cannot hold, or BOOL bytes other than 0/1
    if (liveCpu() !== before) throw new Error(`${ctx}: a failed load leaked tensors`);
    return 'rejected';
  }
  for (const [name, t] of loaded) {
    const info = header.tensors.get(name)!;
    const want = bytes.subarray(header.dataStart + info.dataOffsets[0], header.dataStart + info.dataOffsets[1]);
    if (!Buffer.from(t.rawBytes()).equals(want)) throw new Error(`${ctx}: ${name} loaded bytes differ from the file`);
    t.dispose();
  }
  return 'ok';
}

/** A u64 length prefix + body. */
function withLength(n: bigint, body: Buffer): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt.asUintN(64, n));
  return Buffer.concat([len, body]);
}

describe('safetensors reader fuzz', () => {
  it('2,000 random byte strings are rejected cleanly', () => {
    const r = prng(0x5eed0001);
    const int = (n: number) => Math.floor(r() * n);
    let ok = 0;
    for (let i = 0; i < 2000; i++) {
      const len = [0, 1, 7, 8, 9, 16, 64, 256, 1024, 4096][int(10)] + int(8);
      const body = Buffer.alloc(len);
      for (let j = 0; j < len; j++) body[j] = int(256);
      const mode = int(4);
      let bytes: Buffer = body;
      if (mode === 1 && len >= 8) bytes.writeBigUInt64LE(BigInt(int(len - 7)), 0);  // a plausible header length
      if (mode === 2 && len >= 10) {  // plausible length and a JSON-looking start
        bytes.writeBigUInt64LE(BigInt(len - 8 - int(Math.min(len - 8, 32))), 0);
        bytes[8] = 0x7b;
      }
      if (mode === 3) bytes = withLength(BigInt(int(2 ** 31)) * BigInt(int(2 ** 31) + 1), body);  // huge lengths
      if (check(bytes, `random #${i} (mode ${mode})`) === 'ok') ok++;
    }
    expect(ok).toBeLessThan(20);  // random bytes essentially never form a valid file
  });

  it('2,000 mutations of a valid file load or are rejected cleanly', () => {
    const r = prng(0x5eed0002);
    const int = (n: number) => Math.floor(r() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
    const n0 = Number(valid.readBigUInt64LE(0));
    const headerText = valid.subarray(8, 8 + n0).toString('utf8');
    const data = valid.subarray(8 + n0);
    const rebuild = (text: string, pad = true) => {
      let body = Buffer.from(text, 'utf8');
      if (pad && r() < 0.5) body = Buffer.concat([body, Buffer.alloc((8 - (body.length % 8)) % 8, 0x20)]);
      return Buffer.concat([withLength(BigInt(body.length), body), data]);
    };
    const HUGE = [-1, -(2 ** 31), 2 ** 32, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 1e300, 1.5, 0.1, -0, 'x', null, true, [], {}];
    const DTYPES = ['F32', 'BF16', 'F16', 'F64', 'I64', 'I32', 'BOOL', 'U8', 'I8', 'F8_E4M3', 'F4', 'F6_E2M3', 'C64', 'U64',
      'f32', 'F31', '', '__proto__', 'toString', 'constructor', 'hasOwnProperty', 7, null, ['F32'], { F32: 1 }];
    const SHAPES = [[2 ** 40, 2 ** 40], [2 ** 26, 2 ** 26], [2 ** 53], [-1], [1.5], [0, 2 ** 60], [0, 2 ** 50], ['3'], 3, null, [],
      [1, 1, 1, 1, 1, 1, 1, 1], [2 ** 20, 2 ** 20, 2 ** 20], [NaN]];
    const META = [{ a: 1 }, { a: null }, { a: { b: 'c' } }, { a: ['x'] }, 'pt', 3, [], null, { format: 'pt' }, { '': '' }];
    const FRAGMENTS = ['{', '}', '[', ']', ',', ':', '"', '\\', '\\u0000', '"data_offsets":[0,1]', '"shape":[]', '"dtype":"U8"',
      '"__metadata__":{}', 'null', '-1', '1e999', '\u{1F600}', '\xff', '"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'];
    const counts = { ok: 0, rejected: 0 };

    for (let i = 0; i < 2000; i++) {
      const kind = int(8);
      let bytes: Buffer;
      let what = `mutation #${i} kind ${kind}`;
      if (kind === 0) {  // flip header bytes
        bytes = Buffer.from(valid);
        for (let k = 1 + int(4); k > 0; k--) bytes[8 + int(n0)] ^= 1 << int(8);
      } else if (kind === 1) {  // rewrite the length prefix
        bytes = Buffer.from(valid);
        const choices = [BigInt(n0 + int(17) - 8), BigInt(int(valid.length + 64)), 0n, 1n, 2n ** 63n, 2n ** 64n - 1n, 100_000_001n, BigInt(n0) + 2n ** 32n];
        bytes.writeBigUInt64LE(BigInt.asUintN(64, pick(choices)), 0);
      } else if (kind === 2) {  // truncate or extend
        bytes = r() < 0.7 ? valid.subarray(0, int(valid.length)) : Buffer.concat([valid, Buffer.alloc(1 + int(64), int(256))]);
      } else if (kind === 3) {  // splice a text fragment into the JSON
        const at = int(headerText.length + 1);
        const cut = int(4);
        const text = headerText.slice(0, at) + pick(FRAGMENTS) + headerText.slice(at + cut);
        bytes = rebuild(text, false);
      } else if (kind === 4) {  // duplicate a key (the text holds it twice; JSON.parse keeps the last)
        const h = JSON.parse(headerText);
        const names = Object.keys(h).filter((k) => k !== '__metadata__');
        const name = pick(names);
        const other = h[pick(names)];
        const dup = `${JSON.stringify(name)}:${JSON.stringify(r() < 0.5 ? other : h[name])}`;
        const text = r() < 0.5 ? `{${dup},${headerText.trim().slice(1)}` : `${headerText.trim().slice(0, -1)},${dup}}`;
        bytes = rebuild(text);
        what += ` (duplicate ${name})`;
      } else {  // structural edits to one entry, or to the metadata
        const h = JSON.parse(headerText);
        const names = Object.keys(h).filter((k) => k !== '__metadata__');
        const name = pick(names);
        const e = h[name];
        const edit = int(9);
        if (edit === 0) e.data_offsets = [pick(HUGE), pick(HUGE)];
        else if (edit === 1) e.data_offsets[int(2)] = pick(HUGE);
        else if (edit === 2) e.data_offsets = [e.data_offsets[0] + int(9) - 4, e.data_offsets[1] + int(9) - 4];
        else if (edit === 3) e.shape = pick(SHAPES);
        else if (edit === 4) e.dtype = pick(DTYPES);
        else if (edit === 5) h.__metadata__ = pick(META);
        else if (edit === 6) { h[pick(['__proto__', 'constructor', '', '\u0000', 'a'.repeat(1000)])] = e; delete h[name]; }
        else if (edit === 7) h[name] = pick([null, 3, 'F32', [], { dtype: 'F32' }, { ...e, extra: 1 }]);
        else { const other = h[pick(names)]; e.data_offsets = other.data_offsets.slice(); }  // overlap
        // Stringify by hand so a "__proto__" key stays an own key in the text.
        const text = `{${Object.entries(h).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
        bytes = rebuild(text);
        what += ` (edit ${edit} of ${name})`;
      }
      counts[check(bytes, what)]++;
    }
    // Both outcomes occur: the mutations reach past the first checks.
    expect(counts.ok).toBeGreaterThan(50);
    expect(counts.rejected).toBeGreaterThan(1000);
  });
});
