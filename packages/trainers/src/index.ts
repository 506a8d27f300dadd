// @fovea/trainers: rollouts, the crop/grounding tool, rewards, GRPO/MGPO, SFT/LoRA,
// checkpoints, metrics and the fovea CLI. So far: the crop/grounding and search tools, the
// rewards, the dataset reader and MGPO importer, group advantages and DAPO filters, learning-
// rate schedules and the metrics log. The trainers themselves and the CLI are still to come.
export * as core from '@fovea/core';
export * as models from '@fovea/models';

/** Policy-optimization algorithms this package implements (grows with each issue). */
export const ALGORITHMS = ['grpo', 'dapo', 'mgpo'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];
export * from './tools/index.js';
export * as rewards from './rewards/index.js';
export * from './data/dataset.js';
export * from './data/mgpoImport.js';
export * from './algorithms/advantages.js';
export * from './algorithms/filtering.js';
export * from './optim/schedules.js';
export * from './metrics/jsonl.js';
export * from './checkpoint/checkpoint.js';
export * from './checkpoint/atomic.js';
export * from './report/svgPlot.js';
export * from './report/html.js';
export * from './report/progress.js';
export * from './rollout/templates.js';
export { generateRollouts, type Rollout, type RolloutImage, type RolloutPrompt, type RolloutOptions } from './rollout/rollout.js';
export { mgpoToolTurn, userTurnIds, type MgpoToolTurn } from './rollout/mgpo.js';
export * from './algorithms/grpoStep.js';
export * from './lora/index.js';
export { validateTrainConfig, loadTrainConfig, closestKey, type TrainConfig } from './train/config.js';
export { train, METRICS_FILE, type TrainOptions, type TrainResult, type StepMetrics } from './train/trainer.js';
export { main as foveaCli, USAGE as FOVEA_USAGE } from './cli.js';
