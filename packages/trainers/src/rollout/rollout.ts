// Rollouts for GRPO (one turn) and MGPO (two turns: ground → crop → answer) on the generation
// engine. G samples per prompt share the prompt's KV cache (engine.addGroup). Turn 1 of MGPO stops
// when the turn's text ends with a ```json block (onToken + tool.trigger on the decoded turn
// text), or at its token budget; the crop tool then runs on the ORIGINAL image whatever turn 1
// produced (an invalid or missing box returns the original image with the invalid-box text, as
// MGPO), the tool turn is appended to the same sequence (its tokens and image), and turn 2
// generates within what is left of the total token budget.
//
// Invariants of every Rollout:
// - tokens are exactly the engine's tokens: prompt ids, sampled ids, inserted ids; model output
//   is never decoded and re-encoded (decoding is only for the trigger, the tool and rewards);
// - lossMask[i] = 1 iff tokens[i] was sampled (both assistant turns); 0 on the prompt and on the
//   tool turn including its image tokens;
// - oldLogprobs[i] is the sampling log-prob of tokens[i] where lossMask is 1, else 0. They are
//   log-probs of the SAMPLING distribution (temperature/top-k/top-p applied): train with the same
//   temperature in grpoLoss and top-p 1 / top-k 0 for exact old log-probs;
// - images are in the order of their <|image_pad|> runs in tokens (prompt images, then the
//   tool's image), as pixel rows + grid, ready to pack for the training forward pass.
// A sampled vision token (<|image_pad|>, <|vision_start|>, <|video_pad|>: a tiny or broken model
// can draw them) would corrupt the image-token bookkeeping: the sequence stops there, the token is
// dropped from the rollout, and the rollout ends (invalidToken = true).
import type {
  GenerationEngine, GridThw, PackedImages, Qwen2_5_VL, Qwen2_5_VLProcessor, RgbImage, SamplingParams, Sequence,
} from '@fovea/models';
import type { CropReport, CropTool } from '../tools/crop.js';
import type { ToolCallRecord } from '../rewards/types.js';
import { fillTemplate } from '../tools/types.js';
import { mgpoToolTurn } from './mgpo.js';
import { GRPO_TEMPLATE, type GrpoTemplate, MGPO_TEMPLATE, type MgpoTemplate, checkGrpoTemplate, checkMgpoTemplate, formatQuestion } from './templates.js';

export interface RolloutPrompt {
  question: string;
  choices?: string[];
  /** Decoded original images (loadImage); the crop tool works on `images[cropImage ?? 0]`. */
  images: RgbImage[];
  cropImage?: number;
  /** Passed through to the rollout (row id, answer...). */
  meta?: unknown;
}

/** One image of a rollout: its patch rows (shared, not copied, between the G rollouts of a prompt). */
export interface RolloutImage {
  pixelValues: Float32Array;   // [rows, patchDim] row-major
  patchDim: number;
  grid: GridThw;
  source: 'prompt' | 'crop' | 'original' | 'tool';
}

export interface Rollout {
  promptIndex: number;
  sample: number;
  tokens: Int32Array;
  lossMask: Float32Array;
  oldLogprobs: Float32Array;
  promptLength: number;
  images: RolloutImage[];
  /** Assistant turns generated. */
  turns: number;
  /** Decoded text of each assistant turn (for the tool, rewards and reports). */
  responses: string[];
  /** The final turn's text: what the reward extracts the answer from. */
  answer: string;
  finishReason: string | null;
  /** The last turn hit its token budget (overlong filtering masks these). */
  truncated: boolean;
  invalidToken: boolean;
  /** MGPO: the crop tool's report (valid box, box in both frames). */
  tool?: CropReport;
  /** Multi-turn tool rollouts (multiTurn.ts): every tool call in order, for rewards (search penalty). */
  toolCalls?: ToolCallRecord[];
  meta?: unknown;
}

export interface RolloutOptions {
  mode: 'grpo' | 'mgpo';
  /** Samples per prompt. */
  G: number;
  sampling?: SamplingParams;
  /** New tokens per assistant turn (default 256). */
  maxNewTokens?: number;
  /** Whole conversation length cap, prompt and tool turn included (default: unlimited). */
  maxTotalTokens?: number;
  /** Pixel budget of the prompt images (default: the processor's). */
  minPixels?: number;
  maxPixels?: number;
  mgpoTemplate?: MgpoTemplate;
  grpoTemplate?: GrpoTemplate;
  /** Needed for mode 'mgpo'. */
  tool?: CropTool;
}

/** The packed images as one RolloutImage each (their patch rows copied out, in pack order). */
export function splitImages(packed: PackedImages, source: RolloutImage['source']): RolloutImage[] {
  const pv = packed.pixelValues.data() as Float32Array;
  const patchDim = packed.pixelValues.shape[1];
  const g = packed.gridThw.data() as Int32Array;
  const out: RolloutImage[] = [];
  let row = 0;
  for (let i = 0; i < g.length / 3; i++) {
    const grid = { t: g[3 * i], h: g[3 * i + 1], w: g[3 * i + 2] };
    const rows = grid.t * grid.h * grid.w;
    out.push({ pixelValues: pv.slice(row * patchDim, (row + rows) * patchDim), patchDim, grid, source });
    row += rows;
  }
  return out;
}

/** Decodes sampled ids; ids past the tokenizer's vocabulary (a padded lm_head) decode to nothing. */
export function decodeIds(proc: Qwen2_5_VLProcessor, ids: readonly number[]): string {
  const V = proc.tokenizer.vocabSize;
  return proc.tokenizer.decode(ids.filter((t) => t < V));  // ids past the tokenizer (padded vocab) decode to nothing
}

/** Generates G rollouts per prompt (see the file comment). The engine is the caller's. */
export async function generateRollouts(
  model: Qwen2_5_VL, proc: Qwen2_5_VLProcessor, engine: GenerationEngine, prompts: readonly RolloutPrompt[], opts: RolloutOptions,
): Promise<Rollout[]> {
  const op = 'generateRollouts';
  if (opts.mode !== 'grpo' && opts.mode !== 'mgpo') throw new Error(`${op}: mode must be 'grpo' or 'mgpo', got ${String(opts.mode)}`);
  if (!Number.isInteger(opts.G) || opts.G < 1) throw new Error(`${op}: G must be a positive integer, got ${opts.G}`);
  if (opts.mode === 'mgpo' && !opts.tool) throw new Error(`${op}: mode 'mgpo' needs a crop tool (opts.tool = cropTool({...}))`);
  const maxNew = opts.maxNewTokens ?? 256;
  const maxTotal = opts.maxTotalTokens ?? Infinity;
  const mt = checkMgpoTemplate(opts.mgpoTemplate ?? MGPO_TEMPLATE);
  const gt = checkGrpoTemplate(opts.grpoTemplate ?? GRPO_TEMPLATE);
  const cfg = model.config;
  const visionIds = new Set([cfg.imageTokenId, cfg.visionStartTokenId, (cfg as { videoTokenId?: number }).videoTokenId ?? -1]);
  const out: Rollout[] = [];

  for (const [pi, prompt] of prompts.entries()) {
    if (!prompt || !Array.isArray(prompt.images)) throw new Error(`${op}: prompts[${pi}].images must be an array of decoded images`);
    const question = formatQuestion(prompt.question, prompt.choices);
    const system = opts.mode === 'mgpo' ? mt.system : gt.system;
    const text = opts.mode === 'mgpo' ? fillTemplate(mt.turn1, { question }, 'mgpo template turn1') : fillTemplate(gt.user, { question }, 'grpo template user');
    const chat = await proc.apply([
      ...(system ? [{ role: 'system' as const, content: system }] : []),
      { role: 'user', content: [...prompt.images.map((image) => ({ type: 'image' as const, image })), { type: 'text' as const, text }] },
    ], { addGenerationPrompt: true, minPixels: opts.minPixels, maxPixels: opts.maxPixels });
    const cropIdx = prompt.cropImage ?? 0;
    if (opts.mode === 'mgpo' && !(cropIdx >= 0 && cropIdx < prompt.images.length)) {
      chat.images?.dispose();
      throw new Error(`${op}: prompts[${pi}].cropImage = ${cropIdx} but the prompt has ${prompt.images.length} image(s)`);
    }
    const promptImages = chat.images ? splitImages(chat.images, 'prompt') : [];
    const modelFrame = chat.images ? chat.images.resizedSizes[cropIdx] as [number, number] : null;

    // Per-sequence state (the request object, hence onToken, is shared by the group).
    const state = new Map<number, { turn: number; turnStart: number; invalid: boolean }>();
    const tool = opts.tool;
    const onToken = (seq: Sequence, token: number): 'pause' | 'stop' | undefined => {
      const st = state.get(seq.id)!;
      if (visionIds.has(token)) { st.invalid = true; return 'stop'; }
      if (opts.mode === 'mgpo' && st.turn === 1 && decodeIds(proc, [token]).includes('`')) {
        if (tool!.trigger(decodeIds(proc, seq.tokens.slice(st.turnStart)))) return 'pause';
      }
      return undefined;
    };
    const budget1 = Math.min(maxNew, maxTotal - chat.inputIds.length);
    if (budget1 < 1) {
      chat.images?.dispose();
      throw new Error(`${op}: prompts[${pi}] has ${chat.inputIds.length} tokens; maxTotalTokens ${maxTotal} leaves no room to generate`);
    }
    let group: Sequence[];
    try {
      group = engine.addGroup({ inputIds: chat.inputIds, images: chat.images, sampling: opts.sampling, maxNewTokens: budget1, onToken }, opts.G);
    } finally {
      chat.images?.dispose();
    }
    for (const s of group) state.set(s.id, { turn: 1, turnStart: chat.inputIds.length, invalid: false });
    const extraImages = new Map<number, RolloutImage[]>();
    const reports = new Map<number, CropReport>();
    const responses = new Map<number, string[]>(group.map((s) => [s.id, []]));
    try {
      engine.run();
      for (const s of group) responses.get(s.id)!.push(decodeIds(proc, s.tokens.slice(state.get(s.id)!.turnStart).filter((t) => !visionIds.has(t))));
      if (opts.mode === 'mgpo') {
        for (const s of group) {
          const st = state.get(s.id)!;
          if (st.invalid) continue;
          const turn = mgpoToolTurn(proc, tool!, mt, responses.get(s.id)![0], prompt.images[cropIdx], modelFrame!, question, s.tokens[s.tokens.length - 1]);
          try {
            const { image: _drop, ...report } = turn.result;
            reports.set(s.id, report);
            const left = maxTotal - s.tokens.length - turn.inputIds.length;
            if (left < 1) continue;  // no room for turn 2: the rollout ends after turn 1 (truncated)
            extraImages.set(s.id, splitImages(turn.packed, turn.result.ok ? 'crop' : 'original'));
            engine.append(s, { inputIds: turn.inputIds, images: turn.packed, maxNewTokens: Math.min(maxNew, left) });
            st.turn = 2;
            st.turnStart = s.tokens.length;
          } finally {
            turn.packed.dispose();
          }
        }
        engine.run();
        for (const s of group) {
          const st = state.get(s.id)!;
          if (st.turn === 2) responses.get(s.id)!.push(decodeIds(proc, s.tokens.slice(st.turnStart).filter((t) => !visionIds.has(t))));
        }
      }
      for (const [k, s] of group.entries()) {
        const st = state.get(s.id)!;
        const n = st.invalid ? s.tokens.length - 1 : s.tokens.length;   // drop a sampled vision token
        const tokens = Int32Array.from(s.tokens.slice(0, n));
        const lossMask = new Float32Array(n), oldLogprobs = new Float32Array(n);
        for (let i = 0; i < n; i++) if (s.sampled[i]) { lossMask[i] = 1; oldLogprobs[i] = s.logprobs[i]; }
        const resp = responses.get(s.id)!;
        const noTurn2 = opts.mode === 'mgpo' && st.turn === 1 && !st.invalid;
        out.push({
          promptIndex: pi, sample: k, tokens, lossMask, oldLogprobs, promptLength: chat.inputIds.length,
          images: [...promptImages, ...(extraImages.get(s.id) ?? [])], turns: resp.length, responses: resp,
          answer: resp[resp.length - 1] ?? '', finishReason: s.finishReason,
          truncated: s.finishReason === 'length' || noTurn2, invalidToken: st.invalid,
          ...(reports.has(s.id) ? { tool: reports.get(s.id) } : {}), meta: prompt.meta,
        });
      }
    } finally {
      for (const s of group) engine.release(s);
    }
  }
  return out;
}
