// SFT on the tiny Qwen2.5-VL checkpoint: config validation; the conversation reader's bad-row
// report; the assistant-only mask token by token (2 assistant turns and an image); the fused
// loss against cross-entropy on materialized logits (value and gradient); packing = the same
// loss as each conversation alone; a few steps on a tiny set overfit it; LoRA SFT saves a PEFT
// adapter, leaves the base weights alone and exports as a merged model with the same loss; a run stopped after step 3 and resumed writes the
// same metrics lines (timings aside) and the same adapter as an uninterrupted run.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Tensor, backward, crossEntropy, noGrad, tensor, tidy } from '@fovea/core';
import { Qwen2_5_VL, Qwen2_5_VLProcessor } from '@fovea/models';
import { loadSftConfig, validateSftConfig } from '../src/sft/config.js';
import { loadSftDataset } from '../src/sft/data.js';
import { type SftExample, encodeExample, toChatMessages } from '../src/sft/encode.js';
import { buildSftBatch, sftLoss } from '../src/sft/pack.js';
import { SFT_METRICS_FILE, sft } from '../src/sft/trainer.js';
import { batchHidden } from '../src/algorithms/grpoStep.js';
import { readMetrics } from '../src/metrics/jsonl.js';
import { listCheckpointDirs } from '../src/checkpoint/checkpoint.js';
import { loadAdapter } from '../src/lora/peft.js';
import { exportMergedModel } from '../src/lora/export.js';
import type { BadRow } from '../src/data/dataset.js';

const FIX = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures');
const SFT = join(import.meta.dirname, 'fixtures', 'sft');
const DATA = join(SFT, 'train.jsonl');
let tmp: string, modelDir: string, proc: Qwen2_5_VLProcessor;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'fovea-sft-'));
  modelDir = join(tmp, 'model');
  cpSync(join(FIX, 'qwen25vl', 'model'), modelDir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(modelDir, f));
  proc = await Qwen2_5_VLProcessor.fromPretrained(modelDir);
});
afterAll(() => { if (process.env.FOVEA_KEEP_TMP) console.log('kept', tmp); else rmSync(tmp, { recursive: true, force: true }); });

const f64 = (t: Tensor) => Float64Array.from(t.data() as ArrayLike<number>);

async function examples(): Promise<Map<string, SftExample>> {
  const { rows } = await loadSftDataset(DATA);
  const out = new Map<string, SftExample>();
  for (const r of rows) out.set(r.id, await encodeExample(proc, r.id, r.messages));
  return out;
}

describe('sft config', () => {
  const base = { model: 'm', data: { train: 'd.jsonl' }, steps: 3, output: 'runs/x' };
  it('fills defaults and resolves paths', () => {
    const c = validateSftConfig(base, '/base');
    expect(c.model).toBe('/base/m');
    expect([c.device, c.dtype]).toEqual(['cpu', 'f32']);
    expect(c.data).toEqual({ train: '/base/d.jsonl', shuffle: true, shuffleSeed: 0, allowOutside: false, maxTokens: 4096, maxRowsPerPack: null, minPixels: null, maxPixels: null, imageCacheMB: 1024 });
    expect(c.lora).toBeNull();
    expect(c.optim.gradAccumSteps).toBe(1);
    expect(c.optim.lr).toBe(1e-5);
    expect(c.checkpoint).toEqual({ every: 50, keepLast: 3 });
    const l = validateSftConfig({ ...base, lora: {} }).lora!;
    expect(l).toEqual({ r: 8, alpha: 16, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], includeVision: false, useRslora: false, seed: 0 });
  });
  it('names unknown keys with the closest valid key and bad values by path', () => {
    expect(() => validateSftConfig({ ...base, optim: { gradAcumSteps: 2 } })).toThrow(/optim\.gradAcumSteps: unknown key \(did you mean "gradAccumSteps"\?\)/);
    expect(() => validateSftConfig({ ...base, lora: { rank: 4 } })).toThrow(/lora\.rank: unknown key; valid keys here: r, alpha/);
    expect(() => validateSftConfig({ ...base, data: { train: 'd', maxTokens: 1 } })).toThrow(/data\.maxTokens: expected an integer >= 2, got 1/);
    expect(() => validateSftConfig({ ...base, lora: { dropout: 1 } })).toThrow(/lora\.dropout: expected a number >= 0 and < 1, got 1/);
    expect(() => validateSftConfig({ ...base, lora: { targets: [] } })).toThrow(/lora\.targets: expected a non-empty array of non-empty strings, got \[\]/);
    expect(() => validateSftConfig({ ...base, optim: { lr: 'fast' } })).toThrow(/optim\.lr: expected a number > 0, got "fast"/);
    expect(() => validateSftConfig({ data: { train: 'd' }, steps: 1, output: 'o' })).toThrow(/model: required/);
    expect(() => validateSftConfig({ ...base, lora: { dropout: 0.1 }, optim: { gradientCheckpointing: true } })).toThrow(/lora\.dropout: expected 0 with optim\.gradientCheckpointing/);
    expect(() => validateSftConfig({ ...base, steps: 0, lora: { r: 0 } })).toThrow(/2 problem\(s\)/);
    expect(() => validateSftConfig('x')).toThrow(/top level/);
    expect(() => validateSftConfig({ ...base, device: 'gpu' })).toThrow(/device: expected "cpu", "cuda" or "cuda:N", got "gpu"/);
    expect(() => validateSftConfig({ ...base, dtype: 'f16' })).toThrow(/dtype: expected one of "f32", "bf16", got "f16"/);
  });
  it('reads files and reports unreadable or invalid ones', () => {
    const f = join(tmp, 'sft.json');
    writeFileSync(f, JSON.stringify({ ...base, output: 'out' }));
    expect(loadSftConfig(f).output).toBe(join(tmp, 'out'));
    writeFileSync(f, '{ "steps": ');
    expect(() => loadSftConfig(f)).toThrow(/is not valid JSON/);
    expect(() => loadSftConfig(join(tmp, 'nope.json'))).toThrow(/cannot read .*nope\.json \(ENOENT\)/);
  });
});

describe('sft data', () => {
  it('skips and reports bad rows with file:line and the reason, keeps the good ones', async () => {
    const bad: BadRow[] = [];
    const { rows, stats } = await loadSftDataset(join(SFT, 'bad.jsonl'), { onBadRow: (b) => bad.push(b) });
    expect(rows.map((r) => r.id)).toEqual(['ok', 'ok2']);
    const lines = bad.map((b) => [b.line, b.reason]);
    expect(lines).toEqual([[2, 'invalid_json'], [3, 'invalid_field'], [4, 'invalid_field'], [5, 'path_escape'], [6, 'missing_image'], [7, 'invalid_field'], [8, 'invalid_field'], [9, 'invalid_field']]);
    expect(bad[1].message).toMatch(/no assistant turn/);
    expect(bad[2].message).toMatch(/messages\[0\]\.role" must be "system", "user" or "assistant", got "tool"/);
    expect(bad[5].message).toMatch(/image in an assistant turn/);
    expect(bad[6].message).toMatch(/no user turn before it/);
    expect(bad[7].message).toMatch(/neither "messages".*nor "question"/);
    expect(bad[0].file).toBe(join(SFT, 'bad.jsonl'));
    expect(stats.skippedTotal).toBe(8);
  });
  it('turns an RL row (question/answer/images) into a user → assistant conversation', async () => {
    const { rows } = await loadSftDataset(DATA);
    const r = rows.find((x) => x.id === 'r1')!;
    expect(r.messages).toEqual([
      { role: 'user', content: [{ type: 'image', image: join(SFT, 'red.png') }, { type: 'text', text: 'Which color?\n(A) red\n(B) blue' }] },
      { role: 'assistant', content: 'A' },
    ]);
  });
});

describe('sft encoding', () => {
  it('masks exactly the assistant tokens (content + <|im_end|>) of a 2-turn conversation with an image', async () => {
    const ex = (await examples()).get('c2')!;
    const { rows } = await loadSftDataset(DATA);
    const msgs = toChatMessages(rows.find((r) => r.id === 'c2')!.messages);
    // The whole-text tokenization of the processor (what inference sees) is the same sequence.
    const ref = await proc.apply(msgs);
    ref.images?.dispose();
    expect(Array.from(ex.inputIds)).toEqual(Array.from(ref.inputIds));
    expect(ex.grids.length).toBe(1);
    // Independent expectation: after each "<|im_start|>assistant\n" header come the answer's
    // tokens and <|im_end|>; those and nothing else carry loss.
    const tok = proc.tokenizer;
    const imStart = tok.tokenToId('<|im_start|>')!, imEnd = tok.tokenToId('<|im_end|>')!;
    const header = tok.encode('assistant\n', { addSpecialTokens: false });
    const ids = Array.from(ex.inputIds);
    const expected = new Array<number>(ids.length).fill(0);
    const answers = ['blue', 'none'];
    let found = 0;
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] !== imStart || !header.every((h, j) => ids[i + 1 + j] === h)) continue;
      const start = i + 1 + header.length;
      const want = [...tok.encode(answers[found], { addSpecialTokens: false }), imEnd];
      expect(ids.slice(start, start + want.length)).toEqual(want);
      for (let j = 0; j < want.length; j++) expected[start + j] = 1;
      found++;
    }
    expect(found).toBe(2);
    expect(Array.from(ex.lossMask)).toEqual(expected);
    expect(tok.decode(ids.filter((_, i) => ex.lossMask[i]), { skipSpecialTokens: false })).toBe('blue<|im_end|>none<|im_end|>');
    // No image, system or user token is in the loss.
    ids.forEach((t, i) => { if (t === proc.imageTokenId || t === proc.visionStartTokenId) expect(ex.lossMask[i]).toBe(0); });
    expect(ex.lossTokens).toBe(expected.reduce((a, b) => a + b, 0));
  });

  it('tokenizes every conversation exactly as the processor does, and refuses a template that is not prefix-stable', async () => {
    const { rows } = await loadSftDataset(DATA);
    for (const r of rows) {
      const ex = await encodeExample(proc, r.id, r.messages);
      const ref = await proc.apply(toChatMessages(r.messages));
      ref.images?.dispose();
      expect(Array.from(ex.inputIds), r.id).toEqual(Array.from(ref.inputIds));
      expect(ex.lossTokens, r.id).toBeGreaterThan(1);
    }
    // A template that marks the last turn renders a conversation differently once a turn follows.
    const marking = '{% for m in messages %}<|im_start|>{{ m.role }}\n{% if loop.last %}[last] {% endif %}{{ m.content }}<|im_end|>\n{% endfor %}' +
      '{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}';
    const odd = await Qwen2_5_VLProcessor.fromPretrained(modelDir, { chatTemplate: marking });
    await expect(encodeExample(odd, 'x', [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }]))
      .rejects.toThrow(/does not render the conversation up to messages\[1\] as a prefix of the whole/);
  });

  it('the fused loss equals cross-entropy on materialized logits, value and gradient', async () => {
    const ex = await examples();
    const model = await Qwen2_5_VL.fromPretrained(modelDir);
    try {
      const b = buildSftBatch(model, [ex.get('c1')!, ex.get('c2')!]);
      const h = noGrad(() => batchHidden(model, b)).detach();
      h.requiresGrad = true;
      const ours = sftLoss(model, h, b);
      backward(ours.loss);
      const g1 = f64(h.grad!);
      h.grad!.dispose(); h.grad = null;
      const ref = tidy(() => crossEntropy(model.logits(h), tensor(b.targets, { dtype: 'i32' })));
      backward(ref);
      const g2 = f64(h.grad!);
      expect(ours.loss.item()).toBeCloseTo(ref.item(), 5);
      expect(ours.nllSum / ours.tokens).toBeCloseTo(ref.item(), 5);
      let d = 0, s = 0;
      for (let i = 0; i < g1.length; i++) { d = Math.max(d, Math.abs(g1[i] - g2[i])); s = Math.max(s, Math.abs(g2[i])); }
      expect(s).toBeGreaterThan(0);
      expect(d).toBeLessThan(1e-6 + 1e-4 * s);
    } finally { model.dispose(); }
  }, 60_000);

  it('packing gives the same loss as each conversation alone (token-weighted)', async () => {
    const ex = await examples();
    const list = ['c1', 'c2', 'c3', 'r1'].map((k) => ex.get(k)!);
    const model = await Qwen2_5_VL.fromPretrained(modelDir);
    try {
      const lossOf = (xs: SftExample[]) => noGrad(() => tidy(() => {
        const b = buildSftBatch(model, xs);
        return sftLoss(model, batchHidden(model, b), b);
      }));
      const packed = lossOf(list);
      expect(packed.tokens).toBe(list.reduce((a, e) => a + e.lossTokens, 0));
      let nll = 0;
      for (const e of list) nll += lossOf([e]).nllSum;
      expect(Math.abs(packed.nllSum / packed.tokens - nll / packed.tokens)).toBeLessThan(1e-5);
      expect(packed.nllSum / packed.tokens).toBeGreaterThan(1);  // an untrained model: a real loss
      // Gradients too: the pack's token-mean gradient = Σ (n_i / N) · each conversation's own.
      const watched = ['lm_head.weight', 'model.layers.1.self_attn.q_proj.weight', 'visual.patch_embed.proj.weight'];
      const params = model.stateDict();
      const gradsOf = (xs: SftExample[]) => {
        tidy(() => { const b = buildSftBatch(model, xs); backward(sftLoss(model, batchHidden(model, b), b).loss); });
        // A text-only conversation gives the vision tower no gradient (null): zeros.
        const g = watched.map((k) => { const p = params.get(k)!; return p.grad ? f64(p.grad) : new Float64Array(p.size); });
        model.zeroGrad();
        return g;
      };
      const gp = gradsOf(list);
      const sum = watched.map((_, j) => new Float64Array(gp[j].length));
      for (const e of list) gradsOf([e]).forEach((g, j) => g.forEach((v, i) => { sum[j][i] += (v * e.lossTokens) / packed.tokens; }));
      for (let j = 0; j < watched.length; j++) {
        let d = 0, m = 0;
        for (let i = 0; i < sum[j].length; i++) { d = Math.max(d, Math.abs(gp[j][i] - sum[j][i])); m = Math.max(m, Math.abs(sum[j][i])); }
        expect(m, watched[j]).toBeGreaterThan(0);
        expect(d, watched[j]).toBeLessThan(1e-4 * m);
      }
    } finally { model.dispose(); }
  }, 60_000);
});

function raw(out: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model: modelDir, data: { train: DATA, shuffleSeed: 3, maxTokens: 256 },
    optim: { lr: 3e-3, maxGradNorm: 1.0 }, steps: 8, checkpoint: { every: 4, keepLast: 2 }, output: join(tmp, out), ...extra,
  };
}

describe('sft run', () => {
  it('overfits a tiny set: the loss falls substantially; checkpoints hold the HF model and the state', async () => {
    const seen: number[] = [];
    const res = await sft(validateSftConfig(raw('full')), { onStep: (m) => seen.push(m.loss) });
    expect(res.lastStep).toBe(8);
    expect(seen.length).toBe(8);
    const { records } = readMetrics(join(tmp, 'full', SFT_METRICS_FILE));
    expect(records.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const r of records) {
      expect(r.grad_norm as number).toBeGreaterThan(0);
      expect(r.loss_tokens as number).toBeGreaterThan(0);
      expect(r.tokens as number).toBeLessThanOrEqual(256);
      expect(r.lr).toBe(3e-3);
    }
    // Step 1 and step 8 see different packs; compare the mean of the first two with the last two.
    const first = (seen[0] + seen[1]) / 2, last = (seen[6] + seen[7]) / 2;
    expect(last).toBeLessThan(0.5 * first);
    const cks = listCheckpointDirs(join(tmp, 'full'));
    expect(cks.map((c) => c.step)).toEqual([8, 4]);
    for (const f of ['model/config.json', 'model/model.safetensors', 'model/tokenizer.json', 'model/preprocessor_config.json',
      'optimizer.safetensors', 'optimizer.json', 'scheduler.json', 'data.json', 'rng.json', 'trainer.json']) {
      expect(existsSync(join(cks[0].dir, f)), f).toBe(true);
    }
    expect(JSON.parse(readFileSync(join(cks[0].dir, 'trainer.json'), 'utf8'))).toEqual({ step: 8, kind: 'sft', mode: 'full' });
  }, 120_000);

  it('LoRA SFT trains only the adapter and saves it in the PEFT layout', async () => {
    // One conversation per pack and no shuffling: step 2's pack is c2.
    const c2 = (await examples()).get('c2')!;
    const cfg = validateSftConfig(raw('lora', {
      data: { train: DATA, shuffle: false, maxRowsPerPack: 1 }, steps: 2, checkpoint: { every: 1, keepLast: 5 },
      optim: { lr: 1e-2 }, lora: { r: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'] },
    }));
    await sft(cfg);
    const ck1 = join(tmp, 'lora', 'checkpoint-1', 'model');
    expect(existsSync(join(ck1, 'adapter_model.safetensors'))).toBe(true);
    expect(existsSync(join(ck1, 'adapter_config.json'))).toBe(true);
    expect(existsSync(join(ck1, 'model.safetensors'))).toBe(false);
    const acfg = JSON.parse(readFileSync(join(ck1, 'adapter_config.json'), 'utf8'));
    expect(acfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8 });
    // Step 2's loss was computed by the trainer with (base weights, adapter after step 1). The
    // untouched base from disk plus checkpoint-1's adapter gives the same loss on c2, so the base
    // did not move; B is no longer zero, so the adapter did.
    const model = await Qwen2_5_VL.fromPretrained(modelDir);
    try {
      const lora = loadAdapter(model, ck1);
      const bNorm = [...lora.layers.values()].reduce((a, l) => a + f64(l.loraB).reduce((s, v) => s + v * v, 0), 0);
      expect(bNorm).toBeGreaterThan(0);
      const b = buildSftBatch(model, [c2]);
      const loss = noGrad(() => tidy(() => sftLoss(model, batchHidden(model, b), b)));
      const step2 = readMetrics(join(tmp, 'lora', SFT_METRICS_FILE)).records[1];
      expect(step2.sequences).toBe(1);
      expect(Math.abs(loss.nllSum / loss.tokens - (step2.loss as number))).toBeLessThan(1e-5);
      lora.disable();
      const baseLoss = noGrad(() => tidy(() => sftLoss(model, batchHidden(model, b), b)));
      expect(Math.abs(baseLoss.nllSum - loss.nllSum)).toBeGreaterThan(1e-4);
    } finally { model.dispose(); }
    // The adapter exported as a merged HF model gives step 2's loss too.
    const merged = join(tmp, 'lora-merged');
    await exportMergedModel({ modelDir, adapterDir: ck1, outDir: merged });
    const exported = await Qwen2_5_VL.fromPretrained(merged);
    try {
      const b = buildSftBatch(exported, [c2]);
      const loss = noGrad(() => tidy(() => sftLoss(exported, batchHidden(exported, b), b)));
      expect(Math.abs(loss.nllSum / loss.tokens - (readMetrics(join(tmp, 'lora', SFT_METRICS_FILE)).records[1].loss as number))).toBeLessThan(1e-5);
    } finally { exported.dispose(); }
    // Resuming a LoRA run as full fine-tuning is refused clearly.
    const { lora: _l, ...full } = raw('lora', { steps: 3 });
    await expect(sft(validateSftConfig(full))).rejects.toThrow(/written by a lora fine-tuning run but this config asks for full/);
  }, 120_000);

  it('a run stopped after step 3 and resumed writes the same metrics and adapter as an uninterrupted one', async () => {
    const extra = {
      steps: 5, checkpoint: { every: 2, keepLast: 3 }, data: { train: DATA, shuffleSeed: 7, maxTokens: 160 },
      optim: { lr: 5e-3, gradAccumSteps: 2, schedule: { kind: 'cosine', warmupSteps: 1 } },
      lora: { r: 4, alpha: 8, dropout: 0.2, seed: 11 },
    };
    await sft(validateSftConfig(raw('straight', extra)));
    // Killed after step 3's metrics line, before any checkpoint of step 3.
    const cfg = validateSftConfig(raw('resumed', extra));
    await expect(sft(cfg, { onStep: (m) => { if (m.step === 3) throw new Error('killed'); } })).rejects.toThrow('killed');
    expect(readMetrics(join(tmp, 'resumed', SFT_METRICS_FILE)).records.map((r) => r.step)).toEqual([1, 2, 3]);
    let info: { startStep: number; resumedFrom: string | null } | null = null;
    const res = await sft(cfg, { onStart: (i) => { info = i; } });
    expect(info!.startStep).toBe(2);
    expect(res.resumedFrom).toMatch(/checkpoint-2$/);
    const strip = (run: string) => readMetrics(join(tmp, run, SFT_METRICS_FILE)).records.map(({ step_time_s: _a, tokens_per_s: _b, ...r }) => r);
    const a = strip('straight'), b = strip('resumed');
    expect(b.map((r) => r.step)).toEqual([1, 2, 3, 4, 5]);
    expect(b).toEqual(a);
    expect(new Set(a.map((r) => r.epoch)).size).toBeGreaterThan(1);  // the runs crossed an epoch boundary
    const sha = (run: string) => JSON.parse(readFileSync(join(tmp, run, 'checkpoint-5', 'complete.json'), 'utf8')).files['model/adapter_model.safetensors'].sha256;
    expect(sha('resumed')).toBe(sha('straight'));
    expect(JSON.parse(readFileSync(join(tmp, 'resumed', 'checkpoint-5', 'rng.json'), 'utf8')).loraDropout.offset).toBeGreaterThan(0);
  }, 180_000);

  it('trains a bf16 model with LoRA (f32 loss accumulation): finite, falling loss', async () => {
    const res = await sft(validateSftConfig(raw('bf16', { dtype: 'bf16', steps: 4, optim: { lr: 2e-2 }, lora: { r: 4, alpha: 8 }, checkpoint: { every: 0, keepLast: 1 } })));
    expect(res.lastStep).toBe(4);
    const rec = readMetrics(join(tmp, 'bf16', SFT_METRICS_FILE)).records;
    for (const r of rec) { expect(Number.isFinite(r.loss)).toBe(true); expect(r.grad_norm as number).toBeGreaterThan(0); }
    expect((rec[2].loss as number) + (rec[3].loss as number)).toBeLessThan((rec[0].loss as number) + (rec[1].loss as number));
    const h = readFileSync(join(tmp, 'bf16', 'checkpoint-4', 'model', 'adapter_model.safetensors'));
    const header = JSON.parse(h.subarray(8, 8 + Number(h.readBigUInt64LE(0))).toString()) as Record<string, { dtype?: string }>;
    expect(new Set(Object.entries(header).filter(([k]) => k !== '__metadata__').map(([, v]) => v.dtype))).toEqual(new Set(['BF16']));
  }, 120_000);

  it('bad rows are warned about (file:line) and skipped; a set with no usable row fails clearly', async () => {
    const warnings: string[] = [];
    const bad = join(SFT, 'bad.jsonl');
    await sft(validateSftConfig(raw('bad', { data: { train: bad, maxTokens: 128 }, steps: 1 })), { onWarning: (w) => warnings.push(w) });
    expect(warnings.length).toBe(8);
    expect(warnings[0]).toBe(`${bad}:2: invalid_json: ${warnings[0].split(': invalid_json: ')[1]}`);
    expect(warnings.some((w) => w.startsWith(`${bad}:5: path_escape:`))).toBe(true);
    const rec = readMetrics(join(tmp, 'bad', SFT_METRICS_FILE)).records;
    expect(rec[0].skipped_rows).toBe(8);
    // Every conversation is longer than 8 tokens: each is skipped with a warning, then the run stops.
    const w2: string[] = [];
    await expect(sft(validateSftConfig(raw('short', { data: { train: DATA, maxTokens: 8 }, steps: 1 })), { onWarning: (w) => w2.push(w) }))
      .rejects.toThrow(/none of the 4 rows of .*train\.jsonl can be trained on/);
    expect(w2.length).toBe(4);
    expect(w2[0]).toMatch(/train\.jsonl:\d+: skipped: the conversation is \d+ tokens, more than data\.maxTokens \(8\)/);
  }, 120_000);
});
