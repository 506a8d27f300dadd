// Asking for a CUDA device without CUDA: the error says which piece is missing. Each case
// runs in a child Node (the loader caches its verdict per process) against the built package.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { cudaStatus } from '../src/index.js';

const dist = join(__dirname, '..', 'dist', 'index.js');

function cudaError(env: Record<string, string>): string {
  const script = `
    const { zeros } = await import(${JSON.stringify(dist)});
    try { zeros([2], { device: 'cuda' }); console.log('NO ERROR'); } catch (e) { console.log(e.message); }
  `;
  return execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8', env: { ...process.env, ...env },
  }).trim();
}

it('a missing sidecar library is named, with the path tried and how to build it', () => {
  const msg = cudaError({ FOVEA_CUDA_SIDECAR: '/nonexistent/libfovea_cuda.so' });
  expect(msg).toMatch(/sidecar/);
  expect(msg).toMatch(/\/nonexistent\/libfovea_cuda\.so/);
});

it.skipIf(cudaStatus().available)('without a driver or GPU the error says which is missing', () => {
  const msg = cudaError({});
  expect(msg).toMatch(/no NVIDIA driver|no CUDA GPU|driver .*older|CUDA device/i);
});
