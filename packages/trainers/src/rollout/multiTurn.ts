// Multi-turn tool rollouts (MMSearch-R1 style search, or any Tool) on the generation engine.
// G samples per prompt share the prompt's KV cache (engine.addGroup); every group is queued at
// once so the engine batches across prompts. Each sequence then loops on its own:
//   generate until tool.trigger(turn text) fires (onToken → 'pause'), eos, or the turn budget;
//   on a trigger, if turns < maxTurns and the total budget leaves room: run the tool on the turn's
//   text, append its output as a new user turn (template.toolResult around the tool's text, the
//   tool's images before it), and generate the next assistant turn.
// Sequences of a group progress independently (one searches twice, another answers at once):
// engine.run() is called until no sequence was continued. The last assistant turn's text is
// `answer`.
//
// Invariants (those of rollout.ts, for every turn):
// - tokens are exactly the engine's tokens (prompt, sampled, inserted); sampled ids are never
//   decoded and re-encoded (decoding serves only the trigger, the tool and rewards);
// - lossMask[i] = 1 iff tokens[i] was sampled; every inserted tool-turn token (its chat markup,
//   text and image tokens) has 0; toolTurnSpans lists the inserted spans [start, end);
// - oldLogprobs[i] = sampling log-prob where lossMask is 1, else 0;
// - images are in the order of their <|image_pad|> runs: prompt images, then each tool turn's;
// - turns ≤ maxTurns and tokens.length ≤ maxTotalTokens;
// - toolCalls lists every call the tool ran, in order (name, ok, the tool's report — search:
//   its query and result ids). A call whose result did not fit the total budget is still listed
//   (appended = false): the model did choose to call the tool, which the search penalty counts.
// A trigger on the last allowed turn (turns = maxTurns) ends the rollout without running the
// tool (endedBy 'max-turns'; not `truncated`: an unanswered rollout is scored, not filtered).
import type {
  ChatContentItem, ChatMessage, GenerationEngine, Qwen2_5_VL, Qwen2_5_VLProcessor, RgbImage, SamplingParams, Sequence,
} from '@fovea/models';
import { expandImagePlaceholders } from '@fovea/models';
import type { ToolCallRecord } from '../rewards/types.js';
import { type Tool, type ToolOutput, fillTemplate } from '../tools/types.js';
import { type Rollout, type RolloutImage, type RolloutPrompt, decodeIds, splitImages } from './rollout.js';
import { SEARCH_TEMPLATE, type ToolTemplate, checkToolTemplate } from './searchTemplate.js';
import { formatQuestion } from './templates.js';

/** What a tool's context callback learns about the prompt besides the prompt itself. */
export interface ToolPromptInfo {
  promptIndex: number;
  /** [height, width] of each prompt image as the model saw it (resized), in order. */
  modelFrames: [number, number][];
}

export interface ToolRolloutOptions<Ctx = void> {
  /** Samples per prompt. */
  G: number;
  tool: Tool<Ctx, unknown>;
  /** Default SEARCH_TEMPLATE. */
  template?: ToolTemplate;
  /** Assistant turns per rollout at most (1: the tool never runs). */
  maxTurns: number;
  /** New tokens per assistant turn (default 256). */
  maxNewTokens?: number;
  /** Whole conversation length cap, prompt and tool turns included (default: unlimited). */
  maxTotalTokens?: number;
  sampling?: SamplingParams;
  /** Pixel budget of the prompt images (default: the processor's). */
  minPixels?: number;
  maxPixels?: number;
  /** Pixel budget of images a tool returns (default: the processor's). */
  toolMinPixels?: number;
  toolMaxPixels?: number;
  /** The tool's second argument for one prompt (crop: the original image and its model frame). */
  context?: (prompt: RolloutPrompt, info: ToolPromptInfo) => Ctx;
}

/** One tool call of a rollout (a ToolCallRecord, so rewards take it as is). */
export interface ToolCall extends ToolCallRecord {
  /** The assistant turn (1-based) whose text made the call. */
  turn: number;
  /** The tool's per-call report (search: {ok, query, reason?, resultIds}). */
  report: unknown;
  /** The tool's output text (before template.toolResult wraps it). */
  output: string;
  /** Images the tool returned. */
  images: number;
  /** The result was appended as a user turn (false: it did not fit maxTotalTokens; the rollout ended). */
  appended: boolean;
}

export type ToolRolloutEnd = 'answer' | 'length' | 'budget' | 'max-turns' | 'invalid-token';

export interface ToolRollout extends Rollout {
  toolCalls: ToolCall[];
  /** [start, end) of each inserted tool turn in tokens (all loss mask 0). */
  toolTurnSpans: [number, number][];
  /** Why the rollout ended: eos ('answer'), the turn's own budget ('length'), the total budget
   *  ('budget'), a call on the last allowed turn ('max-turns'), a sampled vision token. */
  endedBy: ToolRolloutEnd;
}

const SENTINEL = '\u0000fovea-assistant-turn\u0000';

/**
 * Token ids of a user turn inserted after an assistant turn — `images` (one <|image_pad|> run
 * each, numImageTokens[i] long) then `text` — ending with the generation prompt. The ids come
 * from the chat template by rendering differences (see mgpo.ts); only this system text is
 * tokenized. `lastToken`: the last id the model sampled (a sampled closing token is not repeated).
 */
export function toolTurnIds(
  proc: Qwen2_5_VLProcessor, system: string, images: readonly RgbImage[], text: string,
  numImageTokens: readonly number[], lastToken: number | undefined,
): Int32Array {
  if (images.length !== numImageTokens.length) {
    throw new Error(`toolTurnIds: ${images.length} image(s) but ${numImageTokens.length} image token count(s)`);
  }
  const head: ChatMessage[] = [
    ...(system ? [{ role: 'system' as const, content: system }] : []),
    { role: 'user', content: 'q' },
    { role: 'assistant', content: SENTINEL },
  ];
  const a = proc.render(head).text;
  const content: ChatContentItem[] = [
    ...images.map((image) => ({ type: 'image' as const, image })),
    ...(text ? [{ type: 'text' as const, text }] : []),
  ];
  if (content.length === 0) throw new Error('toolTurnIds: the tool turn is empty (no text and no image)');
  const b = proc.render([...head, { role: 'user', content }], { addGenerationPrompt: true }).text;
  const at = a.lastIndexOf(SENTINEL);
  if (at < 0 || !b.startsWith(a)) {
    throw new Error('toolTurnIds: the chat template does not render a conversation as a prefix of its continuation; cannot build the tool turn');
  }
  const turn = a.slice(at + SENTINEL.length) + b.slice(a.length);
  const ids = proc.tokenizer.encode(expandImagePlaceholders(turn, numImageTokens), { addSpecialTokens: false });
  // The template closes the assistant turn with eos (<|im_end|>); the model may have sampled it.
  if (lastToken !== undefined && ids.length > 0 && ids[0] === lastToken) ids.shift();
  return Int32Array.from(ids);
}

interface SeqState {
  pi: number;
  k: number;
  seq: Sequence;
  question: string;
  ctx: unknown;
  promptLength: number;
  turn: number;
  turnStart: number;
  /** Set when the sequence was queued for a turn; cleared once that turn's text is read. */
  active: boolean;
  invalid: boolean;
  images: RolloutImage[];
  responses: string[];
  calls: ToolCall[];
  spans: [number, number][];
  endedBy: ToolRolloutEnd | null;
}

function checkOptions<Ctx>(opts: ToolRolloutOptions<Ctx>, op: string): void {
  if (!opts || typeof opts !== 'object') throw new Error(`${op}: options must be an object {G, tool, maxTurns, ...}`);
  if (!Number.isInteger(opts.G) || opts.G < 1) throw new Error(`${op}: G must be a positive integer, got ${opts.G}`);
  const t = opts.tool as Partial<Tool<Ctx, unknown>> | undefined;
  if (!t || typeof t !== 'object') throw new Error(`${op}: options.tool is missing; pass a Tool, e.g. searchTool({ backend })`);
  if (typeof t.name !== 'string' || !t.name || typeof t.trigger !== 'function' || typeof t.run !== 'function') {
    throw new Error(`${op}: options.tool must be a Tool {name: string, trigger(text), run(text, ctx)}`);
  }
  if (!Number.isInteger(opts.maxTurns) || opts.maxTurns < 1) throw new Error(`${op}: maxTurns must be a positive integer (assistant turns per rollout), got ${opts.maxTurns}`);
  const maxNew = opts.maxNewTokens ?? 256;
  if (!Number.isInteger(maxNew) || maxNew < 1) throw new Error(`${op}: maxNewTokens must be a positive integer, got ${opts.maxNewTokens}`);
  const maxTotal = opts.maxTotalTokens ?? Infinity;
  if (maxTotal !== Infinity && (!Number.isInteger(maxTotal) || maxTotal < 2)) {
    throw new Error(`${op}: maxTotalTokens must be an integer >= 2 (prompt + at least one new token), got ${opts.maxTotalTokens}`);
  }
  if (opts.context !== undefined && typeof opts.context !== 'function') throw new Error(`${op}: context must be a function (prompt, info) => tool context`);
}

function checkToolOutput(out: unknown, where: string): ToolOutput<unknown> {
  const o = out as Partial<ToolOutput<unknown>> | null;
  if (!o || typeof o !== 'object' || typeof o.ok !== 'boolean' || typeof o.text !== 'string' || !Array.isArray(o.images)) {
    throw new Error(`${where}: the tool returned ${o === null ? 'null' : typeof o}; expected {ok: boolean, text: string, images: RgbImage[], report}`);
  }
  return o as ToolOutput<unknown>;
}

/** Generates G multi-turn tool rollouts per prompt (see the file comment). The engine is the caller's. */
export async function generateToolRollouts<Ctx = void>(
  model: Qwen2_5_VL, proc: Qwen2_5_VLProcessor, engine: GenerationEngine, prompts: readonly RolloutPrompt[], opts: ToolRolloutOptions<Ctx>,
): Promise<ToolRollout[]> {
  const op = 'generateToolRollouts';
  checkOptions(opts, op);
  if (!Array.isArray(prompts)) throw new Error(`${op}: prompts must be an array of {question, images}`);
  const tpl = checkToolTemplate(opts.template ?? SEARCH_TEMPLATE);
  const { tool, maxTurns } = opts;
  const maxNew = opts.maxNewTokens ?? 256;
  const maxTotal = opts.maxTotalTokens ?? Infinity;
  const cfg = model.config;
  const visionIds = new Set([cfg.imageTokenId, cfg.visionStartTokenId, (cfg as { videoTokenId?: number }).videoTokenId ?? -1]);
  const states = new Map<number, SeqState>();
  const order: SeqState[] = [];

  // Shared by every request: the state is looked up per sequence.
  const onToken = (seq: Sequence, token: number): 'pause' | 'stop' | undefined => {
    const st = states.get(seq.id)!;
    if (visionIds.has(token)) { st.invalid = true; return 'stop'; }
    let fired: boolean;
    try {
      fired = tool.trigger(decodeIds(proc, seq.tokens.slice(st.turnStart)));
    } catch (err) {
      throw new Error(`${op}: tool '${tool.name}'.trigger threw on prompts[${st.pi}] sample ${st.k}: ${(err as Error).message}`);
    }
    return fired ? 'pause' : undefined;
  };

  try {
    for (const [pi, prompt] of prompts.entries()) {
      if (!prompt || typeof prompt.question !== 'string' || !Array.isArray(prompt.images)) {
        throw new Error(`${op}: prompts[${pi}] must be {question: string, images: RgbImage[]} (images may be empty)`);
      }
      const question = formatQuestion(prompt.question, prompt.choices);
      const text = fillTemplate(tpl.user, { question }, 'tool template user');
      const chat = await proc.apply([
        ...(tpl.system ? [{ role: 'system' as const, content: tpl.system }] : []),
        { role: 'user', content: [...prompt.images.map((image: RgbImage) => ({ type: 'image' as const, image })), { type: 'text' as const, text }] },
      ], { addGenerationPrompt: true, minPixels: opts.minPixels, maxPixels: opts.maxPixels });
      let group: Sequence[];
      let promptImages: RolloutImage[];
      let ctx: unknown;
      try {
        const budget = Math.min(maxNew, maxTotal - chat.inputIds.length);
        if (budget < 1) throw new Error(`${op}: prompts[${pi}] has ${chat.inputIds.length} tokens; maxTotalTokens ${maxTotal} leaves no room to generate`);
        promptImages = chat.images ? splitImages(chat.images, 'prompt') : [];
        const modelFrames = chat.images ? chat.images.resizedSizes.map(([h, w]) => [h, w] as [number, number]) : [];
        ctx = opts.context ? opts.context(prompt, { promptIndex: pi, modelFrames }) : undefined;
        group = engine.addGroup({ inputIds: chat.inputIds, images: chat.images, sampling: opts.sampling, maxNewTokens: budget, onToken }, opts.G);
      } finally {
        chat.images?.dispose();
      }
      for (const [k, seq] of group.entries()) {
        const st: SeqState = {
          pi, k, seq, question, ctx, promptLength: chat.inputIds.length, turn: 1, turnStart: chat.inputIds.length, active: true,
          invalid: false, images: [...promptImages], responses: [], calls: [], spans: [], endedBy: null,
        };
        states.set(seq.id, st);
        order.push(st);
      }
    }

    for (;;) {
      engine.run();
      const callers: SeqState[] = [];
      for (const st of order) {
        if (!st.active) continue;
        st.active = false;
        const s = st.seq;
        st.responses.push(decodeIds(proc, s.tokens.slice(st.turnStart).filter((t) => !visionIds.has(t))));
        if (st.invalid) st.endedBy = 'invalid-token';
        else if (s.finishReason === 'eos') st.endedBy = 'answer';
        else if (s.finishReason === 'length') st.endedBy = s.turnTokens < maxNew ? 'budget' : 'length';
        else if (s.finishReason !== 'paused') throw new Error(`${op}: sequence ${s.id} stopped with '${s.finishReason}'; expected eos, length or a tool pause`);
        else if (st.turn >= maxTurns) st.endedBy = 'max-turns';
        else callers.push(st);  // runs even when the budget is spent: the call is recorded (appended = false)
      }
      if (callers.length === 0) break;
      // Tools run concurrently (a network backend overlaps); their turns are appended in order.
      const outputs = await Promise.all(callers.map(async (st) => {
        const where = `${op}: tool '${tool.name}' on prompts[${st.pi}] sample ${st.k} turn ${st.turn}`;
        try {
          return checkToolOutput(await tool.run(st.responses[st.responses.length - 1], st.ctx as Ctx), where);
        } catch (err) {
          throw (err as Error).message.startsWith(where) ? err : new Error(`${where} failed: ${(err as Error).message}`);
        }
      }));
      for (const [i, st] of callers.entries()) appendToolTurn(st, outputs[i]);
    }

    return order.map((st): ToolRollout => {
      const s = st.seq;
      const n = st.invalid ? s.tokens.length - 1 : s.tokens.length;   // drop a sampled vision token
      const tokens = Int32Array.from(s.tokens.slice(0, n));
      const lossMask = new Float32Array(n), oldLogprobs = new Float32Array(n);
      for (let i = 0; i < n; i++) if (s.sampled[i]) { lossMask[i] = 1; oldLogprobs[i] = s.logprobs[i]; }
      const endedBy = st.endedBy!;
      return {
        promptIndex: st.pi, sample: st.k, tokens, lossMask, oldLogprobs, promptLength: st.promptLength, images: st.images,
        turns: st.responses.length, responses: st.responses, answer: st.responses[st.responses.length - 1] ?? '',
        finishReason: s.finishReason, truncated: endedBy === 'length' || endedBy === 'budget', invalidToken: st.invalid,
        toolCalls: st.calls, toolTurnSpans: st.spans, endedBy, meta: prompts[st.pi].meta,
      };
    });
  } finally {
    for (const st of order) engine.release(st.seq);
  }

  /** Builds the tool's user turn and continues the sequence, or ends it when the turn does not fit. */
  function appendToolTurn(st: SeqState, out: ToolOutput<unknown>): void {
    const s = st.seq;
    const text = fillTemplate(tpl.toolResult, { result: out.text, question: st.question }, 'tool template toolResult');
    const packed = out.images.length ? proc.imageProcessor.packRgb(out.images, { minPixels: opts.toolMinPixels, maxPixels: opts.toolMaxPixels }) : null;
    try {
      const ids = toolTurnIds(proc, tpl.system, out.images, text, packed?.numImageTokens ?? [], s.tokens[s.tokens.length - 1]);
      const left = maxTotal - s.tokens.length - ids.length;
      const call: ToolCall = { name: tool.name, ok: out.ok, turn: st.turn, report: out.report, output: out.text, images: out.images.length, appended: left >= 1 };
      st.calls.push(call);
      if (left < 1) { st.endedBy = 'budget'; return; }
      const start = s.tokens.length;
      engine.append(s, { inputIds: ids, images: packed, maxNewTokens: Math.min(maxNew, left) });
      if (packed) st.images.push(...splitImages(packed, 'tool'));
      st.spans.push([start, s.tokens.length]);
      st.turn++;
      st.turnStart = s.tokens.length;
      st.active = true;
    } finally {
      packed?.dispose();
    }
  }
}
