// Learning-rate schedules as pure functions of the step, and a small stateful Scheduler whose
// state (config + step) goes into checkpoints.
//
// `step` counts optimizer updates already done: lrAt(cfg, s) is the rate used by update s + 1.
// With W = warmupSteps, T = totalSteps, p = clamp((s − W)/(T − W), 0, 1) (p = 1 when T = W),
// multiplier m(s), lr = baseLr·m(s):
//   warmup (s < W) for constant/linear/cosine:  m = s / W      (Hugging Face's convention: 0 at s = 0)
//   'constant'  m = 1 after warmup
//   'linear'    m = minRatio + (1 − minRatio)·(1 − p)
//   'cosine'    m = minRatio + (1 − minRatio)·½(1 + cos(π·p))
//   'sigmoid'   with the normalized logistic S(x) = (σ(k(x − ½)) − σ(−k/2)) / (σ(k/2) − σ(−k/2)),
//               σ(z) = 1/(1 + e^−z), k = steepness (default 10): S(0) = 0, S(½) = ½, S(1) = 1;
//               s < W:  m = S(s / W)                                       (S-shaped warmup to base)
//               s ≥ W:  m = floor + (1 − floor)·(1 − S(min(1, (s − W)/D)))  (S-shaped decay to floor)
//               D = decaySteps, default T − W. Holds floor after W + D.
//               The General-STEM recipe: baseLr 2e-6, warmupSteps 60, floor 0.9.
// Past T (or W + D) every schedule holds its final value.
// (MMSearch-R1's variant, a single decaying logistic (1 − low)/(1 + e^{k(s − W)}) + low with
// k = 1/(0.1·W), is a different curve; this one is exactly 0 at s = 0 and exactly base at W.)

export type ScheduleKind = 'constant' | 'linear' | 'cosine' | 'sigmoid';
export const SCHEDULE_KINDS: readonly ScheduleKind[] = ['constant', 'linear', 'cosine', 'sigmoid'];

export interface ScheduleConfig {
  kind: ScheduleKind;
  baseLr: number;
  warmupSteps?: number;   // 0
  totalSteps?: number;    // required by linear and cosine, and by sigmoid without decaySteps
  minRatio?: number;      // linear/cosine: final lr / baseLr (default 0)
  floor?: number;         // sigmoid: final lr / baseLr (default 0.9)
  decaySteps?: number;    // sigmoid: length of the decay (default totalSteps − warmupSteps)
  steepness?: number;     // sigmoid: k (default 10)
}

const KEYS = new Set(['kind', 'baseLr', 'warmupSteps', 'totalSteps', 'minRatio', 'floor', 'decaySteps', 'steepness']);

/** Throws a clear error for a bad config; returns it with defaults filled. */
export function validateSchedule(cfg: ScheduleConfig): Required<Omit<ScheduleConfig, 'totalSteps' | 'decaySteps'>> & { totalSteps?: number; decaySteps?: number } {
  const op = 'schedule';
  if (!cfg || typeof cfg !== 'object') throw new Error(`${op}: config must be an object like {kind: 'cosine', baseLr: 1e-6, warmupSteps: 10, totalSteps: 1000}`);
  for (const k of Object.keys(cfg)) if (!KEYS.has(k)) throw new Error(`${op}: unknown key "${k}"; known keys: ${[...KEYS].join(', ')}`);
  if (!SCHEDULE_KINDS.includes(cfg.kind)) throw new Error(`${op}: kind must be one of ${SCHEDULE_KINDS.join(', ')}, got ${JSON.stringify(cfg.kind)}`);
  if (typeof cfg.baseLr !== 'number' || !Number.isFinite(cfg.baseLr) || cfg.baseLr <= 0) throw new Error(`${op}: baseLr must be a finite number > 0, got ${cfg.baseLr}`);
  const int = (name: string, v: unknown) => {
    if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)) throw new Error(`${op}: ${name} must be a non-negative integer, got ${v}`);
  };
  int('warmupSteps', cfg.warmupSteps); int('totalSteps', cfg.totalSteps); int('decaySteps', cfg.decaySteps);
  const ratio = (name: string, v: unknown) => {
    if (v !== undefined && (typeof v !== 'number' || !(v >= 0 && v <= 1))) throw new Error(`${op}: ${name} must be a number in [0, 1], got ${v}`);
  };
  ratio('minRatio', cfg.minRatio); ratio('floor', cfg.floor);
  if (cfg.steepness !== undefined && !(typeof cfg.steepness === 'number' && Number.isFinite(cfg.steepness) && cfg.steepness > 0)) {
    throw new Error(`${op}: steepness must be a finite number > 0, got ${cfg.steepness}`);
  }
  const W = cfg.warmupSteps ?? 0;
  if ((cfg.kind === 'linear' || cfg.kind === 'cosine') && cfg.totalSteps === undefined) throw new Error(`${op}: '${cfg.kind}' needs totalSteps`);
  if (cfg.kind === 'sigmoid' && cfg.totalSteps === undefined && cfg.decaySteps === undefined) throw new Error(`${op}: 'sigmoid' needs totalSteps or decaySteps`);
  if (cfg.totalSteps !== undefined && cfg.totalSteps < W) throw new Error(`${op}: totalSteps (${cfg.totalSteps}) must be >= warmupSteps (${W})`);
  return { ...cfg, warmupSteps: W, minRatio: cfg.minRatio ?? 0, floor: cfg.floor ?? 0.9, steepness: cfg.steepness ?? 10 };
}

const sigma = (z: number) => 1 / (1 + Math.exp(-z));

/** The normalized logistic S on [0, 1] (S(0) = 0, S(½) = ½, S(1) = 1). */
export function normalizedSigmoid(x: number, k = 10): number {
  const lo = sigma(-k / 2), hi = sigma(k / 2);
  return (sigma(k * (x - 0.5)) - lo) / (hi - lo);
}

/** The multiplier m(step) of the config (see the file comment). */
export function lrMultiplier(cfg: ScheduleConfig, step: number): number {
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`schedule: step must be a non-negative integer, got ${step}`);
  const c = validateSchedule(cfg);
  const W = c.warmupSteps;
  if (c.kind === 'sigmoid') {
    if (step < W) return normalizedSigmoid(step / W, c.steepness);
    const D = c.decaySteps ?? (c.totalSteps as number) - W;
    const p = D === 0 ? 1 : Math.min(1, (step - W) / D);
    return c.floor + (1 - c.floor) * (1 - normalizedSigmoid(p, c.steepness));
  }
  if (step < W) return step / W;
  if (c.kind === 'constant') return 1;
  const T = c.totalSteps as number;
  const p = T === W ? 1 : Math.min(1, (step - W) / (T - W));
  if (c.kind === 'linear') return c.minRatio + (1 - c.minRatio) * (1 - p);
  return c.minRatio + (1 - c.minRatio) * 0.5 * (1 + Math.cos(Math.PI * p));
}

/** The learning rate used by update step + 1. */
export function lrAt(cfg: ScheduleConfig, step: number): number { return cfg.baseLr * lrMultiplier(cfg, step); }

export interface SchedulerState { config: ScheduleConfig; step: number }

/** A schedule plus the number of updates done; checkpoint it with toJSON, resume with fromJSON. */
export class Scheduler {
  readonly config: ScheduleConfig;
  private stepCount: number;
  constructor(config: ScheduleConfig, step = 0) {
    validateSchedule(config);
    if (!Number.isSafeInteger(step) || step < 0) throw new Error(`Scheduler: step must be a non-negative integer, got ${step}`);
    this.config = { ...config };
    this.stepCount = step;
  }
  /** Updates done so far. */
  get step(): number { return this.stepCount; }
  /** The rate for the next update. */
  get lr(): number { return lrAt(this.config, this.stepCount); }
  /** Marks one update done; returns the rate for the next one. */
  advance(): number { this.stepCount++; return this.lr; }
  toJSON(): SchedulerState { return { config: { ...this.config }, step: this.stepCount }; }
  static fromJSON(state: SchedulerState): Scheduler {
    if (!state || typeof state !== 'object' || !state.config) throw new Error('Scheduler.fromJSON: state must be {config, step} as written by toJSON()');
    return new Scheduler(state.config, state.step);
  }
}
