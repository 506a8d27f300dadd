// Binary accuracy reward: 1 when the response's final answer matches the row's ground truth,
// else 0. This is MGPO's only reward (the last \boxed{} letter against the truth letter) and the
// accuracy term of every other recipe.
//
// Two grading modes, chosen per row in 'auto':
//   choice: the row has `choices`, or every ground truth is a bare letter ("B", "(B)"). The
//           response's letter (extractChoiceLetter) must equal the truth's letter; a truth given
//           as the choice's text is mapped to its letter.
//   math:   the extracted answer (boxed → <answer> → "answer is" → short whole response) matches
//           a truth numerically (tolerance, fractions, percentages, units) or, when either side
//           is not a number, by normalized exact match.

import {
  DEFAULT_SOURCES,
  extractAnswer,
  extractChoiceLetter,
  letterFromCandidate,
  letterFromChoiceText,
  type AnswerSource,
} from './extract.js';
import { answersMatch, type NumericTolerance } from './normalize.js';
import { makeReward, type DetailedReward, type RewardRow } from './types.js';

export interface AccuracyOptions extends NumericTolerance {
  /** 'auto' (default) picks per row; 'choice' and 'math' force a mode. */
  mode?: 'auto' | 'choice' | 'math';
  /** Where math mode looks for the answer, in order. Default boxed, answer-tag, answer-phrase, whole. */
  sources?: readonly AnswerSource[];
  /** Longest response graded as a whole when no other source matched. Default 200 chars. */
  maxWholeChars?: number;
}

const ALL_LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** The row's accepted answers as strings; throws a clear error on a row without one. */
export function truthStrings(row: RewardRow, rewardName: string): string[] {
  const a = row?.answer as unknown;
  const list = Array.isArray(a) ? a : [a];
  const out: string[] = [];
  for (const x of list) {
    if (typeof x === 'string' && x.trim().length > 0) out.push(x);
    else if (typeof x === 'number' && Number.isFinite(x)) out.push(String(x));
  }
  if (out.length === 0) {
    const id = row && typeof row.id === 'string' ? ` '${row.id}'` : '';
    throw new Error(`${rewardName}: row${id} has no usable answer (got ${JSON.stringify(a)?.slice(0, 80)}); expected a non-empty string, a number, or a list of strings`);
  }
  return out;
}

/** The letters of the truths in choice mode, or null when some truth is not a letter/choice. */
function truthLetters(truths: string[], choices: readonly string[] | undefined): string[] | null {
  const letters: string[] = [];
  for (const t of truths) {
    const valid = choices && choices.length > 0 ? ALL_LETTERS.slice(0, Math.min(26, choices.length)) : ALL_LETTERS;
    const l = letterFromCandidate(t, valid, false) ?? (choices && choices.length > 0 ? letterFromChoiceText(t, choices) : null);
    if (!l) return null;
    letters.push(l);
  }
  return letters;
}

function isBareLetter(s: string): boolean {
  return /^\s{0,4}\(?[A-Z]\)?\s{0,4}$/.test(s);
}

export function accuracyReward(opts: AccuracyOptions = {}): DetailedReward {
  const mode = opts.mode ?? 'auto';
  const name = 'accuracy';
  return makeReward(name, (ctx) => {
    const truths = truthStrings(ctx.row, name);
    const choices = Array.isArray(ctx.row.choices) ? ctx.row.choices : undefined;
    const wantChoice = mode === 'choice' || (mode === 'auto' && ((choices?.length ?? 0) > 0 || truths.every(isBareLetter)));
    if (wantChoice) {
      const letters = truthLetters(truths, choices);
      if (letters) {
        const maxIdx = Math.max(...letters.map((l) => ALL_LETTERS.indexOf(l)));
        const pred = extractChoiceLetter(ctx.response ?? '', {
          choices,
          letters: ALL_LETTERS.slice(0, Math.max(5, maxIdx + 1)),
        });
        const score = pred !== null && letters.includes(pred.letter) ? 1 : 0;
        return { score, details: { mode: 'choice', extracted: pred?.letter ?? null, source: pred?.source ?? null, candidate: pred?.candidate ?? null, truth: letters } };
      }
      if (mode === 'choice') {
        throw new Error(`${name}: mode 'choice' but the truth ${JSON.stringify(truths)} is neither a letter nor one of the choices ${JSON.stringify(choices ?? [])}`);
      }
      // A free-form truth on a row with choices: grade it as math/text below.
    }
    const got = extractAnswer(ctx.response ?? '', opts.sources ?? DEFAULT_SOURCES, opts.maxWholeChars ?? 200);
    if (!got) return { score: 0, details: { mode: 'math', extracted: null, source: null, truth: truths } };
    for (const t of truths) {
      const m = answersMatch(got.text, t, opts);
      if (m.match) return { score: 1, details: { mode: 'math', extracted: got.text, source: got.source, truth: truths, matchedBy: m.how } };
    }
    return { score: 0, details: { mode: 'math', extracted: got.text, source: got.source, truth: truths } };
  });
}
