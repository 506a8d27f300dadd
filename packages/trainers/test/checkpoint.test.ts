// Tests of the atomic checkpoints (src/checkpoint/checkpoint.ts): layout and manifest, keepLast,
// incomplete or corrupt checkpoints skipped with a reason, bad input, and real kills: a child
// process saves in a loop and is SIGKILLed at random instants; every time, loadLatestCheckpoint
// returns a complete checkpoint whose contents belong to its step.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, truncateSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { spawn } from 'node:child_process';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { tensor, loadSafetensors } from '@fovea/core';
import {
  loadLatestCheckpoint, saveCheckpoint, verifyCheckpoint, listCheckpointDirs, removeCheckpointLeftovers,
} from '../src/checkpoint/checkpoint.js';

const root = mkdtempSync(join(tmpdir(), 'fovea-ckpt-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const runDir = () => join(root, `run${n++}`);

const parts = (step: number) => ({
  model: (dir: string) => {
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ step }));
    writeFileSync(join(dir, 'model.safetensors'), Buffer.alloc(1000, step % 256));
  },
  files: { 'optimizer.json': { step, lr: 1e-5 }, 'rng.json': `{"seed":${step}}`, 'data.json': Buffer.from(`{"pos":${step * 8}}`) },
});

describe('saveCheckpoint / loadLatestCheckpoint', () => {
  it('writes the layout, the manifest and the latest pointer; loads the newest', () => {
    const d = runDir();
    expect(loadLatestCheckpoint(d)).toBeNull();   // no run dir yet
    const info = saveCheckpoint(d, 5, parts(5));
    expect(info.dir).toBe(join(d, 'checkpoint-5'));
    expect(readdirSync(info.dir).sort()).toEqual(['complete.json', 'data.json', 'model', 'optimizer.json', 'rng.json']);
    expect(Object.keys(info.manifest.files).sort()).toEqual(['data.json', 'model/config.json', 'model/model.safetensors', 'optimizer.json', 'rng.json']);
    expect(info.manifest.files['model/model.safetensors'].size).toBe(1000);
    expect(JSON.parse(readFileSync(join(info.dir, 'optimizer.json'), 'utf8'))).toEqual({ step: 5, lr: 1e-5 });
    expect(readFileSync(join(d, 'latest'), 'utf8')).toBe('checkpoint-5\n');
    saveCheckpoint(d, 10, parts(10));
    const l = loadLatestCheckpoint(d)!;
    expect(l.step).toBe(10);
    expect(l.dir).toBe(join(d, 'checkpoint-10'));
    expect(l.skipped).toEqual([]);
    expect(readdirSync(d).filter((x) => x.includes('.tmp') || x.includes('.del'))).toEqual([]);
  });

  it('stores tensor sets as safetensors that load back', () => {
    const d = runDir();
    const m = new Map([['exp_avg.w', tensor([[1, 2], [3, 4]])], ['exp_avg_sq.w', tensor([0.5, 0.25])]]);
    const info = saveCheckpoint(d, 1, { tensors: { optimizer: m }, files: { 'optimizer.json': { step: 1 } } });
    const back = loadSafetensors(join(info.dir, 'optimizer.safetensors'));
    expect(back.get('exp_avg.w')!.toArray()).toEqual([[1, 2], [3, 4]]);
    expect(back.get('exp_avg_sq.w')!.toArray()).toEqual([0.5, 0.25]);
    expect(loadLatestCheckpoint(d)!.manifest.files['optimizer.safetensors'].size).toBeGreaterThan(0);
  });

  it('keeps the last K, deleting older ones only after the new one is complete', () => {
    const d = runDir();
    for (const s of [1, 2, 3, 4, 5]) saveCheckpoint(d, s, parts(s), { keepLast: 2 });
    expect(listCheckpointDirs(d).map((c) => c.step)).toEqual([5, 4]);
    saveCheckpoint(d, 6, parts(6), { keepLast: 1 });
    expect(listCheckpointDirs(d).map((c) => c.step)).toEqual([6]);
    saveCheckpoint(d, 7, parts(7));   // default: keep all
    expect(listCheckpointDirs(d).map((c) => c.step)).toEqual([7, 6]);
  });

  it('skips incomplete and corrupt checkpoints with a reason, and removes dead leftovers', () => {
    const d = runDir();
    for (const s of [1, 2, 3, 4, 5, 6]) saveCheckpoint(d, s, parts(s));
    unlinkSync(join(d, 'checkpoint-6', 'complete.json'));                         // marker missing
    writeFileSync(join(d, 'checkpoint-5', 'complete.json'), '{"format":');       // marker garbage
    truncateSync(join(d, 'checkpoint-4', 'model', 'model.safetensors'), 10);      // truncated file
    writeFileSync(join(d, 'checkpoint-3', 'rng.json'), '{"seed":9}');            // same size, edited
    writeFileSync(join(d, 'checkpoint-2', 'extra.bin'), 'x');                     // stray file
    // A leftover from a killed process (pid 2^22+1 is above Linux's pid_max default) and one of a
    // live process (ours is exempt: use the parent's pid, which is alive).
    mkdirSync(join(d, 'checkpoint-7.tmp-4194305'));
    mkdirSync(join(d, `checkpoint-8.tmp-${process.ppid}`));
    const l = loadLatestCheckpoint(d)!;
    expect(l.step).toBe(1);
    const reasons = l.skipped.map((s) => s.reason);
    expect(reasons[0]).toMatch(/missing complete\.json/);
    expect(reasons[1]).toMatch(/not valid JSON/);
    expect(reasons[2]).toMatch(/model\/model\.safetensors has 10 bytes, the manifest says 1000/);
    expect(reasons[3]).toMatch(/rng\.json has sha256/);
    expect(reasons[4]).toMatch(/extra\.bin is not in the manifest/);
    expect(existsSync(join(d, 'checkpoint-7.tmp-4194305'))).toBe(false);
    expect(existsSync(join(d, `checkpoint-8.tmp-${process.ppid}`))).toBe(true);   // its writer may still run
    rmSync(join(d, `checkpoint-8.tmp-${process.ppid}`), { recursive: true });
    // 'size' verification does not notice the same-size edit.
    expect(verifyCheckpoint(join(d, 'checkpoint-3'), { verify: 'size' }).ok).toBe(true);
    // A save over a corrupt directory of the same step replaces it; over a complete one refuses.
    saveCheckpoint(d, 6, parts(6));
    expect(loadLatestCheckpoint(d)!.step).toBe(6);
    expect(() => saveCheckpoint(d, 6, parts(6))).toThrow(/already exists and is complete/);
  });

  it('rejects bad input with clear errors and leaves nothing behind', () => {
    const d = runDir();
    expect(() => saveCheckpoint('', 1, {})).toThrow(/runDir must be a non-empty path/);
    expect(() => saveCheckpoint(d, -1, {})).toThrow(/step must be a non-negative integer, got -1/);
    expect(() => saveCheckpoint(d, 1.5, {})).toThrow(/step must be a non-negative integer/);
    expect(() => saveCheckpoint(d, 1, {}, { keepLast: 0 })).toThrow(/keepLast must be a positive integer/);
    expect(() => saveCheckpoint(d, 1, { files: { '../evil.json': {} } })).toThrow(/must be a relative path inside the checkpoint/);
    expect(() => saveCheckpoint(d, 1, { files: { '/etc/x': {} } })).toThrow(/must be a relative path/);
    expect(() => saveCheckpoint(d, 1, { files: { 'complete.json': {} } })).toThrow(/reserved/);
    expect(() => saveCheckpoint(d, 1, { files: { 'model/x': {} } })).toThrow(/reserved/);
    expect(() => saveCheckpoint(d, 1, { files: { 'a.safetensors': '' }, tensors: { a: new Map() } })).toThrow(/would overwrite file/);
    expect(() => saveCheckpoint(d, 1, { tensors: { a: {} as never } })).toThrow(/must be a Map<string, Tensor>/);
    expect(() => saveCheckpoint(d, 1, { model: 3 as never })).toThrow(/parts\.model must be a function/);
    expect(() => saveCheckpoint(d, 1, { files: { 'f.json': undefined as never } })).toThrow(/must be a Buffer, a string or a JSON-serializable value/);
    const cyc: Record<string, unknown> = {}; cyc.self = cyc;
    expect(() => saveCheckpoint(d, 1, { files: { 'f.json': cyc } })).toThrow(/not JSON-serializable/);
    // Errors while writing remove the temporary directory and leave no checkpoint.
    expect(() => saveCheckpoint(d, 1, { model: () => { throw new Error('disk full (simulated)'); } })).toThrow(/disk full/);
    expect(() => saveCheckpoint(d, 1, { model: (async () => {}) as never })).toThrow(/returned a Promise/);
    expect(existsSync(d) ? readdirSync(d) : []).toEqual([]);
    expect(loadLatestCheckpoint(d)).toBeNull();
    writeFileSync(join(root, 'afile'), 'x');
    expect(() => loadLatestCheckpoint(join(root, 'afile'))).toThrow(/is not a directory/);
    expect(() => verifyCheckpoint(d, { verify: 'md5' as never })).toThrow(/verify must be/);
  });
});

describe('kill -9 during saves', () => {
  it('always leaves a complete, verifiable latest checkpoint', async () => {
    // The child runs the real checkpoint.ts, transpiled to plain JS, with '@fovea/core' resolved
    // to the built package (the child cannot run TypeScript).
    const src = readFileSync(new URL('../src/checkpoint/checkpoint.ts', import.meta.url), 'utf8');
    const core = pathToFileURL(createRequire(import.meta.url).resolve('@fovea/core')).href;
    const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } })
      .outputText.replace(/from ['"]@fovea\/core['"]/, `from ${JSON.stringify(core)}`);
    const atomic = ts.transpileModule(readFileSync(new URL('../src/checkpoint/atomic.ts', import.meta.url), 'utf8'),
      { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    writeFileSync(join(root, 'atomic.mjs'), atomic);
    const mod = join(root, 'checkpoint_child.mjs');
    writeFileSync(mod, js.replace(/from ['"]\.\/atomic\.js['"]/, "from './atomic.mjs'"));
    const d = runDir();
    const K = 2;
    // Each save writes ~1.3 MB in several files, so kills land inside writes, fsyncs, renames and
    // pruning. data.json and the model bytes are tagged with the step to check what is loaded.
    const script = `import { saveCheckpoint, loadLatestCheckpoint } from ${JSON.stringify(pathToFileURL(mod).href)};
import { writeFileSync } from 'node:fs'; import { join } from 'node:path';
const d = ${JSON.stringify(d)};
let step = (loadLatestCheckpoint(d)?.step ?? 0) + 1;
for (;; step++) {
  saveCheckpoint(d, step, {
    model: (dir) => { writeFileSync(join(dir, 'config.json'), JSON.stringify({ step })); writeFileSync(join(dir, 'model.safetensors'), Buffer.alloc(1 << 20, step % 256)); },
    files: { 'data.json': { step }, 'optimizer.json': 'x'.repeat(300000 + step) },
  }, { keepLast: ${K} });
  process.stdout.write('saved ' + step + '\\n');
}`;
    let lastSaved = 0;
    let kills = 0;
    for (let round = 0; round < 8; round++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '', err = '';
      child.stdout.on('data', (b) => { out += b; });
      child.stderr.on('data', (b) => { err += b; });
      const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_c, sig) => res(sig)));
      // Wait for the first save of this round, then kill at a random instant of a later one.
      const t0 = Date.now();
      while (!out.includes('saved') && Date.now() - t0 < 20000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
      expect(err).toBe('');
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 150));
      child.kill('SIGKILL');
      const sig = await exited;
      if (sig === 'SIGKILL') kills++;
      const saved = [...out.matchAll(/saved (\d+)/g)].map((m) => Number(m[1]));
      expect(saved.length).toBeGreaterThan(0);
      lastSaved = saved[saved.length - 1];
      const l = loadLatestCheckpoint(d);
      expect(l, `round ${round}`).not.toBeNull();
      // Saves are sequential: the newest verified checkpoint is the last reported one or the one
      // after it (renamed but killed before printing).
      expect([lastSaved, lastSaved + 1]).toContain(l!.step);
      expect(JSON.parse(readFileSync(join(l!.dir, 'data.json'), 'utf8'))).toEqual({ step: l!.step });
      const model = readFileSync(join(l!.dir, 'model', 'model.safetensors'));
      expect(model.length).toBe(1 << 20);
      expect(model.every((b) => b === l!.step % 256)).toBe(true);
      // No leftovers after the load; at most K + 1 checkpoints (a kill before pruning finished).
      expect(readdirSync(d).filter((x) => /\.(tmp|del)-/.test(x))).toEqual([]);
      expect(listCheckpointDirs(d).length).toBeLessThanOrEqual(K + 1);
    }
    expect(kills).toBe(8);
    // One clean save after the last kill prunes back to exactly K.
    const last = loadLatestCheckpoint(d)!.step;
    saveCheckpoint(d, last + 1, parts(last + 1), { keepLast: K });
    expect(listCheckpointDirs(d).map((c) => c.step)).toEqual([last + 1, last]);
    expect(removeCheckpointLeftovers(d)).toEqual([]);
  }, 120_000);
});
