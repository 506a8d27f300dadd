// Qwen2.5-VL configuration: config.json (Hugging Face) parsed into the numbers the graph needs.
// Two layouts exist: the flat one (transformers ≤ 4.51: text fields at the top level, vision
// fields under vision_config) and the nested one (text fields under text_config). Both parse to
// the same Qwen2_5_VLConfig; anything missing or malformed is an error naming the field.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface VisionConfig {
  depth: number;
  hiddenSize: number;
  numHeads: number;
  headDim: number;
  intermediateSize: number;
  patchSize: number;
  temporalPatchSize: number;
  spatialMergeSize: number;
  windowSize: number;
  fullattBlockIndexes: number[];
  outHiddenSize: number;
  inChannels: number;
  hiddenAct: string;
  /** Rotary base of the 2-D vision embedding (not in config.json; Qwen uses 10000). */
  ropeTheta: number;
  rmsNormEps: number;
}

export interface TextConfig {
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Rotary frequencies given to the (t, h, w) position components; sums to headDim / 2. */
  mropeSection: number[];
  tieWordEmbeddings: boolean;
  hiddenAct: string;
  maxPositionEmbeddings: number;
}

export interface Qwen2_5_VLConfig {
  text: TextConfig;
  vision: VisionConfig;
  imageTokenId: number;
  videoTokenId: number;
  visionStartTokenId: number;
  visionEndTokenId: number;
  bosTokenId: number | null;
  eosTokenId: number[];
  padTokenId: number | null;
  /** The parsed JSON as read, for fields Fovea does not interpret. */
  raw: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function field(src: Json[], name: string, where: string): unknown {
  for (const s of src) if (s[name] !== undefined && s[name] !== null) return s[name];
  return undefined;
}

function int(src: Json[], name: string, where: string, dflt?: number, min = 1): number {
  const v = field(src, name, where);
  if (v === undefined) {
    if (dflt !== undefined) return dflt;
    throw new Error(`${where}: missing "${name}" (an integer)`);
  }
  if (!Number.isSafeInteger(v) || (v as number) < min) {
    throw new Error(`${where}: "${name}" must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  }
  return v as number;
}

function num(src: Json[], name: string, where: string, dflt?: number): number {
  const v = field(src, name, where);
  if (v === undefined) {
    if (dflt !== undefined) return dflt;
    throw new Error(`${where}: missing "${name}" (a number)`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new Error(`${where}: "${name}" must be a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function optId(src: Json[], name: string, where: string): number | null {
  const v = field(src, name, where);
  if (v === undefined) return null;
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new Error(`${where}: "${name}" must be a token id, got ${JSON.stringify(v)}`);
  return v as number;
}

function ids(src: Json[], name: string, where: string): number[] {
  const v = field(src, name, where);
  if (v === undefined) return [];
  const arr = Array.isArray(v) ? v : [v];
  for (const x of arr) {
    if (!Number.isSafeInteger(x) || x < 0) throw new Error(`${where}: "${name}" must be a token id or a list of them, got ${JSON.stringify(v)}`);
  }
  return arr as number[];
}

function act(src: Json[], name: string, where: string): string {
  const v = field(src, name, where) ?? 'silu';
  if (v !== 'silu') throw new Error(`${where}: "${name}" is ${JSON.stringify(v)}; Fovea's Qwen2.5-VL implements "silu" only`);
  return v;
}

/** Parses a config.json object (either layout). where names the source in errors. */
export function parseConfig(json: unknown, where = 'config.json'): Qwen2_5_VLConfig {
  if (!isObject(json)) throw new Error(`${where}: must be a JSON object`);
  const modelType = json.model_type;
  if (modelType !== undefined && modelType !== 'qwen2_5_vl') {
    throw new Error(`${where}: model_type is ${JSON.stringify(modelType)}, expected "qwen2_5_vl"`);
  }
  const textCfg = isObject(json.text_config) ? json.text_config : null;
  // Nested layout: text fields live in text_config, with the top level as fallback (token ids
  // sit at the top level in both layouts).
  const t = textCfg ? [textCfg, json] : [json];
  const tw = textCfg ? `${where} (text_config)` : where;
  if (!isObject(json.vision_config)) throw new Error(`${where}: missing "vision_config" (an object)`);
  const v = [json.vision_config];
  const vw = `${where} (vision_config)`;

  const hidden = int(t, 'hidden_size', tw);
  const heads = int(t, 'num_attention_heads', tw);
  const kvHeads = int(t, 'num_key_value_heads', tw, heads);
  if (hidden % heads !== 0) throw new Error(`${tw}: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`);
  if (heads % kvHeads !== 0) throw new Error(`${tw}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const headDim = hidden / heads;
  const rs = field(t, 'rope_scaling', tw);
  const ropeScaling = isObject(rs) ? rs : {};
  const sect = ropeScaling.mrope_section;
  if (!Array.isArray(sect) || sect.length !== 3 || !sect.every((x) => Number.isSafeInteger(x) && x >= 0)) {
    throw new Error(`${tw}: rope_scaling.mrope_section must be three non-negative integers, got ${JSON.stringify(sect)}`);
  }
  if (sect[0] + sect[1] + sect[2] !== headDim / 2) {
    throw new Error(`${tw}: rope_scaling.mrope_section ${JSON.stringify(sect)} sums to ${sect[0] + sect[1] + sect[2]}, ` +
      `expected head_dim / 2 = ${headDim / 2}`);
  }
  const ropeType = ropeScaling.rope_type ?? ropeScaling.type ?? 'default';
  if (ropeType !== 'default' && ropeType !== 'mrope') {
    throw new Error(`${tw}: rope_scaling type ${JSON.stringify(ropeType)} is not supported (only the default M-RoPE)`);
  }
  const text: TextConfig = {
    hiddenSize: hidden,
    numHiddenLayers: int(t, 'num_hidden_layers', tw),
    numAttentionHeads: heads,
    numKeyValueHeads: kvHeads,
    headDim,
    intermediateSize: int(t, 'intermediate_size', tw),
    vocabSize: int(t, 'vocab_size', tw),
    rmsNormEps: num(t, 'rms_norm_eps', tw, 1e-6),
    ropeTheta: num(t, 'rope_theta', tw, 1e6),
    mropeSection: sect.slice() as number[],
    tieWordEmbeddings: Boolean(field(t, 'tie_word_embeddings', tw) ?? false),
    hiddenAct: act(t, 'hidden_act', tw),
    maxPositionEmbeddings: int(t, 'max_position_embeddings', tw, 128000),
  };
  if (field(t, 'use_sliding_window', tw) === true) {
    throw new Error(`${tw}: use_sliding_window is true; Qwen2.5-VL checkpoints do not use it and Fovea does not implement it`);
  }

  const vHidden = int(v, 'hidden_size', vw);
  const vHeads = int(v, 'num_heads', vw);
  if (vHidden % vHeads !== 0) throw new Error(`${vw}: hidden_size ${vHidden} is not a multiple of num_heads ${vHeads}`);
  const vHeadDim = vHidden / vHeads;
  if (vHeadDim % 4 !== 0) throw new Error(`${vw}: head dim ${vHeadDim} must be a multiple of 4 for the 2-D rotary embedding`);
  const depth = int(v, 'depth', vw);
  const full = field(v, 'fullatt_block_indexes', vw) ?? [];
  if (!Array.isArray(full) || !full.every((x) => Number.isSafeInteger(x) && x >= 0 && x < depth)) {
    throw new Error(`${vw}: fullatt_block_indexes must be block indices below depth ${depth}, got ${JSON.stringify(full)}`);
  }
  const vision: VisionConfig = {
    depth,
    hiddenSize: vHidden,
    numHeads: vHeads,
    headDim: vHeadDim,
    intermediateSize: int(v, 'intermediate_size', vw),
    patchSize: int(v, 'patch_size', vw, 14),
    temporalPatchSize: int(v, 'temporal_patch_size', vw, 2),
    spatialMergeSize: int(v, 'spatial_merge_size', vw, 2),
    windowSize: int(v, 'window_size', vw, 112),
    fullattBlockIndexes: full.slice() as number[],
    outHiddenSize: int(v, 'out_hidden_size', vw),
    inChannels: int(v, 'in_channels', vw, 3),
    hiddenAct: act(v, 'hidden_act', vw),
    ropeTheta: 10000,
    rmsNormEps: 1e-6,
  };
  if (vision.outHiddenSize !== text.hiddenSize) {
    throw new Error(`${vw}: out_hidden_size ${vision.outHiddenSize} must equal the language model's hidden_size ${text.hiddenSize}`);
  }
  const top = [json, ...(textCfg ? [textCfg] : [])];
  const cfg: Qwen2_5_VLConfig = {
    text, vision,
    imageTokenId: int(top, 'image_token_id', where, 151655, 0),
    videoTokenId: int(top, 'video_token_id', where, 151656, 0),
    visionStartTokenId: int(top, 'vision_start_token_id', where, 151652, 0),
    visionEndTokenId: int(top, 'vision_end_token_id', where, 151653, 0),
    bosTokenId: optId(top, 'bos_token_id', where),
    eosTokenId: ids(top, 'eos_token_id', where),
    padTokenId: optId(top, 'pad_token_id', where),
    raw: json,
  };
  for (const k of ['imageTokenId', 'visionStartTokenId', 'visionEndTokenId'] as const) {
    if (cfg[k] >= text.vocabSize) throw new Error(`${where}: ${k} ${cfg[k]} is outside the vocabulary (vocab_size ${text.vocabSize})`);
  }
  return cfg;
}

/** Reads and parses <dir>/config.json. */
export function loadConfig(dir: string): Qwen2_5_VLConfig {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`Qwen2_5_VL: cannot read ${path} (${(e as Error).message})`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`Qwen2_5_VL: ${path} is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return parseConfig(json, path);
}

/** A config.json object (flat layout) for cfg, as transformers writes it. */
export function configToJson(cfg: Qwen2_5_VLConfig): Record<string, unknown> {
  const t = cfg.text, v = cfg.vision;
  return {
    ...cfg.raw,
    architectures: ['Qwen2_5_VLForConditionalGeneration'],
    model_type: 'qwen2_5_vl',
    hidden_size: t.hiddenSize,
    num_hidden_layers: t.numHiddenLayers,
    num_attention_heads: t.numAttentionHeads,
    num_key_value_heads: t.numKeyValueHeads,
    intermediate_size: t.intermediateSize,
    vocab_size: t.vocabSize,
    rms_norm_eps: t.rmsNormEps,
    rope_theta: t.ropeTheta,
    rope_scaling: { type: 'mrope', rope_type: 'default', mrope_section: t.mropeSection },
    tie_word_embeddings: t.tieWordEmbeddings,
    hidden_act: t.hiddenAct,
    max_position_embeddings: t.maxPositionEmbeddings,
    use_sliding_window: false,
    image_token_id: cfg.imageTokenId,
    video_token_id: cfg.videoTokenId,
    vision_start_token_id: cfg.visionStartTokenId,
    vision_end_token_id: cfg.visionEndTokenId,
    bos_token_id: cfg.bosTokenId,
    eos_token_id: cfg.eosTokenId.length === 1 ? cfg.eosTokenId[0] : cfg.eosTokenId,
    ...(cfg.padTokenId !== null ? { pad_token_id: cfg.padTokenId } : {}),
    text_config: undefined,
    vision_config: {
      ...(isObject(cfg.raw.vision_config) ? cfg.raw.vision_config : {}),
      depth: v.depth, hidden_size: v.hiddenSize, num_heads: v.numHeads, intermediate_size: v.intermediateSize,
      patch_size: v.patchSize, temporal_patch_size: v.temporalPatchSize, spatial_merge_size: v.spatialMergeSize,
      window_size: v.windowSize, fullatt_block_indexes: v.fullattBlockIndexes, out_hidden_size: v.outHiddenSize,
      in_channels: v.inChannels, hidden_act: v.hiddenAct,
    },
  };
}
