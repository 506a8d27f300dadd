// Tests of the learning-rate schedules (src/optim/schedules.ts) at key steps (0, warmup end,
// midpoint, end, past the end) against hand-computed values, the Scheduler's checkpoint
// round-trip, and config validation.
import { describe, expect, it } from 'vitest';
import { Scheduler, lrAt, lrMultiplier, normalizedSigmoid, type ScheduleConfig } from '../src/optim/schedules.js';

describe('warmup + constant / linear / cosine', () => {
  const base = { baseLr: 1e-3, warmupSteps: 10, totalSteps: 110 };

  it('constant', () => {
    const c: ScheduleConfig = { kind: 'constant', ...base };
    expect(lrAt(c, 0)).toBe(0);
    expect(lrAt(c, 5)).toBeCloseTo(5e-4, 15);
    expect(lrAt(c, 10)).toBe(1e-3);
    expect(lrAt(c, 1000)).toBe(1e-3);
    expect(lrAt({ kind: 'constant', baseLr: 2e-6 }, 0)).toBe(2e-6);   // no warmup
  });

  it('linear to minRatio', () => {
    const c: ScheduleConfig = { kind: 'linear', ...base, minRatio: 0.1 };
    expect(lrAt(c, 0)).toBe(0);
    expect(lrAt(c, 10)).toBeCloseTo(1e-3, 15);           // warmup end: base
    expect(lrAt(c, 60)).toBeCloseTo(0.55e-3, 15);        // midpoint: 0.1 + 0.9·0.5 = 0.55
    expect(lrAt(c, 110)).toBeCloseTo(1e-4, 15);          // end: minRatio·base
    expect(lrAt(c, 500)).toBeCloseTo(1e-4, 15);          // holds
    expect(lrMultiplier({ kind: 'linear', baseLr: 1, totalSteps: 4 }, 1)).toBe(0.75);   // no warmup, minRatio 0
  });

  it('cosine to minRatio', () => {
    const c: ScheduleConfig = { kind: 'cosine', ...base, minRatio: 0.1 };
    expect(lrAt(c, 0)).toBe(0);
    expect(lrAt(c, 10)).toBeCloseTo(1e-3, 15);
    expect(lrAt(c, 60)).toBeCloseTo(0.55e-3, 15);        // cos(π/2) = 0: 0.1 + 0.9·0.5
    // quarter: ½(1 + cos(π/4)) = 0.8535534 → 0.1 + 0.9·0.8535534 = 0.8681981
    expect(lrMultiplier(c, 35)).toBeCloseTo(0.8681981, 6);
    expect(lrAt(c, 110)).toBeCloseTo(1e-4, 15);
    expect(lrAt(c, 111)).toBeCloseTo(1e-4, 15);
  });

  it('totalSteps == warmupSteps jumps straight to the final value', () => {
    expect(lrMultiplier({ kind: 'cosine', baseLr: 1, warmupSteps: 5, totalSteps: 5, minRatio: 0.2 }, 5)).toBeCloseTo(0.2, 12);
  });
});

describe('sigmoid (General-STEM: base 2e-6, 60 warmup steps, floor 0.9)', () => {
  const c: ScheduleConfig = { kind: 'sigmoid', baseLr: 2e-6, warmupSteps: 60, totalSteps: 260, floor: 0.9 };
  // S(x) = (σ(10(x − ½)) − σ(−5)) / (σ(5) − σ(−5)); σ(−5) = 0.0066929, σ(5) = 0.9933071,
  // S(¼) = (σ(−2.5) − σ(−5))/0.9866143 = (0.0758582 − 0.0066929)/0.9866143 = 0.0701037

  it('normalized logistic at its anchors', () => {
    expect(normalizedSigmoid(0)).toBe(0);
    expect(normalizedSigmoid(0.5)).toBeCloseTo(0.5, 15);
    expect(normalizedSigmoid(1)).toBeCloseTo(1, 15);
    expect(normalizedSigmoid(0.25)).toBeCloseTo(0.0701037, 6);
  });

  it('S-shaped warmup to base over warmupSteps', () => {
    expect(lrAt(c, 0)).toBe(0);
    expect(lrAt(c, 15)).toBeCloseTo(2e-6 * 0.0701037, 12);
    expect(lrAt(c, 30)).toBeCloseTo(1e-6, 15);           // warmup midpoint: half of base
    expect(lrAt(c, 60)).toBeCloseTo(2e-6, 15);           // warmup end: base
  });

  it('S-shaped decay to floor·base over totalSteps − warmupSteps', () => {
    // decay quarter: 0.9 + 0.1·(1 − 0.0701037) = 0.9929896
    expect(lrAt(c, 110)).toBeCloseTo(2e-6 * 0.9929896, 12);
    expect(lrAt(c, 160)).toBeCloseTo(1.9e-6, 15);        // decay midpoint: (1 + 0.9)/2·base
    expect(lrAt(c, 260)).toBeCloseTo(1.8e-6, 15);        // end: floor·base
    expect(lrAt(c, 10_000)).toBeCloseTo(1.8e-6, 15);
    // monotone up then down
    for (let s = 1; s <= 60; s++) expect(lrAt(c, s)).toBeGreaterThan(lrAt(c, s - 1));
    for (let s = 61; s <= 260; s++) expect(lrAt(c, s)).toBeLessThan(lrAt(c, s - 1));
  });

  it('decaySteps overrides totalSteps; steepness changes the curve', () => {
    const d: ScheduleConfig = { kind: 'sigmoid', baseLr: 1, warmupSteps: 10, decaySteps: 20, floor: 0.5 };
    expect(lrAt(d, 20)).toBeCloseTo(0.75, 12);
    expect(lrAt(d, 30)).toBeCloseTo(0.5, 12);
    expect(lrAt({ ...d, steepness: 20 }, 2)).toBeLessThan(lrAt(d, 2));
  });
});

describe('Scheduler', () => {
  it('advances, checkpoints and resumes on the same curve', () => {
    const cfg: ScheduleConfig = { kind: 'cosine', baseLr: 1e-4, warmupSteps: 3, totalSteps: 20, minRatio: 0 };
    const a = new Scheduler(cfg);
    const seen = [a.lr];
    for (let i = 0; i < 7; i++) seen.push(a.advance());
    const state = JSON.parse(JSON.stringify(a.toJSON()));
    expect(state).toEqual({ config: cfg, step: 7 });
    const b = Scheduler.fromJSON(state);
    expect(b.step).toBe(7);
    expect(b.lr).toBe(a.lr);
    expect(b.advance()).toBe(lrAt(cfg, 8));
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((s) => lrAt(cfg, s)));
  });

  it('rejects bad configs with clear errors', () => {
    expect(() => new Scheduler({ kind: 'cosine', baseLr: 1e-4 })).toThrow(/'cosine' needs totalSteps/);
    expect(() => new Scheduler({ kind: 'sigmoid', baseLr: 1e-4, warmupSteps: 5 })).toThrow(/needs totalSteps or decaySteps/);
    expect(() => new Scheduler({ kind: 'exp' as never, baseLr: 1 })).toThrow(/kind must be one of/);
    expect(() => new Scheduler({ kind: 'constant', baseLr: 0 })).toThrow(/baseLr/);
    expect(() => new Scheduler({ kind: 'linear', baseLr: 1, warmupSteps: 10, totalSteps: 5 })).toThrow(/totalSteps \(5\) must be >= warmupSteps \(10\)/);
    expect(() => new Scheduler({ kind: 'constant', baseLr: 1, warmup: 5 } as never)).toThrow(/unknown key "warmup"/);
    expect(() => new Scheduler({ kind: 'sigmoid', baseLr: 1, totalSteps: 5, floor: 1.5 })).toThrow(/floor must be a number in \[0, 1\]/);
    expect(() => lrAt({ kind: 'constant', baseLr: 1 }, -1)).toThrow(/step/);
    expect(() => Scheduler.fromJSON({} as never)).toThrow(/\{config, step\}/);
  });
});
