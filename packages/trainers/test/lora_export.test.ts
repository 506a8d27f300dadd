// exportMergedModel on the tiny Qwen2.5-VL checkpoint: the export has exactly the base
// checkpoint's tensor names, dtypes and shapes (legacy f32, and a bf16 nested-layout base), the
// base's config.json and side files; the exported model's logits equal the LoRA model's (adapter
// unmerged and merged) on a conversation with an image; only adapted weights changed; bad
// input and an existing outDir give clear errors and leave nothing behind.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Tensor, loadSafetensors, noGrad, randn, tidy } from '@fovea/core';
import { Qwen2_5_VL, Qwen2_5_VLProcessor } from '@fovea/models';
import { applyLora } from '../src/lora/lora.js';
import { loadAdapter } from '../src/lora/peft.js';
import { checkpointTensorSpecs, diffTensorSpecs, exportMergedModel } from '../src/lora/export.js';

const FIX = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures');
const IMAGE = join(import.meta.dirname, 'fixtures', 'sft', 'red.png');
let tmp: string, modelDir: string, adapterDir: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'fovea-export-'));
  modelDir = join(tmp, 'base');
  cpSync(join(FIX, 'qwen25vl', 'model'), modelDir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(modelDir, f));
  // A trained-looking adapter: random A and B on attention and MLP layers, vision included.
  adapterDir = join(tmp, 'adapter');
  const model = await Qwen2_5_VL.fromPretrained(modelDir);
  try {
    const lora = applyLora(model, { targetModules: ['q_proj', 'v_proj', 'down_proj', 'qkv'], r: 4, alpha: 8, includeVision: true });
    noGrad(() => {
      let s = 5;
      for (const p of lora.trainableParameters()) { const r = randn(p.shape, { seed: s++, std: 0.1 }); p.copy_(r); r.dispose(); }
    });
    lora.saveAdapter(adapterDir);
  } finally { model.dispose(); }
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Logits [L, V] of a conversation with an image. */
async function logitsOf(model: Qwen2_5_VL, proc: Qwen2_5_VLProcessor): Promise<Float32Array> {
  const inp = await proc.apply([{ role: 'user', content: [{ type: 'image', image: IMAGE }, { type: 'text', text: 'What color?' }] }, { role: 'assistant', content: 'red' }]);
  try {
    return noGrad(() => tidy(() => {
      const images = { pixelValues: inp.images!.pixelValues, gridThw: inp.images!.gridThw };
      const h = model.forward({ inputIds: inp.inputIds, images, positionIds: inp.positionIds });
      return Float32Array.from(model.logits(h).data() as Float32Array);
    }));
  } finally { inp.images?.dispose(); }
}

function maxRel(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0, s = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(b[i])); }
  return d / s;
}

const bytes = (t: Tensor) => Buffer.from((t.data() as Float32Array).buffer);

describe('exportMergedModel', () => {
  it('writes the base layout exactly, with its side files, and logits equal the LoRA model', async () => {
    const outDir = join(tmp, 'merged');
    const res = await exportMergedModel({ modelDir, adapterDir, outDir });
    expect(res.mergedLayers).toBe(2 * 3 + 2 * 2);  // 2 text layers × (q, v, down) + 2 vision blocks × (qkv, down)
    expect(res.dtype).toBe('f32');
    expect(diffTensorSpecs(checkpointTensorSpecs(modelDir), checkpointTensorSpecs(outDir))).toBe('');
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json']) {
      expect(readFileSync(join(outDir, f)).equals(readFileSync(join(modelDir, f))), f).toBe(true);
    }
    expect(readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);

    // Only the adapted weights differ from the base.
    const a = loadSafetensors(join(modelDir, 'model.safetensors')), b = loadSafetensors(join(outDir, 'model.safetensors'));
    const changed = [...a.keys()].filter((k) => !bytes(a.get(k)!).equals(bytes(b.get(k)!)));
    expect(changed.sort()).toEqual([
      'model.layers.0.mlp.down_proj.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.v_proj.weight',
      'model.layers.1.mlp.down_proj.weight', 'model.layers.1.self_attn.q_proj.weight', 'model.layers.1.self_attn.v_proj.weight',
      'visual.blocks.0.attn.qkv.weight', 'visual.blocks.0.mlp.down_proj.weight', 'visual.blocks.1.attn.qkv.weight', 'visual.blocks.1.mlp.down_proj.weight',
    ]);
    for (const t of [...a.values(), ...b.values()]) t.dispose();

    const proc = await Qwen2_5_VLProcessor.fromPretrained(outDir);
    const exported = await Qwen2_5_VL.fromPretrained(outDir);
    const withLora = await Qwen2_5_VL.fromPretrained(modelDir);
    try {
      const lora = loadAdapter(withLora, adapterDir);
      const adapted = await logitsOf(withLora, proc);
      const merged = await logitsOf(exported, proc);
      lora.merge();
      const mergedInPlace = await logitsOf(withLora, proc);
      lora.disable(); lora.unmerge();
      const base = await logitsOf(withLora, proc);
      expect(maxRel(merged, adapted)).toBeLessThan(1e-5);
      expect(maxRel(merged, mergedInPlace)).toBe(0);
      expect(maxRel(base, adapted)).toBeGreaterThan(1e-3);  // the adapter matters
    } finally { exported.dispose(); withLora.dispose(); }
  }, 60_000);

  it('keeps a bf16 base in bf16 and its nested (transformers ≥ 4.52) names', async () => {
    const bfDir = join(tmp, 'base-bf16');
    const m = await Qwen2_5_VL.fromPretrained(modelDir);
    try { m.save(bfDir, { dtype: 'bf16', layout: 'nested' }); } finally { m.dispose(); }
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json']) cpSync(join(modelDir, f), join(bfDir, f));
    const outDir = join(tmp, 'merged-bf16');
    const res = await exportMergedModel({ modelDir: bfDir, adapterDir, outDir });
    expect(res.dtype).toBe('bf16');
    const specs = checkpointTensorSpecs(outDir);
    expect(diffTensorSpecs(checkpointTensorSpecs(bfDir), specs)).toBe('');
    expect([...specs.keys()].some((k) => k.startsWith('model.language_model.'))).toBe(true);
    expect(new Set([...specs.values()].map((s) => s.dtype))).toEqual(new Set(['BF16']));
  }, 60_000);

  it('diffTensorSpecs names missing, unexpected and changed tensors', () => {
    const a = new Map([['x', { dtype: 'F32', shape: [2, 3] }], ['y', { dtype: 'F32', shape: [4] }]]);
    const b = new Map([['x', { dtype: 'BF16', shape: [2, 3] }], ['z', { dtype: 'F32', shape: [4] }]]);
    expect(diffTensorSpecs(a, b)).toBe('missing y; unexpected z; changed x: F32[2, 3] became BF16[2, 3]');
  });

  it('refuses bad input clearly and leaves nothing behind', async () => {
    const outDir = join(tmp, 'merged');  // exists from the first test
    await expect(exportMergedModel({ modelDir, adapterDir, outDir })).rejects.toThrow(/already exists; pass overwrite: true/);
    await expect(exportMergedModel({ modelDir, adapterDir: join(tmp, 'nope'), outDir: join(tmp, 'x1') })).rejects.toThrow(/loadAdapter: .*nope does not exist/);
    await expect(exportMergedModel({ modelDir: join(tmp, 'nomodel'), adapterDir, outDir: join(tmp, 'x2') })).rejects.toThrow(/model directory .*nomodel does not exist/);
    const empty = join(tmp, 'empty');
    mkdirSync(empty);
    await expect(exportMergedModel({ modelDir: empty, adapterDir, outDir: join(tmp, 'x3') })).rejects.toThrow(/has neither model\.safetensors nor model\.safetensors\.index\.json/);
    await expect(exportMergedModel({ modelDir, adapterDir, outDir: '' })).rejects.toThrow(/outDir must be a non-empty path/);
    await expect(exportMergedModel({ modelDir, adapterDir, outDir: modelDir, overwrite: true })).rejects.toThrow(/must differ from modelDir/);
    for (const x of ['x1', 'x2', 'x3']) expect(existsSync(join(tmp, x))).toBe(false);
    expect(readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
    // overwrite replaces the previous export with a complete new one.
    const res = await exportMergedModel({ modelDir, adapterDir, outDir, overwrite: true });
    expect(diffTensorSpecs(checkpointTensorSpecs(modelDir), checkpointTensorSpecs(res.outDir))).toBe('');
    expect(readdirSync(tmp).filter((f) => f.includes('.old-'))).toEqual([]);
  }, 60_000);
});


