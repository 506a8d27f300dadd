// The GC finalizer is a backstop: tensors dropped without dispose() are freed once V8
// collects them. Runs in a child Node with --expose-gc against the built package (dist/),
// which `npm install` / `npm ci` produce before the tests run.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const dist = join(__dirname, '..', 'dist', 'index.js');

it('tensors dropped without dispose are freed by the GC backstop', () => {
  expect(existsSync(dist), `${dist} missing: run npm run build`).toBe(true);
  const script = `
    const { zeros, memoryStats } = await import(${JSON.stringify(dist)});
    const before = memoryStats().cpu;
    (() => { for (let i = 0; i < 50; i++) zeros([256, 1024]).add(1); })();  // 100 MiB dropped
    const peak = memoryStats().cpu.liveBytes - before.liveBytes;
    for (let i = 0; i < 20 && memoryStats().cpu.liveBytes > before.liveBytes; i++) {
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 20));
    }
    const after = memoryStats().cpu;
    console.log(JSON.stringify({ peak, leftBytes: after.liveBytes - before.liveBytes, leftTensors: after.liveTensors - before.liveTensors }));
  `;
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').pop()!);
  expect(r.peak).toBeGreaterThanOrEqual(100 * 1024 * 1024);
  expect(r.leftBytes).toBe(0);
  expect(r.leftTensors).toBe(0);
});
