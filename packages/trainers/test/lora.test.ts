// LoRA on the tiny Qwen2.5-VL checkpoint: a zero B changes nothing; with random A and B the
// forward equals the base model with W' = W + (alpha/r)·B·A computed here on the host in f64;
// merge/unmerge; gradients reach only A and B (and dLoss/dB matches a central difference);
// dropout only in training; the PEFT save → load round trip; and bad input.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Tensor, backward, noGrad, randn, saveSafetensors, tensor, tidy } from '@fovea/core';
import { Qwen2_5_VL } from '../../models/src/qwen2_5_vl/model.js';
import { LoraModel, applyLora } from '../src/lora/lora.js';
import { loadAdapter, saveAdapter } from '../src/lora/peft.js';

const MODEL_DIR = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures', 'qwen25vl', 'model');
const IDS = [5, 17, 300, 42, 9, 731, 88, 1000, 3, 64, 512, 7];
const TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const tmp = mkdtempSync(join(tmpdir(), 'fovea-lora-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** saveSafetensors into dir (created). */
function saveIn(dir: string, tensors: Record<string, Tensor>): void {
  mkdirSync(dir, { recursive: true });
  saveSafetensors(join(dir, 'adapter_model.safetensors'), tensors);
}
const load = () => Qwen2_5_VL.fromPretrained(MODEL_DIR);
const f32 = (t: Tensor) => Float32Array.from(t.data() as ArrayLike<number>);
const hidden = (m: Qwen2_5_VL) => noGrad(() => tidy(() => f32(m.forward({ inputIds: IDS }))));
function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}
const paramOf = (m: Qwen2_5_VL, name: string) => m.stateDict().get(name)!;

/** Fills every A and B with seeded N(0, 0.1²) values. */
function randomize(lora: LoraModel, seed = 3): void {
  noGrad(() => {
    let s = seed;
    for (const p of lora.trainableParameters()) {
      const r = randn(p.shape, { seed: s++, std: 0.1 });
      p.copy_(r);
      r.dispose();
    }
  });
}

describe('LoRA forward', () => {
  it('a fresh adapter (B = 0) leaves the output exactly unchanged and freezes the base', async () => {
    const model = await load();
    const base = hidden(model);
    const lora = applyLora(model, { targetModules: TARGETS, r: 4, alpha: 8, seed: 1 });
    expect(lora.layers.size).toBe(2 * 7);
    expect([...lora.layers.keys()][0]).toBe('model.layers.0.self_attn.q_proj');
    expect([...lora.layers.keys()].some((p) => p.startsWith('visual.'))).toBe(false);
    const a = lora.layers.get('model.layers.0.self_attn.q_proj')!;
    expect(a.loraA.shape).toEqual([4, 64]);
    expect(a.loraB.shape).toEqual([a.outFeatures, 4]);
    // kaiming_uniform(a=√5): U(±1/√in), not all equal.
    const av = f32(a.loraA);
    expect(Math.max(...av.map(Math.abs))).toBeLessThanOrEqual(1 / 8);
    expect(new Set(av).size).toBeGreaterThan(200);
    expect(f32(a.loraB).every((v) => v === 0)).toBe(true);
    for (const [, p] of model.namedParameters()) expect(p.requiresGrad).toBe(false);
    for (const p of lora.trainableParameters()) expect(p.requiresGrad).toBe(true);
    expect(maxDiff(hidden(model), base)).toBe(0);
    lora.remove();
    for (const [, p] of model.namedParameters()) expect(p.requiresGrad).toBe(true);
    model.dispose();
  });

  it("random A, B: equals the base model with W' = W + (alpha/r)·B·A (host f64), merge and unmerge", async () => {
    const model = await load();
    const ref = await load();
    const lora = applyLora(model, { targetModules: TARGETS, r: 3, alpha: 6, seed: 2 });
    randomize(lora);
    const scale = 6 / 3;
    noGrad(() => {
      for (const [path, l] of lora.layers) {
        const W = f32(paramOf(ref, `${path}.weight`));
        const A = f32(l.loraA), B = f32(l.loraB);
        const out = l.outFeatures, inF = l.inFeatures, r = 3;
        const Wp = new Float32Array(out * inF);
        for (let o = 0; o < out; o++) {
          for (let i = 0; i < inF; i++) {
            let s = 0;
            for (let k = 0; k < r; k++) s += B[o * r + k] * A[k * inF + i];
            Wp[o * inF + i] = W[o * inF + i] + scale * s;
          }
        }
        const t = tensor(Wp, { dtype: 'f32' }).reshape([out, inF]);
        paramOf(ref, `${path}.weight`).copy_(t);
        t.dispose();
      }
    });
    const want = hidden(ref);
    const got = hidden(model);
    expect(maxDiff(got, want)).toBeLessThan(1e-5);
    // disable() gives the base model back.
    lora.disable();
    const plain = await load();
    expect(maxDiff(got, hidden(plain))).toBeGreaterThan(1e-3);  // the adapters do change the output
    expect(maxDiff(hidden(model), hidden(plain))).toBe(0);
    lora.enable();
    // merge: base-only forward with the merged weights equals the LoRA forward.
    const w0 = f32(paramOf(model, 'model.layers.1.mlp.down_proj.weight'));
    lora.merge();
    expect(lora.merged).toBe(true);
    expect(maxDiff(hidden(model), got)).toBeLessThan(1e-5);
    expect(maxDiff(f32(paramOf(model, 'model.layers.1.mlp.down_proj.weight')), f32(paramOf(ref, 'model.layers.1.mlp.down_proj.weight'))))
      .toBeLessThan(1e-6);
    expect(() => lora.merge()).toThrow(/already merged/);
    lora.unmerge();
    expect(maxDiff(f32(paramOf(model, 'model.layers.1.mlp.down_proj.weight')), w0)).toBeLessThan(1e-6);
    for (const path of lora.layers.keys()) {
      expect(maxDiff(f32(paramOf(model, `${path}.weight`)), f32(paramOf(plain, `${path}.weight`)))).toBeLessThan(1e-6);
    }
    expect(maxDiff(hidden(model), got)).toBeLessThan(1e-5);
    expect(() => lora.unmerge()).toThrow(/not merged/);
    for (const m of [model, ref, plain]) m.dispose();
  });

  it('includeVision adapts vision blocks too; a RegExp must match the whole path', async () => {
    const model = await load();
    const lv = applyLora(model, { targetModules: ['qkv', 'gate_proj'], r: 2, includeVision: true });
    const paths = [...lv.layers.keys()];
    expect(paths).toContain('visual.blocks.0.attn.qkv');
    expect(paths).toContain('visual.blocks.1.mlp.gate_proj');
    expect(paths).toContain('model.layers.1.mlp.gate_proj');
    lv.remove();
    const lr = applyLora(model, { targetModules: /model\.layers\.1\.self_attn\.(q|v)_proj/, r: 2 });
    expect([...lr.layers.keys()]).toEqual(['model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']);
    lr.remove();
    expect(() => applyLora(model, { targetModules: /q_proj/, r: 2 })).toThrow(/match no linear layer/);
    model.dispose();
  });
});

describe('LoRA training', () => {
  const lossOf = (model: Qwen2_5_VL, R: Tensor) => tidy(() => model.forward({ inputIds: IDS }).mul(R).sum());

  it('gradients reach only A and B; dLoss/dB matches a central difference', async () => {
    const model = await load();
    const lora = applyLora(model, { targetModules: ['q_proj', 'v_proj', 'down_proj'], r: 2, alpha: 4 });
    randomize(lora, 11);
    const R = randn([IDS.length, 64], { seed: 5 });
    const loss = lossOf(model, R);
    backward(loss);
    loss.dispose();
    for (const [name, p] of model.namedParameters()) expect(p.grad, name).toBeNull();
    for (const p of lora.trainableParameters()) {
      expect(p.grad).not.toBeNull();
      expect(f32(p.grad!).some((v) => v !== 0)).toBe(true);
    }
    const B = lora.layers.get('model.layers.0.self_attn.v_proj')!.loraB;
    const idx = 5 * 2 + 1;  // B[5, 1]
    const analytic = f32(B.grad!)[idx];
    const eps = 1e-2;
    const at = (delta: number) => noGrad(() => {
      const v = f32(B);
      v[idx] += delta;
      const t = tensor(v, { dtype: 'f32' }).reshape(B.shape);
      B.copy_(t); t.dispose();
      const l = lossOf(model, R);
      const x = l.item();
      l.dispose();
      v[idx] -= delta;
      const back = tensor(v, { dtype: 'f32' }).reshape(B.shape);
      B.copy_(back); back.dispose();
      return x;
    });
    const numeric = (at(eps) - at(-eps)) / (2 * eps);
    expect(Math.abs(analytic)).toBeGreaterThan(1e-3);
    expect(Math.abs(numeric - analytic)).toBeLessThan(2e-2 * Math.abs(analytic) + 1e-3);
    R.dispose();
    lora.remove();
    model.dispose();
  });

  it('dropout acts only in training with gradients on, and is seeded', async () => {
    const model = await load();
    const ref = await load();
    const lora = applyLora(model, { targetModules: ['o_proj', 'up_proj'], r: 2, dropout: 0.5, seed: 9 });
    const lref = applyLora(ref, { targetModules: ['o_proj', 'up_proj'], r: 2, dropout: 0, seed: 9 });
    randomize(lora); randomize(lref);
    const noDrop = hidden(ref);
    expect(maxDiff(hidden(model), noDrop)).toBeLessThan(1e-6);  // noGrad: no dropout
    const train = () => tidy(() => f32(model.forward({ inputIds: IDS }).detach()));
    const t1 = train(), t2 = train();
    expect(maxDiff(t1, noDrop)).toBeGreaterThan(1e-4);
    expect(maxDiff(t1, t2)).toBeGreaterThan(1e-4);  // fresh masks each step
    model.eval();
    expect(maxDiff(train(), noDrop)).toBeLessThan(1e-6);
    // The same seed replays the same masks.
    model.train();
    lref.remove();
    const lref2 = applyLora(ref, { targetModules: ['o_proj', 'up_proj'], r: 2, dropout: 0.5, seed: 9 });
    randomize(lref2);
    const r1 = tidy(() => f32(ref.forward({ inputIds: IDS }).detach()));
    lora.remove();
    const lora2 = applyLora(model, { targetModules: ['o_proj', 'up_proj'], r: 2, dropout: 0.5, seed: 9 });
    randomize(lora2);
    const m1 = tidy(() => f32(model.forward({ inputIds: IDS }).detach()));
    expect(maxDiff(r1, m1)).toBe(0);
    model.dispose(); ref.dispose();
  });
});

describe('PEFT layout', () => {
  it('save → load is bit-identical and writes PEFT keys and config', async () => {
    const model = await load();
    const lora = applyLora(model, { targetModules: TARGETS, r: 4, alpha: 16, dropout: 0.05, seed: 4 });
    randomize(lora, 21);
    const dir = join(tmp, 'adapter');
    lora.saveAdapter(dir, { baseModelNameOrPath: 'Qwen/Qwen2.5-VL-7B-Instruct' });
    const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 16, lora_dropout: 0.05, bias: 'none', task_type: 'CAUSAL_LM',
      base_model_name_or_path: 'Qwen/Qwen2.5-VL-7B-Instruct', use_rslora: false });
    // gate/up/down_proj also exist in the vision tower: the config's regex keeps PEFT off it.
    const re = new RegExp(cfg.target_modules);
    expect(re.test('model.layers.0.mlp.down_proj')).toBe(true);
    expect(re.test('model.layers.1.self_attn.q_proj')).toBe(true);
    expect(re.test('visual.blocks.0.mlp.down_proj')).toBe(false);
    expect(re.test('model.visual.blocks.0.mlp.down_proj')).toBe(false);
    expect(re.test('model.layers.0.input_layernorm')).toBe(false);

    const fresh = await load();
    const back = loadAdapter(fresh, dir);
    expect([...back.layers.keys()]).toEqual([...lora.layers.keys()]);
    expect(back.config).toMatchObject({ r: 4, alpha: 16, dropout: 0.05 });
    for (const [path, l] of lora.layers) {
      const b = back.layers.get(path)!;
      expect(Buffer.from(b.loraA.rawBytes()).equals(Buffer.from(l.loraA.rawBytes()))).toBe(true);
      expect(Buffer.from(b.loraB.rawBytes()).equals(Buffer.from(l.loraB.rawBytes()))).toBe(true);
    }
    expect(maxDiff(hidden(fresh), hidden(model))).toBe(0);
    // Saving the loaded adapter again gives the same file.
    back.saveAdapter(join(tmp, 'again'));
    expect(readFileSync(join(tmp, 'again', 'adapter_model.safetensors')).equals(readFileSync(join(dir, 'adapter_model.safetensors')))).toBe(true);
    expect(() => { lora.merge(); try { saveAdapter(lora, join(tmp, 'x')); } finally { lora.unmerge(); } }).toThrow(/unmerge/);
    model.dispose(); fresh.dispose();
  });

  it('loads the newer transformers layout (model.language_model.*) and a plain name list', async () => {
    const model = await load();
    const dir = join(tmp, 'newlayout');
    const A = randn([2, 64], { seed: 1 }), B = randn([64, 2], { seed: 2 });
    saveIn(dir, {
      'base_model.model.model.language_model.layers.0.self_attn.o_proj.lora_A.weight': A,
      'base_model.model.model.language_model.layers.0.self_attn.o_proj.lora_B.weight': B,
      'base_model.model.model.language_model.layers.1.self_attn.o_proj.lora_A.weight': A,
      'base_model.model.model.language_model.layers.1.self_attn.o_proj.lora_B.weight': B,
    });
    writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 2, target_modules: ['o_proj'] }));
    const lora = loadAdapter(model, dir);
    expect([...lora.layers.keys()]).toEqual(['model.layers.0.self_attn.o_proj', 'model.layers.1.self_attn.o_proj']);
    expect(maxDiff(f32(lora.layers.get('model.layers.1.self_attn.o_proj')!.loraB), f32(B))).toBe(0);
    A.dispose(); B.dispose();
    model.dispose();
  });
});

describe('bad input', () => {
  it('options: unknown targets list what exists; r, alpha, dropout checked', async () => {
    const model = await load();
    expect(() => applyLora(model, { targetModules: ['qproj'], r: 2 }))
      .toThrow(/'qproj' matches no linear layer.*q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.*includeVision: qkv, proj, gate_proj, up_proj, down_proj, mlp\.0, mlp\.2\)/);
    expect(() => applyLora(model, { targetModules: ['q_proj', 'lm_head'], r: 2 })).toThrow(/'lm_head' matches no linear layer/);
    expect(() => applyLora(model, { targetModules: ['q_proj'], r: 0 })).toThrow(/r must be an integer ≥ 1, got 0/);
    expect(() => applyLora(model, { targetModules: ['q_proj'], r: 1.5 })).toThrow(/r must be an integer/);
    expect(() => applyLora(model, { targetModules: ['q_proj'], r: 2, dropout: 1 })).toThrow(/dropout must be in \[0, 1\)/);
    expect(() => applyLora(model, { targetModules: [], r: 2 })).toThrow(/non-empty array/);
    const lora = applyLora(model, { targetModules: ['q_proj'], r: 2 });
    expect(() => applyLora(model, { targetModules: ['q_proj'], r: 2 })).toThrow(/already has an adapter/);
    lora.remove();
    expect(() => lora.merge()).toThrow(/removed/);
    // Nothing was left behind by the failures.
    for (const [, p] of model.namedParameters()) expect(p.requiresGrad).toBe(true);
    model.dispose();
  });

  it('loading: missing files, unknown modules, other shapes, r mismatch — and the model is left as it was', async () => {
    const model = await load();
    const src = applyLora(model, { targetModules: ['q_proj', 'v_proj'], r: 2 });
    const good = join(tmp, 'good');
    src.saveAdapter(good);
    src.remove();
    const cfgText = readFileSync(join(good, 'adapter_config.json'), 'utf8');
    expect(() => loadAdapter(model, join(tmp, 'nope'))).toThrow(/does not exist/);
    const noCfg = join(tmp, 'nocfg');
    saveIn(noCfg, { x: randn([1]) });
    expect(() => loadAdapter(model, noCfg)).toThrow(/adapter_config\.json not found/);
    const noW = join(tmp, 'now');
    mkdirSync(noW, { recursive: true });
    writeFileSync(join(noW, 'adapter_config.json'), cfgText);
    expect(() => loadAdapter(model, noW)).toThrow(/adapter_model\.safetensors not found/);

    const variant = (name: string, tensors: Record<string, Tensor>, cfg: Record<string, unknown> = {}) => {
      const d = join(tmp, name);
      saveIn(d, tensors);
      writeFileSync(join(d, 'adapter_config.json'), JSON.stringify({ ...JSON.parse(cfgText), ...cfg }));
      return d;
    };
    const k = (p: string, w: 'A' | 'B') => `base_model.model.${p}.lora_${w}.weight`;
    const A2 = randn([2, 64]), B2 = randn([64, 2]), A3 = randn([3, 64]), Bwide = randn([32, 2]), Awide = randn([2, 80]);
    const full = (over: Record<string, Tensor> = {}) => {
      const t: Record<string, Tensor> = {};
      for (const l of [0, 1]) for (const p of ['q_proj', 'v_proj']) {
        const out = p === 'q_proj' ? 64 : (JSON.parse(readFileSync(join(MODEL_DIR, 'config.json'), 'utf8')).num_key_value_heads * 16);
        t[k(`model.layers.${l}.self_attn.${p}`, 'A')] = A2;
        t[k(`model.layers.${l}.self_attn.${p}`, 'B')] = out === 64 ? B2 : randn([out, 2]);
      }
      return { ...t, ...over };
    };
    expect(() => loadAdapter(model, variant('unknown', full({ [k('model.layers.7.self_attn.q_proj', 'A')]: A2 }))))
      .toThrow(/model\.layers\.7\.self_attn\.q_proj, which is no linear layer of this model/);
    expect(() => loadAdapter(model, variant('junk', full({ 'base_model.model.model.norm.weight': randn([64]) }))))
      .toThrow(/not a LoRA weight/);
    expect(() => loadAdapter(model, variant('rmis', full({ [k('model.layers.0.self_attn.q_proj', 'A')]: A3 }))))
      .toThrow(/a rank of 3, but .* says r = 2/);
    expect(() => loadAdapter(model, variant('wideA', full({ [k('model.layers.1.self_attn.q_proj', 'A')]: Awide }))))
      .toThrow(/is \[2, 80\] but model\.layers\.1\.self_attn\.q_proj of this model needs \[2, 64\].*another size/);
    expect(() => loadAdapter(model, variant('wideB', full({ [k('model.layers.0.self_attn.q_proj', 'B')]: Bwide }))))
      .toThrow(/needs \[64, 2\]/);
    const partial = full();
    delete partial[k('model.layers.1.self_attn.v_proj', 'B')];
    expect(() => loadAdapter(model, variant('missing', partial))).toThrow(/has no lora_B for model\.layers\.1\.self_attn\.v_proj/);
    expect(() => loadAdapter(model, variant('dora', full(), { use_dora: true }))).toThrow(/DoRA/);
    expect(() => loadAdapter(model, variant('ia3', full(), { peft_type: 'IA3' }))).toThrow(/only "LORA"/);
    expect(() => loadAdapter(model, variant('r0', full(), { r: 0 }))).toThrow(/r must be an integer ≥ 1/);
    // Every failure undid itself: no adapters, base trainable again.
    for (const [, m] of model.namedModules()) expect((m as { adapter?: unknown }).adapter ?? null).toBeNull();
    for (const [, p] of model.namedParameters()) expect(p.requiresGrad).toBe(true);
    for (const t of [A2, B2, A3, Bwide, Awide]) t.dispose();
    model.dispose();
  });
});
