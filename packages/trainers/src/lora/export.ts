// Export a LoRA-trained model as a plain Hugging Face checkpoint: base model + PEFT adapter →
// W += (alpha/r)·B·A in every adapted layer → the base checkpoint's layout again.
//
// What "transformers loads it" means here (transformers itself is not available to test): the
// exported weights have exactly the base checkpoint's tensor names (legacy or nested layout, as
// the base), dtypes and shapes, checked after writing; config.json is the base's, byte for byte
// (the architecture did not change); every side file of the base directory (tokenizer, chat
// template, preprocessor and generation configs) is copied.
// Atomic: everything is written into <outDir>.tmp-<pid> and renamed into place at the end, so
// outDir is either absent, the previous export (overwrite: replaced only after the new one is
// complete) or the complete new export.
import { copyFileSync, existsSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { type DType, readSafetensorsHeader } from '@fovea/core';
import { INDEX_FILE, Qwen2_5_VL, SINGLE_FILE } from '@fovea/models';
import type { LoraModel } from './lora.js';
import { loadAdapter } from './peft.js';
import { copyModelSideFiles } from '../checkpoint/modelFiles.js';

export interface ExportMergedOptions {
  /** The base model directory the adapter was trained on (HF layout). */
  modelDir: string;
  /** A PEFT adapter directory (adapter_config.json + adapter_model.safetensors). */
  adapterDir: string;
  /** Where the merged model goes; must not exist unless overwrite. */
  outDir: string;
  overwrite?: boolean;
}

export interface ExportMergedResult { outDir: string; tensors: number; mergedLayers: number; dtype: DType }

export interface TensorSpec { dtype: string; shape: readonly number[] }

const ST_TO_DTYPE: Record<string, DType> = { F32: 'f32', BF16: 'bf16', F16: 'f16', F64: 'f64' };

/** name → {dtype, shape} of every tensor of an HF checkpoint directory (single file or sharded). */
export function checkpointTensorSpecs(dir: string): Map<string, TensorSpec> {
  const single = path.join(dir, SINGLE_FILE), index = path.join(dir, INDEX_FILE);
  let files: string[];
  if (existsSync(index)) {
    let map: Record<string, string>;
    try { map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map; } catch (e) {
      throw new Error(`exportMergedModel: ${index} is not valid JSON (${(e as Error).message})`);
    }
    if (!map || typeof map !== 'object') throw new Error(`exportMergedModel: ${index} has no "weight_map"`);
    files = [...new Set(Object.values(map))].map((f) => path.join(dir, f));
  } else if (existsSync(single)) {
    files = [single];
  } else {
    throw new Error(`exportMergedModel: ${dir} has neither ${SINGLE_FILE} nor ${INDEX_FILE}; pass a Hugging Face model directory`);
  }
  const out = new Map<string, TensorSpec>();
  for (const f of files) {
    for (const [name, info] of readSafetensorsHeader(f).tensors) out.set(name, { dtype: info.dtype, shape: [...info.shape] });
  }
  return out;
}

/** Differences between two tensor-spec maps ('' when equal), at most a few of each kind. */
export function diffTensorSpecs(want: Map<string, TensorSpec>, got: Map<string, TensorSpec>): string {
  const missing = [...want.keys()].filter((k) => !got.has(k));
  const extra = [...got.keys()].filter((k) => !want.has(k));
  const changed = [...want.keys()].filter((k) => got.has(k)).flatMap((k) => {
    const a = want.get(k)!, b = got.get(k)!;
    return a.dtype !== b.dtype || a.shape.length !== b.shape.length || a.shape.some((s, i) => s !== b.shape[i])
      ? [`${k}: ${a.dtype}[${a.shape.join(', ')}] became ${b.dtype}[${b.shape.join(', ')}]`] : [];
  });
  const few = (xs: string[]) => xs.slice(0, 3).join(', ') + (xs.length > 3 ? ` (+${xs.length - 3} more)` : '');
  return [missing.length ? `missing ${few(missing)}` : '', extra.length ? `unexpected ${few(extra)}` : '', changed.length ? `changed ${few(changed)}` : '']
    .filter(Boolean).join('; ');
}

/** Merges the adapter into the base model and writes the result in the base's HF layout. */
export async function exportMergedModel(opts: ExportMergedOptions): Promise<ExportMergedResult> {
  const op = 'exportMergedModel';
  if (opts === null || typeof opts !== 'object') throw new Error(`${op}: expected {modelDir, adapterDir, outDir}`);
  for (const k of ['modelDir', 'adapterDir', 'outDir'] as const) {
    if (typeof opts[k] !== 'string' || opts[k].length === 0) throw new Error(`${op}: ${k} must be a non-empty path, got ${JSON.stringify(opts[k])}`);
  }
  const modelDir = path.resolve(opts.modelDir), adapterDir = path.resolve(opts.adapterDir), outDir = path.resolve(opts.outDir);
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) throw new Error(`${op}: model directory ${modelDir} does not exist`);
  if (outDir === modelDir || outDir === adapterDir) throw new Error(`${op}: outDir ${outDir} must differ from modelDir and adapterDir`);
  if (existsSync(outDir) && !opts.overwrite) {
    throw new Error(`${op}: ${outDir} already exists; pass overwrite: true to replace it, or choose another outDir`);
  }
  const base = checkpointTensorSpecs(modelDir);
  const dtypes = new Set([...base.values()].map((s) => s.dtype));
  if (dtypes.size !== 1 || !ST_TO_DTYPE[[...dtypes][0]]) {
    throw new Error(`${op}: the base checkpoint stores ${[...dtypes].join(', ')} tensors; only checkpoints of one float dtype (F32, BF16, F16, F64) are exported`);
  }
  const dtype = ST_TO_DTYPE[[...dtypes][0]];
  const layout = [...base.keys()].some((k) => k.startsWith('model.language_model.')) ? 'nested' : 'legacy';

  // Merge in f32 (the base weights are widened on load), store in the base's dtype.
  const model = await Qwen2_5_VL.fromPretrained(modelDir, { dtype: 'f32' });
  const tmp = `${outDir}.tmp-${process.pid}`;
  let lora: LoraModel | null = null;
  try {
    lora = loadAdapter(model, adapterDir);
    lora.merge();
    const mergedLayers = lora.layers.size;
    rmSync(tmp, { recursive: true, force: true });
    model.save(tmp, { dtype, layout });
    copyModelSideFiles(modelDir, tmp);
    if (existsSync(path.join(modelDir, 'config.json'))) copyFileSync(path.join(modelDir, 'config.json'), path.join(tmp, 'config.json'));
    const diff = diffTensorSpecs(base, checkpointTensorSpecs(tmp));
    if (diff) throw new Error(`${op}: the written checkpoint does not match the base checkpoint's tensors (${diff}); nothing was exported`);
    if (existsSync(outDir)) {
      const old = `${outDir}.old-${process.pid}`;
      renameSync(outDir, old);
      renameSync(tmp, outDir);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, outDir);
    }
    return { outDir, tensors: base.size, mergedLayers, dtype };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    lora?.remove();
    model.dispose();
  }
}
