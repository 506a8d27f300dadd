// Qwen2_5_VL: the whole model (HF Qwen2_5_VLForConditionalGeneration) as one Module whose
// parameter names are the checkpoint's (legacy layout: visual.*, model.*, lm_head.*).
// forward() takes one packed batch — token ids of many sequences back to back, their images
// packed in order, cuSeqlens, and M-RoPE position ids restarting per sequence — and returns the
// final hidden states; logits() applies the head only when asked (trainers feed the hidden
// states to the fused GRPO loss with lmHeadWeight instead of materializing logits).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type DType, Generator, Module, type Tensor, cat, embedding, indexSelect, linear, noGrad, ones, randn, tensor, tidy,
} from '@fovea/core';
import { type Qwen2_5_VLConfig, loadConfig } from './config.js';
import type { ParamSource } from './layers.js';
import { mropeTables } from './rope.js';
import { getRopeIndexPacked } from './ropeIndex.js';
import { type CachedStep, TextModel } from './text.js';
import { type VisionInput, VisionTower } from './vision.js';
import { loadWeights, saveWeights, type SaveWeightsOptions } from './weights.js';

export interface LoadOptions {
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
  /** Float dtype of the weights and activations (default f32). */
  dtype?: DType;
}

export interface RandomInitOptions extends LoadOptions {
  seed?: number;
  /** Standard deviation of weights and biases (default 0.02). Norm weights are 1 + N(0, 0.1²). */
  std?: number;
}

export interface ForwardInput {
  /** Token ids of one or more packed sequences, [L] (Int32Array, number[] or an i32/i64 tensor). */
  inputIds: Int32Array | readonly number[] | Tensor;
  /** The images of every sequence, packed in order (e.g. ImageProcessor.pack's result). */
  images?: VisionInput | null;
  /** [3, L] M-RoPE positions (t, h, w rows), restarting per sequence. Computed when omitted. */
  positionIds?: Int32Array | Tensor;
  /** [B + 1] offsets of the packed sequences in inputIds; default one sequence. */
  cuSeqlens?: ArrayLike<number> | Tensor;
}

export interface ForwardOptions {
  /** Recompute each decoder layer and vision block in backward (saves activation memory). */
  gradientCheckpointing?: boolean;
  /** Inspection hooks (tests, debugging). */
  onImageFeatures?: (features: Tensor) => void;
  onInputEmbeds?: (embeds: Tensor) => void;
  onLayer?: (index: number, h: Tensor) => void;
  onVisionBlock?: (index: number, h: Tensor) => void;
}

function hostInts(x: ArrayLike<number> | Tensor, what: string): Int32Array {
  if (x instanceof Int32Array) return x;
  if (ArrayBuffer.isView(x) || Array.isArray(x)) return Int32Array.from(x as ArrayLike<number>);
  const t = x as Tensor;
  if (typeof t?.data !== 'function') throw new Error(`Qwen2_5_VL.forward: ${what} must be an Int32Array, number[] or tensor`);
  if (t.dtype !== 'i32' && t.dtype !== 'i64') throw new Error(`Qwen2_5_VL.forward: ${what} must be i32 or i64, got ${t.dtype}`);
  return Int32Array.from(t.data() as ArrayLike<number | bigint>, Number);
}

export class Qwen2_5_VL extends Module {
  readonly visual: VisionTower;
  readonly model: TextModel;
  private readonly head: Tensor | null;
  /** generation_config.json as read (null when the checkpoint has none). */
  generationConfig: Record<string, unknown> | null = null;

  constructor(readonly config: Qwen2_5_VLConfig, src: ParamSource) {
    super();
    this.visual = this.registerModule('visual', new VisionTower(src, 'visual', config.vision));
    this.model = this.registerModule('model', new TextModel(src, 'model', config.text));
    if (config.text.tieWordEmbeddings) {
      this.head = null;
    } else {
      const m = this.registerModule('lm_head', new Module());
      this.head = m.registerParameter('weight', src('lm_head.weight', [config.text.vocabSize, config.text.hiddenSize]));
    }
  }

  get dtype(): DType { return this.model.embedWeight.dtype; }
  get device(): string { return this.model.embedWeight.device; }
  /** [V, hidden]: the output projection (embed_tokens' weight when tied). */
  get lmHeadWeight(): Tensor { return this.head ?? this.model.embedWeight; }

  /** Loads a Hugging Face checkpoint directory (config.json, model.safetensors or sharded). */
  static async fromPretrained(dir: string, opts: LoadOptions = {}): Promise<Qwen2_5_VL> {
    const config = loadConfig(dir);
    const weights = loadWeights(dir, config, { device: opts.device, dtype: opts.dtype ?? 'f32' });
    let model: Qwen2_5_VL;
    try {
      model = new Qwen2_5_VL(config, (name, shape) => {
        const t = weights.get(name);
        if (!t) throw new Error(`Qwen2_5_VL.fromPretrained: ${dir} has no tensor ${name}`);
        if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
          throw new Error(`Qwen2_5_VL.fromPretrained: ${name} is [${t.shape.join(', ')}], the config implies [${shape.join(', ')}]`);
        }
        weights.delete(name);
        return t;
      });
    } catch (e) {
      for (const t of weights.values()) t.dispose();
      throw e;
    }
    for (const t of weights.values()) t.dispose();
    const gen = join(dir, 'generation_config.json');
    if (existsSync(gen)) {
      try {
        model.generationConfig = JSON.parse(readFileSync(gen, 'utf8'));
      } catch (e) {
        model.dispose();
        throw new Error(`Qwen2_5_VL.fromPretrained: ${gen} is not valid JSON (${(e as Error).message})`, { cause: e });
      }
    }
    return model;
  }

  /** A randomly initialized model (seeded): tests, benchmarks, and training from scratch. */
  static random(config: Qwen2_5_VLConfig, opts: RandomInitOptions = {}): Qwen2_5_VL {
    const generator = new Generator(opts.seed ?? 0);
    const std = opts.std ?? 0.02;
    const o = { dtype: opts.dtype ?? 'f32', device: opts.device, generator };
    return new Qwen2_5_VL(config, (name, shape) => noGrad(() => {
      if (/norm[12]?\.weight$|layernorm\.weight$|ln_q\.weight$/.test(name)) {
        return tidy(() => ones(shape, o).add(randn(shape, { ...o, std: 0.1 })));
      }
      return randn(shape, { ...o, std });
    }));
  }

  /** Writes config.json and the weights in Hugging Face's layout (sharded above maxShardBytes). */
  save(dir: string, opts: SaveWeightsOptions = {}): void {
    saveWeights(dir, this.config, this.stateDict(), opts);
  }

  /** The vision tower's output for a packed image batch: [Σ image tokens, hidden]. */
  imageFeatures(images: VisionInput, opts: ForwardOptions = {}): Tensor {
    return this.visual.forward(images, { gradientCheckpointing: opts.gradientCheckpointing, onBlock: opts.onVisionBlock });
  }

  /** Final hidden states [L, hidden] (after the last norm) of a packed batch. */
  forward(input: ForwardInput, opts: ForwardOptions = {}): Tensor {
    if (input === null || typeof input !== 'object') throw new Error('Qwen2_5_VL.forward: input must be an object');
    const cfg = this.config;
    const ids = hostInts(input.inputIds, 'inputIds');
    const L = ids.length;
    if (L === 0) throw new Error('Qwen2_5_VL.forward: inputIds is empty');
    for (let i = 0; i < L; i++) {
      if (ids[i] < 0 || ids[i] >= cfg.text.vocabSize) {
        throw new Error(`Qwen2_5_VL.forward: inputIds[${i}] = ${ids[i]} is outside the vocabulary [0, ${cfg.text.vocabSize})`);
      }
    }
    const cu = input.cuSeqlens === undefined ? Int32Array.of(0, L) : hostInts(input.cuSeqlens as ArrayLike<number>, 'cuSeqlens');
    let maxSeqlen = 0;
    if (cu.length < 2 || cu[0] !== 0 || cu[cu.length - 1] !== L) {
      throw new Error(`Qwen2_5_VL.forward: cuSeqlens must start at 0 and end at the ${L} tokens, got [${Array.from(cu).join(', ')}]`);
    }
    for (let i = 1; i < cu.length; i++) {
      if (cu[i] < cu[i - 1]) throw new Error(`Qwen2_5_VL.forward: cuSeqlens must not decrease, got [${Array.from(cu).join(', ')}]`);
      maxSeqlen = Math.max(maxSeqlen, cu[i] - cu[i - 1]);
    }
    const grids = input.images ? this.visual.checkInput(input.images) : [];
    const merge2 = cfg.vision.spatialMergeSize ** 2;
    const expected = grids.reduce((n, g) => n + (g.t * g.h * g.w) / merge2, 0);
    let pads = 0;
    for (let i = 0; i < L; i++) if (ids[i] === cfg.imageTokenId) pads++;
    if (pads !== expected) {
      throw new Error(`Qwen2_5_VL.forward: the text has ${pads} <|image_pad|> tokens (id ${cfg.imageTokenId}) but the images ` +
        `give ${expected} features (${grids.length} image${grids.length === 1 ? '' : 's'}); each image needs t·h·w/${merge2} pads`);
    }
    let pos: Int32Array;
    if (input.positionIds === undefined) {
      pos = getRopeIndexPacked(ids, cu, grids, { imageTokenId: cfg.imageTokenId, visionStartTokenId: cfg.visionStartTokenId },
        { spatialMergeSize: cfg.vision.spatialMergeSize });
    } else {
      pos = hostInts(input.positionIds, 'positionIds');
      if (pos.length !== 3 * L) throw new Error(`Qwen2_5_VL.forward: positionIds must be [3, ${L}], got ${pos.length} values`);
    }
    const dev = this.device;
    return tidy(() => {
      let feats: Tensor | null = null;
      if (grids.length > 0) {
        feats = this.imageFeatures(input.images!, opts);
        opts.onImageFeatures?.(feats);
      }
      const embeds = this.embed(ids, feats);
      opts.onInputEmbeds?.(embeds);
      const rope = mropeTables(pos, L, cfg.text.headDim, cfg.text.ropeTheta, cfg.text.mropeSection, dev);
      const seg = { cuSeqlens: tensor(cu, { dtype: 'i32', device: dev }), maxSeqlen };
      return this.model.forward(embeds, rope, seg, { gradientCheckpointing: opts.gradientCheckpointing, onLayer: opts.onLayer });
    });
  }

  /**
   * Input embeddings [L, hidden]: token embeddings, with the rows of <|image_pad|> tokens
   * replaced in order by features [pads, hidden] (HF's masked_scatter, done as one gather
   * from [embeddings; features] whose backward scatters into both).
   */
  embed(ids: Int32Array, features: Tensor | null = null): Tensor {
    const cfg = this.config, L = ids.length, dev = this.device;
    let pads = 0;
    for (let i = 0; i < L; i++) if (ids[i] === cfg.imageTokenId) pads++;
    const rows = features ? features.shape[0] : 0;
    if (pads !== rows) {
      throw new Error(`Qwen2_5_VL.embed: ${pads} <|image_pad|> tokens but ${rows} image feature rows; they must be equal`);
    }
    return tidy(() => {
      const e = embedding(this.model.embedWeight, tensor(ids, { dtype: 'i32', device: dev }));
      if (!features || rows === 0) return e;
      const src = new Int32Array(L);
      for (let i = 0, k = 0; i < L; i++) src[i] = ids[i] === cfg.imageTokenId ? L + k++ : i;
      return indexSelect(cat([e, features.to(e.dtype)], 0), 0, tensor(src, { dtype: 'i32', device: dev }));
    });
  }

  /**
   * Final hidden states of new tokens run against a KV cache (generation; no autograd):
   * embeds [T, hidden] of the tokens of step.seqs, positionIds [3, T] their M-RoPE positions.
   */
  forwardCached(embeds: Tensor, positionIds: Int32Array, step: CachedStep): Tensor {
    const T = embeds.shape[0], t = this.config.text;
    return noGrad(() => tidy(() => {
      const rope = mropeTables(positionIds, T, t.headDim, t.ropeTheta, t.mropeSection, this.device);
      return this.model.forwardCached(embeds, rope, step);
    }));
  }

  /** Logits [..., V] = hidden · lm_headᵀ. */
  logits(hidden: Tensor): Tensor {
    return linear(hidden, this.lmHeadWeight);
  }
}
