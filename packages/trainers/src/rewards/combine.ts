// Combinators: weighted sums of rewards (0.9·accuracy + 0.1·format, 1.0·IoU + 0.5·format) and a
// fallback chain (a math verifier first, an LLM judge only when it says 0: General-STEM).
// Components run concurrently (a judge is slow; the others are not). Each component's score is
// reported in the details under its name, so the report can plot them separately.

import { explainReward, makeReward, rewardNameOf, type DetailedReward, type RewardFn, type RewardResult } from './types.js';

export interface WeightedComponent {
  reward: RewardFn;
  weight: number;
  /** Key in the details; defaults to the reward's name (made unique with #2, #3, ...). */
  name?: string;
}

/**
 * Σ weight_i · reward_i. Accepts a list of { reward, weight, name? } or a record
 * { accuracy: { reward, weight }, ... } (the record key is the component's name).
 */
export function weightedSum(components: WeightedComponent[] | Record<string, { reward: RewardFn; weight: number }>): DetailedReward {
  const list: WeightedComponent[] = Array.isArray(components)
    ? components
    : Object.entries(components ?? {}).map(([name, c]) => ({ ...c, name }));
  if (list.length === 0) throw new Error('weightedSum: needs at least one component { reward, weight }');
  const names: string[] = [];
  for (const [i, c] of list.entries()) {
    if (!c || typeof c.reward !== 'function') throw new Error(`weightedSum: component ${c?.name ?? i} has no reward function`);
    if (typeof c.weight !== 'number' || !Number.isFinite(c.weight)) {
      throw new Error(`weightedSum: component ${c.name ?? rewardNameOf(c.reward)} has weight ${String(c.weight)}; expected a finite number`);
    }
    let name = c.name ?? rewardNameOf(c.reward);
    for (let k = 2; names.includes(name); k++) name = `${c.name ?? rewardNameOf(c.reward)}#${k}`;
    names.push(name);
  }
  return makeReward('weighted-sum', async (ctx) => {
    const results = await Promise.all(list.map((c, i) => explainReward(c.reward, ctx, names[i])));
    let score = 0;
    const parts: Record<string, { score: number; weight: number; details?: Record<string, unknown> }> = {};
    results.forEach((r, i) => {
      score += list[i]!.weight * r.score;
      parts[names[i]!] = { score: r.score, weight: list[i]!.weight, details: r.details };
    });
    return { score, details: { components: parts } };
  });
}

/**
 * The first reward's score when it is positive, else the second's (else the third's ...).
 * Later rewards run only when needed, so an expensive judge is called only on verifier misses.
 */
export function firstPositive(...rewards: RewardFn[]): DetailedReward {
  if (rewards.length === 0 || rewards.some((r) => typeof r !== 'function')) {
    throw new Error('firstPositive: expects one or more reward functions');
  }
  return makeReward('first-positive', async (ctx) => {
    let last: RewardResult = { score: 0 };
    for (const [i, r] of rewards.entries()) {
      last = await explainReward(r, ctx);
      if (last.score > 0) return { score: last.score, details: { decidedBy: rewardNameOf(r), index: i, inner: last.details } };
    }
    return { score: last.score, details: { decidedBy: rewardNameOf(rewards[rewards.length - 1]!), index: rewards.length - 1, inner: last.details } };
  });
}
