// Tests of group-relative advantages (src/algorithms/advantages.ts) and the DAPO / rejection
// sampling filters and length shaping (src/algorithms/filtering.ts) on crafted groups whose
// expected values are computed by hand in the comments.
import { describe, expect, it } from 'vitest';
import { broadcastPacked, broadcastPadded, groupAdvantages, groupIndices } from '../src/algorithms/advantages.js';
import {
  DynamicSamplingBuffer, applySoftOverlongPunishment, dynamicSamplingFilter, overlongFilterMask, paddedSeqIndex,
  passRates, rejectionSamplingFilter, softOverlongPenalty,
} from '../src/algorithms/filtering.js';

const close = (got: ArrayLike<number>, want: number[], digits = 6) => {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, digits));
};

describe('groupAdvantages', () => {
  // Group [1, 2, 3, 6]: μ = 3, deviations −2, −1, 0, 3, Σd² = 14.
  //   unbiased σ = sqrt(14/3) = 2.1602469;  biased σ = sqrt(14/4) = 1.8708287.
  it('GRPO: (r − μ)/(σ + eps), unbiased σ', () => {
    const { advantages } = groupAdvantages([1, 2, 3, 6], 4);
    close(advantages, [-2 / (2.1602469 + 1e-6), -1 / (2.1602469 + 1e-6), 0, 3 / (2.1602469 + 1e-6)]);
    close(advantages, [-0.9258197, -0.4629098, 0, 1.3887295]);
    close(groupAdvantages([1, 2, 3, 6], 4, { unbiasedStd: false }).advantages, [-1.0690444, -0.5345222, 0, 1.6035666]);
  });

  it('GRPO on a binary group [1, 0, 0, 1]: ±0.5/(sqrt(1/3) + 1e-6) = ±0.8660239', () => {
    close(groupAdvantages([1, 0, 0, 1], 4).advantages, [0.8660239, -0.8660239, -0.8660239, 0.8660239]);
    // eps matters: with eps 0.5, 0.5/(0.5773503 + 0.5) = 0.4641016
    close(groupAdvantages([1, 0, 0, 1], 4, { eps: 0.5 }).advantages, [0.4641016, -0.4641016, -0.4641016, 0.4641016]);
  });

  it('Dr. GRPO: r − μ', () => {
    close(groupAdvantages([1, 2, 3, 6], 4, { estimator: 'drgrpo' }).advantages, [-2, -1, 0, 3]);
  });

  it('RLOO: r − mean of the others', () => {
    // 1 − (2+3+6)/3 = −8/3; 2 − 10/3 = −4/3; 3 − 9/3 = 0; 6 − 6/3 = 4
    close(groupAdvantages([1, 2, 3, 6], 4, { estimator: 'rloo' }).advantages, [-8 / 3, -4 / 3, 0, 4]);
    close(groupAdvantages([1, 0], 2, { estimator: 'rloo' }).advantages, [1, -1]);
  });

  it('all-equal groups give exact zeros and are counted; groups are independent', () => {
    for (const estimator of ['grpo', 'drgrpo', 'rloo'] as const) {
      const { advantages, stats } = groupAdvantages([0.7, 0.7, 0.7, 0.7, 1, 0, 1, 1], 4, { estimator });
      expect([...advantages.slice(0, 4)]).toEqual([0, 0, 0, 0]);
      expect(advantages[5]).toBeLessThan(0);
      expect(stats).toMatchObject({ groups: 2, zeroVarianceGroups: 1, singletonGroups: 0 });
    }
    // second group [1, 0, 1, 1]: μ = 0.75, σ = sqrt(0.75/3) = 0.5 → (1 − 0.75)/0.500001 = 0.499999
    close(groupAdvantages([0.7, 0.7, 0.7, 0.7, 1, 0, 1, 1], 4).advantages.slice(4), [0.499999, -1.499997, 0.499999, 0.499999]);
  });

  it('single-sample groups get advantage 0 under every estimator', () => {
    for (const estimator of ['grpo', 'drgrpo', 'rloo'] as const) {
      const { advantages, stats } = groupAdvantages([1, 0, 5], 1, { estimator });
      expect([...advantages]).toEqual([0, 0, 0]);
      expect(stats.singletonGroups).toBe(3);
    }
  });

  it('accepts group ids in any order and of mixed sizes', () => {
    // groups: 'a' = {0, 2} rewards [1, 0]; 'b' = {1, 3, 4} rewards [2, 4, 6]; 'c' = {5} alone
    const { advantages, stats } = groupAdvantages([1, 2, 0, 4, 6, 9], ['a', 'b', 'a', 'b', 'b', 'c'], { estimator: 'drgrpo' });
    close(advantages, [0.5, -2, -0.5, 0, 2, 0]);
    expect(stats.groups).toBe(3);
    expect(groupIndices(6, [3, 1, 3, 1, 2, 2])).toEqual([[0, 2], [1, 3], [4, 5]]);
  });

  it('reports batch reward statistics', () => {
    const { stats } = groupAdvantages([1, 0, 0, 1], 2);
    expect(stats.rewardMean).toBe(0.5);
    expect(stats.rewardStd).toBe(0.5);
  });

  it('rejects bad input with clear errors', () => {
    expect(() => groupAdvantages([1, NaN], 2)).toThrow(/rewards\[1\] is NaN/);
    expect(() => groupAdvantages([1, 2, 3], 2)).toThrow(/do not split into groups of 2/);
    expect(() => groupAdvantages([1, 2], 0)).toThrow(/positive integer/);
    expect(() => groupAdvantages([1, 2], ['a'])).toThrow(/expected 2 group ids/);
    expect(() => groupAdvantages([1, 2], 2, { estimator: 'ppo' as never })).toThrow(/unknown estimator "ppo"/);
    expect(() => groupAdvantages([1, 2], 2, { eps: -1 })).toThrow(/eps/);
  });
});

describe('per-token broadcast', () => {
  it('padded [B, T] with a response mask', () => {
    // B = 2, T = 3: prompt token masked in row 0, padding masked in row 1
    const out = broadcastPadded([0.5, -2], [0, 1, 1, 1, 1, 0], 3);
    expect([...out]).toEqual([0, 0.5, 0.5, -2, -2, 0]);
    expect(out).toBeInstanceOf(Float32Array);
    expect([...broadcastPadded([1], [true, false], 2)]).toEqual([1, 0]);
    expect(() => broadcastPadded([1, 2], [1, 1, 1], 2)).toThrow(/mask has 3 entries, expected 4/);
    expect(() => broadcastPadded([1], [1, -1], 2)).toThrow(/mask\[1\] is -1/);
  });

  it('packed tokens with seqIndex (the grpoLoss layout), multi-turn mask zeros', () => {
    // seq 0: assistant turn 1 (2 tokens), tool turn (2 tokens, mask 0), assistant turn 2 (1 token); seq 1: 2 tokens
    const out = broadcastPacked([0.25, -1], [0, 0, 0, 0, 0, 1, 1], [1, 1, 0, 0, 1, 1, 1]);
    expect([...out]).toEqual([0.25, 0.25, 0, 0, 0.25, -1, -1]);
    expect([...broadcastPacked([3], [0, 0])]).toEqual([3, 3]);
    expect(() => broadcastPacked([1], [0, 1])).toThrow(/seqIndex\[1\] = 1 is outside \[0, 1\)/);
  });
});

describe('DAPO dynamic sampling', () => {
  it('drops groups whose rewards are all equal and reports how many', () => {
    const f = dynamicSamplingFilter([1, 1, 1, 0, 1, 0, 0, 0, 0, 0.5, 0.5, 0.5], 3);
    // groups: [1,1,1] drop; [0,1,0] keep; [0,0,0] drop; [0.5,0.5,0.5] drop
    expect(f.dropped).toBe(3);
    expect(f.kept).toBe(1);
    expect(f.keptGroups).toEqual([[3, 4, 5]]);
    expect(f.keptIndices).toEqual([3, 4, 5]);
    // tolerance: a spread of 0.01 counts as equal with tolerance 0.05
    expect(dynamicSamplingFilter([0.5, 0.51, 0, 1], 2, { tolerance: 0.05 }).dropped).toBe(1);
    // a group of one carries no signal
    expect(dynamicSamplingFilter([1], 1).dropped).toBe(1);
  });

  it('DynamicSamplingBuffer keeps drawing until the batch is full, with a cap', () => {
    const buf = new DynamicSamplingBuffer<string>(2, 3);
    expect(buf.add(['a0', 'a1', 'b0', 'b1'], [1, 1, 0, 1], 2)).toBe(1);   // a dropped, b kept
    expect(buf.full).toBe(false);
    expect(buf.missing).toBe(1);
    buf.add(['c0', 'c1', 'd0', 'd1'], [0, 1, 1, 0], 2);                    // both kept → 3 ≥ 2
    expect(buf.full).toBe(true);
    expect(buf.droppedTotal).toBe(1);
    expect(buf.take()).toEqual([{ items: ['b0', 'b1'], rewards: [0, 1] }, { items: ['c0', 'c1'], rewards: [0, 1] }]);
    const cap = new DynamicSamplingBuffer<number>(1, 2);
    cap.add([0, 1], [0, 0], 2); cap.add([0, 1], [1, 1], 2);
    expect(cap.exhausted).toBe(true);
    expect(() => cap.add([1], [1, 2], 1)).toThrow(/1 items but 2 rewards/);
  });
});

describe('offline rejection sampling', () => {
  it('keeps prompts solved sometimes but not always', () => {
    const rates = passRates([1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1], 4);
    expect(rates).toEqual([1, 0, 0.5]);
    expect(rejectionSamplingFilter(rates)).toEqual({ kept: [2], droppedAlwaysSolved: 1, droppedNeverSolved: 1 });
    expect(rejectionSamplingFilter([0.1, 0.5, 0.9], { min: 0.2, max: 0.8 })).toEqual({ kept: [1], droppedAlwaysSolved: 1, droppedNeverSolved: 1 });
    expect(passRates([0.9, 0.2], 2, { threshold: 0.9 })).toEqual([0.5]);
    expect(() => rejectionSamplingFilter([1.5])).toThrow(/pass rate 0 is 1.5/);
    expect(() => rejectionSamplingFilter([0.5], { min: 0.8, max: 0.2 })).toThrow(/min < max/);
  });
});

describe('overlong filtering and soft overlong punishment', () => {
  it('masks every token of truncated responses', () => {
    const seq = paddedSeqIndex(3, 2);
    expect([...seq]).toEqual([0, 0, 1, 1, 2, 2]);
    const { mask, maskedSequences } = overlongFilterMask([1, 1, 0, 1, 1, 0.5], seq, [false, true, false]);
    expect([...mask]).toEqual([1, 1, 0, 0, 1, 0.5]);
    expect(maskedSequences).toBe(1);
    expect(() => overlongFilterMask([1], [2], [false])).toThrow(/seqIndex\[0\] = 2/);
  });

  it('follows the DAPO formula at its boundaries (L_max = 20, L_cache = 4)', () => {
    const p = (L: number) => softOverlongPenalty(L, 20, 4);
    expect(p(0)).toBe(0);
    expect(p(16)).toBe(0);          // L = L_max − L_cache: no penalty yet
    expect(p(17)).toBe(-0.25);      // (16 − 17)/4
    expect(p(18)).toBe(-0.5);
    expect(p(20)).toBe(-1);         // L = L_max: (16 − 20)/4
    expect(p(21)).toBe(-1);         // beyond L_max
    expect(p(1000)).toBe(-1);
    // DAPO's own numbers: L_max 20480, L_cache 4096
    expect(softOverlongPenalty(16384, 20480, 4096)).toBe(0);
    expect(softOverlongPenalty(18432, 20480, 4096)).toBe(-0.5);
    // L_cache = 0: a hard cut at L_max
    expect(softOverlongPenalty(20, 20, 0)).toBe(0);
    expect(softOverlongPenalty(21, 20, 0)).toBe(-1);
    expect(() => softOverlongPenalty(5, 20, 21)).toThrow(/cacheLength/);
    expect(() => softOverlongPenalty(-1, 20, 4)).toThrow(/length/);
  });

  it('adds factor·penalty to rewards', () => {
    const out = applySoftOverlongPunishment([1, 1, 0], [10, 18, 30], { maxLength: 20, cacheLength: 4, factor: 0.5 });
    expect([...out]).toEqual([1, 0.75, -0.5]);
    expect(() => applySoftOverlongPunishment([1], [1, 2], { maxLength: 20, cacheLength: 4 })).toThrow(/1 rewards but 2 lengths/);
  });
});
