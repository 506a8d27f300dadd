// Qwen2.5-VL checkpoint weights: which parameters a config implies (names and shapes), loading
// a Hugging Face checkpoint directory into tensors under one canonical naming, and saving them
// back in a layout transformers loads unchanged.
//
// Canonical names are transformers' legacy layout (≤ 4.51): `visual.*`, `model.*` (the language
// model) and `lm_head.weight`. Newer transformers saves `model.visual.*` and
// `model.language_model.*`; both load, and a checkpoint holding one parameter under both names
// is an error rather than a silent pick. Every header is read and checked against the config
// (names, shapes, dtypes) before a single tensor is allocated, so a wrong checkpoint fails in
// milliseconds with a message that lists what was wrong; then tensors stream one at a time
// through @fovea/core's safetensors reader, so a 15 GB bf16 file is never held twice.
// Tied embeddings: with tie_word_embeddings the returned map has no lm_head.weight (the model
// shares model.embed_tokens.weight), an lm_head in the file is skipped, and none is saved.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, isAbsolute, join, normalize } from 'node:path';
import {
  type DType, type SafetensorsHeader, Tensor, foveaDType, isFloat, loadSafetensors, loadSafetensorsIndex, noGrad,
  readSafetensorsHeader, saveSafetensors,
} from '@fovea/core';
import { type Qwen2_5_VLConfig, configToJson } from './config.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
/** transformers' default max_shard_size ("5GB" = 5e9 bytes). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;
const SHARD_RE = /^model-\d{5}-of-\d{5}\.safetensors$/;
/** Buffers some exporters leave in checkpoints; the model recomputes them, so they are skipped. */
const HARMLESS_EXTRA = /(^|\.)(rotary_emb|rotary_pos_emb)\.inv_freq$/;
const BYTES: Record<DType, number> = { f32: 4, f64: 8, bf16: 2, f16: 2, i32: 4, i64: 8, bool: 1 };
const TORCH_DTYPE: Partial<Record<DType, string>> = { f32: 'float32', bf16: 'bfloat16', f16: 'float16', f64: 'float64' };

interface ParamSpec {
  shape: number[];
  /** The config fields that set the shape, for error messages. */
  from: string;
}

/** Every parameter with its shape and the config fields behind it, in the model's own order
 * (vision tower, language model, head) — the order transformers' state_dict has. */
function parameterSpecs(cfg: Qwen2_5_VLConfig): Map<string, ParamSpec> {
  const v = cfg.vision, t = cfg.text;
  const out = new Map<string, ParamSpec>();
  const add = (name: string, shape: number[], from: string) => out.set(name, { shape, from });
  const vh = 'vision_config.hidden_size', vi = 'vision_config.intermediate_size';
  add('visual.patch_embed.proj.weight', [v.hiddenSize, v.inChannels, v.temporalPatchSize, v.patchSize, v.patchSize],
    `${vh}, vision_config.in_channels, vision_config.temporal_patch_size, vision_config.patch_size ×2`);
  for (let i = 0; i < v.depth; i++) {
    const b = `visual.blocks.${i}`;
    add(`${b}.norm1.weight`, [v.hiddenSize], vh);
    add(`${b}.norm2.weight`, [v.hiddenSize], vh);
    add(`${b}.attn.qkv.weight`, [3 * v.hiddenSize, v.hiddenSize], `3·${vh}, ${vh}`);
    add(`${b}.attn.qkv.bias`, [3 * v.hiddenSize], `3·${vh}`);
    add(`${b}.attn.proj.weight`, [v.hiddenSize, v.hiddenSize], `${vh}, ${vh}`);
    add(`${b}.attn.proj.bias`, [v.hiddenSize], vh);
    for (const p of ['gate_proj', 'up_proj']) {
      add(`${b}.mlp.${p}.weight`, [v.intermediateSize, v.hiddenSize], `${vi}, ${vh}`);
      add(`${b}.mlp.${p}.bias`, [v.intermediateSize], vi);
    }
    add(`${b}.mlp.down_proj.weight`, [v.hiddenSize, v.intermediateSize], `${vh}, ${vi}`);
    add(`${b}.mlp.down_proj.bias`, [v.hiddenSize], vh);
  }
  // The merger concatenates each spatialMergeSize² block of patch features.
  const m = v.hiddenSize * v.spatialMergeSize ** 2;
  const mf = `${vh}·vision_config.spatial_merge_size²`;
  add('visual.merger.ln_q.weight', [v.hiddenSize], vh);
  add('visual.merger.mlp.0.weight', [m, m], `${mf}, ${mf}`);
  add('visual.merger.mlp.0.bias', [m], mf);
  add('visual.merger.mlp.2.weight', [v.outHiddenSize, m], `vision_config.out_hidden_size, ${mf}`);
  add('visual.merger.mlp.2.bias', [v.outHiddenSize], 'vision_config.out_hidden_size');

  const h = 'hidden_size', ti = 'intermediate_size';
  const q = t.numAttentionHeads * t.headDim, kv = t.numKeyValueHeads * t.headDim;
  const qf = 'num_attention_heads·head_dim', kvf = 'num_key_value_heads·head_dim';
  add('model.embed_tokens.weight', [t.vocabSize, t.hiddenSize], `vocab_size, ${h}`);
  for (let i = 0; i < t.numHiddenLayers; i++) {
    const l = `model.layers.${i}`;
    add(`${l}.self_attn.q_proj.weight`, [q, t.hiddenSize], `${qf}, ${h}`);
    add(`${l}.self_attn.q_proj.bias`, [q], qf);
    add(`${l}.self_attn.k_proj.weight`, [kv, t.hiddenSize], `${kvf}, ${h}`);
    add(`${l}.self_attn.k_proj.bias`, [kv], kvf);
    add(`${l}.self_attn.v_proj.weight`, [kv, t.hiddenSize], `${kvf}, ${h}`);
    add(`${l}.self_attn.v_proj.bias`, [kv], kvf);
    add(`${l}.self_attn.o_proj.weight`, [t.hiddenSize, q], `${h}, ${qf}`);
    add(`${l}.mlp.gate_proj.weight`, [t.intermediateSize, t.hiddenSize], `${ti}, ${h}`);
    add(`${l}.mlp.up_proj.weight`, [t.intermediateSize, t.hiddenSize], `${ti}, ${h}`);
    add(`${l}.mlp.down_proj.weight`, [t.hiddenSize, t.intermediateSize], `${h}, ${ti}`);
    add(`${l}.input_layernorm.weight`, [t.hiddenSize], h);
    add(`${l}.post_attention_layernorm.weight`, [t.hiddenSize], h);
  }
  add('model.norm.weight', [t.hiddenSize], h);
  if (!t.tieWordEmbeddings) add('lm_head.weight', [t.vocabSize, t.hiddenSize], `vocab_size, ${h}`);
  return out;
}

/** Every parameter the model has, canonical name → shape (HF layout: Linear weights [out, in],
 * the patch embedding [vHidden, C, T, P, P]); lm_head.weight only when embeddings are untied. */
export function expectedParameterShapes(cfg: Qwen2_5_VLConfig): Map<string, number[]> {
  return new Map([...parameterSpecs(cfg)].map(([k, s]) => [k, s.shape]));
}

/** A checkpoint key in either layout → the canonical (legacy) name. */
export function canonicalName(key: string): string {
  if (key.startsWith('model.visual.')) return key.slice('model.'.length);
  if (key.startsWith('model.language_model.')) return `model.${key.slice('model.language_model.'.length)}`;
  return key;
}

/** A canonical name → the newer nested layout (transformers ≥ 4.52). */
export function nestedName(canonical: string): string {
  if (canonical.startsWith('visual.')) return `model.${canonical}`;
  if (canonical.startsWith('model.')) return `model.language_model.${canonical.slice('model.'.length)}`;
  return canonical;
}

const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;

function listNames(names: readonly string[], max = 12): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown}, ... (${names.length} in all)` : shown;
}

/** The files of a checkpoint directory and every tensor's header entry. */
interface Checkpoint {
  dir: string;
  /** The index file, or null for a single model.safetensors. */
  index: string | null;
  files: string[];
  /** raw tensor name → its file and header. */
  entries: Map<string, { file: string; header: SafetensorsHeader }>;
}

function describe(ck: Checkpoint): string {
  const files = ck.files.map((f) => basename(f));
  return ck.index === null
    ? `read ${files[0]} in ${ck.dir}`
    : `read ${INDEX_FILE} and its ${files.length} shard(s) ${listNames(files, 4)} in ${ck.dir}`;
}

/** Finds the checkpoint files in dir and reads every header (no tensor data). */
function openCheckpoint(dir: string, where: string): Checkpoint {
  const indexPath = join(dir, INDEX_FILE), single = join(dir, SINGLE_FILE);
  const entries: Checkpoint['entries'] = new Map();
  if (!existsSync(indexPath)) {
    if (!existsSync(single)) {
      throw new Error(`${where}: ${dir} holds neither ${INDEX_FILE} nor ${SINGLE_FILE}; ` +
        'point it at a Hugging Face checkpoint directory (with config.json and the weights)');
    }
    const header = readSafetensorsHeader(single);
    for (const name of header.tensors.keys()) entries.set(name, { file: single, header });
    return { dir, index: null, files: [single], entries };
  }
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new Error(`${where}: cannot read ${indexPath} as JSON (${(e as Error).message})`, { cause: e });
  }
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) {
    throw new Error(`${where}: ${indexPath} has no "weight_map" object {tensor name: shard file}`);
  }
  const headers = new Map<string, SafetensorsHeader>();
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard === '' || isAbsolute(shard) || normalize(shard).split(/[\\/]/)[0] === '..') {
      throw new Error(`${where}: ${indexPath}: weight_map entry for ${JSON.stringify(name)} must be a shard file name ` +
        `inside ${dir}, got ${JSON.stringify(shard)}`);
    }
    const file = join(dir, shard);
    let header = headers.get(file);
    if (header === undefined) {
      if (!existsSync(file)) {
        throw new Error(`${where}: shard ${shard}, listed in ${indexPath} (for ${JSON.stringify(name)} and maybe others), ` +
          'is missing; download or copy it again');
      }
      header = readSafetensorsHeader(file);
      headers.set(file, header);
    }
    if (!header.tensors.has(name)) {
      throw new Error(`${where}: ${indexPath} puts ${JSON.stringify(name)} in ${shard}, but that shard does not hold it ` +
        '(the index and the shards come from different saves?)');
    }
    entries.set(name, { file, header });
  }
  return { dir, index: indexPath, files: [...headers.keys()], entries };
}

export interface LoadWeightsOptions {
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
  /** Float dtype every parameter is converted to (round to nearest even). Default: as on disk. */
  dtype?: DType;
  /** Load only these canonical names (each must be a parameter of the model). Default: all.
   * The whole checkpoint is still validated. */
  names?: readonly string[];
}

/** Loads a checkpoint directory's weights under canonical names with HF shapes, after checking
 * every header against cfg (see the file comment). The caller owns (disposes) the tensors. */
export function loadWeights(dir: string, cfg: Qwen2_5_VLConfig, opts: LoadWeightsOptions = {}): Map<string, Tensor> {
  const where = 'Qwen2_5_VL.loadWeights';
  if (opts.dtype !== undefined && !(typeof opts.dtype === 'string' && TORCH_DTYPE[opts.dtype] !== undefined)) {
    throw new Error(`${where}: dtype must be f32, bf16, f16 or f64, got ${JSON.stringify(opts.dtype)}`);
  }
  const specs = parameterSpecs(cfg);
  let ck: Checkpoint;
  try {
    ck = openCheckpoint(dir, where);
  } catch (e) {
    // Header problems come from @fovea/core as SafetensorsError (naming the file and tensor).
    if ((e as Error).message.startsWith(where)) throw e;
    throw new Error(`${where}: ${(e as Error).message}`, { cause: e });
  }
  const tied = cfg.text.tieWordEmbeddings;

  const canonToRaw = new Map<string, string>();
  const unexpected: string[] = [];
  for (const raw of ck.entries.keys()) {
    if (HARMLESS_EXTRA.test(raw)) continue;
    const c = canonicalName(raw);
    const prev = canonToRaw.get(c);
    if (prev !== undefined) {
      throw new Error(`${where}: the checkpoint holds ${c} twice, as ${JSON.stringify(prev)} and ${JSON.stringify(raw)} ` +
        `(two key layouts mixed in one checkpoint; keep one); ${describe(ck)}`);
    }
    if (tied && c === 'lm_head.weight') continue;  // tied: the model uses embed_tokens (as transformers does)
    if (!specs.has(c)) { unexpected.push(raw); continue; }
    canonToRaw.set(c, raw);
  }
  const missing = [...specs.keys()].filter((k) => !canonToRaw.has(k));
  if (missing.length > 0 || unexpected.length > 0) {
    const parts: string[] = [];
    if (missing.length > 0) {
      let m = `${missing.length} parameter(s) missing: ${listNames(missing)}`;
      if (missing.includes('lm_head.weight')) {
        m += ' (config.json has tie_word_embeddings false, so the checkpoint must hold its own lm_head.weight)';
      }
      parts.push(m);
    }
    if (unexpected.length > 0) parts.push(`${unexpected.length} unexpected tensor(s): ${listNames(unexpected)}`);
    throw new Error(`${where}: the checkpoint does not match config.json (${specs.size} parameters for ` +
      `${cfg.vision.depth} vision blocks and ${cfg.text.numHiddenLayers} layers): ${parts.join('; ')}; ` +
      `${describe(ck)}. Check that config.json belongs to these weights (depth, num_hidden_layers, tie_word_embeddings)`);
  }
  for (const [c, raw] of canonToRaw) {
    const { file, header } = ck.entries.get(raw)!;
    const info = header.tensors.get(raw)!;
    const spec = specs.get(c)!;
    if (info.shape.length !== spec.shape.length || info.shape.some((s, i) => s !== spec.shape[i])) {
      throw new Error(`${where}: ${raw} in ${basename(file)} has shape ${shapeStr(info.shape)} but config.json implies ` +
        `${shapeStr(spec.shape)} (from ${spec.from}); the config does not belong to these weights`);
    }
    const fd = foveaDType(info.dtype);
    if (fd === null || !isFloat(fd)) {
      throw new Error(`${where}: ${raw} in ${basename(file)} is stored as ${info.dtype}; parameters must be F32, BF16, F16 ` +
        'or F64 (quantized checkpoints are not supported)');
    }
  }

  let wanted = [...specs.keys()];  // model order, whatever the file order
  if (opts.names !== undefined) {
    if (!Array.isArray(opts.names)) throw new Error(`${where}: names must be an array of parameter names`);
    const bad = opts.names.filter((n) => typeof n !== 'string' || !canonToRaw.has(n));
    if (bad.length > 0) {
      throw new Error(`${where}: names holds ${listNames(bad.map(String))}, not parameters of this model ` +
        `(canonical names such as visual.blocks.0.norm1.weight or model.layers.0.self_attn.q_proj.weight)`);
    }
    const set = new Set(opts.names);
    wanted = wanted.filter((n) => set.has(n));
  }
  const rawNames = wanted.map((c) => canonToRaw.get(c)!);
  const loadOpts = { names: rawNames, dtype: opts.dtype, device: opts.device };
  let loaded: Map<string, Tensor>;
  try {
    loaded = ck.index === null ? loadSafetensors(ck.files[0], loadOpts) : loadSafetensorsIndex(ck.index, loadOpts);
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`, { cause: e });
  }
  const out = new Map<string, Tensor>();
  for (const c of wanted) out.set(c, loaded.get(canonToRaw.get(c)!)!);
  return out;
}

export interface SaveWeightsOptions {
  /** Most tensor bytes per shard (default 5e9, transformers' "5GB"); above it the HF sharded
   * layout with model.safetensors.index.json is written. */
  maxShardBytes?: number;
  /** Float dtype to store (converted one shard at a time). Default: each tensor's own. */
  dtype?: DType;
  /** 'legacy' (default; visual.* / model.*, loads in every transformers version) or 'nested'
   * (model.visual.* / model.language_model.*, transformers ≥ 4.52). */
  layout?: 'legacy' | 'nested';
}

export interface SaveWeightsResult {
  /** Weight files written in dir, in order. */
  files: string[];
  /** The index file's path, or null when one model.safetensors was written. */
  indexFile: string | null;
  /** Sum of all tensors' bytes as stored (the index's metadata.total_size). */
  totalSize: number;
}

function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  const bytes = Buffer.from(text, 'utf8');
  const fd = openSync(tmp, 'w');
  try {
    for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/** Writes config.json and the weights (canonical names in `tensors`) into dir as transformers
 * does: one model.safetensors, or model-0000i-of-0000N.safetensors + index above maxShardBytes,
 * each file with metadata {format: "pt"}, each written atomically. The tied lm_head is not
 * written. Weight files a previous save left there and this one did not rewrite are removed. */
export function saveWeights(dir: string, cfg: Qwen2_5_VLConfig, tensors: Map<string, Tensor>, opts: SaveWeightsOptions = {}): SaveWeightsResult {
  const where = 'Qwen2_5_VL.saveWeights';
  const maxShard = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!Number.isSafeInteger(maxShard) || maxShard < 1) throw new Error(`${where}: maxShardBytes must be a positive integer, got ${maxShard}`);
  if (opts.dtype !== undefined && TORCH_DTYPE[opts.dtype] === undefined) {
    throw new Error(`${where}: dtype must be f32, bf16, f16 or f64, got ${JSON.stringify(opts.dtype)}`);
  }
  const layout = opts.layout ?? 'legacy';
  if (layout !== 'legacy' && layout !== 'nested') throw new Error(`${where}: layout must be 'legacy' or 'nested', got ${JSON.stringify(layout)}`);
  if (!(tensors instanceof Map)) throw new Error(`${where}: tensors must be a Map<string, Tensor> under canonical names`);

  const specs = parameterSpecs(cfg);
  const tied = cfg.text.tieWordEmbeddings;
  const unexpected = [...tensors.keys()].filter((k) => !specs.has(k) && !(tied && k === 'lm_head.weight'));
  const missing = [...specs.keys()].filter((k) => !tensors.has(k));
  if (missing.length > 0 || unexpected.length > 0) {
    throw new Error(`${where}: the tensors do not match the config: ` +
      [missing.length > 0 ? `missing ${listNames(missing)}` : '', unexpected.length > 0 ? `unexpected ${listNames(unexpected)}` : '']
        .filter(Boolean).join('; '));
  }
  const plan: { name: string; t: Tensor; dtype: DType; bytes: number }[] = [];
  for (const [c, spec] of specs) {
    const t = tensors.get(c)!;
    if (!(t instanceof Tensor) || t.isDisposed) throw new Error(`${where}: ${c} is not a live Tensor`);
    if (t.shape.length !== spec.shape.length || t.shape.some((s, i) => s !== spec.shape[i])) {
      throw new Error(`${where}: ${c} has shape ${shapeStr(t.shape)} but the config implies ${shapeStr(spec.shape)} (from ${spec.from})`);
    }
    if (!isFloat(t.dtype)) throw new Error(`${where}: ${c} is ${t.dtype}; parameters must be float tensors`);
    const dtype = opts.dtype ?? t.dtype;
    plan.push({ name: layout === 'nested' ? nestedName(c) : c, t, dtype, bytes: t.size * BYTES[dtype] });
  }

  // Greedy, in model order, as transformers' shard_checkpoint does.
  const shards: (typeof plan)[] = [];
  let cur: typeof plan = [], curBytes = 0, totalSize = 0;
  for (const p of plan) {
    if (cur.length > 0 && curBytes + p.bytes > maxShard) { shards.push(cur); cur = []; curBytes = 0; }
    cur.push(p);
    curBytes += p.bytes;
    totalSize += p.bytes;
  }
  shards.push(cur);

  mkdirSync(dir, { recursive: true });
  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const files = n === 1 ? [SINGLE_FILE] : shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(n)}.safetensors`);
  shards.forEach((shard, i) => {
    // Casts live for one shard only, so converting never holds a second copy of the model.
    const casts: Tensor[] = [];
    try {
      const record = new Map<string, Tensor>();
      for (const p of shard) {
        let t = p.t;
        if (t.dtype !== p.dtype) { t = noGrad(() => p.t.to(p.dtype)); casts.push(t); }
        record.set(p.name, t);
      }
      saveSafetensors(join(dir, files[i]), record, { metadata: { format: 'pt' } });
    } finally {
      for (const t of casts) t.dispose();
    }
  });

  let indexFile: string | null = null;
  if (n > 1) {
    const weightMap: Record<string, string> = {};
    const names = shards.flatMap((s, i) => s.map((p) => [p.name, files[i]] as const));
    names.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));  // transformers writes sorted keys
    for (const [name, file] of names) weightMap[name] = file;
    indexFile = join(dir, INDEX_FILE);
    writeFileAtomic(indexFile, `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2)}\n`);
  }

  const config = configToJson(cfg);
  const dtypes = new Set(plan.map((p) => p.dtype));
  if (dtypes.size === 1) config.torch_dtype = TORCH_DTYPE[[...dtypes][0]];
  writeFileAtomic(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);

  const keep = new Set(files);
  for (const f of readdirSync(dir)) {
    const stale = (f === INDEX_FILE && n === 1) || (f === SINGLE_FILE && n > 1) || (SHARD_RE.test(f) && !keep.has(f));
    if (stale) rmSync(join(dir, f), { force: true });
  }
  return { files, indexFile, totalSize };
}
