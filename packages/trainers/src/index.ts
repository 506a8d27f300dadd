// @fovea/trainers: rollouts, the crop/grounding tool, rewards, GRPO/MGPO, SFT/LoRA,
// checkpoints, metrics and the fovea CLI: the crop/grounding and search tools, the rewards, the
// dataset reader and MGPO importer, rollouts (GRPO, MGPO two-turn, multi-turn tool use), group
// advantages and DAPO filters, the policy-gradient step, LoRA, the SFT trainer, schedules,
// metrics, the HTML report, checkpoints, the run loop, evaluation, chat and the CLI.
export * as core from '@fovea/core';
export * as models from '@fovea/models';

/** Policy-optimization algorithms this package implements (grows with each issue). */
export const ALGORITHMS = ['grpo', 'dapo', 'mgpo', 'search'] as const;
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
export { generateToolRollouts, toolTurnIds, type ToolRolloutOptions, type ToolRollout, type ToolCall, type ToolRolloutEnd, type ToolPromptInfo } from './rollout/multiTurn.js';
export { SEARCH_TEMPLATE, checkToolTemplate, type ToolTemplate } from './rollout/searchTemplate.js';
export * from './report/sampleImage.js';
export { scoreEvalRollouts, summarize as summarizeEval, type EvalRow, type EvalRollout, type EvalBox, type EvalRowResult, type EvalSummary, type EvalScores } from './eval/score.js';
export { evaluate, evaluateLoaded, evalCropTool, type EvalOptions, type EvalLoadedOptions, type EvalResult } from './eval/evaluate.js';
export { chat, chatLoaded, type ChatOptions, type ChatLoadedOptions, type ChatResult } from './chat/chat.js';
export * from './algorithms/grpoStep.js';
export * from './lora/index.js';
export * from './sft/index.js';
export { exportMergedModel, checkpointTensorSpecs, diffTensorSpecs, type ExportMergedOptions, type ExportMergedResult, type TensorSpec } from './lora/export.js';
export { validateTrainConfig, loadTrainConfig, parseConfigText, closestKey, TRAIN_ALGORITHMS, type TrainConfig, type TrainAlgorithm } from './train/config.js';
export { train, METRICS_FILE, REJECTION_FILE, type TrainOptions, type TrainResult, type StepMetrics } from './train/trainer.js';
export { buildRunReward, rewardContext, type RunReward, type ScoredRollouts } from './train/rewardSetup.js';
export { main as foveaCli, USAGE as FOVEA_USAGE } from './cli.js';
export { generateScene, sceneSpec, encodePng, DEMO_SCENE_SIZE, DEMO_MAX_PIXELS, DEMO_MIN_PIXELS, DEMO_QUESTION, type Scene, type SceneOptions, type SceneTarget } from './demo/scenes.js';
export { writeDemoDataset, demoCropTool, groundingAnswer, boxedAnswer, modelFrameBox, DEMO_CROP_MIN_PIXELS, DEMO_GROUNDING_TEXT, type DemoDatasetOptions, type DemoDatasetResult, type DemoSplit } from './demo/demoDataset.js';
export { writeTinyDemoModel, demoCorpus, DEMO_NUM_MERGES, type TinyModelOptions, type TinyModelResult } from './demo/tinyModel.js';
export { renderTaskPreview, type PreviewOptions } from './demo/preview.js';
