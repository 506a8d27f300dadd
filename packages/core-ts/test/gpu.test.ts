// GPU group: the ops that have CUDA kernels, run on 'cuda' and compared with the CPU path on
// fresh random inputs. Skipped (not failed) where CUDA is unavailable; the reason is printed.
// Never a prerequisite for the green CPU run.
import { describe, expect, it } from 'vitest';
import { cudaStatus, matmul, randn, softmax, tidy, type Tensor } from '../src/index.js';
import { relError } from './fixtures.js';

const status = cudaStatus();
if (!status.available) console.log(`GPU tests skipped: ${status.reason}`);

describe.skipIf(!status.available)('CUDA ops match the CPU', () => {
  const cases: [string, (dev: string) => Tensor, number][] = [
    ['add/mul/exp broadcast', (d) => randn([64, 33], { seed: 1 }).to(d).mul(randn([33], { seed: 2 }).to(d)).add(1).exp(), 1e-6],
    ['sum over dims', (d) => randn([8, 16, 32], { seed: 3 }).to(d).sum([0, 2]), 1e-6],
    ['softmax', (d) => softmax(randn([16, 1000], { seed: 4 }).to(d), -1), 1e-6],
    ['matmul f32 (cuBLAS, fp32 compute)', (d) => matmul(randn([3, 64, 48], { seed: 5 }).to(d), randn([48, 40], { seed: 6 }).to(d)), 1e-5],
    ['matmul bf16', (d) => matmul(randn([64, 48], { seed: 7, dtype: 'bf16' }).to(d), randn([48, 40], { seed: 8, dtype: 'bf16' }).to(d)), 1e-2],
  ];
  for (const [name, fn, tol] of cases) {
    it(name, () => tidy(() => {
      const cpu = fn('cpu').to('f64').dataNumbers();
      const gpu = fn('cuda').to('cpu').to('f64').dataNumbers();
      expect(relError(gpu, cpu)).toBeLessThanOrEqual(tol);
    }));
  }
});
