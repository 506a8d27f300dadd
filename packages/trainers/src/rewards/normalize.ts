// Answer normalization for rewards: LaTeX unwrapping, text normalization for exact match, and
// numeric parsing/equivalence (integers, decimals, fractions, \frac, percentages, thousands
// separators, units).
//
// Invariant: everything here runs in time linear in its input. Model outputs are adversarial
// (1 MB of braces, millions of spaces), so there are no unbounded nested quantifiers: scans are
// hand-written, regexes use bounded repetition, and numeric parsing refuses inputs longer than
// MAX_NUMBER_CHARS before any regex sees them.

/** Commands whose braced argument is kept and the command dropped: \text{5 cm} → "5 cm". */
const UNWRAP_COMMANDS = new Set([
  'text', 'textrm', 'textbf', 'textit', 'texttt', 'textnormal', 'mathrm', 'mathbf', 'mathit',
  'mathsf', 'mathtt', 'mathnormal', 'operatorname', 'mbox', 'hbox', 'emph', 'boxed', 'fbox',
  'bm', 'boldsymbol',
]);
/** Commands that only affect layout and are dropped entirely. */
const DROP_COMMANDS = new Set([
  'left', 'right', 'displaystyle', 'textstyle', 'quad', 'qquad', 'big', 'Big', 'bigg', 'Bigg',
  'bigl', 'bigr', 'Bigl', 'Bigr', 'limits',
]);
/** Renamed commands: \dfrac and \tfrac are \frac for grading purposes. */
const RENAME_COMMANDS: Record<string, string> = { dfrac: 'frac', tfrac: 'frac', degree: '°', circ: '°', le: '≤', ge: '≥', leq: '≤', geq: '≥', neq: '≠', times: '×', cdot: '·', pi: 'π' };

/**
 * Removes LaTeX wrappers an answer is often dressed in: `$…$`, `\(…\)`, `\[…\]`, `\text{}`,
 * `\mathrm{}` (and the other UNWRAP_COMMANDS), `\left`/`\right`, spacing commands, `\%`, and
 * `^\circ`. One left-to-right pass with a stack that remembers which `{` belonged to a dropped
 * command, so its matching `}` is dropped too; unbalanced braces are kept as text.
 */
export function unwrapLatex(input: string): string {
  const s = input.replaceAll('^{\\circ}', '\\circ').replaceAll('^\\circ', '\\circ');
  const out: string[] = [];
  const stack: boolean[] = []; // true = this brace opened a dropped command's argument
  let i = 0;
  const n = s.length;
  while (i < n) {
    const c = s[i];
    if (c === '\\') {
      const next = s[i + 1] ?? '';
      if (/[A-Za-z]/.test(next)) {
        let j = i + 1;
        while (j < n && isAsciiLetter(s.charCodeAt(j))) j++;
        const name = s.slice(i + 1, j);
        if (UNWRAP_COMMANDS.has(name)) {
          let k = j;
          while (k < n && s[k] === ' ') k++;
          if (s[k] === '{') {
            stack.push(true);
            i = k + 1;
            continue;
          }
          i = j; // \text without a brace: drop the command word
          continue;
        }
        if (DROP_COMMANDS.has(name)) { i = j; continue; }
        const renamed = RENAME_COMMANDS[name];
        out.push(renamed === undefined ? s.slice(i, j) : renamed.length === 1 ? renamed : '\\' + renamed);
        i = j;
        continue;
      }
      // Escaped single characters: \% \$ \{ \} and spacing \, \! \; \: \ 
      if (next === '%') out.push('%');
      else if (next === '{' || next === '}') out.push(next);
      else if (next === '(' || next === ')' || next === '[' || next === ']' || next === '$') { /* math delimiters */ }
      else if (next === ',' || next === ';' || next === ':' || next === ' ') out.push(' ');
      else if (next === '!') { /* negative thin space */ }
      else if (next === '\\') out.push(' '); // line break
      else out.push(c, next);
      i += 2;
      continue;
    }
    if (c === '{') { stack.push(false); out.push(c); i++; continue; }
    if (c === '}') {
      if (stack.length === 0) out.push(c);
      else if (!stack.pop()) out.push(c);
      i++;
      continue;
    }
    if (c === '$') { i++; continue; }
    // Plain text: copy the run up to the next special character in one slice.
    let j = i + 1;
    while (j < n) {
      const d = s.charCodeAt(j);
      if (d === 92 || d === 123 || d === 125 || d === 36) break; // \ { } $
      j++;
    }
    out.push(s.slice(i, j));
    i = j;
  }
  return out.join('');
}

function isAsciiLetter(code: number): boolean {
  return (code >= 65 && code <= 90) || (code >= 97 && code <= 122);
}

function isDigit(ch: string | undefined): boolean {
  return ch !== undefined && ch >= '0' && ch <= '9';
}

/**
 * Normalized form for exact match: LaTeX unwrapped, Unicode NFKC, lower case, punctuation
 * removed (a '.' between digits is kept so "3.5" stays distinct from "35"), English articles
 * removed, whitespace collapsed. "The  Eiffel Tower." → "eiffel tower".
 */
export function normalizeText(input: string): string {
  let s = unwrapLatex(input).normalize('NFKC').toLowerCase();
  s = s.replace(/[\p{P}\p{S}]/gu, (ch, offset: number, str: string) => {
    if (ch === '.' && isDigit(str[offset - 1]) && isDigit(str[offset + 1])) return '.';
    if (ch === '+' || ch === '=' || ch === '<' || ch === '>' || ch === '≤' || ch === '≥' || ch === '×' || ch === '°' || ch === '%' || ch === 'π') return ch;
    if ((ch === '/' || ch === '-') && isDigit(str[offset + 1])) return ch;
    return '';
  });
  s = s.replace(/\b(?:a|an|the)\b/g, ' ');
  return s.replace(/\s+/g, ' ').trim();
}

/** A parsed numeric answer. `percent` is set when it was written with % or "percent". */
export interface ParsedNumber {
  value: number;
  percent: boolean;
}

/** Longer strings are never treated as numbers (keeps the regexes below on tiny inputs). */
export const MAX_NUMBER_CHARS = 120;

const NUM = String.raw`(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][+-]?\d{1,4})?|\.\d+(?:[eE][+-]?\d{1,4})?`;
const PLAIN_RE = new RegExp(String.raw`^([+-]?)\s{0,3}(${NUM})(?:\s{0,3}/\s{0,3}(${NUM}))?(?:\s{0,3}(%|percent|per cent))?(.*)$`, 's');
const FRAC_RE = new RegExp(String.raw`^([+-]?)\s{0,3}\\frac\s{0,3}(?:\{\s{0,3}([+-]?)\s{0,3}(${NUM})\s{0,3}\}|(\d))\s{0,3}(?:\{\s{0,3}(${NUM})\s{0,3}\}|(\d))(?:\s{0,3}(%|percent|per cent))?(.*)$`, 's');
/** Unit abbreviations accepted when glued to the number ("5cm"); words after a space always are. */
const GLUED_UNIT_RE = /^(?:[kcmµμn]?m|[kmµμ]?g|s|ms|min|h|hr|hrs|[mµμ]?l|L|mL|km\/h|m\/s|mph|kph|ft|in|yd|mi|lb|lbs|oz|°[CFK]?|K|[kmM]?V|[kmM]?W|[kM]?J|N|[kMG]?Pa|[kMG]?Hz|[KMGT]i?B|px|pt|deg|rad|cal|kcal|mol|yrs?|days?|pcs|st|nd|rd|th|k|M|bn)$/;
const LEADING_NOISE_RE = /^(?:(?:approximately|approx\.?|about|around|roughly|≈|~|=)\s{0,3}|[a-zA-Z]\s{0,3}=\s{0,3}|[$€£¥₹]\s{0,3}|(?:usd|eur|gbp|rs\.?)\s{1,3})/i;

/**
 * Parses a numeric answer, or returns null if the string is not (only) a number.
 * Accepts: "42", "-3.5", "1,234,567", "1.5e3", "3/4", "\frac{3}{4}", "\dfrac34", "50%", "50\%",
 * "50 percent", "$1,200", "x = 5", "12 cm", "12cm", "45^\circ", "9.8 m/s^2", "½".
 * Rejects: "3x", "3 + 4", "2, 3", "five", anything over MAX_NUMBER_CHARS.
 */
export function parseNumber(input: string): ParsedNumber | null {
  if (input.length > MAX_NUMBER_CHARS) return null;
  let s = unwrapLatex(input).normalize('NFKC');
  s = s.replace(/[\u2212\u2012\u2013\u2014]/g, '-').replace(/\u2044/g, '/').trim();
  if (s.endsWith('.')) s = s.slice(0, -1).trimEnd();
  for (let k = 0; k < 3; k++) {
    const m = LEADING_NOISE_RE.exec(s);
    if (!m) break;
    s = s.slice(m[0].length);
  }
  let sign = 1;
  let value: number;
  let percent: boolean;
  let rest: string;
  let m = FRAC_RE.exec(s);
  if (m) {
    const num = toFloat(m[3] ?? m[4]!);
    const den = toFloat(m[5] ?? m[6]!);
    if (den === 0) return null;
    sign = (m[1] === '-' ? -1 : 1) * (m[2] === '-' ? -1 : 1);
    value = num / den;
    percent = m[7] !== undefined;
    rest = m[8]!;
  } else {
    m = PLAIN_RE.exec(s);
    if (!m) return null;
    sign = m[1] === '-' ? -1 : 1;
    value = toFloat(m[2]!);
    if (m[3] !== undefined) {
      const den = toFloat(m[3]);
      if (den === 0) return null;
      value /= den;
    }
    percent = m[4] !== undefined;
    rest = m[5]!;
  }
  if (!isUnitSuffix(rest)) return null;
  if (!Number.isFinite(value)) return null;
  return { value: sign * value, percent };
}

function toFloat(s: string): number {
  return Number(s.replaceAll(',', ''));
}

/** True if `rest` (what follows the number) is empty or a unit, never another number/variable. */
function isUnitSuffix(rest: string): boolean {
  if (rest.length === 0) return true;
  const spaced = /^\s/.test(rest);
  let u = rest.trim().replace(/\.$/, '');
  if (u.length === 0) return true;
  if (u.length > 40) return false;
  // Exponents of units (m^2, cm³, s^{-2}) are the only digits allowed after the number.
  u = u.replace(/\^\{?-?\d\}?|[²³]/g, '');
  if (/\d/.test(u)) return false;
  if (u.startsWith('°')) return GLUED_UNIT_RE.test(u);
  if (!spaced) return GLUED_UNIT_RE.test(u);
  // After a space: words of letters, optionally joined by '/', '.', '-', '·' ("m/s", "sq. ft").
  if (GLUED_UNIT_RE.test(u)) return true;
  // A lone letter after a space is a variable ("5 x"), not a unit; "5 m" matched above.
  if (/^\p{L}$/u.test(u)) return false;
  return /^[\p{L}°][\p{L}°.'’\-·/ ]{0,39}$/u.test(u);
}

export interface NumericTolerance {
  /** Relative tolerance: |a − b| ≤ relTol·max(|a|, |b|). Default 1e-6. */
  relTol?: number;
  /** Absolute tolerance floor (helps near zero). Default 0. */
  absTol?: number;
  /**
   * How percentages compare. 'lenient' (default): "50%" equals 0.5 and also 50 (models often
   * drop or add the sign when the question asks "what percent"). 'strict': "50%" equals 0.5 and
   * "50%" only.
   */
  percent?: 'lenient' | 'strict';
}

export function closeEnough(a: number, b: number, tol: NumericTolerance = {}): boolean {
  const relTol = tol.relTol ?? 1e-6;
  const absTol = tol.absTol ?? 0;
  if (a === b) return true;
  return Math.abs(a - b) <= Math.max(relTol * Math.max(Math.abs(a), Math.abs(b)), absTol);
}

/** Numeric equivalence of two parsed answers, percentages per `tol.percent`. */
export function numbersEquivalent(pred: ParsedNumber, truth: ParsedNumber, tol: NumericTolerance = {}): boolean {
  const lenient = (tol.percent ?? 'lenient') === 'lenient';
  const values = (p: ParsedNumber): number[] =>
    p.percent ? (lenient ? [p.value / 100, p.value] : [p.value / 100]) : [p.value];
  for (const a of values(pred)) for (const b of values(truth)) if (closeEnough(a, b, tol)) return true;
  return false;
}

/**
 * Do a predicted answer and a ground truth agree? Numeric when both parse as numbers (then only
 * numerically: "3.0" = "3", "0.5" = "1/2"), otherwise normalized exact match.
 */
export function answersMatch(pred: string, truth: string, tol: NumericTolerance = {}): { match: boolean; how: 'numeric' | 'text' } {
  const pn = parseNumber(pred);
  const tn = parseNumber(truth);
  if (pn && tn) return { match: numbersEquivalent(pn, tn, tol), how: 'numeric' };
  const a = normalizeText(pred);
  return { match: a.length > 0 && a === normalizeText(truth), how: 'text' };
}
