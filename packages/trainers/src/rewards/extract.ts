// Answer extraction from model responses: the last \boxed{...} (nested braces), the last
// <answer>…</answer>, "the answer is X" phrases, and multiple-choice letters (a letter in any of
// the usual dresses, or a choice's text mapped back to its letter).
//
// Invariant: linear time in the response length. Responses are adversarial (thousands of
// \boxed{, unbalanced braces, megabytes of text), so brace matching is one pass with a stack,
// tags are found with lastIndexOf, and every regex that runs over a whole response has only
// bounded repetition (no nested or adjacent unbounded quantifiers that could backtrack).

import { normalizeText, unwrapLatex } from './normalize.js';

const BOX_COMMANDS = ['boxed', 'fbox'];

/** A \boxed{...} group: its content and the offset of its command in the text. */
export interface BoxedGroup {
  content: string;
  start: number;
}

/**
 * Every complete \boxed{...} / \fbox{...} in the text, ordered by start. Braces nest
 * (\boxed{\frac{1}{2}} → "\frac{1}{2}"); escaped braces \{ \} do not group; a \boxed{ whose
 * brace never closes is ignored. One pass with a stack of open braces.
 */
export function extractAllBoxed(text: string): BoxedGroup[] {
  const found: BoxedGroup[] = [];
  // Each open '{': the offset its content starts at, or -1 for braces not opened by \boxed.
  const contentStart: number[] = [];
  const commandStart: number[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 92 /* \ */) {
      const next = text[i + 1];
      if (next === '{' || next === '}' || next === '\\') { i += 2; continue; }
      let matched = false;
      for (const cmd of BOX_COMMANDS) {
        if (text.startsWith(cmd, i + 1)) {
          let k = i + 1 + cmd.length;
          while (k < n && text.charCodeAt(k) === 32) k++;
          if (text[k] === '{') {
            contentStart.push(k + 1);
            commandStart.push(i);
            i = k + 1;
            matched = true;
          }
          break;
        }
      }
      if (!matched) i++;
      continue;
    }
    if (c === 123 /* { */) {
      contentStart.push(-1);
      commandStart.push(-1);
    } else if (c === 125 /* } */ && contentStart.length > 0) {
      const cs = contentStart.pop()!;
      const st = commandStart.pop()!;
      if (cs >= 0) found.push({ content: text.slice(cs, i), start: st });
    }
    i++;
  }
  // Groups complete in closing order; nested ones close first. Order them by where they start.
  return found.sort((a, b) => a.start - b.start);
}

/** The content of the last complete \boxed{...} (the one starting last), trimmed; null if none. */
export function extractLastBoxed(text: string): string | null {
  const all = extractAllBoxed(text);
  return all.length === 0 ? null : all[all.length - 1]!.content.trim();
}

/** The content of the last complete <tag>…</tag> (e.g. tag = "answer"), trimmed; null if none. */
export function extractTag(text: string, tag: string): string | null {
  const open = `<${tag}>`;
  const close = `</${tag}>`;
  const end = text.lastIndexOf(close);
  if (end < 0) return null;
  const start = text.lastIndexOf(open, end - open.length);
  if (start < 0) return null;
  return text.slice(start + open.length, end).trim();
}

// "answer is X", "answer: X", "final answer = X". Bounded repetition only (see header).
const ANSWER_PHRASE_RE = /\banswer\b(?:\s{0,4}(?:is|would be|should be|will be)\b)?\s{0,4}[:=]?\s{0,8}([^\n]{1,200})/gi;

/** The text after the last "answer is"/"answer:" phrase up to the end of its line, or null. */
export function extractAnswerPhrase(text: string): string | null {
  let last: string | null = null;
  ANSWER_PHRASE_RE.lastIndex = 0;
  for (let m = ANSWER_PHRASE_RE.exec(text); m !== null; m = ANSWER_PHRASE_RE.exec(text)) last = m[1]!;
  if (last === null) return null;
  let s = last.trim();
  // Markdown emphasis and a closing period are not part of the answer.
  s = s.replace(/^\*{1,3}|\*{1,3}$/g, '').trim();
  if (s.endsWith('.')) s = s.slice(0, -1).trimEnd();
  return s.length > 0 ? s : null;
}

/** Where an extracted answer came from (reported in reward details). */
export type AnswerSource = 'boxed' | 'answer-tag' | 'answer-phrase' | 'whole' | 'choice-paren' | 'choice-text';

export interface ExtractedAnswer {
  text: string;
  source: AnswerSource;
}

export const DEFAULT_SOURCES: readonly AnswerSource[] = ['boxed', 'answer-tag', 'answer-phrase', 'whole'];

/**
 * The model's final answer: the first source in `sources` that yields one. 'whole' uses the
 * entire response only if it is short (≤ maxWholeChars, default 200), so that a long rambling
 * response is not graded as an answer.
 */
export function extractAnswer(
  text: string,
  sources: readonly AnswerSource[] = DEFAULT_SOURCES,
  maxWholeChars = 200,
): ExtractedAnswer | null {
  for (const source of sources) {
    let t: string | null = null;
    if (source === 'boxed') t = extractLastBoxed(text);
    else if (source === 'answer-tag') t = extractTag(text, 'answer');
    else if (source === 'answer-phrase') t = extractAnswerPhrase(text);
    else if (source === 'whole') {
      const w = text.trim();
      t = w.length > 0 && w.length <= maxWholeChars ? w : null;
    }
    if (t !== null && t.length > 0) return { text: t, source };
  }
  return null;
}

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** The valid letters: one per choice when choices are given, else A–E (MME-RealWorld, V*). */
export function validLetters(choices?: readonly string[], fallback = 'ABCDE'): string {
  if (choices && choices.length > 0) return LETTERS.slice(0, Math.min(26, choices.length));
  return fallback;
}

/** A choice's text without its own label: "(B) a cat" / "B. a cat" / "B: a cat" → "a cat". */
export function stripChoiceLabel(choice: string): string {
  return choice.replace(/^\s{0,4}(?:\(([A-Za-z])\)|([A-Z])[.:)])\s{0,4}/, '').trim();
}

/**
 * Reads a candidate answer (already extracted: boxed content, tag content, or a phrase) as a
 * letter. Accepts "B", "(b)", "B.", "B)", "B: a cat", "(B) a cat", "**B**", "\text{B}", and in
 * `loose` mode (for phrases that run on) a letter followed by a space, except the article "a".
 */
export function letterFromCandidate(candidate: string, valid: string, loose = false): string | null {
  let s = unwrapLatex(candidate).normalize('NFKC').trim();
  s = s.replace(/^\*{1,3}|\*{1,3}$/g, '').trim();
  s = s.replace(/^(?:option|choice)\s{1,3}/i, '');
  let m = /^\(?([A-Za-z])\)?[.:]?$/.exec(s); // the whole candidate is the letter
  if (!m) m = /^\(([A-Za-z])\)(?=[\s,;.:!]|$)/.exec(s); // "(B) a cat"
  if (!m) m = /^([A-Z])[.:)](?=\s|$)/.exec(s); // "B. a cat", "B) a cat"
  if (!m) m = /^([a-z])\)(?=\s|$)/.exec(s); // "b) a cat"
  if (!m) m = /^([A-Za-z])(?=[,;!]|$)/.exec(s); // "B, because"
  if (!m && loose) {
    const l = /^([A-Za-z])\s/.exec(s);
    if (l && l[1] !== 'a' && l[1] !== 'I') m = l;
  }
  if (!m) return null;
  const letter = m[1]!.toUpperCase();
  return valid.includes(letter) ? letter : null;
}

/** The letter whose choice text equals the candidate after normalization, or null. */
export function letterFromChoiceText(candidate: string, choices: readonly string[]): string | null {
  const want = normalizeText(stripChoiceLabel(candidate));
  if (want.length === 0) return null;
  for (let i = 0; i < choices.length && i < 26; i++) {
    if (normalizeText(stripChoiceLabel(choices[i]!)) === want) return LETTERS[i]!;
  }
  return null;
}

export interface ChoiceExtraction {
  letter: string;
  source: AnswerSource;
  /** The candidate text the letter was read from. */
  candidate: string;
}

export interface ChoiceOptions {
  choices?: readonly string[];
  /** Letters allowed when `choices` is absent. Default "ABCDE". */
  letters?: string;
}

/**
 * The multiple-choice letter a response commits to. In order:
 *  1. the last \boxed{} (letter, or a choice's text),
 *  2. the last <answer>…</answer> (same),
 *  3. the last "answer is …"/"Answer: …" phrase,
 *  4. the whole response if it is just a letter or starts with "B." / "(B)",
 *  5. the last parenthesized capital letter "(B)" anywhere,
 *  6. if choices are given: the one choice whose text appears in the response (none if several do).
 * A boxed answer that names no valid letter stops the search (the model committed to it).
 */
export function extractChoiceLetter(text: string, opts: ChoiceOptions = {}): ChoiceExtraction | null {
  const valid = validLetters(opts.choices, opts.letters);
  const choices = opts.choices ?? [];
  const fromCandidate = (cand: string, source: AnswerSource, loose: boolean): ChoiceExtraction | null => {
    const l = letterFromCandidate(cand, valid, loose) ?? (choices.length ? letterFromChoiceText(cand, choices) : null);
    return l ? { letter: l, source, candidate: cand } : null;
  };
  const boxed = extractLastBoxed(text);
  if (boxed !== null) return fromCandidate(boxed, 'boxed', true);
  const tag = extractTag(text, 'answer');
  if (tag !== null) return fromCandidate(tag, 'answer-tag', true);
  const phrase = extractAnswerPhrase(text);
  if (phrase !== null) {
    const r = fromCandidate(phrase, 'answer-phrase', true);
    if (r) return r;
  }
  const whole = text.trim();
  if (whole.length > 0) {
    const l = letterFromCandidate(whole.length > 400 ? whole.slice(0, 400) : whole, valid, false);
    if (l) return { letter: l, source: 'whole', candidate: whole.slice(0, 200) };
  }
  // Last "(B)" anywhere: scan for ')' with a capital letter and '(' before it.
  for (let i = text.lastIndexOf(')'); i >= 2; i = text.lastIndexOf(')', i - 1)) {
    if (text[i - 2] === '(' && valid.includes(text[i - 1]!)) {
      return { letter: text[i - 1]!, source: 'choice-paren', candidate: text.slice(i - 2, i + 1) };
    }
  }
  if (choices.length > 0) {
    const hay = ` ${normalizeText(text)} `;
    let hit: string | null = null;
    for (let i = 0; i < choices.length && i < 26; i++) {
      const c = normalizeText(stripChoiceLabel(choices[i]!));
      if (c.length === 0 || !hay.includes(` ${c} `)) continue;
      if (hit !== null) return null; // ambiguous: several choices are mentioned
      hit = LETTERS[i]!;
    }
    if (hit) return { letter: hit, source: 'choice-text', candidate: choices[LETTERS.indexOf(hit)]! };
  }
  return null;
}
