// safetensors for Fovea: read, write and shard checkpoints in the Hugging Face format with no
// dependency beyond node:fs. format.ts holds the byte layout and validation, read.ts the
// streaming loaders, write.ts the atomic writers.
export {
  SafetensorsError, SAFETENSORS_DTYPES, SAFETENSORS_MAX_HEADER_BYTES, safetensorsDType, foveaDType,
  type SafetensorsDType, type SafetensorsHeader, type SafetensorsTensorInfo,
} from './format.js';
export {
  loadSafetensors, loadSafetensorsIndex, readSafetensorsHeader, type SafetensorsLoadOptions,
} from './read.js';
export {
  saveSafetensors, saveSharded, type TensorDict, type SafetensorsSaveOptions, type SafetensorsShardedSaveOptions,
  type SafetensorsShardedSaveResult,
} from './write.js';
