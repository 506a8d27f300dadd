// AdamW state ⇄ checkpoint files: optimizer.json (per-parameter step and whether an f32 master
// copy exists) and optimizer.safetensors (`${i}.exp_avg`, `${i}.exp_avg_sq`, `${i}.master`, by
// the parameter's index in the optimizer's list). Restoring needs the same parameter list in the
// same order (the trainer builds it the same way from the same config).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type AdamWState, type Tensor, loadSafetensors } from '@fovea/core';

export function optimizerTensors(st: AdamWState): { meta: object; tensors: Map<string, Tensor> } {
  const tensors = new Map<string, Tensor>();
  const present = st.params.map((p, i) => {
    if (!p) return null;
    tensors.set(`${i}.exp_avg`, p.expAvg); tensors.set(`${i}.exp_avg_sq`, p.expAvgSq);
    if (p.master) tensors.set(`${i}.master`, p.master);
    return { step: p.step, master: p.master !== null };
  });
  return { meta: { step: st.step, params: present }, tensors };
}

export function loadOptimizerState(dir: string, device: string, expectedParams: number): AdamWState {
  const meta = JSON.parse(readFileSync(path.join(dir, 'optimizer.json'), 'utf8')) as { step: number; params: ({ step: number; master: boolean } | null)[] };
  if (!Array.isArray(meta.params) || meta.params.length !== expectedParams) {
    throw new Error(`train: checkpoint ${dir} holds optimizer state for ${meta.params?.length} parameters but this run trains ${expectedParams} (did the config's lora settings change?)`);
  }
  const t = loadSafetensors(path.join(dir, 'optimizer.safetensors'), { device });
  const get = (k: string): Tensor => {
    const x = t.get(k);
    if (!x) throw new Error(`train: checkpoint ${dir} optimizer.safetensors lacks ${k}`);
    return x;
  };
  return {
    step: meta.step,
    params: meta.params.map((p, i) => (p ? { step: p.step, expAvg: get(`${i}.exp_avg`), expAvgSq: get(`${i}.exp_avg_sq`), master: p.master ? get(`${i}.master`) : null } : null)),
  };
}
