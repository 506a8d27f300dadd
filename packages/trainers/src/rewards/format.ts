// Format reward: does the response have the structure the template asks for? Rules are named
// checks (presets for the recipes in specs/rl-methods.md, or your own predicates); the reward is
// 1 when all pass (default) or the fraction that pass.
//
// Presets:
//   'think'                 a non-empty <think>…</think>
//   'answer'                a non-empty <answer>…</answer>
//   'boxed'                 a complete \boxed{…} with non-empty content
//   'think-boxed'           <think>…</think> and a \boxed{} after it (LLaVA-Critic-R1)
//   'think-answer'          <think>…</think> then <answer>…</answer>, each exactly once, nothing
//                           but whitespace before <think> or after </answer> (R1-style templates)
//   'json-bbox'             a box as JSON: ```json [{"bbox_2d": [x1,y1,x2,y2], ...}] ```, in
//                           <answer>, or a bare [x1, y1, x2, y2] (MGPO turn 1, seed 003)
//   'reason-before-action'  every <search>, <text_search> or <answer> is preceded by a complete
//                           <reason>…</reason> since the previous action (MMSearch-R1)
// All presets are linear-time (indexOf scans); a user RegExp rule is the user's responsibility.

import { extractAllBoxed, extractTag } from './extract.js';
import { findBoxInText } from './iou.js';
import { makeReward, type DetailedReward, type RewardContext } from './types.js';

export interface FormatRule {
  name: string;
  test(text: string, ctx: RewardContext): boolean;
}

export type FormatPreset = 'think' | 'answer' | 'boxed' | 'think-boxed' | 'think-answer' | 'json-bbox' | 'reason-before-action';

export type FormatRuleSpec = FormatRule | FormatPreset | RegExp;

/** A rule that passes iff the text has a non-empty <tag>…</tag> (`once`: exactly one). */
export function tagRule(tag: string, opts: { once?: boolean; allowEmpty?: boolean } = {}): FormatRule {
  return {
    name: `<${tag}>`,
    test(text) {
      const content = extractTag(text, tag);
      if (content === null || (!opts.allowEmpty && content.length === 0)) return false;
      return !opts.once || (countOf(text, `<${tag}>`) === 1 && countOf(text, `</${tag}>`) === 1);
    },
  };
}

function countOf(text: string, needle: string): number {
  let n = 0;
  for (let i = text.indexOf(needle); i >= 0; i = text.indexOf(needle, i + needle.length)) n++;
  return n;
}

/**
 * A forward-only finder: `next(from)` = text.indexOf(needle, from) for non-decreasing `from`,
 * reusing the previous hit so that a whole scan costs O(text) per needle, not O(text) per call.
 */
function forwardFinder(text: string, needle: string): (from: number) => number {
  let hit = -2; // -2: not searched yet; -1: no more occurrences
  return (from) => {
    if (hit === -1) return -1;
    if (hit < from) hit = text.indexOf(needle, from);
    return hit;
  };
}

function reasonBeforeEveryAction(text: string): boolean {
  const actions = ['<search>', '<text_search>', '<answer>'].map((a) => ({ len: a.length, next: forwardFinder(text, a) }));
  const reasonOpen = forwardFinder(text, '<reason>');
  const reasonClose = forwardFinder(text, '</reason>');
  let from = 0;
  let sawAction = false;
  for (;;) {
    let at = -1;
    let len = 0;
    for (const a of actions) {
      const i = a.next(from);
      if (i >= 0 && (at < 0 || i < at)) { at = i; len = a.len; }
    }
    if (at < 0) return sawAction;
    const r = reasonOpen(from);
    const rc = r >= 0 ? reasonClose(r) : -1;
    if (r < 0 || rc < 0 || rc > at || text.slice(r + 8, rc).trim().length === 0) return false;
    sawAction = true;
    from = at + len;
  }
}

function thinkEnd(text: string): number {
  const open = text.indexOf('<think>');
  const close = text.indexOf('</think>');
  if (open < 0 || close < 0 || close < open) return -1;
  return text.slice(open + 7, close).trim().length > 0 ? close + 8 : -1;
}

const PRESETS: Record<FormatPreset, FormatRule> = {
  think: tagRule('think'),
  answer: tagRule('answer'),
  boxed: {
    name: 'boxed',
    test: (text) => extractAllBoxed(text).some((g) => g.content.trim().length > 0),
  },
  'think-boxed': {
    name: 'think-boxed',
    test(text) {
      const end = thinkEnd(text);
      return end >= 0 && extractAllBoxed(text).some((g) => g.start >= end && g.content.trim().length > 0);
    },
  },
  'think-answer': {
    name: 'think-answer',
    test(text) {
      const t = text.trim();
      if (!t.startsWith('<think>') || !t.endsWith('</answer>')) return false;
      for (const tag of ['<think>', '</think>', '<answer>', '</answer>']) if (countOf(t, tag) !== 1) return false;
      const end = thinkEnd(t);
      const a = t.indexOf('<answer>');
      return end >= 0 && a >= end && t.slice(end, a).trim().length === 0 && t.slice(a + 8, t.length - 9).trim().length > 0;
    },
  },
  'json-bbox': { name: 'json-bbox', test: (text) => findBoxInText(text) !== null },
  'reason-before-action': { name: 'reason-before-action', test: reasonBeforeEveryAction },
};

function resolveRule(spec: FormatRuleSpec): FormatRule {
  if (typeof spec === 'string') {
    const r = PRESETS[spec];
    if (!r) throw new Error(`formatReward: unknown preset '${String(spec)}'; expected one of ${Object.keys(PRESETS).join(', ')}`);
    return r;
  }
  if (spec instanceof RegExp) {
    const re = new RegExp(spec.source, spec.flags.replace('g', '').replace('y', ''));
    return { name: `/${spec.source}/`, test: (text) => re.test(text) };
  }
  if (!spec || typeof spec.test !== 'function' || typeof spec.name !== 'string') {
    throw new Error('formatReward: a rule must be a preset name, a RegExp, or { name, test(text, ctx) }');
  }
  return spec;
}

/** Applies `rule` to one assistant turn only (index into ctx.turns; negative counts from the end). */
export function onTurn(index: number, spec: FormatRuleSpec): FormatRule {
  const rule = resolveRule(spec);
  return {
    name: `turn[${index}]:${rule.name}`,
    test(_text, ctx) {
      const turns = ctx.turns ?? [ctx.response];
      const t = turns[index < 0 ? turns.length + index : index];
      return typeof t === 'string' && rule.test(t, ctx);
    },
  };
}

export interface FormatOptions {
  rules: FormatRuleSpec[];
  /** 'all' (default): 1 if every rule passes else 0. 'fraction': the fraction of rules passing. */
  scoring?: 'all' | 'fraction';
  /**
   * Which text rules see: 'final' (default) the final turn; 'every-turn' each assistant turn
   * must pass (rules wrapped with onTurn see ctx.turns directly).
   */
  scope?: 'final' | 'every-turn';
}

export function formatReward(opts: FormatOptions): DetailedReward {
  if (!opts || !Array.isArray(opts.rules) || opts.rules.length === 0) {
    throw new Error('formatReward: `rules` must be a non-empty list (preset names, RegExps, or { name, test })');
  }
  const rules = opts.rules.map(resolveRule);
  const scoring = opts.scoring ?? 'all';
  const scope = opts.scope ?? 'final';
  return makeReward('format', (ctx) => {
    const texts = scope === 'every-turn' ? (ctx.turns && ctx.turns.length > 0 ? ctx.turns : [ctx.response]) : [ctx.response];
    const passed: Record<string, boolean> = {};
    let n = 0;
    for (const rule of rules) {
      const ok = texts.every((t) => rule.test(t ?? '', ctx));
      passed[rule.name] = ok;
      if (ok) n++;
    }
    const score = scoring === 'all' ? (n === rules.length ? 1 : 0) : n / rules.length;
    return { score, details: { passed } };
  });
}
