// Search penalty (MMSearch-R1): a correct answer that used the search tool scores less than one
// found without it, so the policy learns to search only when it must. The base reward (usually
// accuracy) is multiplied by (1 − penalty) when the rollout searched and the base score is
// positive: with the paper's penalty 0.1 a correct searched answer scores 0.9. Wrong answers
// stay at their base score (0), searched or not.

import { explainReward, makeReward, type DetailedReward, type RewardContext, type RewardFn } from './types.js';

export interface SearchPenaltyOptions {
  /** Fraction removed from a positive score when search was used. Default 0.1. In [0, 1]. */
  penalty?: number;
  /** Tool names that count as search. Default search, text_search, image_search. */
  toolNames?: readonly string[];
  /** Count failed calls too (the model still chose to search). Default true. */
  countFailed?: boolean;
  /**
   * When ctx.toolCalls is absent, look for search action tags (<search>, <text_search>) in the
   * assistant turns instead. Default true.
   */
  detectFromText?: boolean;
}

const DEFAULT_SEARCH_TOOLS = ['search', 'text_search', 'image_search'];

/** Did this rollout use search? From the tool-call record, else from action tags in the turns. */
export function usedSearch(ctx: RewardContext, opts: SearchPenaltyOptions = {}): boolean {
  const names = opts.toolNames ?? DEFAULT_SEARCH_TOOLS;
  const countFailed = opts.countFailed ?? true;
  if (ctx.toolCalls) return ctx.toolCalls.some((c) => names.includes(c.name) && (countFailed || c.ok));
  if (opts.detectFromText ?? true) {
    const turns = ctx.turns ?? [ctx.response];
    return turns.some((t) => typeof t === 'string' && names.some((n) => t.includes(`<${n}>`)));
  }
  return false;
}

export function searchPenalty(base: RewardFn, opts: SearchPenaltyOptions = {}): DetailedReward {
  const penalty = opts.penalty ?? 0.1;
  if (!(penalty >= 0 && penalty <= 1)) throw new Error(`searchPenalty: penalty must be in [0, 1], got ${penalty}`);
  if (typeof base !== 'function') throw new Error('searchPenalty: the base reward must be a function (ctx) => number');
  return makeReward('search-penalty', async (ctx) => {
    const inner = await explainReward(base, ctx);
    const searched = usedSearch(ctx, opts);
    const score = searched && inner.score > 0 ? inner.score * (1 - penalty) : inner.score;
    return { score, details: { base: inner.score, searched, baseDetails: inner.details } };
  });
}
