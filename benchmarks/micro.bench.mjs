// `npm run bench`: benny microbenchmarks of the CPU engine (ops per second). For the
// Each case discards its result inside tidy (a block body returning nothing): a returned
// tensor would survive tidy and accumulate across iterations.
// side-by-side comparison with PyTorch, see side-by-side.sh and RESULTS.md.
import b from 'benny';
import { randn, tidy, matmul, softmax, rmsNorm, ones, numThreads, cpuIsa } from '@fovea/core';

console.log(`fovea CPU engine: ${numThreads()} threads, ${cpuIsa()}`);

const a256 = randn([256, 256], { seed: 1 }), b256 = randn([256, 256], { seed: 2 });
const a1k = randn([1024, 1024], { seed: 3 }), b1k = randn([1024, 1024], { seed: 4 });
const x = randn([1024, 4096], { seed: 5 }), w = ones([4096]);
const small = randn([64, 64], { seed: 6 });

await b.suite(
  'fovea CPU ops',
  b.add('matmul 256x256x256 f32', () => { tidy(() => { matmul(a256, b256); }); }),
  b.add('matmul 1024x1024x1024 f32', () => { tidy(() => { matmul(a1k, b1k); }); }),
  b.add('softmax [1024, 4096] f32', () => { tidy(() => { softmax(x, -1); }); }),
  b.add('rmsNorm [1024, 4096] f32', () => { tidy(() => { rmsNorm(x, w, 1e-6); }); }),
  b.add('add+mul+exp chain [64, 64] (dispatch overhead)', () => { tidy(() => { small.add(1).mul(small).exp(); }); }),
  b.add('backward: 2-layer MLP [64, 256]', () => {
    tidy(() => {
      const w1 = randn([256, 256], { seed: 7 }).requiresGrad_();
      const h = randn([64, 256], { seed: 8 });
      h.matmul(w1).silu().sum().backward();
      w1.grad.dispose();
    });
  }),
  b.cycle(),
  b.complete(),
);
