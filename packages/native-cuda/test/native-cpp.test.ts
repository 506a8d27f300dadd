// Runs the C++ test binary (packages/native-cuda/tests, built with the addon) as part of
// `npm test`, so the kernels' own reference comparisons gate CI too. GPU tests inside it
// skip themselves when CUDA is unavailable.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const bin = join(__dirname, '..', 'build', 'Release', 'fovea_native_tests');

it('native C++ tests pass', () => {
  expect(existsSync(bin), `${bin} was not built; run npm run build:native`).toBe(true);
  let out = '';
  try {
    out = execFileSync(bin, [], { encoding: 'utf8', env: { ...process.env, FOVEA_NUM_THREADS: '2' }, maxBuffer: 64 << 20 });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    throw new Error(`native tests failed:\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
  const summary = out.trim().split('\n').pop() ?? '';
  expect(summary).toMatch(/^\d+ passed, 0 failed, \d+ skipped$/);
  expect(Number(summary.split(' ')[0])).toBeGreaterThan(0);
}, 600_000);
