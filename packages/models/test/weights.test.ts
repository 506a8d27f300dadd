// Qwen2.5-VL weights and config: the tiny Hugging Face fixture checkpoint (transformers 4.50,
// random init) loads with exactly the parameters and shapes the config implies; both config
// layouts parse alike; what saveWeights writes (single or sharded, legacy or nested names, any
// float dtype) loads back bit for bit and passes an independent Python check that mirrors
// transformers' loader (struct + json + torch.frombuffer; transformers itself is not installed
// here); tied embeddings; and every malformed checkpoint gives an error naming the file, the
// key and the problem. Raw safetensors validation itself is tested in core-ts
// (safetensors.test.ts, safetensors_fuzz.test.ts); here we check it surfaces through loadWeights.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Tensor, loadSafetensors, memoryStats, readSafetensorsHeader } from '@fovea/core';
import {
  canonicalName, expectedParameterShapes, loadWeights, nestedName, saveWeights,
} from '../src/qwen2_5_vl/weights.js';
import { type Qwen2_5_VLConfig, loadConfig, parseConfig } from '../src/qwen2_5_vl/config.js';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'qwen25vl', 'model');
const FIXTURE_FILE = join(FIXTURE, 'model.safetensors');
const fixtureJson = () => JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8')) as Record<string, any>;
const cfg = loadConfig(FIXTURE);

let tmp: string;
beforeAll(() => { tmp = mkdtempSync(join(tmpdir(), 'fovea-weights-')); });
afterAll(() => { rmSync(tmp, { recursive: true, force: true }); });

const disposeAll = (m: Map<string, Tensor>) => { for (const t of m.values()) t.dispose(); };
const bytes = (t: Tensor) => Buffer.from(t.rawBytes());
const liveCpu = () => memoryStats().cpu.liveTensors;
const withoutRaw = (c: Qwen2_5_VLConfig) => ({ ...c, raw: undefined });

/** A fresh directory holding the fixture's config.json and model.safetensors. */
function fixtureCopy(name: string): string {
  const d = join(tmp, name);
  mkdirSync(d, { recursive: true });
  copyFileSync(join(FIXTURE, 'config.json'), join(d, 'config.json'));
  copyFileSync(FIXTURE_FILE, join(d, 'model.safetensors'));
  return d;
}

/** Rewrites <d>/model.safetensors with the fixture's data and an edited header (no padding
 * needed: the format allows any length). lengthDelta corrupts the length prefix. */
function rewriteHeader(d: string, edit: (h: Record<string, any>) => void, lengthDelta = 0n): string {
  const buf = readFileSync(FIXTURE_FILE);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  edit(header);
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length) + lengthDelta);
  const p = join(d, 'model.safetensors');
  writeFileSync(p, Buffer.concat([len, json, buf.subarray(8 + n)]));
  return p;
}

describe('the fixture checkpoint (transformers 4.50)', () => {
  it('expectedParameterShapes names exactly the tensors in the file, with their shapes', () => {
    const header = readSafetensorsHeader(FIXTURE_FILE);
    const expected = expectedParameterShapes(cfg);
    expect(new Set(expected.keys())).toEqual(new Set(header.tensors.keys()));
    for (const [k, info] of header.tensors) expect(expected.get(k), k).toEqual(info.shape);
    expect(expected.size).toBe(57);
    // The model order transformers' state_dict has: vision tower, language model, head.
    expect([...expected.keys()][0]).toBe('visual.patch_embed.proj.weight');
    expect([...expected.keys()].at(-1)).toBe('lm_head.weight');
  });

  it('loadWeights returns every parameter under canonical names, values as in the file', () => {
    const raw = loadSafetensors(FIXTURE_FILE);
    const w = loadWeights(FIXTURE, cfg);
    expect([...w.keys()]).toEqual([...expectedParameterShapes(cfg).keys()]);
    for (const [k, t] of w) {
      expect(t.dtype).toBe('f32');
      expect(t.shape).toEqual(raw.get(k)!.shape);
      expect(bytes(t).equals(bytes(raw.get(k)!)), k).toBe(true);
    }
    const some = loadWeights(FIXTURE, cfg, { names: ['model.norm.weight', 'visual.merger.ln_q.weight'] });
    expect([...some.keys()]).toEqual(['visual.merger.ln_q.weight', 'model.norm.weight']);
    disposeAll(some); disposeAll(w); disposeAll(raw);
    expect(() => loadWeights(FIXTURE, cfg, { names: ['model.layers.9.mlp.up_proj.weight'] }))
      .toThrow(/names holds model\.layers\.9\.mlp\.up_proj\.weight, not parameters of this model/);
  });

  it('f32 on disk loads as bf16 and f16, rounding like tensor.to', () => {
    const f32 = loadWeights(FIXTURE, cfg);
    for (const dtype of ['bf16', 'f16'] as const) {
      const w = loadWeights(FIXTURE, cfg, { dtype });
      for (const [k, t] of w) {
        expect(t.dtype).toBe(dtype);
        const want = f32.get(k)!.to(dtype);
        expect(bytes(t).equals(bytes(want)), k).toBe(true);
        want.dispose();
      }
      disposeAll(w);
    }
    disposeAll(f32);
  });
});

describe('canonical names', () => {
  it('maps the nested layout to the legacy one and back', () => {
    expect(canonicalName('model.visual.blocks.0.attn.qkv.weight')).toBe('visual.blocks.0.attn.qkv.weight');
    expect(canonicalName('model.language_model.layers.3.mlp.up_proj.weight')).toBe('model.layers.3.mlp.up_proj.weight');
    expect(canonicalName('model.language_model.embed_tokens.weight')).toBe('model.embed_tokens.weight');
    for (const k of ['lm_head.weight', 'visual.merger.mlp.0.bias', 'model.norm.weight']) expect(canonicalName(k)).toBe(k);
    for (const k of expectedParameterShapes(cfg).keys()) expect(canonicalName(nestedName(k))).toBe(k);
    expect(nestedName('visual.merger.ln_q.weight')).toBe('model.visual.merger.ln_q.weight');
    expect(nestedName('model.norm.weight')).toBe('model.language_model.norm.weight');
  });
});

describe('config.json', () => {
  const TEXT_FIELDS = ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'intermediate_size',
    'vocab_size', 'rms_norm_eps', 'rope_theta', 'rope_scaling', 'tie_word_embeddings', 'hidden_act', 'max_position_embeddings',
    'use_sliding_window', 'sliding_window', 'max_window_layers'];

  it('the flat layout and the nested (text_config) layout parse to the same config', () => {
    const flat = fixtureJson();
    const nested: Record<string, any> = { ...flat, text_config: {} };
    for (const f of TEXT_FIELDS) { nested.text_config[f] = flat[f]; delete nested[f]; }
    const a = parseConfig(flat), b = parseConfig(nested);
    expect(withoutRaw(b)).toEqual(withoutRaw(a));
    expect(a.text).toMatchObject({ hiddenSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 16,
      mropeSection: [2, 3, 3], tieWordEmbeddings: false, vocabSize: 1024 });
    expect(a.vision).toMatchObject({ depth: 2, hiddenSize: 32, numHeads: 2, outHiddenSize: 64, fullattBlockIndexes: [1] });
  });

  it('malformed configs name the field and the problem', () => {
    const bad = (edit: (j: Record<string, any>) => void) => { const j = fixtureJson(); edit(j); return () => parseConfig(j); };
    expect(bad((j) => { delete j.hidden_size; })).toThrow(/missing "hidden_size"/);
    expect(bad((j) => { delete j.vision_config.depth; })).toThrow(/vision_config\).*missing "depth"/);
    expect(bad((j) => { j.rope_scaling.mrope_section = [2, 3, 4]; })).toThrow(/mrope_section \[2,3,4\] sums to 9, expected head_dim \/ 2 = 8/);
    expect(bad((j) => { j.num_attention_heads = 5; })).toThrow(/hidden_size 64 is not a multiple of num_attention_heads 5/);
    expect(bad((j) => { j.num_key_value_heads = 3; })).toThrow(/num_attention_heads 4 is not a multiple of num_key_value_heads 3/);
    expect(bad((j) => { j.vision_config.num_heads = 3; })).toThrow(/hidden_size 32 is not a multiple of num_heads 3/);
  });

  it('a missing config.json is named', () => {
    const d = join(tmp, 'noconfig');
    mkdirSync(d, { recursive: true });
    expect(() => loadConfig(d)).toThrow(new RegExp(`cannot read ${join(d, 'config.json').replace(/[.\\/]/g, '\\$&')}`));
  });
});

describe('saveWeights → loadWeights', () => {
  it('round trips bit for bit: one file (legacy names) and sharded (nested names)', () => {
    const w = loadWeights(FIXTURE, cfg);
    const single = join(tmp, 'rt-single');
    const r1 = saveWeights(single, cfg, w);
    expect(r1.files).toEqual(['model.safetensors']);
    expect(readdirSync(single).sort()).toEqual(['config.json', 'model.safetensors']);
    const h1 = readSafetensorsHeader(join(single, 'model.safetensors'));
    expect(h1.metadata).toEqual({ format: 'pt' });
    expect(new Set(h1.tensors.keys())).toEqual(new Set(w.keys()));
    expect(withoutRaw(loadConfig(single))).toEqual(withoutRaw(cfg));

    const sharded = join(tmp, 'rt-sharded');
    const r2 = saveWeights(sharded, cfg, w, { maxShardBytes: 100_000, layout: 'nested' });
    const n = r2.files.length;
    expect(n).toBeGreaterThan(2);
    expect(r2.files).toEqual(Array.from({ length: n }, (_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`));
    const index = JSON.parse(readFileSync(join(sharded, 'model.safetensors.index.json'), 'utf8'));
    const total = [...w.values()].reduce((s, t) => s + t.size * 4, 0);
    expect(index.metadata).toEqual({ total_size: total });
    expect(r2.totalSize).toBe(total);
    expect(Object.keys(index.weight_map)).toEqual([...w.keys()].map(nestedName).sort());
    expect(index.weight_map['model.language_model.embed_tokens.weight']).toMatch(/^model-\d{5}-of-\d{5}\.safetensors$/);

    for (const d of [single, sharded]) {
      const back = loadWeights(d, loadConfig(d));
      expect([...back.keys()]).toEqual([...w.keys()]);
      for (const [k, t] of back) expect(bytes(t).equals(bytes(w.get(k)!)), `${d} ${k}`).toBe(true);
      disposeAll(back);
    }
    // Saving again with one file removes the stale shards and index.
    saveWeights(sharded, cfg, w);
    expect(readdirSync(sharded).sort()).toEqual(['config.json', 'model.safetensors']);
    disposeAll(w);
  });

  it('bf16 and f16 on disk: stored rounded, loaded as themselves or widened to f32 exactly', () => {
    const w = loadWeights(FIXTURE, cfg);
    for (const dtype of ['bf16', 'f16'] as const) {
      const d = join(tmp, `rt-${dtype}`);
      const before = liveCpu();
      saveWeights(d, cfg, w, { dtype, maxShardBytes: 50_000 });
      expect(liveCpu()).toBe(before);  // the per-shard casts were freed
      expect(JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')).torch_dtype).toBe(dtype === 'bf16' ? 'bfloat16' : 'float16');
      const asIs = loadWeights(d, cfg);
      const wide = loadWeights(d, cfg, { dtype: 'f32' });
      for (const [k, t] of w) {
        const rounded = t.to(dtype);
        expect(asIs.get(k)!.dtype).toBe(dtype);
        expect(bytes(asIs.get(k)!).equals(bytes(rounded)), k).toBe(true);
        const back = rounded.to('f32');
        expect(wide.get(k)!.dtype).toBe('f32');
        expect(bytes(wide.get(k)!).equals(bytes(back)), k).toBe(true);
        rounded.dispose(); back.dispose();
      }
      disposeAll(asIs); disposeAll(wide);
    }
    disposeAll(w);
  });

  it('saveWeights refuses tensors that do not match the config', () => {
    const w = loadWeights(FIXTURE, cfg);
    const d = join(tmp, 'save-bad');
    const lm = w.get('lm_head.weight')!;
    w.delete('lm_head.weight');
    expect(() => saveWeights(d, cfg, w)).toThrow(/saveWeights: the tensors do not match the config: missing lm_head\.weight/);
    w.set('lm_head.weight', w.get('model.embed_tokens.weight')!.transpose(0, 1));
    expect(() => saveWeights(d, cfg, w)).toThrow(/lm_head\.weight has shape \[64, 1024\] but the config implies \[1024, 64\] \(from vocab_size, hidden_size\)/);
    w.set('lm_head.weight', lm);
    w.set('visual.extra', lm);
    expect(() => saveWeights(d, cfg, w)).toThrow(/unexpected visual\.extra/);
    w.delete('visual.extra');
    expect(existsSync(d)).toBe(false);
    disposeAll(w);
  });
});

describe('tied embeddings', () => {
  const tiedCfg = () => { const j = fixtureJson(); j.tie_word_embeddings = true; return parseConfig(j); };

  it('no lm_head is saved or returned; an lm_head in the file is skipped', () => {
    const tied = tiedCfg();
    expect(expectedParameterShapes(tied).has('lm_head.weight')).toBe(false);
    const w = loadWeights(FIXTURE, cfg);
    // The file holds lm_head.weight: with tie_word_embeddings it is skipped, as transformers does.
    const fromUntiedFile = loadWeights(FIXTURE, tied);
    expect(fromUntiedFile.has('lm_head.weight')).toBe(false);
    expect(fromUntiedFile.size).toBe(w.size - 1);
    disposeAll(fromUntiedFile);

    const d = join(tmp, 'tied');
    saveWeights(d, tied, w);  // lm_head given but tied: not written
    expect(readSafetensorsHeader(join(d, 'model.safetensors')).tensors.has('lm_head.weight')).toBe(false);
    expect(loadConfig(d).text.tieWordEmbeddings).toBe(true);
    const back = loadWeights(d, loadConfig(d));
    expect(back.has('lm_head.weight')).toBe(false);
    expect(bytes(back.get('model.embed_tokens.weight')!).equals(bytes(w.get('model.embed_tokens.weight')!))).toBe(true);
    // Untied config, file without lm_head: an error naming it.
    expect(() => loadWeights(d, cfg)).toThrow(/1 parameter\(s\) missing: lm_head\.weight \(config\.json has tie_word_embeddings false/);
    disposeAll(back); disposeAll(w);
  });
});

describe('bad checkpoints give errors naming the file, the key and the problem', () => {
  const cases: [string, (d: string) => void, RegExp][] = [
    ['no weights file', (d) => rmSync(join(d, 'model.safetensors')),
      /holds neither model\.safetensors\.index\.json nor model\.safetensors/],
    // Renaming keeps the data tiled; an inv_freq name is ignored, so only the missing key remains.
    ['a missing key', (d) => rewriteHeader(d, (h) => {
      h['visual.blocks.1.rotary_pos_emb.inv_freq'] = h['visual.blocks.1.norm2.weight'];
      delete h['visual.blocks.1.norm2.weight'];
    }), /does not match config\.json \(57 parameters for 2 vision blocks and 2 layers\): 1 parameter\(s\) missing: visual\.blocks\.1\.norm2\.weight; read model\.safetensors in/],
    ['a renamed key', (d) => rewriteHeader(d, (h) => {
      h['visual.blocks.1.norm2.weight_renamed'] = h['visual.blocks.1.norm2.weight'];
      delete h['visual.blocks.1.norm2.weight'];
    }), /1 parameter\(s\) missing: visual\.blocks\.1\.norm2\.weight; 1 unexpected tensor\(s\): visual\.blocks\.1\.norm2\.weight_renamed; read model\.safetensors in/],
    ['a shape that does not match the config', (d) => rewriteHeader(d, (h) => { h['model.layers.1.self_attn.k_proj.weight'].shape = [64, 32]; }),
      /model\.layers\.1\.self_attn\.k_proj\.weight in model\.safetensors has shape \[64, 32\] but config\.json implies \[32, 64\] \(from num_key_value_heads·head_dim, hidden_size\)/],
    ['a non-float parameter', (d) => rewriteHeader(d, (h) => { h['model.norm.weight'].dtype = 'I32'; }),
      /model\.norm\.weight in model\.safetensors is stored as I32; parameters must be F32/],
    ['an unknown dtype in the header', (d) => rewriteHeader(d, (h) => { h['model.norm.weight'].dtype = 'F31'; }),
      /loadWeights: safetensors: .*model\.safetensors: tensor "model\.norm\.weight": unknown dtype "F31"/],
    ['a header length past the end of the file', (d) => rewriteHeader(d, () => {}, 10_000_000n),
      /loadWeights: safetensors: .*model\.safetensors: header length \d+ runs past the end of the file/],
    ['offsets out of range', (d) => rewriteHeader(d, (h) => {
      const e = h['visual.patch_embed.proj.weight']; e.data_offsets = [e.data_offsets[0] + 2 ** 20, e.data_offsets[1] + 2 ** 20];
    }), /tensor "visual\.patch_embed\.proj\.weight": data_offsets \[\d+, \d+\] run past the end of the data buffer/],
    ['overlapping offsets', (d) => rewriteHeader(d, (h) => { h['model.norm.weight'].data_offsets = h['model.layers.0.input_layernorm.weight'].data_offsets; }),
      /data_offsets \[\d+, \d+\] overlap tensor/],
    ['a truncated file', (d) => { const p = join(d, 'model.safetensors'); truncateSync(p, statSync(p).size - 100); },
      /model\.safetensors: tensor ".*": data_offsets .* run past the end of the data buffer .*truncated/],
    ['one parameter under both layouts', (d) => rewriteHeader(d, (h) => {
      h['model.language_model.norm.weight'] = h['model.norm.weight'];
      h['model.norm.weight'] = { ...h['model.norm.weight'], shape: [0], data_offsets: [0, 0] };
    }), /holds model\.norm\.weight twice, as "model\.norm\.weight" and "model\.language_model\.norm\.weight" \(two key layouts mixed/],
  ];
  for (const [what, corrupt, msg] of cases) {
    it(what, () => {
      const d = fixtureCopy(what.replace(/\W+/g, '-'));
      corrupt(d);
      const before = liveCpu();
      expect(() => loadWeights(d, cfg)).toThrow(msg);
      expect(liveCpu()).toBe(before);
    });
  }

  it('rotary inv_freq buffers are ignored; other extras are listed', () => {
    const d = fixtureCopy('extras');
    rewriteHeader(d, (h) => {
      h['model.layers.0.self_attn.rotary_emb.inv_freq'] = { dtype: 'F32', shape: [0], data_offsets: [0, 0] };
      h['visual.rotary_pos_emb.inv_freq'] = { dtype: 'F32', shape: [0], data_offsets: [0, 0] };
    });
    const w = loadWeights(d, cfg);
    expect(w.size).toBe(57);
    disposeAll(w);
    rewriteHeader(d, (h) => { h['model.layers.7.mlp.up_proj.weight'] = { dtype: 'F32', shape: [0], data_offsets: [0, 0] }; });
    expect(() => loadWeights(d, cfg)).toThrow(/1 unexpected tensor\(s\): model\.layers\.7\.mlp\.up_proj\.weight.*\(depth, num_hidden_layers/);
  });

  it('sharded: a missing shard, a truncated shard and an index naming the wrong shard', () => {
    const w = loadWeights(FIXTURE, cfg);
    const d = join(tmp, 'bad-shards');
    const r = saveWeights(d, cfg, w, { maxShardBytes: 100_000 });
    disposeAll(w);
    const before = liveCpu();
    const last = join(d, r.files.at(-1)!);
    const saved = readFileSync(last);
    truncateSync(last, saved.length - 4);
    expect(() => loadWeights(d, cfg)).toThrow(new RegExp(`${r.files.at(-1)}: tensor ".*": data_offsets .* run past the end.*truncated`));
    rmSync(last);
    expect(() => loadWeights(d, cfg)).toThrow(new RegExp(`shard ${r.files.at(-1)}, listed in .*model\\.safetensors\\.index\\.json .*is missing`));
    writeFileSync(last, saved);
    const index = JSON.parse(readFileSync(r.indexFile!, 'utf8'));
    index.weight_map['model.norm.weight'] = r.files[0] === index.weight_map['model.norm.weight'] ? r.files[1] : r.files[0];
    writeFileSync(r.indexFile!, JSON.stringify(index));
    expect(() => loadWeights(d, cfg)).toThrow(/puts "model\.norm\.weight" in model-\d+-of-\d+\.safetensors, but that shard does not hold it/);
    writeFileSync(r.indexFile!, '{"weight_map": 3}');
    expect(() => loadWeights(d, cfg)).toThrow(/index\.json has no "weight_map" object/);
    expect(liveCpu()).toBe(before);
  });
});

// An independent check of what transformers needs from a saved directory, in Python with no
// safetensors package: header parsed with struct + json, tensors via torch.frombuffer, keys
// mapped as transformers ≥ 4.52 does, values compared with the fixture cast by torch.
const ORACLE = String.raw`
import json, struct, sys, os, torch
d, ref_path, dtype_name, tied = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == '1'
DT = {'F32': torch.float32, 'BF16': torch.bfloat16, 'F16': torch.float16}
def read(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    assert n % 8 == 0, 'header length not a multiple of 8'
    h = json.loads(raw[8:8 + n])
    meta = h.pop('__metadata__', None)
    data = raw[8 + n:]
    out, cursor = {}, 0
    for k, e in sorted(h.items(), key=lambda kv: kv[1]['data_offsets']):
        b, en = e['data_offsets']
        assert b == cursor, (path, k, 'not packed')
        cursor = en
        t = torch.frombuffer(bytearray(data[b:en]), dtype=DT[e['dtype']]) if en > b else torch.empty(0, dtype=DT[e['dtype']])
        out[k] = t.reshape(e['shape'])
    assert cursor == len(data), (path, 'trailing bytes')
    return meta, out
files = sorted(f for f in os.listdir(d) if f.endswith('.safetensors'))
sd = {}
if os.path.exists(os.path.join(d, 'model.safetensors.index.json')):
    idx = json.load(open(os.path.join(d, 'model.safetensors.index.json')))
    shards = sorted(set(idx['weight_map'].values()))
    assert shards == files, (shards, files)
    total = 0
    for s in shards:
        meta, ts = read(os.path.join(d, s))
        assert meta == {'format': 'pt'}, meta
        assert sorted(k for k, v in idx['weight_map'].items() if v == s) == sorted(ts), s
        total += sum(t.numel() * t.element_size() for t in ts.values())
        sd.update(ts)
    assert idx['metadata']['total_size'] == total, (idx['metadata'], total)
else:
    assert files == ['model.safetensors'], files
    meta, sd = read(os.path.join(d, 'model.safetensors'))
    assert meta == {'format': 'pt'}, meta
def canon(k):
    if k.startswith('model.visual.'): return k[len('model.'):]
    if k.startswith('model.language_model.'): return 'model.' + k[len('model.language_model.'):]
    return k
sd = {canon(k): v for k, v in sd.items()}
_, ref = read(ref_path)
if tied: ref.pop('lm_head.weight')
assert sorted(sd) == sorted(ref), set(sd) ^ set(ref)
want = DT[dtype_name]
for k, v in ref.items():
    assert sd[k].dtype == want and torch.equal(sd[k], v.to(want)), k
cfg = json.load(open(os.path.join(d, 'config.json')))
assert cfg['model_type'] == 'qwen2_5_vl' and cfg['architectures'] == ['Qwen2_5_VLForConditionalGeneration']
assert cfg['torch_dtype'] == {'F32': 'float32', 'BF16': 'bfloat16', 'F16': 'float16'}[dtype_name]
assert cfg['tie_word_embeddings'] == tied
print('OK', len(sd), len(files))
`;
const PYTHON = '/usr/bin/python3';
const hasTorch = existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;

describe('what we save, checked independently in Python (the transformers loader contract)', () => {
  it.skipIf(!hasTorch)('single and sharded, legacy and nested, f32 / bf16 / f16, tied and untied', () => {
    const w = loadWeights(FIXTURE, cfg);
    const tiedJson = fixtureJson(); tiedJson.tie_word_embeddings = true;
    const runs = [
      { name: 'py-f32', c: cfg, dtype: 'F32', opts: {} },
      { name: 'py-bf16-sharded-nested', c: cfg, dtype: 'BF16', opts: { dtype: 'bf16' as const, maxShardBytes: 30_000, layout: 'nested' as const } },
      { name: 'py-f16-tied-sharded', c: parseConfig(tiedJson), dtype: 'F16', opts: { dtype: 'f16' as const, maxShardBytes: 60_000 } },
    ];
    for (const r of runs) {
      const d = join(tmp, r.name);
      saveWeights(d, r.c, w, r.opts);
      const p = spawnSync(PYTHON, ['-c', ORACLE, d, FIXTURE_FILE, r.dtype, r.c.text.tieWordEmbeddings ? '1' : '0'], { encoding: 'utf8' });
      expect(p.stderr, r.name).toBe('');
      expect(p.stdout, r.name).toMatch(new RegExp(`^OK ${r.c.text.tieWordEmbeddings ? 56 : 57} `));
    }
    disposeAll(w);
  });
});
