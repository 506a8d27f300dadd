// Evaluation and chat. Scoring (scoreEvalRollouts) is checked on crafted rollouts whose answers,
// boxes and IoUs are known by hand; evaluate/evaluateLoaded/chat run the tiny untrained
// Qwen2.5-VL (its answers are wrong, so the checks are about the pipeline): greedy runs are
// deterministic, the reported accuracy is the accuracy reward recomputed on the replies, IoU and
// valid-box numbers agree with the per-row results, the results file holds one line per row,
// and chat runs the same greedy pipeline as eval (same grounding turn for the same question).
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qwen2_5_VL, Qwen2_5_VLProcessor } from '@fovea/models';
import { type EvalRollout, type EvalRow, scoreEvalRollouts } from '../src/eval/score.js';
import { evaluate, evaluateLoaded } from '../src/eval/evaluate.js';
import { chat } from '../src/chat/chat.js';
import { accuracyReward } from '../src/rewards/accuracy.js';
import { extractAnswer, extractChoiceLetter } from '../src/rewards/extract.js';
import { loadDataset } from '../src/data/dataset.js';
import type { CropReport } from '../src/tools/crop.js';

const FIX = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures');
const DATA_DIR = join(import.meta.dirname, 'fixtures', 'train');
const DATA = join(DATA_DIR, 'train.jsonl');
// Small budgets keep the tiny model fast: 6 new tokens per turn, crops of at most 128 merged tokens.
const FAST = { maxNewTokens: 6, cropMinPixels: 3136 * 4, cropMaxPixels: 100352 };
let tmp: string, modelDir: string, bboxData: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'fovea-eval-'));
  modelDir = join(tmp, 'model');
  cpSync(join(FIX, 'qwen25vl', 'model'), modelDir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(modelDir, f));
  // The training rows plus a grounding bbox on the first one (images copied next to the file).
  for (const f of ['red.png', 'blue.png']) cpSync(join(DATA_DIR, f), join(tmp, f));
  bboxData = join(tmp, 'bbox.jsonl');
  writeFileSync(bboxData, [
    { id: 'g1', images: ['red.png'], question: 'What color is the square?', choices: ['red', 'blue'], answer: 'A', bbox: { box: [10, 8, 60, 50], image: 0 } },
    { id: 'g2', images: ['blue.png'], question: 'What color is the square?', choices: ['red', 'blue'], answer: 'B' },
  ].map((r) => JSON.stringify(r)).join('\n') + '\n');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const row = (id: string, answer: string, bbox?: [number, number, number, number]): EvalRow => ({
  id, question: 'What color is the square?', choices: ['red', 'blue'], answer, ...(bbox ? { bbox: { box: bbox, image: 0 } } : {}),
});
const okTool = (boxModel: [number, number, number, number], boxOriginal: [number, number, number, number]): CropReport => ({
  ok: true, parsed: { source: 'json', label: null, count: 1 } as unknown as CropReport['parsed'], boxModel, boxOriginal, boxRaw: boxModel,
  adjusted: [], imageFrame: [56, 56], numImageTokens: 4,
});
const badTool: CropReport = { ok: false, reason: 'no-box', message: 'no box found', parsed: null, adjusted: [], imageFrame: [56, 56], numImageTokens: 4 };
const rollout = (promptIndex: number, answer: string, tool?: CropReport): EvalRollout => ({
  promptIndex, responses: tool ? ['```json\n[]\n```', answer] : [answer], answer, truncated: false, invalidToken: false, finishReason: 'eos',
  ...(tool ? { tool } : {}),
});

describe('scoreEvalRollouts (crafted rollouts)', () => {
  it('scores accuracy with the accuracy reward and IoU in the original frame', async () => {
    const rows = [row('a', 'A', [10, 10, 50, 40]), row('b', 'B'), row('c', 'A', [10, 10, 50, 40]), row('d', 'B', [0, 0, 20, 20])];
    // The model-frame boxes are deliberately different from the original-frame ones: IoU must use boxOriginal.
    const rollouts = [
      rollout(0, 'The square is red, so \\boxed{A}', okTool([5, 5, 25, 20], [10, 10, 50, 40])),     // correct, IoU 1
      rollout(1, 'I think (A)', okTool([0, 0, 30, 30], [0, 0, 60, 60])),                            // wrong, no bbox
      rollout(2, '\\boxed{B}', badTool),                                                            // wrong, invalid box: IoU 0
      rollout(3, 'Answer: B', okTool([100, 100, 200, 200], [10, 5, 30, 25])),                        // correct, partial overlap
    ];
    const s = await scoreEvalRollouts(rows, rollouts, 'mgpo');
    expect(s.perRow.map((r) => r.correct)).toEqual([true, false, false, true]);
    expect(s.perRow.map((r) => r.extracted)).toEqual(['A', 'A', 'B', 'B']);
    expect(s.accuracy).toBe(0.5);
    expect(s.correct).toBe(2);
    expect(s.validBoxRatio).toBe(0.75);
    // d: [10,5,30,25] ∩ [0,0,20,20] = [10,5,20,20] → 10·15 = 150; union 400 + 400 − 150 = 650.
    expect(s.perRow.map((r) => r.iou)).toEqual([1, null, 0, 150 / 650]);
    expect(s.iouRows).toBe(3);
    // hit: the crop holds the whole ground-truth box (a: equal boxes; c: invalid; d: partial).
    expect(s.perRow.map((r) => r.hit)).toEqual([true, null, false, false]);
    expect(s.hitRatio).toBeCloseTo(1 / 3, 12);
    expect(s.meanIou).toBeCloseTo((1 + 0 + 150 / 650) / 3, 12);
    expect(s.perRow[2].box).toEqual({ valid: false, reason: 'no-box', message: 'no box found' });
    expect(s.perRow[0].box).toEqual({ valid: true, boxModel: [5, 5, 25, 20], boxOriginal: [10, 10, 50, 40] });
    expect(s.perRow[0].turns).toHaveLength(2);
  });

  it('pairs rollouts with rows by promptIndex, whatever their order', async () => {
    const rows = [row('a', 'A'), row('b', 'B')];
    const s = await scoreEvalRollouts(rows, [rollout(1, '\\boxed{B}'), rollout(0, '\\boxed{B}')], 'grpo');
    expect(s.perRow.map((r) => [r.id, r.correct])).toEqual([['a', false], ['b', true]]);
  });

  it('grpo rows have no box and no IoU', async () => {
    const s = await scoreEvalRollouts([row('a', 'A', [0, 0, 5, 5])], [rollout(0, '\\boxed{A}')], 'grpo');
    expect(s.perRow[0].box).toBeNull();
    expect(s.perRow[0].iou).toBeNull();
    expect(s.validBoxRatio).toBeNull();
    expect(s.meanIou).toBeNull();
    expect(s.accuracy).toBe(1);
  });

  it('an mgpo rollout that never reached the tool counts as an invalid box', async () => {
    const s = await scoreEvalRollouts([row('a', 'A', [0, 0, 5, 5])], [rollout(0, '')], 'mgpo');
    expect(s.perRow[0].box).toMatchObject({ valid: false, reason: 'no-box' });
    expect(s.perRow[0].iou).toBe(0);
    expect(s.validBoxRatio).toBe(0);
  });

  it('rejects rollouts that do not pair one-to-one with the rows', async () => {
    const rows = [row('a', 'A'), row('b', 'B')];
    await expect(scoreEvalRollouts(rows, [rollout(0, 'x')], 'grpo')).rejects.toThrow(/one rollout per row \(G = 1\): 2 row\(s\) but 1 rollout/);
    await expect(scoreEvalRollouts(rows, [rollout(0, 'x'), rollout(0, 'y')], 'grpo')).rejects.toThrow(/promptIndex 0 .* repeated/);
    await expect(scoreEvalRollouts(rows, [rollout(0, 'x'), rollout(2, 'y')], 'grpo')).rejects.toThrow(/promptIndex 2 is out of range/);
    await expect(scoreEvalRollouts(rows, [], 'ppo' as 'grpo')).rejects.toThrow(/mode must be 'mgpo' or 'grpo', got ppo/);
  });
});

describe('evaluate (tiny model)', () => {
  it('greedy mgpo eval is deterministic; accuracy, valid boxes and IoU agree with the per-row results', async () => {
    const progress: [number, number][] = [];
    const out = join(tmp, 'results', 'eval.jsonl');
    const a = await evaluate({ modelDir, dataFile: bboxData, mode: 'mgpo', ...FAST, outFile: out, onProgress: (d, t) => progress.push([d, t]) });
    const b = await evaluate({ modelDir, dataFile: bboxData, mode: 'mgpo', ...FAST });
    expect(progress).toEqual([[1, 2], [2, 2]]);
    expect(a.rows).toBe(2);
    expect(b.perRow).toEqual(a.perRow);
    expect(a.perRow.map((r) => r.id)).toEqual(['g1', 'g2']);
    // Every row went through the grounding turn (or stopped on a vision token) and answered.
    for (const r of a.perRow) {
      expect(r.box).not.toBeNull();
      expect(r.turns.length).toBeGreaterThanOrEqual(1);
      expect(r.answerText).toBe(r.turns[r.turns.length - 1]);
    }
    // Accuracy = the accuracy reward recomputed on the final replies.
    const { rows } = await loadDataset(bboxData);
    const acc = accuracyReward();
    const recomputed = await Promise.all(a.perRow.map((r, i) => acc({ response: r.answerText, row: { answer: rows[i].answer, choices: rows[i].choices } })));
    expect(a.perRow.map((r) => (r.correct ? 1 : 0))).toEqual(recomputed);
    expect(a.accuracy).toBe(recomputed.reduce((x, y) => x + y, 0) / 2);
    expect(a.validBoxRatio).toBe(a.perRow.filter((r) => r.box!.valid).length / 2);
    // Only g1 has a bbox.
    expect(a.iouRows).toBe(1);
    expect(a.perRow[1].iou).toBeNull();
    expect(a.meanIou).toBe(a.perRow[0].iou);
    expect(a.perRow[0].iou!).toBeGreaterThanOrEqual(0);
    expect(a.perRow[0].iou!).toBeLessThanOrEqual(1);
    if (!a.perRow[0].box!.valid) expect(a.perRow[0].iou).toBe(0);
    // The results file: one JSON line per row, the same records.
    const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual(JSON.parse(JSON.stringify(a.perRow)));
    expect(a.outFile).toBe(out);
  }, 120_000);

  it('evaluateLoaded on an in-memory model matches evaluate; grpo has one turn and no boxes', async () => {
    const model = await Qwen2_5_VL.fromPretrained(modelDir);
    try {
      const proc = await Qwen2_5_VLProcessor.fromPretrained(modelDir);
      const { rows } = await loadDataset(DATA);
      const mem = await evaluateLoaded(model, proc, rows, { mode: 'mgpo', ...FAST, batchPrompts: 2 });
      const disk = await evaluate({ modelDir, dataFile: DATA, mode: 'mgpo', ...FAST });
      expect(mem.perRow).toEqual(disk.perRow);
      const g = await evaluateLoaded(model, proc, rows, { mode: 'grpo', maxNewTokens: 6 });
      expect(g.perRow.every((r) => r.turns.length === 1 && r.box === null && r.iou === null)).toBe(true);
      expect(g.validBoxRatio).toBeNull();
      expect(g.meanIou).toBeNull();
      await expect(evaluateLoaded(model, proc, rows, { mode: 'mgpo', maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens must be a positive integer, got 0/);
      await expect(evaluateLoaded(model, proc, rows, { mode: 'dapo' as 'grpo' })).rejects.toThrow(/mode must be 'mgpo' or 'grpo', got dapo/);
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('honours limit and names missing paths', async () => {
    const starts: unknown[] = [];
    const r = await evaluate({ modelDir, dataFile: DATA, mode: 'grpo', maxNewTokens: 4, limit: 1, onStart: (i) => starts.push(i) });
    expect(r.rows).toBe(1);
    expect(r.datasetRows).toBe(2);
    expect(starts).toEqual([{ rows: 1, datasetRows: 2, skippedRows: 0 }]);
    // Default crop budget: MGPO's 200,704 px is above this processor's max (100,352), so it is capped there.
    const d = await evaluate({ modelDir, dataFile: DATA, mode: 'mgpo', maxNewTokens: 4, limit: 1 });
    expect(d.perRow[0].box).not.toBeNull();
    await expect(evaluate({ modelDir, dataFile: DATA, mode: 'mgpo', maxNewTokens: 4, limit: 1, cropMinPixels: 200704 }))
      .rejects.toThrow(/cropTool: minPixels 200704 is above maxPixels 100352/);
    await expect(evaluate({ modelDir: join(tmp, 'nope'), dataFile: DATA })).rejects.toThrow(/model directory .*nope not found/);
    await expect(evaluate({ modelDir, dataFile: join(tmp, 'missing.jsonl') })).rejects.toThrow(/data file .*missing\.jsonl not found/);
    await expect(evaluate({ modelDir: tmp, dataFile: DATA })).rejects.toThrow(/has no config\.json/);
    await expect(evaluate({ modelDir, dataFile: DATA, limit: 0 })).rejects.toThrow(/limit must be a positive integer, got 0/);
    const empty = join(tmp, 'empty.jsonl');
    writeFileSync(empty, '{"id": 1}\n');
    const warnings: string[] = [];
    await expect(evaluate({ modelDir, dataFile: empty, onWarning: (m) => warnings.push(m) })).rejects.toThrow(/has no valid rows \(1 skipped\)/);
    expect(warnings[0]).toMatch(/empty\.jsonl:1: invalid_field/);
  }, 120_000);
});

describe('chat (tiny model)', () => {
  it('runs ground → crop → answer greedily: the same grounding turn as eval, boxes in both frames, the answer extracted', async () => {
    const stages: string[] = [];
    const c = await chat({
      modelDir, imagePath: join(DATA_DIR, 'red.png'), question: 'What color is the square?', choices: ['red', 'blue'], ...FAST,
      onStage: (m) => stages.push(m),
    });
    expect(stages[0]).toMatch(/^loading model /);
    expect(stages[1]).toMatch(/generating \(mgpo: ground → crop → answer, greedy\)/);
    expect(c.mode).toBe('mgpo');
    expect(c.originalSize).toEqual([72, 96]);
    expect(c.modelFrame[0] % 28).toBe(0);
    expect(c.modelFrame[1] % 28).toBe(0);
    expect(c.box).not.toBeNull();
    if (c.box!.valid) {
      expect(c.box!.boxModel).toHaveLength(4);
      expect(c.box!.boxOriginal).toHaveLength(4);
    } else expect(typeof c.box!.reason).toBe('string');
    // Eval's greedy rollout of the same row (red.png, same question and choices) saw the same turn 1.
    const e = await evaluate({ modelDir, dataFile: DATA, mode: 'mgpo', ...FAST, limit: 1 });
    expect(c.turn1Text).toBe(e.perRow[0].turns[0]);
    expect(c.box).toEqual(e.perRow[0].box);
    expect(c.answerText).toBe(e.perRow[0].answerText);
    const letter = extractChoiceLetter(c.answerText, { choices: ['red', 'blue'] });
    expect(c.answer).toEqual(letter ? { text: letter.letter, source: letter.source } : null);
    // The default is greedy: asking again with temperature 0 spelled out gives the same reply
    // (and eval matched chat above, so eval is greedy too).
    const again = await chat({
      modelDir, imagePath: join(DATA_DIR, 'red.png'), question: 'What color is the square?', choices: ['red', 'blue'], ...FAST, sampling: { temperature: 0 },
    });
    expect(again).toEqual(c);
  }, 120_000);

  it('grpo chat answers in one turn; sampling is used when asked; bad input is named', async () => {
    const g = await chat({ modelDir, imagePath: join(DATA_DIR, 'blue.png'), question: 'Describe the image.', mode: 'grpo', maxNewTokens: 6 });
    expect(g.turn1Text).toBeNull();
    expect(g.box).toBeNull();
    expect(g.answer).toEqual(extractAnswer(g.answerText));
    const s1 = await chat({ modelDir, imagePath: join(DATA_DIR, 'blue.png'), question: 'Describe the image.', mode: 'grpo', maxNewTokens: 6, sampling: { temperature: 1, seed: 7 } });
    const s2 = await chat({ modelDir, imagePath: join(DATA_DIR, 'blue.png'), question: 'Describe the image.', mode: 'grpo', maxNewTokens: 6, sampling: { temperature: 1, seed: 7 } });
    expect(s2.answerText).toBe(s1.answerText);   // a seed reproduces a sample
    await expect(chat({ modelDir, imagePath: join(tmp, 'nope.jpg'), question: 'q' })).rejects.toThrow(/image .*nope\.jpg not found/);
    await expect(chat({ modelDir: join(tmp, 'nomodel'), imagePath: join(DATA_DIR, 'red.png'), question: 'q' })).rejects.toThrow(/model directory .*nomodel not found/);
    await expect(chat({ modelDir, imagePath: join(DATA_DIR, 'red.png'), question: '  ' })).rejects.toThrow(/question must be a non-empty string/);
  }, 120_000);
});
