// One question about one image, behind `fovea chat`: MGPO's two turns by default (the model
// names the key region → the region is cropped from the ORIGINAL image and shown enlarged →
// the model answers), or GRPO's single turn. Greedy unless sampling says otherwise.
//
// The box is reported in both frames: the model frame (the resized image the model saw, where
// Qwen2.5-VL writes absolute pixel coordinates) and the original image's pixels (the crop,
// half-open). The answer is extracted with the rewards' helpers: the multiple-choice letter
// when choices are given, else boxed → <answer> → "answer is" → a short whole reply.
// chatLoaded() takes an in-memory model (a demo keeps one loaded between questions).
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  GenerationEngine, Qwen2_5_VL, Qwen2_5_VLProcessor, type RgbImage, type SamplingParams, loadImage,
} from '@fovea/models';
import { generateRollouts } from '../rollout/rollout.js';
import { type AnswerSource, extractAnswer, extractChoiceLetter } from '../rewards/extract.js';
import type { EvalBox } from '../eval/score.js';
import { evalCropTool } from '../eval/evaluate.js';

export interface ChatLoadedOptions {
  /** Default 'mgpo' (ground → crop → answer); 'grpo' answers in one turn. */
  mode?: 'mgpo' | 'grpo';
  /** New tokens per assistant turn. Default 256. */
  maxNewTokens?: number;
  /** Default greedy ({ temperature: 0 }). */
  sampling?: SamplingParams;
  /** Multiple-choice options (shown as (A) ... and extracted as a letter). */
  choices?: string[];
  minPixels?: number;
  maxPixels?: number;
  cropMinPixels?: number;
  cropMaxPixels?: number;
  clampBoxes?: boolean;
}

export interface ChatOptions extends ChatLoadedOptions {
  modelDir: string;
  imagePath: string;
  question: string;
  /** Called as each stage starts ('loading model ...', 'generating ...'): long-command feedback. */
  onStage?: (msg: string) => void;
}

export interface ChatResult {
  mode: 'mgpo' | 'grpo';
  /** MGPO's grounding turn (null in grpo mode). */
  turn1Text: string | null;
  /** The grounding outcome (null in grpo mode). */
  box: EvalBox | null;
  /** [height, width] of the resized image the model saw, and of the original file. */
  modelFrame: [number, number];
  originalSize: [number, number];
  /** The final assistant turn's text. */
  answerText: string;
  /** The extracted answer, or null when the reply commits to none. */
  answer: { text: string; source: AnswerSource } | null;
  truncated: boolean;
  finishReason: string | null;
}

/** Asks an in-memory model one question about one decoded image. */
export async function chatLoaded(
  model: Qwen2_5_VL, proc: Qwen2_5_VLProcessor, image: RgbImage, question: string, opts: ChatLoadedOptions = {},
): Promise<ChatResult> {
  const mode = opts.mode ?? 'mgpo';
  if (mode !== 'mgpo' && mode !== 'grpo') throw new Error(`chat: mode must be 'mgpo' or 'grpo', got ${String(mode)}`);
  if (typeof question !== 'string' || question.trim() === '') throw new Error('chat: the question must be a non-empty string');
  const tool = mode === 'mgpo' ? evalCropTool(proc, opts) : undefined;
  const engine = new GenerationEngine(model, { tokenizer: proc.tokenizer });
  try {
    const [r] = await generateRollouts(model, proc, engine, [{ question, choices: opts.choices, images: [image] }], {
      mode, G: 1, maxNewTokens: opts.maxNewTokens ?? 256, tool, sampling: opts.sampling ?? { temperature: 0 },
      ...(opts.minPixels != null ? { minPixels: opts.minPixels } : {}),
      ...(opts.maxPixels != null ? { maxPixels: opts.maxPixels } : {}),
    });
    const ps = proc.imageProcessor.config.patchSize;
    const g = r.images[0].grid;
    let box: EvalBox | null = null;
    if (mode === 'mgpo') {
      const t = r.tool;
      box = !t ? { valid: false, reason: 'no-box', message: 'the grounding turn ended on a vision token; no box was read' }
        : t.ok ? { valid: true, boxModel: t.boxModel, boxOriginal: t.boxOriginal }
          : { valid: false, reason: t.reason, message: t.message };
    }
    let answer: ChatResult['answer'] = null;
    if (opts.choices && opts.choices.length > 0) {
      const c = extractChoiceLetter(r.answer, { choices: opts.choices });
      if (c) answer = { text: c.letter, source: c.source };
    } else {
      answer = extractAnswer(r.answer);
    }
    return {
      mode, turn1Text: mode === 'mgpo' ? r.responses[0] ?? '' : null, box,
      modelFrame: [g.h * ps, g.w * ps], originalSize: [image.height, image.width],
      answerText: mode === 'mgpo' && r.turns < 2 ? '' : r.answer, answer: mode === 'mgpo' && r.turns < 2 ? null : answer,
      truncated: r.truncated, finishReason: r.finishReason,
    };
  } finally {
    engine.dispose();
  }
}

/** Loads the model and the image from disk and asks the question (paths are checked first). */
export async function chat(opts: ChatOptions): Promise<ChatResult> {
  if (!opts || typeof opts.modelDir !== 'string' || typeof opts.imagePath !== 'string') {
    throw new Error('chat: expected { modelDir: string, imagePath: string, question: string, ... }');
  }
  const modelDir = path.resolve(opts.modelDir), imagePath = path.resolve(opts.imagePath);
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) {
    throw new Error(`chat: model directory ${modelDir} not found; pass a folder with config.json, *.safetensors and the tokenizer files`);
  }
  if (!existsSync(path.join(modelDir, 'config.json'))) throw new Error(`chat: ${modelDir} has no config.json; is it a Hugging Face model folder?`);
  if (!existsSync(imagePath) || !statSync(imagePath).isFile()) throw new Error(`chat: image ${imagePath} not found`);
  if (typeof opts.question !== 'string' || opts.question.trim() === '') throw new Error('chat: the question must be a non-empty string');
  const image = await loadImage(imagePath);
  opts.onStage?.(`loading model ${modelDir}`);
  const model = await Qwen2_5_VL.fromPretrained(modelDir);
  try {
    const proc = await Qwen2_5_VLProcessor.fromPretrained(modelDir);
    const { modelDir: _m, imagePath: _i, question, onStage: _s, ...rest } = opts;
    const mode = rest.mode ?? 'mgpo';
    const temperature = rest.sampling ? rest.sampling.temperature ?? 1 : 0;   // SamplingParams' default is 1
    opts.onStage?.(`generating (${mode === 'mgpo' ? 'mgpo: ground → crop → answer' : 'grpo: one turn'}, ${temperature === 0 ? 'greedy' : `temperature ${temperature}`})`);
    return await chatLoaded(model, proc, image, question, rest);
  } finally {
    model.dispose();
  }
}
