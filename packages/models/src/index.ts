// @fovea/models: Qwen2.5-VL for Fovea. So far: the image processor (decode, smart resize,
// Pillow-exact bicubic, NaViT packing, window and rotary indices). Config, weights, vision
// tower, language model and generation come with their issues.
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

/** Model families this package implements (grows with each issue). */
export const MODEL_FAMILIES = ['qwen2_5_vl'] as const;
export type ModelFamily = (typeof MODEL_FAMILIES)[number];
