// SFT (cold start): conversation data, assistant-only masks from the chat template, packing, the
// fused token-mean cross-entropy, the run loop and its config.
export { validateSftConfig, loadSftConfig, DEFAULT_LORA_TARGETS, type SftConfig, type SftLoraConfig } from './config.js';
export { readSftRows, loadSftDataset, validateSftRow, type SftRow, type SftMessage, type SftRole, type SftContent } from './data.js';
export { assistantSpans, encodeConversation, encodeExample, toChatMessages, type SftExample, type EncodeOptions } from './encode.js';
export { buildSftBatch, sftLoss, type SftBatch, type SftLossResult } from './pack.js';
export { sft, SFT_METRICS_FILE, type SftOptions, type SftResult, type SftStepMetrics } from './trainer.js';
