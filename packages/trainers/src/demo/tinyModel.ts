// The demo's tiny Qwen2.5-VL, written to disk as a Hugging Face checkpoint directory so the demo
// loads it through exactly the code path of a real one (Qwen2_5_VL.fromPretrained,
// Qwen2_5_VLProcessor.fromPretrained):
//   config.json (flat layout) + model.safetensors   random init, seeded (Qwen2_5_VL.random + save)
//   tokenizer.json + tokenizer_config.json          small byte-level BPE trained on the demo's strings,
//                                                   Qwen's added tokens and chat template
//   preprocessor_config.json                        the demo's pixel budget (224·224 by default)
//   generation_config.json                          eos = <|im_end|>, <|endoftext|>
// Invariants: config.json's token ids are the tokenizer's (image_token_id = <|image_pad|>, …),
// vocab_size = the tokenizer's id count, and the directory is a pure function of the options.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Qwen2_5_VL, type Qwen2_5_VLConfig, parseConfig } from '@fovea/models';
import { GRPO_TEMPLATE, MGPO_TEMPLATE, formatQuestion } from '../rollout/templates.js';
import { CROP_FAILURE_PHRASES, DEFAULT_CROP_INVALID_TEXT, DEFAULT_CROP_VALID_TEXT } from '../tools/crop.js';
import { fillTemplate } from '../tools/types.js';
import { DEMO_GROUNDING_TEXT, boxedAnswer, groundingAnswer } from './demoDataset.js';
import { type DemoTokenizerFiles, buildDemoTokenizer } from './demoTokenizer.js';
import { ANSWER_CHARS } from './glyphs.js';
import { Rng } from './rng.js';
import { DEMO_MAX_PIXELS, DEMO_MIN_PIXELS, DEMO_QUESTION } from './scenes.js';

export interface TinyModelOptions {
  seed?: number;
  /** Language model: width, decoder layers, attention heads, KV heads, MLP width. */
  hidden?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  intermediate?: number;
  /** Vision tower: width, blocks, heads, MLP width (patch 14, merge 2, window 112 as Qwen). */
  visionHidden?: number;
  visionDepth?: number;
  visionHeads?: number;
  visionIntermediate?: number;
  /** BPE merges of the tokenizer (vocabulary = 256 + merges + 22 added tokens). Default 234 → 512. */
  numMerges?: number;
  /** The image processor's pixel budget (preprocessor_config.json). */
  maxPixels?: number;
  minPixels?: number;
  /** Standard deviation of the random weights (norms are 1 + N(0, 0.1²)). */
  initStd?: number;
  /** RoPE base of the language model. Default 10, not Qwen's 1e6: with 32-wide heads M-RoPE's row and
   *  column sections get only the lowest frequencies, and at 1e6 they turn by ≤ 0.25 rad across an
   *  8×8 image grid, so the model cannot tell image-token positions apart (measured: a left-vs-right
   *  half task is not learned at 1e6 and is learned in 200 SFT steps at 10 or 100). */
  ropeTheta?: number;
}

export interface TinyModelResult {
  dir: string;
  config: Qwen2_5_VLConfig;
  /** Parameters in the checkpoint. */
  numParameters: number;
  tokenizer: Pick<DemoTokenizerFiles, 'addedIds' | 'vocabSize'>;
}

export const DEMO_NUM_MERGES = 234;

/** The strings the demo tokenizes, for learning the merges (fixed seed: a fixed tokenizer). */
export function demoCorpus(): string[] {
  const rng = new Rng(9);
  const texts: string[] = ['system\nYou are a helpful assistant.', 'user\n', 'assistant\n', DEMO_GROUNDING_TEXT];
  const system = [MGPO_TEMPLATE.system, GRPO_TEMPLATE.system].filter(Boolean);
  for (let i = 0; i < 24; i++) {
    const question = formatQuestion(DEMO_QUESTION, rng.shuffled(ANSWER_CHARS).slice(0, 4));
    texts.push(...system, question,
      fillTemplate(MGPO_TEMPLATE.turn1, { question }, 'turn1'), fillTemplate(MGPO_TEMPLATE.turn2, { question }, 'turn2'),
      fillTemplate(GRPO_TEMPLATE.user, { question }, 'user'));
    const x = rng.int(0, 220), y = rng.int(0, 220);
    texts.push(groundingAnswer([x, y, x + rng.int(4, 40), y + rng.int(4, 40)]), boxedAnswer(rng.pick([...'ABCD'])));
    const b = [rng.int(0, 1500), rng.int(0, 1500)];
    texts.push(fillTemplate(MGPO_TEMPLATE.cropValid, { box: `[${b[0]}, ${b[1]}, ${b[0] + 203}, ${b[1] + 203}]` }, 'cropValid'));
  }
  for (const reason of Object.values(CROP_FAILURE_PHRASES)) {
    texts.push(fillTemplate(MGPO_TEMPLATE.cropInvalid, { reason }, 'cropInvalid'),
      fillTemplate(DEFAULT_CROP_INVALID_TEXT, { reason, detail: reason }, 'invalid'));
  }
  texts.push(DEFAULT_CROP_VALID_TEXT);
  return texts;
}

function posInt(v: number | undefined, dflt: number, name: string): number {
  const n = v ?? dflt;
  if (!Number.isInteger(n) || n < 1) throw new Error(`writeTinyDemoModel: ${name} must be a positive integer, got ${v}`);
  return n;
}

/** The config.json object of the tiny model (flat layout, as transformers ≤ 4.51 writes it). */
export function tinyConfigJson(opts: TinyModelOptions, tok: Pick<DemoTokenizerFiles, 'addedIds' | 'vocabSize'>): Record<string, unknown> {
  const hidden = posInt(opts.hidden, 64, 'hidden'), heads = posInt(opts.heads, 4, 'heads');
  const kvHeads = posInt(opts.kvHeads, Math.min(2, heads), 'kvHeads');
  const vHidden = posInt(opts.visionHidden, 64, 'visionHidden'), vHeads = posInt(opts.visionHeads, 4, 'visionHeads');
  const depth = posInt(opts.visionDepth, 2, 'visionDepth');
  if (hidden % heads !== 0 || (hidden / heads) % 2 !== 0) throw new Error(`writeTinyDemoModel: hidden ${hidden} must split into ${heads} heads of even size`);
  const half = hidden / heads / 2;
  const t = Math.max(1, Math.round(half / 4)), h = Math.floor((half - t) / 2);
  const id = (name: string) => tok.addedIds[name];
  return {
    architectures: ['Qwen2_5_VLForConditionalGeneration'], model_type: 'qwen2_5_vl',
    hidden_size: hidden, num_hidden_layers: posInt(opts.layers, 2, 'layers'), num_attention_heads: heads,
    num_key_value_heads: kvHeads, intermediate_size: posInt(opts.intermediate, 4 * hidden, 'intermediate'),
    vocab_size: tok.vocabSize, rms_norm_eps: 1e-6, rope_theta: opts.ropeTheta ?? 10, max_position_embeddings: 32768,
    rope_scaling: { type: 'mrope', rope_type: 'default', mrope_section: [t, h, half - t - h] },
    hidden_act: 'silu', tie_word_embeddings: false, use_sliding_window: false, sliding_window: 32768,
    max_window_layers: 2, attention_dropout: 0.0, initializer_range: opts.initStd ?? 0.02, torch_dtype: 'float32', use_cache: true,
    bos_token_id: id('<|endoftext|>'), eos_token_id: id('<|im_end|>'), pad_token_id: id('<|endoftext|>'),
    image_token_id: id('<|image_pad|>'), video_token_id: id('<|video_pad|>'),
    vision_start_token_id: id('<|vision_start|>'), vision_end_token_id: id('<|vision_end|>'), vision_token_id: id('<|vision_pad|>'),
    vision_config: {
      depth, hidden_size: vHidden, num_heads: vHeads, intermediate_size: posInt(opts.visionIntermediate, 2 * vHidden, 'visionIntermediate'),
      out_hidden_size: hidden, patch_size: 14, temporal_patch_size: 2, spatial_merge_size: 2, window_size: 112,
      fullatt_block_indexes: [depth - 1], in_channels: 3, hidden_act: 'silu', tokens_per_second: 2, model_type: 'qwen2_5_vl',
    },
  };
}

function preprocessorConfig(minPixels: number, maxPixels: number): Record<string, unknown> {
  return {
    do_convert_rgb: true, do_normalize: true, do_rescale: true, do_resize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711],
    image_processor_type: 'Qwen2VLImageProcessor', max_pixels: maxPixels, min_pixels: minPixels,
    merge_size: 2, patch_size: 14, resample: 3, rescale_factor: 1 / 255,
    size: { longest_edge: maxPixels, shortest_edge: minPixels }, temporal_patch_size: 2,
  };
}

const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

/** Writes the tiny demo checkpoint into `dir` (created if needed); see the file comment. */
export function writeTinyDemoModel(dir: string, opts: TinyModelOptions = {}): TinyModelResult {
  if (typeof dir !== 'string' || dir.length === 0) throw new Error('writeTinyDemoModel: dir must be a non-empty path');
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`writeTinyDemoModel: seed must be a non-negative safe integer, got ${opts.seed}`);
  const maxPixels = posInt(opts.maxPixels, DEMO_MAX_PIXELS, 'maxPixels'), minPixels = posInt(opts.minPixels, DEMO_MIN_PIXELS, 'minPixels');
  if (minPixels > maxPixels) throw new Error(`writeTinyDemoModel: minPixels ${minPixels} is above maxPixels ${maxPixels}`);
  const std = opts.initStd ?? 0.02;
  if (!(Number.isFinite(std) && std > 0)) throw new Error(`writeTinyDemoModel: initStd must be a positive number, got ${opts.initStd}`);
  if (opts.ropeTheta !== undefined && !(Number.isFinite(opts.ropeTheta) && opts.ropeTheta > 1)) throw new Error(`writeTinyDemoModel: ropeTheta must be a number > 1, got ${opts.ropeTheta}`);
  const tok = buildDemoTokenizer(demoCorpus(), opts.numMerges ?? DEMO_NUM_MERGES);
  const config = parseConfig(tinyConfigJson(opts, tok), 'writeTinyDemoModel config');
  mkdirSync(dir, { recursive: true });
  const model = Qwen2_5_VL.random(config, { seed, std });
  let numParameters = 0;
  try {
    for (const t of model.stateDict().values()) numParameters += t.size;
    model.save(dir);
  } finally {
    model.dispose();
  }
  writeFileSync(join(dir, 'tokenizer.json'), json(tok.tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), json(tok.tokenizerConfig));
  writeFileSync(join(dir, 'preprocessor_config.json'), json(preprocessorConfig(minPixels, maxPixels)));
  writeFileSync(join(dir, 'generation_config.json'), json({
    bos_token_id: tok.addedIds['<|endoftext|>'], eos_token_id: [tok.addedIds['<|im_end|>'], tok.addedIds['<|endoftext|>']],
    pad_token_id: tok.addedIds['<|endoftext|>'],
  }));
  return { dir, config, numParameters, tokenizer: { addedIds: tok.addedIds, vocabSize: tok.vocabSize } };
}
