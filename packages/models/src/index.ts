// @fovea/models: Qwen2.5-VL for Fovea. This package is filled by the image processor and
// model issues (processor, config, weights, vision tower, language model, generation); for
// now it re-exports the engine it builds on and names the model family it will hold.
export * as core from '@fovea/core';

/** Model families this package implements (grows with each issue). */
export const MODEL_FAMILIES = ['qwen2_5_vl'] as const;
export type ModelFamily = (typeof MODEL_FAMILIES)[number];
