// LoRA adapters on disk in PEFT's layout, so `PeftModel.from_pretrained(base, dir)` loads what
// Fovea trained and Fovea loads what PEFT trained:
//   adapter_model.safetensors  base_model.model.<module path>.lora_A.weight  [r, in]
//                              base_model.model.<module path>.lora_B.weight  [out, r]
//   adapter_config.json        {"peft_type": "LORA", "r", "lora_alpha", "lora_dropout",
//                               "target_modules", "bias": "none", "task_type": "CAUSAL_LM", ...}
// Module paths are the HF legacy layout's (model.layers.0.self_attn.q_proj). On load, the newer
// transformers layout (model.language_model.layers.…, model.visual.…) is mapped back to it.
// PEFT applies a list of target names to every matching module, the vision tower's included; a
// language-model-only adapter whose names also occur in the vision tower (gate_proj, up_proj,
// down_proj) is therefore saved with target_modules as a regex string (PEFT full-matches it)
// that excludes visual.*.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Module, type Tensor, loadSafetensors, noGrad, readSafetensorsHeader, saveSafetensors } from '@fovea/core';
import { type LoraModel, adaptableLinears, applyLora, matchesTarget } from './lora.js';

export const ADAPTER_WEIGHTS_NAME = 'adapter_model.safetensors';
export const ADAPTER_CONFIG_NAME = 'adapter_config.json';
const PREFIX = 'base_model.model.';
const NO_VISION = '(?!(?:model\\.)?visual\\.)';

export interface SaveAdapterOptions {
  /** adapter_config.json's base_model_name_or_path (default null). */
  baseModelNameOrPath?: string | null;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** target_modules as PEFT must see it to pick exactly the layers this LoraModel adapted. */
export function peftTargetModules(lora: LoraModel): string[] | string {
  const { targetModules: t, includeVision } = lora.config;
  if (t instanceof RegExp) return includeVision ? t.source : `^${NO_VISION}(?:${t.source})$`;
  if (includeVision) return [...t];
  const visionHit = adaptableLinears(lora.model, true)
    .some(([p]) => /^(model\.)?visual\./.test(p) && t.some((n) => matchesTarget(p, n)));
  if (!visionHit) return [...t];
  return `^${NO_VISION}(?:.*\\.)?(?:${t.map(escapeRe).join('|')})$`;
}

/** PEFT's safetensors key → tensor, for every adapted layer. */
export function adapterStateDict(lora: LoraModel): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const l of lora.layers.values()) {
    out.set(`${PREFIX}${l.path}.lora_A.weight`, l.loraA);
    out.set(`${PREFIX}${l.path}.lora_B.weight`, l.loraB);
  }
  return out;
}

/** Writes adapter_model.safetensors and adapter_config.json into dir (created if needed). */
export function saveAdapter(lora: LoraModel, dir: string, opts: SaveAdapterOptions = {}): void {
  if (typeof dir !== 'string' || dir.length === 0) throw new Error('saveAdapter: dir must be a non-empty path');
  if (lora.layers.size === 0) throw new Error('saveAdapter: this LoraModel has no adapted layers (was it removed?)');
  if (lora.merged) {
    throw new Error('saveAdapter: the adapters are merged into the base weights; call unmerge() first (a merged model ' +
      'is exported with the model\'s own save())');
  }
  mkdirSync(dir, { recursive: true });
  const c = lora.config;
  // saveSafetensors writes to a temporary file and renames it into place.
  saveSafetensors(join(dir, ADAPTER_WEIGHTS_NAME), adapterStateDict(lora), { metadata: { format: 'pt' } });
  const config = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: opts.baseModelNameOrPath ?? null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: c.alpha,
    lora_dropout: c.dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: c.r,
    rank_pattern: {},
    revision: null,
    target_modules: peftTargetModules(lora),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: c.useRslora,
  };
  const path = join(dir, ADAPTER_CONFIG_NAME);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(config, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

interface ParsedConfig { r: number; alpha: number; dropout: number; targets: string[] | RegExp; useRslora: boolean }

function parseConfig(path: string): ParsedConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`loadAdapter: ${path} is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`loadAdapter: ${path} must hold a JSON object`);
  const bad = (what: string) => new Error(`loadAdapter: ${path}: ${what}`);
  if (raw.peft_type !== 'LORA') throw bad(`peft_type is ${JSON.stringify(raw.peft_type)}, only "LORA" adapters are supported`);
  const r = raw.r;
  if (!Number.isInteger(r) || (r as number) < 1) throw bad(`r must be an integer ≥ 1, got ${JSON.stringify(r)}`);
  const alpha = raw.lora_alpha ?? r;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw bad(`lora_alpha must be a number, got ${JSON.stringify(alpha)}`);
  const dropout = raw.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) throw bad(`lora_dropout must be in [0, 1), got ${JSON.stringify(dropout)}`);
  if ((raw.bias ?? 'none') !== 'none') throw bad(`bias is ${JSON.stringify(raw.bias)}; only "none" is supported`);
  if (raw.use_dora) throw bad('use_dora is set; DoRA adapters are not supported');
  if (raw.fan_in_fan_out) throw bad('fan_in_fan_out is set; only [out, in] linear layers are supported');
  for (const k of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = raw[k];
    if (v && typeof v === 'object' && Object.keys(v).length) throw bad(`${k} is not empty; per-layer ranks and alphas are not supported`);
  }
  if (raw.layers_to_transform != null) throw bad('layers_to_transform is set; it is not supported');
  const t = raw.target_modules;
  let targets: string[] | RegExp;
  if (typeof t === 'string') {
    try { targets = new RegExp(t); } catch (e) { throw bad(`target_modules ${JSON.stringify(t)} is not a regular expression this loader can read (${(e as Error).message})`); }
  } else if (Array.isArray(t) && t.length && t.every((s) => typeof s === 'string')) {
    targets = t as string[];
  } else {
    throw bad(`target_modules must be a list of module names or a regex string, got ${JSON.stringify(t)}`);
  }
  return { r: r as number, alpha, dropout, targets, useRslora: raw.use_rslora === true };
}

/** PEFT key → [module path (legacy layout), 'A' | 'B'], or null when it is not a LoRA weight. */
function parseKey(key: string): [string, 'A' | 'B'] | null {
  const m = /^base_model\.model\.(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$/.exec(key);
  if (!m) return null;
  let path = m[1];
  if (path.startsWith('model.language_model.')) path = `model.${path.slice('model.language_model.'.length)}`;
  else if (path.startsWith('model.visual.')) path = path.slice('model.'.length);
  return [path, m[2] as 'A' | 'B'];
}

export interface LoadAdapterOptions {
  /** Seed of the returned LoraModel's dropout generator (default 0). */
  seed?: number;
}

/**
 * Reads a PEFT LoRA adapter directory and applies it to model (whose base parameters it
 * freezes). Checks that every layer the config targets has both weights in the file, that the
 * file has nothing else, and that each shape fits this model and the config's r.
 */
export function loadAdapter(model: Module, dir: string, opts: LoadAdapterOptions = {}): LoraModel {
  if (typeof dir !== 'string' || dir.length === 0) throw new Error('loadAdapter: dir must be a non-empty path');
  const cfgPath = join(dir, ADAPTER_CONFIG_NAME);
  const wPath = join(dir, ADAPTER_WEIGHTS_NAME);
  if (!existsSync(dir)) throw new Error(`loadAdapter: ${dir} does not exist`);
  if (!existsSync(cfgPath)) {
    throw new Error(`loadAdapter: ${cfgPath} not found; a PEFT adapter directory holds ${ADAPTER_CONFIG_NAME} and ${ADAPTER_WEIGHTS_NAME}`);
  }
  if (!existsSync(wPath)) {
    const bin = existsSync(join(dir, 'adapter_model.bin'));
    throw new Error(`loadAdapter: ${wPath} not found` + (bin
      ? '; this adapter is a pickled adapter_model.bin, which Fovea does not read: convert it with safetensors.torch.save_file'
      : `; a PEFT adapter directory holds ${ADAPTER_CONFIG_NAME} and ${ADAPTER_WEIGHTS_NAME}`));
  }
  const cfg = parseConfig(cfgPath);
  const header = readSafetensorsHeader(wPath);
  const inFile = new Map<string, { A?: string; B?: string }>();
  for (const key of header.tensors.keys()) {
    const parsed = parseKey(key);
    if (!parsed) {
      throw new Error(`loadAdapter: ${wPath} holds ${key}, which is not a LoRA weight (expected ${PREFIX}<module>.lora_A.weight / .lora_B.weight)`);
    }
    const [path, which] = parsed;
    const e = inFile.get(path) ?? {};
    e[which] = key;
    inFile.set(path, e);
  }
  const known = new Set(adaptableLinears(model, true).map(([p]) => p));
  const unknown = [...inFile.keys()].filter((p) => !known.has(p));
  if (unknown.length) {
    throw new Error(`loadAdapter: ${wPath} has weights for ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ` (+${unknown.length - 5} more)` : ''}, ` +
      'which is no linear layer of this model: the adapter was trained for another architecture');
  }
  const lora = applyLora(model, {
    targetModules: cfg.targets, r: cfg.r, alpha: cfg.alpha, dropout: cfg.dropout, seed: opts.seed ?? 0,
    includeVision: true, useRslora: cfg.useRslora, lenientTargets: true,
  });
  try {
    const stray = [...inFile.keys()].filter((p) => !lora.layers.has(p));
    if (stray.length) {
      throw new Error(`loadAdapter: ${wPath} has weights for ${stray.slice(0, 5).join(', ')}, which target_modules ` +
        `${cfg.targets instanceof RegExp ? cfg.targets.source : JSON.stringify(cfg.targets)} in ${cfgPath} does not select`);
    }
    for (const [path, l] of lora.layers) {
      const e = inFile.get(path);
      for (const [which, want] of [['A', [cfg.r, l.inFeatures]], ['B', [l.outFeatures, cfg.r]]] as const) {
        const key = e?.[which];
        if (!key) throw new Error(`loadAdapter: ${wPath} has no lora_${which} for ${path}, which ${cfgPath} targets`);
        const got = header.tensors.get(key)!.shape;
        const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;
        if (got.length !== 2 || got[0] !== want[0] || got[1] !== want[1]) {
          const rDim = which === 'A' ? 0 : 1;
          const rOnly = got.length === 2 && got[1 - rDim] === want[1 - rDim] && got[rDim] !== cfg.r;
          throw new Error(rOnly
            ? `loadAdapter: ${key} is ${fmt(got)}, a rank of ${got[rDim]}, but ${cfgPath} says r = ${cfg.r}`
            : `loadAdapter: ${key} is ${fmt(got)} but ${path} of this model needs ${fmt(want)} ` +
              '(the adapter was made for a model of another size)');
        }
      }
    }
    const tensors = loadSafetensors(wPath);
    try {
      noGrad(() => {
        for (const [path, l] of lora.layers) {
          const e = inFile.get(path)!;
          l.loraA.copy_(tensors.get(e.A!)!);
          l.loraB.copy_(tensors.get(e.B!)!);
        }
      });
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  } catch (err) {
    lora.remove();
    throw err;
  }
  return lora;
}
