// The reward contract shared by every trainer (GRPO, DAPO, MGPO, search rollouts).
//
// A reward is a plain function `(ctx) => number | Promise<number>`: trainers call it once per
// rollout and never need more. Built-in rewards are additionally `DetailedReward`s: the same
// function with an `explain(ctx)` method that returns the score plus what was extracted and why,
// for the rollout samples in the report and for debugging a recipe. `explainReward` accepts
// either kind, so custom user functions work everywhere the built-ins do.
//
// Invariants: scores are finite numbers (the combinators check this and name the offending
// reward); a reward never mutates its context.

/** A box in pixel coordinates, x1 < x2 and y1 < y2 when valid. */
export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/** The dataset row a rollout answered (see the data loader); extra fields pass through. */
export interface RewardRow {
  /** Ground truth. A string[] lists several accepted answers (any match scores). */
  answer: string | number | string[];
  /** Multiple-choice options in letter order: choices[0] is (A). */
  choices?: string[];
  /** Ground-truth box [x1, y1, x2, y2] in the ORIGINAL image's pixels (for IoU rewards). */
  bbox?: number[];
  question?: string;
  [field: string]: unknown;
}

/** One tool invocation made during a rollout (crop, search, ...). */
export interface ToolCallRecord {
  name: string;
  ok: boolean;
}

export interface RewardContext {
  /** The final assistant turn's text (what the answer is extracted from). */
  response: string;
  /** Every assistant turn's text in order (the last equals `response`); absent for single-turn. */
  turns?: string[];
  row: RewardRow;
  /** Tools the rollout called, in order. Absent when the rollout had no tools. */
  toolCalls?: ToolCallRecord[];
  /**
   * The predicted box mapped to the ORIGINAL image frame (the crop tool's output), null when the
   * model's box was invalid or missing, undefined when the rollout has no grounding step.
   */
  box?: Box | null;
}

/** A score and, when useful, what produced it (extracted answer, matched rule, components). */
export interface RewardResult {
  score: number;
  details?: Record<string, unknown>;
}

/** What trainers call. Any function of this shape can be used as a reward. */
export type RewardFn = (ctx: RewardContext) => number | Promise<number>;

/** A reward that can also explain its score. Still callable as a plain RewardFn. */
export type DetailedReward = RewardFn & {
  rewardName: string;
  explain(ctx: RewardContext): RewardResult | Promise<RewardResult>;
};

/**
 * Builds a DetailedReward from an `explain` implementation. The plain call returns only the
 * score and checks that it is finite, so a bug in a reward surfaces as a clear error naming it
 * instead of a NaN advantage several steps later.
 */
export function makeReward(
  name: string,
  explain: (ctx: RewardContext) => RewardResult | Promise<RewardResult>,
): DetailedReward {
  const checked = (ctx: RewardContext): RewardResult | Promise<RewardResult> => {
    const r = explain(ctx);
    if (r instanceof Promise) return r.then((x) => checkResult(name, x));
    return checkResult(name, r);
  };
  const fn = ((ctx: RewardContext) => {
    const r = checked(ctx);
    return r instanceof Promise ? r.then((x) => x.score) : r.score;
  }) as DetailedReward;
  Object.defineProperty(fn, 'name', { value: name });
  fn.rewardName = name;
  fn.explain = checked;
  return fn;
}

function checkResult(name: string, r: RewardResult): RewardResult {
  if (typeof r.score !== 'number' || !Number.isFinite(r.score)) {
    throw new Error(`reward '${name}' produced a non-finite score (${String(r.score)}); expected a finite number`);
  }
  return r;
}

/** A reward's score with details when it has them (a plain RewardFn gets `{ score }`). */
export async function explainReward(reward: RewardFn, ctx: RewardContext, name = rewardNameOf(reward)): Promise<RewardResult> {
  const detailed = reward as Partial<DetailedReward>;
  if (typeof detailed.explain === 'function') return await detailed.explain(ctx);
  const score = await reward(ctx);
  if (typeof score !== 'number' || !Number.isFinite(score)) {
    throw new Error(`reward '${name}' returned ${describeValue(score)}; expected a finite number`);
  }
  return { score };
}

export function rewardNameOf(reward: RewardFn): string {
  const d = reward as Partial<DetailedReward>;
  return d.rewardName ?? (reward.name || 'anonymous');
}

export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'number') return `the number ${v}`;
  if (typeof v === 'string') return `a string (${JSON.stringify(v.slice(0, 40))})`;
  return `a value of type ${typeof v}`;
}
