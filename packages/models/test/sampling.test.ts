// Sampling: candidate sets on crafted distributions (worked out by hand below), empirical
// frequencies, log-probs, seeding, greedy, and bad parameters.
import { describe, expect, it } from 'vitest';
import { SeededRandom, candidateSet, resolveSampling, sampleToken } from '../src/generation/sampling.js';

// softmax([3, 1, 2, 0]) = e^[3,1,2,0] / 31.19 = [0.6439, 0.0871, 0.2369, 0.0321]
const L = [3, 1, 2, 0];

describe('candidate sets', () => {
  const set = (o: object) => candidateSet(L, resolveSampling(o));
  it('top-k keeps the k most likely tokens', () => {
    expect(set({ topK: 1 })).toEqual([0]);
    expect(set({ topK: 2 })).toEqual([0, 2]);
    expect(set({ topK: 3 })).toEqual([0, 1, 2]);
    expect(set({ topK: 0 })).toEqual([0, 1, 2, 3]);
    expect(set({ topK: 10 })).toEqual([0, 1, 2, 3]);
  });
  it('top-p keeps the smallest most-likely set whose mass reaches p', () => {
    expect(set({ topP: 0.6 })).toEqual([0]);          // 0.644 ≥ 0.6
    expect(set({ topP: 0.7 })).toEqual([0, 2]);       // 0.644 + 0.237 = 0.881
    expect(set({ topP: 0.88 })).toEqual([0, 2]);
    expect(set({ topP: 0.881 })).toEqual([0, 1, 2]);   // 0.8808 falls just short
    expect(set({ topP: 0.9 })).toEqual([0, 1, 2]);    // + 0.087 = 0.968
    expect(set({ topP: 1 })).toEqual([0, 1, 2, 3]);
  });
  it('top-p applies to what top-k kept, renormalized', () => {
    // After top-k 3: [20.09, 2.72, 7.39] / 30.19 → token 0 0.665, token 2 0.245: 0.910 ≥ 0.9.
    expect(set({ topK: 3, topP: 0.9 })).toEqual([0, 2]);
    expect(set({ topK: 3, topP: 0.95 })).toEqual([0, 1, 2]);
  });
  it('temperature reshapes before truncation', () => {
    // T = 0.5 doubles the gaps: softmax([6, 2, 4, 0]) = [0.8650, 0.0158, 0.1171, 0.0021].
    expect(set({ temperature: 0.5, topP: 0.86 })).toEqual([0]);
    expect(set({ temperature: 0.5, topP: 0.97 })).toEqual([0, 2]);
    // T = 4 flattens: softmax([0.75, 0.25, 0.5, 0]) = [0.3392, 0.2057, 0.2641, 0.1910].
    expect(set({ temperature: 4, topP: 0.6 })).toEqual([0, 2]);
  });
  it('keeps ties at the cut-off', () => {
    expect(candidateSet([1, 2, 2, 0], resolveSampling({ topK: 1 }))).toEqual([1, 2]);
    expect(candidateSet([1, 1, 1, 1], resolveSampling({ topP: 0.3 }))).toEqual([0, 1, 2, 3]);
  });
  it('greedy is the argmax', () => {
    expect(set({ temperature: 0 })).toEqual([0]);
  });
});

describe('sampleToken', () => {
  it('draws with the right frequencies and reports the truncated log-prob', () => {
    const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.2)];
    const p = resolveSampling({ seed: 7 });
    const rng = new SeededRandom(7);
    const counts = [0, 0, 0];
    const n = 30000;
    for (let i = 0; i < n; i++) {
      const s = sampleToken(logits, p, rng);
      counts[s.token]++;
      expect(s.logprob).toBeCloseTo(logits[s.token], 10);
    }
    expect(Math.abs(counts[0] / n - 0.5)).toBeLessThan(0.015);
    expect(Math.abs(counts[1] / n - 0.3)).toBeLessThan(0.015);
    expect(Math.abs(counts[2] / n - 0.2)).toBeLessThan(0.015);
    // Truncated: top-k 2 renormalizes 0.5 and 0.3.
    const k2 = resolveSampling({ topK: 2 });
    for (let i = 0; i < 200; i++) {
      const s = sampleToken(logits, k2, rng);
      expect(s.token).toBeLessThan(2);
      expect(s.logprob).toBeCloseTo(Math.log([0.5, 0.3][s.token] / 0.8), 10);
    }
  });
  it('never draws outside the candidate set', () => {
    const rng = new SeededRandom(1);
    const logits = Array.from({ length: 50 }, (_, i) => Math.sin(i) * 3);
    const p = resolveSampling({ topK: 7, topP: 0.8, temperature: 0.7 });
    const allowed = new Set(candidateSet(logits, p));
    expect(allowed.size).toBeGreaterThan(1);
    for (let i = 0; i < 500; i++) expect(allowed.has(sampleToken(logits, p, rng).token)).toBe(true);
  });
  it('is reproducible for a seed and differs across seeds', () => {
    const logits = Array.from({ length: 100 }, (_, i) => Math.cos(i * 1.3));
    const draw = (seed: number) => {
      const rng = new SeededRandom(seed);
      return Array.from({ length: 64 }, () => sampleToken(logits, resolveSampling({ seed }), rng).token);
    };
    expect(draw(5)).toEqual(draw(5));
    expect(draw(5)).not.toEqual(draw(6));
  });
  it('temperature 0 is greedy with log-prob 0, and returns top candidates', () => {
    const s = sampleToken(L, resolveSampling({ temperature: 0, topLogprobs: 2 }), new SeededRandom(0));
    expect(s.token).toBe(0);
    expect(s.logprob).toBe(0);
    const lz = Math.log(L.reduce((a, v) => a + Math.exp(v), 0));
    expect(s.top!.map((c) => c.token)).toEqual([0, 2]);
    expect(s.top![0].logprob).toBeCloseTo(3 - lz, 10);
    expect(s.top![1].logprob).toBeCloseTo(2 - lz, 10);
  });
  it('handles -Infinity logits and rejects NaN', () => {
    const rng = new SeededRandom(3);
    for (let i = 0; i < 50; i++) expect(sampleToken([-Infinity, 0, -Infinity], resolveSampling({}), rng).token).toBe(1);
    expect(() => sampleToken([0, NaN], resolveSampling({}), rng)).toThrow(/logit 1 is NaN/);
    expect(() => sampleToken([-Infinity, -Infinity], resolveSampling({}), rng)).toThrow(/finite maximum/);
  });
});

describe('bad parameters', () => {
  it('names the parameter and the valid range', () => {
    expect(() => resolveSampling({ temperature: -0.1 })).toThrow(/temperature must be a finite number >= 0/);
    expect(() => resolveSampling({ topP: 0 })).toThrow(/topP must be in \(0, 1\]/);
    expect(() => resolveSampling({ topP: 1.5 })).toThrow(/topP must be in \(0, 1\]/);
    expect(() => resolveSampling({ topK: -1 })).toThrow(/topK must be an integer >= 0/);
    expect(() => resolveSampling({ topK: 1.5 })).toThrow(/topK must be an integer >= 0/);
    expect(() => resolveSampling({ seed: 0.5 })).toThrow(/seed must be an integer/);
    expect(() => resolveSampling(null as never)).toThrow(/must be an object/);
  });
});
