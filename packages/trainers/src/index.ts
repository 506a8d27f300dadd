// @fovea/trainers: rollouts, the crop/grounding tool, rewards, GRPO/MGPO, SFT/LoRA,
// checkpoints, metrics and the fovea CLI. Filled by the trainers issues; for now it names the
// algorithms it will provide and re-exports the layers below it.
export * as core from '@fovea/core';
export * as models from '@fovea/models';

/** Policy-optimization algorithms this package implements (grows with each issue). */
export const ALGORITHMS = ['grpo', 'dapo', 'mgpo'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];
