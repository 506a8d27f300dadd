// LoRA for Qwen2.5-VL: adapters on chosen linear layers (lora.ts) and PEFT's on-disk layout (peft.ts).
export {
  applyLora, adaptableLinears, matchesTarget, isAdaptableLinear, LoraModel, LoraLayer,
  type LoraOptions, type LoraConfig, type AdaptableLinear,
} from './lora.js';
export {
  saveAdapter, loadAdapter, adapterStateDict, peftTargetModules, ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME,
  type SaveAdapterOptions, type LoadAdapterOptions,
} from './peft.js';
