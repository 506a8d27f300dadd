// Tests of the metrics JSONL writer and reader (src/metrics/jsonl.ts): one line per step,
// a partial last line (a kill mid-write) ignored by the reader and cut by the next writer, and
// resuming from a checkpoint step (later records dropped).
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { MetricsWriter, readMetrics } from '../src/metrics/jsonl.js';

const dir = mkdtempSync(join(tmpdir(), 'fovea-metrics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = () => join(dir, `m${n++}.jsonl`);

describe('MetricsWriter / readMetrics', () => {
  it('writes one JSON object per line, step first, non-finite numbers as null', () => {
    const f = file();
    const w = new MetricsWriter(f);
    w.write(0, { reward: 0.5, lr: 2e-6 });
    w.write(1, { reward: NaN, kl: Infinity, step: 99, nested: { a: 1 } });
    w.close();
    expect(readFileSync(f, 'utf8')).toBe('{"step":0,"reward":0.5,"lr":0.000002}\n{"step":1,"reward":null,"kl":null,"nested":{"a":1}}\n');
    const r = readMetrics(f);
    expect(r.records.map((o) => o.step)).toEqual([0, 1]);
    expect(r.partialLine).toBe(false);
    expect(r.badLines).toEqual([]);
    expect(() => w.write(2, {})).toThrow(/closed/);
  });

  it('the reader ignores a partial last line and reports corrupt complete lines', () => {
    const f = file();
    writeFileSync(f, '{"step":0,"a":1}\n{"step":1,"a":2}\n{"step":2,"a":');
    const r = readMetrics(f);
    expect(r.records).toEqual([{ step: 0, a: 1 }, { step: 1, a: 2 }]);
    expect(r.partialLine).toBe(true);
    // a complete line that happens to parse is still dropped when it lacks its newline
    writeFileSync(f, '{"step":0}\ngarbage\n[1]\n\n{"step":3}');
    const r2 = readMetrics(f);
    expect(r2.records).toEqual([{ step: 0 }]);
    expect(r2.badLines).toEqual([2, 3]);
    expect(r2.partialLine).toBe(true);
  });

  it('a writer reopening after a kill cuts the partial line before appending', () => {
    const f = file();
    const w = new MetricsWriter(f);
    w.write(0, { a: 1 }); w.write(1, { a: 2 }); w.close();
    appendFileSync(f, '{"step":2,"a":3');           // the killed write
    const w2 = new MetricsWriter(f);
    expect(w2.recoveredPartialLine).toBe(true);
    w2.write(2, { a: 3 }); w2.close();
    const r = readMetrics(f);
    expect(r.records.map((o) => o.a)).toEqual([1, 2, 3]);
    expect(r.partialLine).toBe(false);
    expect(r.badLines).toEqual([]);
    // a file that is one partial line only
    const g = file();
    writeFileSync(g, '{"ste');
    const w3 = new MetricsWriter(g); w3.write(0, {}); w3.close();
    expect(readFileSync(g, 'utf8')).toBe('{"step":0}\n');
  });

  it('survives a real kill of a writing process', () => {
    const f = file();
    // A child writes big records in a loop and is SIGKILLed midway. It runs the real writer,
    // transpiled to plain JS (jsonl.ts imports only node:fs).
    const src = readFileSync(new URL('../src/metrics/jsonl.ts', import.meta.url), 'utf8');
    const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    const mod = join(dir, 'jsonl_child.mjs');
    writeFileSync(mod, js);
    const script = `import { MetricsWriter } from ${JSON.stringify(mod)};
      const w = new MetricsWriter(${JSON.stringify(f)});
      const pad = 'x'.repeat(1 << 16);
      process.stdout.write('ready\\n');
      for (let s = 0; ; s++) w.write(s, { pad });`;
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 1000, killSignal: 'SIGKILL', encoding: 'utf8' });
    expect(res.stdout).toContain('ready');        // the child did run
    expect(res.signal).toBe('SIGKILL');
    const r = readMetrics(f);
    expect(r.badLines).toEqual([]);
    expect(r.records.length).toBeGreaterThan(0);
    r.records.forEach((o, i) => expect(o.step).toBe(i));
    const w = new MetricsWriter(f);
    w.write(r.records.length, { pad: 'end' }); w.close();
    const r2 = readMetrics(f);
    expect(r2.partialLine).toBe(false);
    expect(r2.records.length).toBe(r.records.length + 1);
  });

  it('resumeAfterStep drops records past the checkpoint (and any partial line)', () => {
    const f = file();
    const w = new MetricsWriter(f);
    for (let s = 0; s < 6; s++) w.write(s, { v: s });
    w.close();
    appendFileSync(f, '{"step":6,');
    const w2 = new MetricsWriter(f, { resumeAfterStep: 3 });
    expect(w2.droppedRecords).toBe(2);
    expect(w2.recoveredPartialLine).toBe(true);
    w2.write(4, { v: 40 }); w2.close();
    expect(readMetrics(f).records).toEqual([0, 1, 2, 3].map((s) => ({ step: s, v: s })).concat([{ step: 4, v: 40 }]));
  });

  it('truncate starts fresh; bad arguments are refused', () => {
    const f = file();
    writeFileSync(f, '{"step":0}\n');
    const w = new MetricsWriter(f, { truncate: true });
    w.write(0, { fresh: true }); w.close();
    expect(readMetrics(f).records).toEqual([{ step: 0, fresh: true }]);
    const w2 = new MetricsWriter(f);
    expect(() => w2.write(-1, {})).toThrow(/step must be a non-negative integer/);
    expect(() => w2.write(1.5, {})).toThrow(/step/);
    expect(() => w2.write(1, [] as never)).toThrow(/metrics must be an object/);
    w2.close();
  });
});
