// Multi-turn tool rollouts (search, MMSearch-R1 style) on the tiny Qwen2.5-VL checkpoint.
// The untrained model never writes <search>…</search>, so a scripted policy decides when it
// "calls" search: the turn's decoded text reaching a length (a pure function of the sampled
// tokens, so the check below can replay it); the call then goes through the REAL search tool
// over a JSONL corpus with BM25. Checked token by token: prompt ids, loss mask 1 exactly on
// sampled tokens, inserted tool turns = the chat template's ids around the BM25 results (mask 0),
// old log-probs = the model's log-probs recomputed over the whole conversation, the turn and
// token budgets, tool-call records, images returned by a tool, and clear errors.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noGrad, tensor, tidy, tokenLogprobs } from '@fovea/core';
import { GenerationEngine, Qwen2_5_VL, Qwen2_5_VLProcessor, type RgbImage, expandImagePlaceholders, getRopeIndex } from '@fovea/models';
import { generateToolRollouts, toolTurnIds, type ToolRollout, type ToolRolloutOptions } from '../src/rollout/multiTurn.js';
import { SEARCH_TEMPLATE, checkToolTemplate } from '../src/rollout/searchTemplate.js';
import { batchHidden, buildTrainingBatch } from '../src/algorithms/grpoStep.js';
import { LocalBm25Backend, formatSearchResults, searchTool, type SearchReport } from '../src/tools/search.js';
import type { Tool } from '../src/tools/types.js';
import { usedSearch } from '../src/rewards/search.js';

const FIX = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures');
const CORPUS = join(import.meta.dirname, 'fixtures', 'search_corpus', 'corpus.jsonl');
const IM_END = 733;
const QUERY = 'what color is the harbor lighthouse';

function gradient(height: number, width: number): RgbImage {
  const data = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    const o = (y * width + x) * 3;
    data[o] = (x * 255) / width; data[o + 1] = (y * 255) / height; data[o + 2] = ((x + y) * 5) % 256;
  }
  return { data, height, width, channels: 3 };
}

let dir: string, model: Qwen2_5_VL, proc: Qwen2_5_VLProcessor, engine: GenerationEngine;
let backend: LocalBm25Backend, search: Tool<void, SearchReport>;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fovea-multiturn-'));
  cpSync(join(FIX, 'qwen25vl', 'model'), dir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(dir, f));
  model = await Qwen2_5_VL.fromPretrained(dir);
  proc = await Qwen2_5_VLProcessor.fromPretrained(dir);
  engine = new GenerationEngine(model, { maxTokens: 8192, tokenizer: proc.tokenizer });
  backend = await LocalBm25Backend.fromJsonl(CORPUS);
  search = searchTool({ backend, topK: 3 });
});
afterAll(() => { engine?.dispose(); model?.dispose(); rmSync(dir, { recursive: true, force: true }); });

const decode = (ids: ArrayLike<number>) => proc.tokenizer.decode(Array.from(ids).filter((t) => t < proc.tokenizer.vocabSize));

/** Scripted policy: a turn calls search once its text has `minChars` characters; the query is fixed. */
function scriptedSearch(minChars: number): Tool<void, SearchReport> {
  return { name: 'search', trigger: (text) => text.length >= minChars, run: (text) => search.run(`${text}<search>${QUERY}</search>`) };
}

/** The prompt ids as the chat template writes them (independent of multiTurn.ts). */
async function promptIds(question: string, images: RgbImage[]): Promise<number[]> {
  const chat = await proc.apply([
    { role: 'system', content: SEARCH_TEMPLATE.system },
    { role: 'user', content: [...images.map((image) => ({ type: 'image' as const, image })), { type: 'text' as const, text: question }] },
  ], { addGenerationPrompt: true });
  chat.images?.dispose();
  return Array.from(chat.inputIds);
}

/** The search turn's ids built by hand from the Qwen markup and the BM25 results. */
async function expectedSearchTurn(lastSampled: number): Promise<number[]> {
  const results = await backend.search(QUERY, 3);
  const text = SEARCH_TEMPLATE.toolResult.replace('{result}', () => formatSearchResults(QUERY, results));
  const ids = proc.tokenizer.encode(`<|im_end|>\n<|im_start|>user\n${text}<|im_end|>\n<|im_start|>assistant\n`, { addSpecialTokens: false });
  return lastSampled === IM_END ? ids.slice(1) : ids;
}

interface Limits { minChars: number; maxTurns: number; maxNew: number; maxTotal: number }

/** Walks one rollout token by token; returns the sampled segment lengths. */
async function checkRollout(r: ToolRollout, prompt: number[], lim: Limits): Promise<number[]> {
  expect(Array.from(r.tokens.slice(0, r.promptLength))).toEqual(prompt);
  expect(r.promptLength).toBe(prompt.length);
  let i = 0;
  for (; i < r.promptLength; i++) expect(r.lossMask[i]).toBe(0);
  const segments: number[] = [];
  for (let turn = 0; ; turn++) {
    const start = i;
    while (i < r.tokens.length && r.lossMask[i] === 1) i++;
    const seg = Array.from(r.tokens.slice(start, i));
    expect(seg.length).toBeGreaterThan(0);
    expect(seg.length).toBeLessThanOrEqual(lim.maxNew);
    segments.push(seg.length);
    expect(r.responses[turn]).toBe(decode(seg));
    if (turn < r.toolTurnSpans.length) {
      // The scripted trigger fired on this turn's last token, not before.
      expect(decode(seg).length).toBeGreaterThanOrEqual(lim.minChars);
      expect(decode(seg.slice(0, -1)).length).toBeLessThan(lim.minChars);
      const want = await expectedSearchTurn(seg[seg.length - 1]);
      expect(r.toolTurnSpans[turn]).toEqual([i, i + want.length]);
      expect(Array.from(r.tokens.slice(i, i + want.length))).toEqual(want);
      for (let k = 0; k < want.length; k++) expect(r.lossMask[i + k]).toBe(0);
      i += want.length;
    } else break;
  }
  expect(i).toBe(r.tokens.length);
  for (let k = 0; k < r.tokens.length; k++) {
    if (r.lossMask[k] === 1) { expect(Number.isFinite(r.oldLogprobs[k])).toBe(true); expect(r.oldLogprobs[k]).toBeLessThanOrEqual(0); }
    else expect(r.oldLogprobs[k]).toBe(0);
  }
  expect(r.turns).toBe(segments.length);
  expect(r.turns).toBeLessThanOrEqual(lim.maxTurns);
  expect(r.answer).toBe(r.responses[r.responses.length - 1]);
  expect(r.tokens.length).toBeLessThanOrEqual(lim.maxTotal);
  // Every appended call is the real search tool's answer to the scripted query.
  const appended = r.toolCalls.filter((c) => c.appended);
  expect(appended.length).toBe(r.toolTurnSpans.length);
  r.toolCalls.forEach((c, k) => {
    expect(c).toMatchObject({ name: 'search', ok: true, turn: k + 1, images: 0 });
    expect((c.report as SearchReport).query).toBe(QUERY);
    expect((c.report as SearchReport).resultIds[0]).toBe('lighthouse');
    expect(c.output).toContain('red and white in 1911');
  });
  // Why it ended agrees with the last turn.
  const last = decode(r.tokens.slice(r.tokens.length - segments[segments.length - 1]));
  if (r.endedBy === 'max-turns') { expect(r.turns).toBe(lim.maxTurns); expect(last.length).toBeGreaterThanOrEqual(lim.minChars); expect(r.truncated).toBe(false); }
  if (r.endedBy === 'length') { expect(segments[segments.length - 1]).toBe(lim.maxNew); expect(r.truncated).toBe(true); }
  if (r.endedBy === 'answer') expect(r.tokens[r.tokens.length - 1]).toBe(IM_END);
  return segments;
}

/** Old log-probs = the policy's log-probs recomputed over the packed conversations (temperature 1). */
function checkTrainingBatch(rollouts: ToolRollout[]) {
  const b = buildTrainingBatch(model, rollouts, rollouts.map((_, i) => i - 1));
  expect(b.rows.length).toBe(rollouts.reduce((a, r) => a + r.lossMask.reduce((x, m) => x + m, 0), 0));
  const L = b.inputIds.length;
  for (const [s, r] of rollouts.entries()) {
    const { positionIds } = getRopeIndex(r.tokens, r.images.map((im) => im.grid),
      { imageTokenId: model.config.imageTokenId, visionStartTokenId: model.config.visionStartTokenId }, { spatialMergeSize: 2 });
    const n = r.tokens.length, a = b.cuSeqlens[s];
    for (let c = 0; c < 3; c++) expect(Array.from(b.positionIds.subarray(c * L + a, c * L + a + n))).toEqual(Array.from(positionIds.subarray(c * n, (c + 1) * n)));
  }
  const fresh = noGrad(() => tidy(() => tokenLogprobs({
    hidden: batchHidden(model, b), weight: model.lmHeadWeight, targets: tensor(b.targets, { dtype: 'i32', device: model.device }),
  }).logprobs.to('f32').data() as Float32Array));
  let worst = 0;
  for (let j = 0; j < b.rows.length; j++) worst = Math.max(worst, Math.abs(fresh[j] - b.oldLogprobs[j]));
  expect(worst).toBeLessThan(2e-3);
}

describe('generateToolRollouts (search)', () => {
  it('sequences search, continue and stop independently; masks, tool turns and log-probs hold token by token', async () => {
    const image = gradient(120, 160);
    const prompts = [{ question: 'What color is the lighthouse?', images: [image], meta: 'q0' }, { question: 'When was the bridge built?', images: [] }];
    const lim: Limits = { minChars: 8, maxTurns: 3, maxNew: 6, maxTotal: Infinity };
    const rollouts = await generateToolRollouts(model, proc, engine, prompts, {
      G: 4, tool: scriptedSearch(lim.minChars), maxTurns: lim.maxTurns, maxNewTokens: lim.maxNew, sampling: { temperature: 1, seed: 3 },
    });
    expect(rollouts.map((r) => [r.promptIndex, r.sample])).toEqual([[0, 0], [0, 1], [0, 2], [0, 3], [1, 0], [1, 1], [1, 2], [1, 3]]);
    expect(rollouts[0].meta).toBe('q0');
    const p0 = await promptIds(prompts[0].question, [image]), p1 = await promptIds(prompts[1].question, []);
    for (const r of rollouts) {
      await checkRollout(r, r.promptIndex === 0 ? p0 : p1, lim);
      expect(r.images.map((im) => im.source)).toEqual(r.promptIndex === 0 ? ['prompt'] : []);
      expect(r.invalidToken).toBe(false);
      // What the search penalty reads.
      expect(usedSearch({ response: r.answer, row: { answer: 'red' }, toolCalls: r.toolCalls })).toBe(r.toolCalls.length > 0);
    }
    // Independent progress: the group holds rollouts with different numbers of turns, and some searched twice.
    expect(new Set(rollouts.map((r) => r.turns)).size).toBeGreaterThan(1);
    expect(rollouts.some((r) => r.toolTurnSpans.length >= 2)).toBe(true);
    expect(rollouts.some((r) => r.endedBy === 'max-turns')).toBe(true);
    expect(new Set(rollouts.map((r) => Array.from(r.tokens).join(','))).size).toBe(8);
    checkTrainingBatch(rollouts);
  });

  it('maxTotalTokens: the second turn is cut at the budget, and a result that does not fit ends the rollout', async () => {
    const lim: Limits = { minChars: 14, maxTurns: 2, maxNew: 6, maxTotal: Infinity };
    const prompts = [{ question: 'What color is the lighthouse?', images: [] }];
    const opts = (maxTotal: number): ToolRolloutOptions => ({
      G: 1, tool: scriptedSearch(lim.minChars), maxTurns: 2, maxNewTokens: lim.maxNew, maxTotalTokens: maxTotal, sampling: { temperature: 1, seed: 21 },
    });
    const [free] = await generateToolRollouts(model, proc, engine, prompts, opts(Number.MAX_SAFE_INTEGER));
    const prompt = await promptIds(prompts[0].question, []);
    await checkRollout(free, prompt, lim);
    expect(free.toolTurnSpans.length).toBe(1);  // this seed searches on turn 1
    const [, toolEnd] = free.toolTurnSpans[0];

    // Room for the tool turn and one token: the same conversation, cut after one token of turn 2.
    const [cut] = await generateToolRollouts(model, proc, engine, prompts, opts(toolEnd + 1));
    await checkRollout(cut, prompt, { ...lim, maxTotal: toolEnd + 1 });
    expect(Array.from(cut.tokens)).toEqual(Array.from(free.tokens.slice(0, toolEnd + 1)));
    expect(cut.endedBy).toBe('budget');
    expect(cut.truncated).toBe(true);

    // No room for the tool turn: the call is recorded (not appended) and the rollout ends at it.
    const [stop] = await generateToolRollouts(model, proc, engine, prompts, opts(toolEnd));
    expect(Array.from(stop.tokens)).toEqual(Array.from(free.tokens.slice(0, free.toolTurnSpans[0][0])));
    expect(stop.toolCalls.map((c) => c.appended)).toEqual([false]);
    expect((stop.toolCalls[0].report as SearchReport).query).toBe(QUERY);
    expect(stop.toolTurnSpans).toEqual([]);
    expect(stop.endedBy).toBe('budget');
    expect(stop.turns).toBe(1);
  });

  it('maxTurns 1: the trigger ends the turn and the tool never runs', async () => {
    let runs = 0;
    const tool: Tool<void, SearchReport> = { ...scriptedSearch(4), run: async (t) => { runs++; return search.run(t); } };
    const rollouts = await generateToolRollouts(model, proc, engine, [{ question: 'Hello?', images: [] }], {
      G: 2, tool, maxTurns: 1, maxNewTokens: 8, sampling: { temperature: 1, seed: 4 },
    });
    expect(runs).toBe(0);
    for (const r of rollouts) {
      expect(r.turns).toBe(1);
      expect(r.toolCalls).toEqual([]);
      expect(r.endedBy).toBe('max-turns');
      expect(r.responses[0].length).toBeGreaterThanOrEqual(4);
    }
  });
});

describe('generateToolRollouts (a tool that returns images)', () => {
  it('tool images enter the turn (mask 0), in token order, with image positions in training', async () => {
    const shown = gradient(56, 84);
    const imageTool: Tool<{ tag: string }, { tag: string }> = {
      name: 'look',
      trigger: (text) => text.length >= 6,
      run: async (_text, ctx) => ({ ok: true, text: `Here is ${ctx.tag}.`, images: [shown], report: { tag: ctx.tag } }),
    };
    const rollouts = await generateToolRollouts(model, proc, engine, [{ question: 'Look closer.', images: [gradient(84, 112)] }], {
      G: 2, tool: imageTool, maxTurns: 2, maxNewTokens: 6, sampling: { temperature: 1, seed: 8 },
      context: (p, info) => ({ tag: `${p.question} ${info.modelFrames[0].join('x')}` }), toolMinPixels: 56 * 56, toolMaxPixels: 56 * 84,
    });
    const withTool = rollouts.filter((r) => r.toolTurnSpans.length === 1);
    expect(withTool.length).toBeGreaterThan(0);
    for (const r of withTool) {
      expect(r.images.map((im) => im.source)).toEqual(['prompt', 'tool']);
      expect(r.images[1].grid).toEqual({ t: 1, h: 4, w: 6 });
      const ref = proc.imageProcessor.packRgb([shown], { minPixels: 56 * 56, maxPixels: 56 * 84 });
      expect(Array.from(r.images[1].pixelValues)).toEqual(Array.from(ref.pixelValues.data() as Float32Array));
      ref.dispose();
      const [a, b] = r.toolTurnSpans[0];
      const text = SEARCH_TEMPLATE.toolResult.replace('{result}', () => 'Here is Look closer. 84x112.');
      const want = proc.tokenizer.encode(expandImagePlaceholders(
        `<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>${text}<|im_end|>\n<|im_start|>assistant\n`, [6]), { addSpecialTokens: false });
      expect(Array.from(r.tokens.slice(a, b))).toEqual(r.tokens[a - 1] === IM_END ? want.slice(1) : want);
      for (let k = a; k < b; k++) expect(r.lossMask[k]).toBe(0);
      expect(r.toolCalls[0]).toMatchObject({ name: 'look', ok: true, images: 1, appended: true, report: { tag: 'Look closer. 84x112' } });
    }
    checkTrainingBatch(rollouts);
  });

  it('toolTurnIds: a text-only turn from the template, the sampled <|im_end|> not repeated', () => {
    const want = proc.tokenizer.encode('<|im_end|>\n<|im_start|>user\nresults<|im_end|>\n<|im_start|>assistant\n', { addSpecialTokens: false });
    expect(Array.from(toolTurnIds(proc, 'sys', [], 'results', [], 42))).toEqual(want);
    expect(Array.from(toolTurnIds(proc, 'sys', [], 'results', [], IM_END))).toEqual(want.slice(1));
    expect(() => toolTurnIds(proc, '', [], '', [], 1)).toThrow(/tool turn is empty/);
    expect(() => toolTurnIds(proc, '', [gradient(28, 28)], 'x', [], 1)).toThrow(/1 image\(s\) but 0 image token count/);
  });
});

describe('generateToolRollouts errors', () => {
  const q = [{ question: 'Why?', images: [] }];
  it('rejects bad options and bad tool output clearly', async () => {
    const tool = scriptedSearch(2);
    const run = (o: Partial<ToolRolloutOptions>) => generateToolRollouts(model, proc, engine, q, { G: 1, tool, maxTurns: 2, maxNewTokens: 8, ...o } as ToolRolloutOptions);
    await expect(run({ maxTurns: 0 })).rejects.toThrow(/maxTurns must be a positive integer.*got 0/);
    await expect(run({ tool: undefined })).rejects.toThrow(/options.tool is missing/);
    await expect(run({ tool: { name: 'x', run: tool.run } as unknown as Tool<void, SearchReport> })).rejects.toThrow(/must be a Tool \{name: string, trigger/);
    await expect(run({ G: 0 })).rejects.toThrow(/G must be a positive integer, got 0/);
    await expect(run({ maxTotalTokens: 5 })).rejects.toThrow(/leaves no room to generate/);
    await expect(run({ template: { ...SEARCH_TEMPLATE, toolResult: 'no slot' } })).rejects.toThrow(/must contain \{result\}/);
    await expect(run({ template: { ...SEARCH_TEMPLATE, user: '{query}' } })).rejects.toThrow(/unknown placeholder \{query\}/);
    const bad = { name: 'broken', trigger: tool.trigger, run: async () => ({ text: 1 }) } as unknown as Tool<void, SearchReport>;
    await expect(run({ tool: bad })).rejects.toThrow(/tool 'broken' on prompts\[0\] sample 0 turn 1: the tool returned object; expected \{ok: boolean, text: string/);
    const throwing = { name: 'web', trigger: tool.trigger, run: async () => { throw new Error('offline'); } } as Tool<void, SearchReport>;
    await expect(run({ tool: throwing })).rejects.toThrow(/tool 'web' on prompts\[0\] sample 0 turn 1 failed: offline/);
    const badTrigger = { name: 'trig', trigger: () => { throw new Error('boom'); }, run: tool.run } as Tool<void, SearchReport>;
    await expect(run({ tool: badTrigger })).rejects.toThrow(/'trig'.trigger threw on prompts\[0\] sample 0: boom/);
    // The engine holds nothing afterwards: a normal run still works.
    const ok = await run({});
    expect(ok.length).toBe(1);
    expect(() => checkToolTemplate(undefined as never)).toThrow(/expected an object \{system, user, toolResult\}/);
  });
});
