// Memory: deterministic release through dispose() and tidy(), and a 500-step training loop
// (forward, backward, update) whose live bytes and tensors stay flat.
import { describe, expect, it } from 'vitest';
import {
  Linear, RMSNorm, Embedding, Module, SGD, AdamW, crossEntropy, memoryStats, ones, randn, tensor, tidy, keep, zeros,
} from '../src/index.js';
import type { Tensor } from '../src/index.js';

describe('dispose and tidy', () => {
  it('dispose frees storage once no view remains', () => {
    const before = memoryStats().cpu;
    const a = zeros([1024]);
    const v = a.reshape([32, 32]);
    expect(memoryStats().cpu.liveBytes).toBe(before.liveBytes + 4096);
    a.dispose();
    expect(memoryStats().cpu.liveBytes).toBe(before.liveBytes + 4096);  // the view holds it
    v.dispose();
    expect(memoryStats().cpu.liveBytes).toBe(before.liveBytes);
    expect(memoryStats().cpu.liveTensors).toBe(before.liveTensors);
  });

  it('tidy frees what is not returned, including nested scopes and objects', () => {
    const before = memoryStats().cpu;
    const { kept } = tidy(() => {
      const a = ones([100]);
      const b = a.mul(2);
      const inner = tidy(() => b.add(1).exp());
      keep(zeros([1])).dispose();
      return { kept: inner.sum() };
    });
    expect(kept.item()).toBeCloseTo(100 * Math.exp(3), 2);
    kept.dispose();
    expect(memoryStats().cpu.liveBytes).toBe(before.liveBytes);
    expect(memoryStats().cpu.liveTensors).toBe(before.liveTensors);
  });

  it('tidy disposes everything when fn throws', () => {
    const before = memoryStats().cpu;
    expect(() => tidy(() => { ones([10]).add(1); throw new Error('boom'); })).toThrow('boom');
    expect(memoryStats().cpu.liveBytes).toBe(before.liveBytes);
  });
});

class TinyLM extends Module {
  emb: Embedding; norm: RMSNorm; proj: Linear; head: Linear;
  constructor() {
    super();
    this.emb = this.registerModule('emb', new Embedding(50, 32, { seed: 1 }));
    this.norm = this.registerModule('norm', new RMSNorm(32));
    this.proj = this.registerModule('proj', new Linear(32, 64, { seed: 2 }));
    this.head = this.registerModule('head', new Linear(64, 50, { bias: false, seed: 3 }));
  }
  forward(ids: Tensor): Tensor {
    const h = this.norm.forward(this.emb.forward(ids));
    return this.head.forward(this.proj.forward(h).silu().softmax(-1).mul(4).gelu());
  }
}

describe('a training loop keeps memory flat', () => {
  for (const opt of ['sgd', 'adamw'] as const) {
    it(`500 steps with ${opt}`, () => {
      const model = new TinyLM();
      const optim = opt === 'sgd' ? new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }) : new AdamW(model.parameters(), { lr: 1e-2 });
      const ids = tensor([[1, 5, 9, 2, 7, 3, 3, 8]], { dtype: 'i32' });
      const targets = tensor([[5, 9, 2, 7, 3, 3, 8, -100]], { dtype: 'i32' });
      const losses: number[] = [];
      let afterWarmup = { liveBytes: 0, liveTensors: 0 };
      for (let step = 0; step < 500; step++) {
        const loss = tidy(() => {
          optim.zeroGrad();
          const logits = model.forward(ids);
          const l = crossEntropy(logits.reshape([-1, 50]), targets.reshape([-1]));
          l.backward();
          optim.step();
          return l.item();
        });
        losses.push(loss);
        if (step === 2) afterWarmup = memoryStats().cpu;
      }
      const end = memoryStats().cpu;
      expect(end.liveBytes).toBe(afterWarmup.liveBytes);
      expect(end.liveTensors).toBe(afterWarmup.liveTensors);
      expect(losses[499]).toBeLessThan(losses[0] * 0.5);  // it learned something
      optim.dispose();
      model.dispose();
      ids.dispose(); targets.dispose();
    });
  }
});

void randn;
