// Group-relative advantages (outcome rewards: one scalar per response) and their broadcast to
// the per-token vectors the fused GRPO loss takes (core-ts ops/grpoLoss.ts: advantages [N], mask [N]).
//
// For a group of G responses to one prompt with rewards r_1..r_G (mean μ, unbiased std σ):
//   'grpo'    A_i = (r_i − μ) / (σ + eps)           σ = sqrt(Σ(r_j − μ)² / (G − 1)), eps = 1e-6
//   'drgrpo'  A_i = r_i − μ                          (Dr. GRPO: no std; pair it with the
//                                                    'seq-mean-token-sum-norm' aggregation)
//   'rloo'    A_i = r_i − (Σ_{j≠i} r_j)/(G − 1)      = G/(G − 1)·(r_i − μ)
// A group of one response has no baseline: its advantage is 0 under every estimator (verl instead
// uses μ = 0, σ = 1, i.e. A = r, which trains on an unbaselined reward; we do not).
// A group whose rewards are all equal gets A = 0 everywhere (it carries no signal; see DAPO's
// dynamic sampling in filtering.ts, which drops such groups before the update).
// Sums run in f64 in a fixed order, so the result is deterministic.

export type AdvantageEstimator = 'grpo' | 'drgrpo' | 'rloo';
export const ADVANTAGE_ESTIMATORS: readonly AdvantageEstimator[] = ['grpo', 'drgrpo', 'rloo'];

/**
 * Which responses share a prompt: a group size G (responses i·G … i·G + G − 1 form group i; the
 * count must be a multiple of G), or one group id per response (any order, any sizes).
 */
export type GroupSpec = number | ArrayLike<number | string>;

export interface AdvantageOptions {
  estimator?: AdvantageEstimator;   // 'grpo'
  eps?: number;                     // 1e-6 (grpo only)
  unbiasedStd?: boolean;            // true: divide by G − 1 (torch.std); false: by G
}

export interface AdvantageStats {
  groups: number;
  zeroVarianceGroups: number;       // groups (of size ≥ 2) whose rewards are all equal
  singletonGroups: number;          // groups of one response (advantage 0)
  rewardMean: number;
  rewardStd: number;                // population std over the whole batch
}

function checkRewards(op: string, rewards: ArrayLike<number>): void {
  if (!rewards || typeof rewards.length !== 'number') throw new Error(`${op}: rewards must be an array of numbers`);
  for (let i = 0; i < rewards.length; i++) {
    const r = rewards[i];
    if (typeof r !== 'number' || !Number.isFinite(r)) throw new Error(`${op}: rewards[${i}] is ${r}; every reward must be a finite number (a reward function returned NaN/Infinity?)`);
  }
}

/** The indices of each group, groups in order of first appearance. */
export function groupIndices(n: number, group: GroupSpec, op = 'groupIndices'): number[][] {
  if (typeof group === 'number') {
    if (!Number.isInteger(group) || group < 1) throw new Error(`${op}: group size must be a positive integer, got ${group}`);
    if (n % group !== 0) throw new Error(`${op}: ${n} responses do not split into groups of ${group}; pass one group id per response instead`);
    const out: number[][] = [];
    for (let g = 0; g < n / group; g++) out.push(Array.from({ length: group }, (_, k) => g * group + k));
    return out;
  }
  if (!group || group.length !== n) throw new Error(`${op}: expected ${n} group ids (one per response), got ${group ? group.length : group}`);
  const byId = new Map<number | string, number[]>();
  for (let i = 0; i < n; i++) {
    const id = group[i];
    if (typeof id !== 'number' && typeof id !== 'string') throw new Error(`${op}: group id ${i} must be a number or a string, got ${typeof id}`);
    let list = byId.get(id);
    if (!list) { list = []; byId.set(id, list); }
    list.push(i);
  }
  return [...byId.values()];
}

/** Per-response advantages (f64) and batch statistics. See the file comment for the formulas. */
export function groupAdvantages(rewards: ArrayLike<number>, group: GroupSpec, opts: AdvantageOptions = {}): { advantages: Float64Array; stats: AdvantageStats } {
  const op = 'groupAdvantages';
  const estimator = opts.estimator ?? 'grpo';
  if (!ADVANTAGE_ESTIMATORS.includes(estimator)) throw new Error(`${op}: unknown estimator "${estimator}"; expected one of ${ADVANTAGE_ESTIMATORS.join(', ')}`);
  const eps = opts.eps ?? 1e-6;
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new Error(`${op}: eps must be a finite number >= 0, got ${eps}`);
  const unbiased = opts.unbiasedStd ?? true;
  checkRewards(op, rewards);
  const n = rewards.length;
  const groups = groupIndices(n, group, op);
  const adv = new Float64Array(n);
  let zeroVar = 0, singletons = 0;
  for (const idx of groups) {
    const G = idx.length;
    if (G === 1) { singletons++; continue; }     // no baseline: advantage stays 0
    let sum = 0;
    for (const i of idx) sum += rewards[i];
    const mean = sum / G;
    let ss = 0, allEqual = true;
    for (const i of idx) { const d = rewards[i] - mean; ss += d * d; if (rewards[i] !== rewards[idx[0]]) allEqual = false; }
    if (allEqual) { zeroVar++; continue; }        // exact zeros, not (r − μ)/eps round-off
    if (estimator === 'grpo') {
      const std = Math.sqrt(ss / (unbiased ? G - 1 : G));
      for (const i of idx) adv[i] = (rewards[i] - mean) / (std + eps);
    } else if (estimator === 'drgrpo') {
      for (const i of idx) adv[i] = rewards[i] - mean;
    } else {
      for (const i of idx) adv[i] = rewards[i] - (sum - rewards[i]) / (G - 1);
    }
  }
  let s = 0;
  for (let i = 0; i < n; i++) s += rewards[i];
  const rewardMean = n ? s / n : 0;
  let v = 0;
  for (let i = 0; i < n; i++) v += (rewards[i] - rewardMean) ** 2;
  return {
    advantages: adv,
    stats: { groups: groups.length, zeroVarianceGroups: zeroVar, singletonGroups: singletons, rewardMean, rewardStd: n ? Math.sqrt(v / n) : 0 },
  };
}

function checkMask(op: string, mask: ArrayLike<number | boolean>, len: number): void {
  if (!mask || mask.length !== len) throw new Error(`${op}: mask has ${mask ? mask.length : mask} entries, expected ${len}`);
  for (let t = 0; t < len; t++) {
    const m = mask[t];
    if (typeof m === 'boolean') continue;
    if (typeof m !== 'number' || !Number.isFinite(m) || m < 0) throw new Error(`${op}: mask[${t}] is ${m}; mask entries must be finite numbers >= 0 (or booleans)`);
  }
}

/**
 * Padded layout: advantages [B] and a response mask [B, T] (row-major) → per-token advantages
 * [B·T] = A_b·mask[b, t]. Prompt, tool-turn and padding tokens have mask 0 and get 0.
 */
export function broadcastPadded(advantages: ArrayLike<number>, mask: ArrayLike<number | boolean>, T: number): Float32Array {
  const op = 'broadcastPadded';
  if (!Number.isInteger(T) || T < 1) throw new Error(`${op}: T must be a positive integer, got ${T}`);
  const B = advantages.length;
  checkMask(op, mask, B * T);
  const out = new Float32Array(B * T);
  for (let b = 0; b < B; b++) {
    const a = advantages[b];
    if (!Number.isFinite(a)) throw new Error(`${op}: advantages[${b}] is ${a}`);
    for (let t = 0; t < T; t++) { const m = Number(mask[b * T + t]); out[b * T + t] = m === 0 ? 0 : a * m; }  // +0, never −0
  }
  return out;
}

/**
 * Packed layout (what grpoLoss takes): token t belongs to sequence seqIndex[t] ∈ [0, numSeqs);
 * per-token advantages [N] = A[seqIndex[t]]·mask[t] (mask omitted: all ones).
 */
export function broadcastPacked(advantages: ArrayLike<number>, seqIndex: ArrayLike<number>, mask?: ArrayLike<number | boolean>): Float32Array {
  const op = 'broadcastPacked';
  const N = seqIndex.length, S = advantages.length;
  if (mask) checkMask(op, mask, N);
  const out = new Float32Array(N);
  for (let t = 0; t < N; t++) {
    const s = seqIndex[t];
    if (!Number.isInteger(s) || s < 0 || s >= S) throw new Error(`${op}: seqIndex[${t}] = ${s} is outside [0, ${S}) (one advantage per sequence)`);
    const m = mask ? Number(mask[t]) : 1;
    out[t] = m === 0 ? 0 : advantages[s] * m;
  }
  return out;
}
