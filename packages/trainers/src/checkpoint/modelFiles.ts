// The model directory's side files (tokenizer, chat template, preprocessor and generation
// configs) that a saved model dir needs besides config.json and the weights: full fine-tuning
// checkpoints and merged exports copy them from the source model directory.
import { cpSync, readdirSync } from 'node:fs';
import path from 'node:path';

/** Copies every file of src except config.json, the weights and a LoRA adapter's config into dst
 *  (used by the SFT and RL trainers' checkpoints and by the merged export). */
export function copyModelSideFiles(src: string, dst: string): void {
  for (const f of readdirSync(src)) {
    if (f === 'config.json' || f === 'adapter_config.json' || f.endsWith('.safetensors') || f.endsWith('.safetensors.index.json')) continue;
    cpSync(path.join(src, f), path.join(dst, f), { recursive: true });
  }
}
