// Rewards on crafted outputs: extraction, normalization, numeric equivalence, accuracy, format,
// IoU, search penalty, combinators. The LLM judge and custom modules have their own files.
import { describe, expect, it } from 'vitest';
import {
  accuracyReward,
  answersMatch,
  explainReward,
  extractAllBoxed,
  extractAnswer,
  extractChoiceLetter,
  extractLastBoxed,
  extractTag,
  firstPositive,
  formatReward,
  iouReward,
  normalizeText,
  onTurn,
  parseNumber,
  searchPenalty,
  unwrapLatex,
  weightedSum,
  boxIoU,
  findBoxInText,
  type RewardContext,
  type RewardRow,
} from '../src/rewards/index.js';

const ctx = (response: string, row: Partial<RewardRow> & { answer: RewardRow['answer'] }, extra: Partial<RewardContext> = {}): RewardContext => ({
  response,
  row: row as RewardRow,
  ...extra,
});

describe('extraction', () => {
  it('finds the last \\boxed with nested braces and ignores unclosed ones', () => {
    expect(extractLastBoxed('so \\boxed{\\frac{1}{2}}')).toBe('\\frac{1}{2}');
    expect(extractLastBoxed('\\boxed{A} then \\boxed{B}')).toBe('B');
    expect(extractLastBoxed('\\boxed{A} then \\boxed{B')).toBe('A'); // unbalanced last one
    expect(extractLastBoxed('\\boxed {C}')).toBe('C');
    expect(extractLastBoxed('\\fbox{D}')).toBe('D');
    expect(extractLastBoxed('\\boxed{\\{1,2\\}}')).toBe('\\{1,2\\}'); // escaped braces do not group
    expect(extractLastBoxed('}}}} \\boxed{x}} }')).toBe('x');
    expect(extractLastBoxed('no box here')).toBeNull();
    expect(extractLastBoxed('')).toBeNull();
    expect(extractLastBoxed('\\boxed{\\boxed{7}}')).toBe('7');
    expect(extractAllBoxed('\\boxed{1} \\boxed{2} \\boxed{3').map((g) => g.content)).toEqual(['1', '2']);
  });

  it('finds the last <answer> and answer phrases', () => {
    expect(extractTag('<answer> 12 </answer> x <answer>13</answer>', 'answer')).toBe('13');
    expect(extractTag('<answer>13', 'answer')).toBeNull();
    expect(extractTag('</answer><answer>', 'answer')).toBeNull();
    expect(extractAnswer('Thinking... The final answer is 42.')).toEqual({ text: '42', source: 'answer-phrase' });
    expect(extractAnswer('Answer: **Paris**')).toEqual({ text: 'Paris', source: 'answer-phrase' });
    expect(extractAnswer('  7  ')).toEqual({ text: '7', source: 'whole' });
    expect(extractAnswer('x'.repeat(500))).toBeNull(); // long rambling is not an answer
    expect(extractAnswer('\\boxed{3} <answer>4</answer>')?.source).toBe('boxed');
  });

  it('reads multiple-choice letters in their usual dresses', () => {
    const L = (t: string, choices?: string[]) => extractChoiceLetter(t, { choices })?.letter ?? null;
    expect(L('(B)')).toBe('B');
    expect(L('B.')).toBe('B');
    expect(L('B')).toBe('B');
    expect(L('Answer: B')).toBe('B');
    expect(L('after thinking, the answer is b')).toBe('B');
    expect(L('The answer is (C) because it is red.')).toBe('C');
    expect(L('so \\boxed{D}')).toBe('D');
    expect(L('so \\boxed{\\text{(E)}}')).toBe('E');
    expect(L('<answer>A</answer>')).toBe('A');
    expect(L('B. the red car')).toBe('B');
    expect(L('I think option (A) is wrong; (C) fits')).toBe('C');
    expect(L('**Answer:** **D**')).toBe('D');
    // choice text → letter
    expect(L('\\boxed{red car}', ['blue car', 'red car', 'green car'])).toBe('B');
    expect(L('The answer is a green car.', ['blue car', 'red car', 'green car'])).toBe('C');
    expect(L('It is clearly the green car', ['blue car', 'red car', 'green car'])).toBe('C');
    // ambiguous mention of two choices → no letter
    expect(L('red car or green car', ['blue car', 'red car', 'green car'])).toBeNull();
    // letters outside the valid set are not letters
    expect(L('\\boxed{F}', ['a', 'b', 'c'])).toBeNull();
    expect(L('I like it')).toBeNull();
    expect(L('A cat sits on the mat')).toBeNull();
    expect(L('')).toBeNull();
    // a boxed non-letter stops the search (the model committed to it)
    expect(L('(A) ... \\boxed{42}')).toBeNull();
  });
});

describe('normalization and numbers', () => {
  it('unwraps LaTeX', () => {
    expect(unwrapLatex('$\\text{5 cm}$')).toBe('5 cm');
    expect(unwrapLatex('\\mathrm{Paris}')).toBe('Paris');
    expect(unwrapLatex('\\left(3\\right)')).toBe('(3)');
    expect(unwrapLatex('50\\%')).toBe('50%');
    expect(unwrapLatex('\\dfrac{1}{2}')).toBe('\\frac{1}{2}');
    expect(unwrapLatex('\\text{unclosed')).toBe('unclosed');
    expect(unwrapLatex('90^\\circ')).toBe('90°');
  });

  it('normalizes text for exact match', () => {
    expect(normalizeText('The  Eiffel Tower.')).toBe('eiffel tower');
    expect(normalizeText('\\text{An Apple}')).toBe('apple');
    expect(normalizeText('3.5')).toBe('3.5');
    expect(normalizeText('ＡＢＣ')).toBe('abc'); // NFKC full-width
    expect(normalizeText('Café!')).toBe('café');
    expect(normalizeText('')).toBe('');
  });

  it('parses numbers', () => {
    expect(parseNumber('42')).toEqual({ value: 42, percent: false });
    expect(parseNumber('-3.5')).toEqual({ value: -3.5, percent: false });
    expect(parseNumber('1,234,567')?.value).toBe(1234567);
    expect(parseNumber('3/4')?.value).toBe(0.75);
    expect(parseNumber('\\frac{3}{4}')?.value).toBe(0.75);
    expect(parseNumber('\\dfrac34')?.value).toBe(0.75);
    expect(parseNumber('-\\frac{1}{2}')?.value).toBe(-0.5);
    expect(parseNumber('50%')).toEqual({ value: 50, percent: true });
    expect(parseNumber('50\\%')).toEqual({ value: 50, percent: true });
    expect(parseNumber('$1,200')?.value).toBe(1200);
    expect(parseNumber('x = 5')?.value).toBe(5);
    expect(parseNumber('12 cm')?.value).toBe(12);
    expect(parseNumber('12cm')?.value).toBe(12);
    expect(parseNumber('9.8 m/s^2')?.value).toBe(9.8);
    expect(parseNumber('45^\\circ')?.value).toBe(45);
    expect(parseNumber('\\text{5 apples}')?.value).toBe(5);
    expect(parseNumber('1.5e3')?.value).toBe(1500);
    expect(parseNumber('½')?.value).toBe(0.5);
    expect(parseNumber('−7')?.value).toBe(-7); // unicode minus
    for (const bad of ['3x', '3 + 4', '2, 3', 'five', '1/0', '', '3 x', '12,34', '5.5.5']) expect(parseNumber(bad), bad).toBeNull();
    expect(parseNumber('1'.repeat(1000))).toBeNull();
  });

  it('matches numerically with tolerance, fractions and percentages', () => {
    const m = (a: string, b: string, tol = {}) => answersMatch(a, b, tol).match;
    expect(m('3.0', '3')).toBe(true);
    expect(m('0.5', '1/2')).toBe(true);
    expect(m('\\frac{1}{2}', '0.5')).toBe(true);
    expect(m('50%', '0.5')).toBe(true);
    expect(m('50%', '50%')).toBe(true);
    expect(m('0.5', '50%')).toBe(true);
    expect(m('50%', '0.5', { percent: 'strict' })).toBe(true);
    expect(m('50', '50%', { percent: 'strict' })).toBe(false);
    expect(m('1,000', '1000')).toBe(true);
    expect(m('12 cm', '12')).toBe(true);
    expect(m('0.33333', '1/3')).toBe(false); // 1e-5 relative error > 1e-6
    expect(m('0.33333333', '1/3')).toBe(true);
    expect(m('0.3333', '1/3', { relTol: 1e-3 })).toBe(true);
    expect(m('3', '4')).toBe(false);
    expect(m('0', '0')).toBe(true);
    expect(m('1e-20', '0')).toBe(false);
    expect(m('1e-20', '0', { absTol: 1e-12 })).toBe(true);
    expect(m('Paris', 'paris.')).toBe(true);
    expect(m('', '')).toBe(false); // an empty answer never matches
  });
});

describe('accuracyReward', () => {
  const acc = accuracyReward();
  it('grades multiple choice by letter (MGPO)', async () => {
    const row = { answer: 'B', choices: ['cat', 'dog', 'bird', 'fish', 'cow'] };
    expect(await acc(ctx('Looking closely... \\boxed{B}', row))).toBe(1);
    expect(await acc(ctx('\\boxed{(B)}', row))).toBe(1);
    expect(await acc(ctx('\\boxed{dog}', row))).toBe(1);
    expect(await acc(ctx('\\boxed{C}', row))).toBe(0);
    expect(await acc(ctx('\\boxed{B} wait no \\boxed{C}', row))).toBe(0); // last boxed wins
    expect(await acc(ctx('', row))).toBe(0);
    // truth given as the choice text
    expect(await acc(ctx('\\boxed{B}', { answer: 'dog', choices: row.choices }))).toBe(1);
    // truth "(B)" without choices is still choice mode
    expect(await acc(ctx('the answer is b', { answer: '(B)' }))).toBe(1);
    const d = await explainReward(acc, ctx('\\boxed{B}', row));
    expect(d.details).toMatchObject({ mode: 'choice', extracted: 'B', source: 'boxed', truth: ['B'] });
  });

  it('grades free-form answers numerically or by normalized text', async () => {
    expect(await acc(ctx('so the total is \\boxed{1,000}', { answer: 1000 }))).toBe(1);
    expect(await acc(ctx('<answer>$\\frac{3}{4}$</answer>', { answer: '0.75' }))).toBe(1);
    expect(await acc(ctx('\\boxed{\\text{The Eiffel Tower}}', { answer: 'eiffel tower' }))).toBe(1);
    expect(await acc(ctx('\\boxed{75\\%}', { answer: '0.75' }))).toBe(1);
    expect(await acc(ctx('\\boxed{74}', { answer: '75' }))).toBe(0);
    expect(await acc(ctx('\\boxed{Lyon}', { answer: ['Paris', 'Lyon'] }))).toBe(1);
    expect(await acc(ctx('Le café', { answer: 'le café' }))).toBe(1);
    // free-form truth on a row that also has choices
    expect(await acc(ctx('\\boxed{12}', { answer: '12', choices: ['10', '11'] }))).toBe(1);
  });

  it('throws a clear error on rows without an answer', () => {
    expect(() => acc(ctx('x', { answer: '', id: 'r7' } as RewardRow))).toThrow(/accuracy: row 'r7' has no usable answer/);
    expect(() => acc(ctx('x', { answer: [] as string[] }))).toThrow(/no usable answer/);
    expect(() => accuracyReward({ mode: 'choice' })(ctx('x', { answer: 'Paris' }))).toThrow(/neither a letter nor one of the choices/);
  });
});

describe('formatReward', () => {
  it('checks presets', async () => {
    const f = (rules: Parameters<typeof formatReward>[0]['rules'], t: string) => formatReward({ rules })(ctx(t, { answer: 'x' }));
    expect(await f(['think'], '<think>hmm</think> 3')).toBe(1);
    expect(await f(['think'], '<think> </think> 3')).toBe(0);
    expect(await f(['think-boxed'], '<think>r</think> so \\boxed{3}')).toBe(1);
    expect(await f(['think-boxed'], '\\boxed{3} <think>r</think>')).toBe(0);
    expect(await f(['think-answer'], '<think>r</think>\n<answer>3</answer>')).toBe(1);
    expect(await f(['think-answer'], 'pre <think>r</think><answer>3</answer>')).toBe(0);
    expect(await f(['think-answer'], '<think>r</think><answer>3</answer><answer>4</answer>')).toBe(0);
    expect(await f(['boxed'], '\\boxed{}')).toBe(0);
    expect(await f(['boxed'], '\\boxed{{1}')).toBe(0);
    expect(await f(['json-bbox'], 'Region:\n```json\n[{"bbox_2d": [10, 20, 110, 220], "label": "sign"}]\n```')).toBe(1);
    expect(await f(['json-bbox'], '<answer>[10.5, 20, 110, 220]</answer>')).toBe(1);
    expect(await f(['json-bbox'], '```json\n[{"bbox_2d": [10, 20]}]\n```')).toBe(0);
    expect(await f(['reason-before-action'], '<reason>need info</reason><search>q</search>')).toBe(1);
    expect(await f(['reason-before-action'], '<search>q</search>')).toBe(0);
    expect(await f(['reason-before-action'], '<reason>a</reason><search>q</search><text_search>r</text_search>')).toBe(0);
    expect(await f([/^<think>/], '<think>x</think>')).toBe(1);
  });

  it('scores all-or-fraction, per turn, and reports which rules passed', async () => {
    const r = formatReward({ rules: ['think', 'boxed'], scoring: 'fraction' });
    expect(await r(ctx('<think>a</think>', { answer: 'x' }))).toBe(0.5);
    const mgpo = formatReward({ rules: [onTurn(0, 'json-bbox'), onTurn(-1, 'boxed')] });
    const turns = ['```json\n[{"bbox_2d":[0,0,50,50],"label":"a"}]\n```', 'so \\boxed{A}'];
    expect(await mgpo(ctx(turns[1]!, { answer: 'A' }, { turns }))).toBe(1);
    expect(await mgpo(ctx('so', { answer: 'A' }, { turns: [turns[0]!, 'so'] }))).toBe(0);
    const every = formatReward({ rules: ['think'], scope: 'every-turn' });
    expect(await every(ctx('<think>b</think>', { answer: 'x' }, { turns: ['<think>a</think>', '<think>b</think>'] }))).toBe(1);
    expect(await every(ctx('<think>b</think>', { answer: 'x' }, { turns: ['none', '<think>b</think>'] }))).toBe(0);
    const d = await explainReward(r, ctx('<think>a</think>', { answer: 'x' }));
    expect(d.details).toEqual({ passed: { '<think>': true, boxed: false } });
    expect(() => formatReward({ rules: [] })).toThrow(/non-empty/);
    expect(() => formatReward({ rules: ['nope' as 'think'] })).toThrow(/unknown preset 'nope'/);
  });
});

describe('iouReward', () => {
  const row = { answer: 'x', bbox: [0, 0, 100, 100] };
  it('computes IoU, thresholds, and handles invalid boxes', async () => {
    expect(boxIoU({ x1: 0, y1: 0, x2: 100, y2: 100 }, { x1: 50, y1: 0, x2: 150, y2: 100 })).toBeCloseTo(1 / 3, 12);
    expect(boxIoU({ x1: 0, y1: 0, x2: 10, y2: 10 }, { x1: 20, y1: 20, x2: 30, y2: 30 })).toBe(0);
    expect(boxIoU({ x1: 10, y1: 10, x2: 0, y2: 0 }, { x1: 0, y1: 0, x2: 10, y2: 10 })).toBe(0); // degenerate
    expect(boxIoU({ x1: NaN, y1: 0, x2: 1, y2: 1 }, { x1: 0, y1: 0, x2: 1, y2: 1 })).toBe(0);
    const cont = iouReward();
    expect(await cont(ctx('', row, { box: { x1: 0, y1: 0, x2: 100, y2: 100 } }))).toBe(1);
    expect(await cont(ctx('', row, { box: { x1: 50, y1: 0, x2: 150, y2: 100 } }))).toBeCloseTo(1 / 3, 12);
    expect(await cont(ctx('', row, { box: null }))).toBe(0);
    expect(await cont(ctx('[0,0,100,100]', row))).toBe(0); // no parseResponse: ctx.box only
    const bin = iouReward({ threshold: 0.5 });
    expect(await bin(ctx('', row, { box: { x1: 0, y1: 0, x2: 100, y2: 60 } }))).toBe(1);
    expect(await bin(ctx('', row, { box: { x1: 50, y1: 0, x2: 150, y2: 100 } }))).toBe(0);
    const parsed = iouReward({ parseResponse: true, mapToOriginal: (b) => ({ x1: b.x1 * 2, y1: b.y1 * 2, x2: b.x2 * 2, y2: b.y2 * 2 }) });
    expect(await parsed(ctx('<answer>[{"bbox_2d": [0, 0, 50, 50]}]</answer>', row))).toBe(1);
    expect(await parsed(ctx('nothing', row))).toBe(0);
    expect(() => cont(ctx('', { answer: 'x', id: 'g1' } as RewardRow, { box: null }))).toThrow(/iouReward: row 'g1' has no usable bbox/);
    expect(() => iouReward({ threshold: 2 })).toThrow(/threshold/);
    expect(findBoxInText('first [1, 2, 3, 4] then [5, 6, 7, 8]')).toEqual({ x1: 5, y1: 6, x2: 7, y2: 8 });
  });
});

describe('searchPenalty and combinators', () => {
  const row = { answer: 'Paris' };
  const acc = accuracyReward();
  it('penalizes correct answers that searched (MMSearch-R1)', async () => {
    const r = searchPenalty(acc, { penalty: 0.1 });
    expect(await r(ctx('<answer>Paris</answer>', row, { toolCalls: [{ name: 'text_search', ok: true }] }))).toBeCloseTo(0.9, 12);
    expect(await r(ctx('<answer>Paris</answer>', row, { toolCalls: [] }))).toBe(1);
    expect(await r(ctx('<answer>Rome</answer>', row, { toolCalls: [{ name: 'search', ok: true }] }))).toBe(0);
    expect(await r(ctx('<answer>Paris</answer>', row, { toolCalls: [{ name: 'crop', ok: true }] }))).toBe(1);
    // failed calls count by default, not with countFailed: false
    expect(await r(ctx('<answer>Paris</answer>', row, { toolCalls: [{ name: 'search', ok: false }] }))).toBeCloseTo(0.9, 12);
    expect(await searchPenalty(acc, { countFailed: false })(ctx('<answer>Paris</answer>', row, { toolCalls: [{ name: 'search', ok: false }] }))).toBe(1);
    // detected from the turns when no tool record is given
    expect(await r(ctx('<answer>Paris</answer>', row, { turns: ['<text_search>capital</text_search>', '<answer>Paris</answer>'] }))).toBeCloseTo(0.9, 12);
    expect(() => searchPenalty(acc, { penalty: 1.5 })).toThrow(/penalty/);
  });

  it('weighted sums and fallbacks', async () => {
    const fmt = formatReward({ rules: ['think-boxed'] });
    const critic = weightedSum({ accuracy: { reward: acc, weight: 0.9 }, format: { reward: fmt, weight: 0.1 } });
    const c = ctx('<think>hm</think> \\boxed{Paris}', row);
    expect(await critic(c)).toBeCloseTo(1, 12);
    expect(await critic(ctx('\\boxed{Paris}', row))).toBeCloseTo(0.9, 12);
    expect(await critic(ctx('<think>hm</think> \\boxed{Rome}', row))).toBeCloseTo(0.1, 12);
    const d = await explainReward(critic, c);
    expect((d.details as { components: Record<string, { score: number }> }).components.accuracy!.score).toBe(1);
    const list = weightedSum([{ reward: acc, weight: 1 }, { reward: acc, weight: 2 }, { reward: () => 0.5, weight: 1, name: 'half' }]);
    const ld = await explainReward(list, c);
    expect(ld.score).toBeCloseTo(3.5, 12);
    expect(Object.keys((ld.details as { components: object }).components)).toEqual(['accuracy', 'accuracy#2', 'half']);
    await expect(weightedSum([{ reward: () => NaN, weight: 1, name: 'bad' }])(c)).rejects.toThrow(/bad.*expected a finite number/);
    expect(() => weightedSum([{ reward: acc, weight: Infinity }])).toThrow(/weight Infinity/);
    expect(() => weightedSum([])).toThrow(/at least one/);
    let judgeCalls = 0;
    const judge = () => { judgeCalls++; return 1; };
    const fb = firstPositive(acc, judge);
    expect(await fb(ctx('\\boxed{Paris}', row))).toBe(1);
    expect(judgeCalls).toBe(0);
    expect(await fb(ctx('\\boxed{the capital of France}', row))).toBe(1);
    expect(judgeCalls).toBe(1);
  });
});

describe('adversarial inputs stay linear and safe', () => {
  const MB = 1 << 20;
  // No timing assertions (the machine may be loaded): a quadratic scan of 1 MB would take many
  // minutes and trip the test's timeout; a linear one finishes in well under a second.
  const hostile = [
    '\\boxed{'.repeat(MB / 7),
    '{'.repeat(MB),
    '}'.repeat(MB),
    'answer '.repeat(MB / 7),
    'answer:' + ' '.repeat(MB),
    ' '.repeat(MB) + 'x',
    '(' + 'A'.repeat(MB),
    '<answer>'.repeat(MB / 8),
    '</answer>'.repeat(MB / 9),
    '<search>'.repeat(MB / 8),
    '<reason>'.repeat(MB / 8) + '<search>',
    '```json' + '['.repeat(MB),
    '[1, 2, 3, '.repeat(MB / 10),
    '\\text{'.repeat(MB / 6),
    '$'.repeat(MB),
    '1'.repeat(MB),
    '1,000'.repeat(MB / 5),
    '😀'.repeat(MB / 2),
    '<think>' + 'a'.repeat(MB) + '</think>' + '\\boxed{' + '{'.repeat(1000),
  ];
  const row = { answer: 'B', choices: ['a', 'b', 'c', 'd'], bbox: [0, 0, 10, 10] };
  const rewards = [
    accuracyReward(),
    accuracyReward({ mode: 'math' }),
    formatReward({ rules: ['think', 'answer', 'boxed', 'think-boxed', 'think-answer', 'json-bbox', 'reason-before-action'], scoring: 'fraction' }),
    iouReward({ parseResponse: true }),
    searchPenalty(accuracyReward()),
  ];
  it.each(hostile.map((h, i) => [i, h] as const))('hostile input #%i (1 MB): every reward returns a score in [0, 1]', async (_i, text) => {
    for (const r of rewards) {
      const score = await r(ctx(text, row, { turns: [text] }));
      expect(score).toBeGreaterThanOrEqual(0);
      expect(score).toBeLessThanOrEqual(1);
    }
    normalizeText(text);
    unwrapLatex(text);
    parseNumber(text);
    extractAnswer(text);
  }, 60_000);

  it('handles empty and unicode responses', async () => {
    for (const r of rewards) {
      const s = await r(ctx('', row, { box: null }));
      expect(s).toBe(0);
    }
    expect(await accuracyReward()(ctx('答案是 \\boxed{北京}', { answer: '北京' }))).toBe(1);
    expect(await accuracyReward()(ctx('\\boxed{Ｂ}', { answer: 'B' }))).toBe(1); // full-width letter (NFKC)
    expect(await accuracyReward()(ctx('\\boxed{naïve}', { answer: 'Naïve' }))).toBe(1);
  });
});
