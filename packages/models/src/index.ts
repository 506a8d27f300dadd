// @fovea/models: Qwen2.5-VL for Fovea: the image processor (decode, smart resize, Pillow-exact
// bicubic, NaViT packing, window and rotary indices), config, checkpoint weights, tokenizer and
// chat template, the vision tower and language model graph, and sampling.
export * as core from '@fovea/core';
export {
  smartResize, roundHalfEven, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS, MAX_ASPECT_RATIO, type SmartResizeOptions,
} from './processor/smartResize.js';
export {
  loadImage, DEFAULT_MAX_INPUT_PIXELS, type RgbImage, type ImageSource, type LoadImageOptions,
} from './processor/loadImage.js';
export {
  ImageProcessor, resizeBicubic, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, DEFAULT_PROCESSOR_CONFIG,
  type ProcessorConfig, type PackOptions, type PackedImages,
} from './processor/imageProcessor.js';
export { visionIndex, type Grid, type VisionIndex } from './processor/visionIndex.js';
export {
  parseConfig, loadConfig, configToJson, type Qwen2_5_VLConfig, type TextConfig, type VisionConfig,
} from './qwen2_5_vl/config.js';
export {
  Qwen2_5_VL, type LoadOptions, type RandomInitOptions, type ForwardInput, type ForwardOptions,
} from './qwen2_5_vl/model.js';
export {
  expectedParameterShapes, canonicalName, nestedName, loadWeights, saveWeights,
  SINGLE_FILE, INDEX_FILE, DEFAULT_MAX_SHARD_BYTES,
  type LoadWeightsOptions, type SaveWeightsOptions, type SaveWeightsResult,
} from './qwen2_5_vl/weights.js';
export { VisionTower, type VisionInput, type VisionForwardOptions } from './qwen2_5_vl/vision.js';
export { TextModel, type KVCacheLike, type CachedStep } from './qwen2_5_vl/text.js';
export { type ParamSource } from './qwen2_5_vl/layers.js';
export { mropeTables, visionRotaryTables, inverseFrequencies, type RotaryTables } from './qwen2_5_vl/rope.js';
export { Qwen2Tokenizer, type TokenizerEncodeOptions, type TokenizerDecodeOptions } from './qwen2_5_vl/tokenizer.js';
export {
  Qwen2_5_VLProcessor, expandImagePlaceholders, prepareMessages, findChatTemplate, IMAGE_PAD, VISION_START,
  type ChatMessage, type ChatRole, type ChatContentItem, type ChatOptions, type ChatInputs, type ProcessorLoadOptions,
} from './qwen2_5_vl/chat.js';
export {
  getRopeIndex, getRopeIndexPacked, decodePositions,
  type GridThw, type RopeTokens, type RopeIndexOptions, type RopeIndex,
} from './qwen2_5_vl/ropeIndex.js';
export {
  resolveSampling, sampleToken, candidateSet, SeededRandom, type SamplingParams, type ResolvedSampling, type SampledToken,
} from './generation/sampling.js';
export {
  GenerationEngine, Sequence, type GenerationRequest, type EngineOptions, type FinishReason, type TokenHookResult,
} from './generation/engine.js';

/** Model families this package implements (grows with each issue). */
export const MODEL_FAMILIES = ['qwen2_5_vl'] as const;
export type ModelFamily = (typeof MODEL_FAMILIES)[number];
