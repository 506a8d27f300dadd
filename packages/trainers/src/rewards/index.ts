// Rewards for @fovea/trainers: answer extraction and normalization, accuracy, format, IoU,
// search penalty, weighted sums, an LLM judge and custom rewards by module path.
// The contract every reward follows is in types.ts.
export * from './types.js';
export * from './normalize.js';
export * from './extract.js';
export * from './accuracy.js';
export * from './format.js';
export * from './iou.js';
export * from './search.js';
export * from './combine.js';
export * from './judge.js';
export * from './custom.js';
