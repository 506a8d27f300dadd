// Sample filters and length shaping from DAPO and rejection-sampling recipes. All pure functions
// over plain arrays (the trainer owns rollouts and tensors):
//   - dynamic sampling (DAPO): drop groups whose rewards are all equal (zero advantage, no
//     gradient); the caller draws more prompts until the batch is full (DynamicSamplingBuffer);
//   - offline rejection sampling: keep prompts the current model solves sometimes but not always;
//   - overlong filtering (DAPO): truncated responses get loss mask 0;
//   - soft overlong punishment (DAPO, Eq. 13), with L = |y|, L_max and L_cache:
//         R_length(y) = 0                              if L ≤ L_max − L_cache
//                     = ((L_max − L_cache) − L)/L_cache if L_max − L_cache < L ≤ L_max
//                     = −1                             if L > L_max
//     added (times `factor`, default 1) to the task reward before advantages.
//     (verl's implementation has no −1 floor beyond L_max; we follow the paper.)
import { type GroupSpec, groupIndices } from './advantages.js';

/** Groups whose rewards differ by more than `tolerance` (max − min) are kept; the rest dropped. */
export function dynamicSamplingFilter(rewards: ArrayLike<number>, group: GroupSpec, opts: { tolerance?: number } = {}): {
  keptGroups: number[][];   // indices of responses, one list per kept group
  keptIndices: number[];    // the same, flattened (in group order)
  droppedGroups: number[][];
  dropped: number;          // number of dropped groups (report it; draw that many more prompts)
  kept: number;
} {
  const op = 'dynamicSamplingFilter';
  const tol = opts.tolerance ?? 0;
  if (!(tol >= 0) || !Number.isFinite(tol)) throw new Error(`${op}: tolerance must be a finite number >= 0, got ${tol}`);
  for (let i = 0; i < rewards.length; i++) {
    if (!Number.isFinite(rewards[i])) throw new Error(`${op}: rewards[${i}] is ${rewards[i]}; rewards must be finite`);
  }
  const keptGroups: number[][] = [], droppedGroups: number[][] = [];
  for (const idx of groupIndices(rewards.length, group, op)) {
    let lo = Infinity, hi = -Infinity;
    for (const i of idx) { lo = Math.min(lo, rewards[i]); hi = Math.max(hi, rewards[i]); }
    // A group of one is "all equal" too: it has no baseline and no signal.
    (hi - lo > tol ? keptGroups : droppedGroups).push(idx);
  }
  return { keptGroups, keptIndices: keptGroups.flat(), droppedGroups, dropped: droppedGroups.length, kept: keptGroups.length };
}

/**
 * DAPO's "keep drawing until the batch is full": feed each generation round's groups; informative
 * groups accumulate until `targetGroups` are held. After `maxRounds` rounds without filling,
 * `exhausted` is true and the caller decides (train on fewer groups, or stop with a clear message).
 */
export class DynamicSamplingBuffer<T> {
  private groups: { items: T[]; rewards: number[] }[] = [];
  rounds = 0;
  droppedTotal = 0;
  constructor(readonly targetGroups: number, readonly maxRounds = 10, readonly tolerance = 0) {
    if (!Number.isInteger(targetGroups) || targetGroups < 1) throw new Error(`DynamicSamplingBuffer: targetGroups must be a positive integer, got ${targetGroups}`);
    if (!Number.isInteger(maxRounds) || maxRounds < 1) throw new Error(`DynamicSamplingBuffer: maxRounds must be a positive integer, got ${maxRounds}`);
  }
  /** Adds one round of responses (items[i] has rewards[i]); returns how many groups it dropped. */
  add(items: readonly T[], rewards: ArrayLike<number>, group: GroupSpec): number {
    if (items.length !== rewards.length) throw new Error(`DynamicSamplingBuffer.add: ${items.length} items but ${rewards.length} rewards`);
    const f = dynamicSamplingFilter(rewards, group, { tolerance: this.tolerance });
    for (const idx of f.keptGroups) this.groups.push({ items: idx.map((i) => items[i]), rewards: idx.map((i) => rewards[i]) });
    this.rounds++;
    this.droppedTotal += f.dropped;
    return f.dropped;
  }
  get size(): number { return this.groups.length; }
  get full(): boolean { return this.groups.length >= this.targetGroups; }
  get exhausted(): boolean { return !this.full && this.rounds >= this.maxRounds; }
  /** Groups still needed to fill the batch. */
  get missing(): number { return Math.max(0, this.targetGroups - this.groups.length); }
  /** The first targetGroups groups (extra groups from the last round are discarded, as in DAPO). */
  take(): { items: T[]; rewards: number[] }[] {
    const out = this.groups.slice(0, this.targetGroups);
    this.groups = [];
    return out;
  }
}

/** Fraction of each group's responses counted as solved (reward >= threshold, default 0.5). */
export function passRates(rewards: ArrayLike<number>, group: GroupSpec, opts: { threshold?: number } = {}): number[] {
  const th = opts.threshold ?? 0.5;
  return groupIndices(rewards.length, group, 'passRates').map((idx) => idx.filter((i) => rewards[i] >= th).length / idx.length);
}

/**
 * Offline rejection sampling: keep prompt i iff min < passRate[i] < max (defaults 0 and 1: solved
 * sometimes but not always). Returns the kept indices and why the others were dropped.
 */
export function rejectionSamplingFilter(rates: ArrayLike<number>, opts: { min?: number; max?: number } = {}): {
  kept: number[]; droppedAlwaysSolved: number; droppedNeverSolved: number;
} {
  const op = 'rejectionSamplingFilter';
  const min = opts.min ?? 0, max = opts.max ?? 1;
  if (!(min >= 0 && max <= 1 && min < max)) throw new Error(`${op}: need 0 <= min < max <= 1, got min ${min}, max ${max}`);
  const kept: number[] = [];
  let always = 0, never = 0;
  for (let i = 0; i < rates.length; i++) {
    const p = rates[i];
    if (!(p >= 0 && p <= 1)) throw new Error(`${op}: pass rate ${i} is ${p}; pass rates must lie in [0, 1]`);
    if (p <= min) never++;
    else if (p >= max) always++;
    else kept.push(i);
  }
  return { kept, droppedAlwaysSolved: always, droppedNeverSolved: never };
}

/** Token → sequence map of a padded [B, T] layout (for the packed-layout helpers). */
export function paddedSeqIndex(B: number, T: number): Int32Array {
  const out = new Int32Array(B * T);
  for (let b = 0; b < B; b++) out.fill(b, b * T, (b + 1) * T);
  return out;
}

/** Overlong filtering: a copy of the token mask with every token of a truncated sequence set to 0. */
export function overlongFilterMask(mask: ArrayLike<number>, seqIndex: ArrayLike<number>, truncated: ArrayLike<boolean>): { mask: Float32Array; maskedSequences: number } {
  const op = 'overlongFilterMask';
  if (mask.length !== seqIndex.length) throw new Error(`${op}: mask has ${mask.length} entries but seqIndex ${seqIndex.length}; one each per token`);
  const out = new Float32Array(mask.length);
  for (let t = 0; t < mask.length; t++) {
    const s = seqIndex[t];
    if (!Number.isInteger(s) || s < 0 || s >= truncated.length) throw new Error(`${op}: seqIndex[${t}] = ${s} is outside [0, ${truncated.length}) (one truncated flag per sequence)`);
    out[t] = truncated[s] ? 0 : mask[t];
  }
  let n = 0;
  for (let s = 0; s < truncated.length; s++) if (truncated[s]) n++;
  return { mask: out, maskedSequences: n };
}

function checkLengths(op: string, maxLength: number, cacheLength: number): void {
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new Error(`${op}: maxLength must be a positive integer, got ${maxLength}`);
  if (!Number.isInteger(cacheLength) || cacheLength < 0 || cacheLength > maxLength) {
    throw new Error(`${op}: cacheLength must be an integer in [0, maxLength = ${maxLength}], got ${cacheLength}`);
  }
}

/** DAPO's soft overlong punishment R_length(|y|) ∈ [−1, 0] (formula in the file comment). */
export function softOverlongPenalty(length: number, maxLength: number, cacheLength: number): number {
  const op = 'softOverlongPenalty';
  checkLengths(op, maxLength, cacheLength);
  if (!Number.isInteger(length) || length < 0) throw new Error(`${op}: length must be a non-negative integer, got ${length}`);
  const start = maxLength - cacheLength;
  if (length <= start) return 0;
  if (length <= maxLength) return (start - length) / cacheLength;  // cacheLength > 0 here
  return -1;
}

/** rewards[i] + factor·R_length(lengths[i]) as a new array. */
export function applySoftOverlongPunishment(rewards: ArrayLike<number>, lengths: ArrayLike<number>, opts: { maxLength: number; cacheLength: number; factor?: number }): Float64Array {
  const op = 'applySoftOverlongPunishment';
  if (rewards.length !== lengths.length) throw new Error(`${op}: ${rewards.length} rewards but ${lengths.length} lengths`);
  checkLengths(op, opts.maxLength, opts.cacheLength);
  const factor = opts.factor ?? 1;
  if (!Number.isFinite(factor) || factor < 0) throw new Error(`${op}: factor must be a finite number >= 0, got ${factor}`);
  const out = new Float64Array(rewards.length);
  for (let i = 0; i < rewards.length; i++) out[i] = rewards[i] + factor * softOverlongPenalty(lengths[i], opts.maxLength, opts.cacheLength);
  return out;
}
