// The run loop and `fovea train` on the tiny Qwen2.5-VL checkpoint: config validation (unknown
// keys with a suggestion, bad values by path, defaults), 2-step GRPO and MGPO runs (metrics with
// finite losses, report, checkpoint with model/optimizer/scheduler/data), resume from a
// checkpoint (no duplicate metric lines, state restored), and the CLI's exit codes and messages.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateTrainConfig, loadTrainConfig, closestKey } from '../src/train/config.js';
import { train, METRICS_FILE, type StepMetrics } from '../src/train/trainer.js';
import { main } from '../src/cli.js';
import { readMetrics } from '../src/metrics/jsonl.js';
import { listCheckpointDirs } from '../src/checkpoint/checkpoint.js';

const FIX = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures');
const DATA = join(import.meta.dirname, 'fixtures', 'train', 'train.jsonl');
let tmp: string, modelDir: string, rewardModule: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'fovea-trainer-'));
  modelDir = join(tmp, 'model');
  cpSync(join(FIX, 'qwen25vl', 'model'), modelDir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(modelDir, f));
  // The untrained model never answers correctly (accuracy 0 everywhere → zero advantages → no
  // gradient), so a custom reward on the text's length gives the runs a real learning signal.
  rewardModule = join(tmp, 'lengthReward.mjs');
  writeFileSync(rewardModule, 'export const byLength = (ctx) => ([...(ctx.turns ?? [ctx.response]).join("")].reduce((a, c) => a + c.codePointAt(0), 0) % 7) / 6;\n');
});
afterAll(() => { if (process.env.FOVEA_KEEP_TMP) console.log('kept', tmp); else rmSync(tmp, { recursive: true, force: true }); });

function raw(algorithm: 'grpo' | 'mgpo', out: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    algorithm, model: modelDir, data: { train: DATA, shuffleSeed: 3 },
    rollout: { G: 2, maxNewTokens: 6, sampling: { temperature: 1, seed: 5 }, cropMinPixels: 3136 * 4, cropMaxPixels: 100352 },
    reward: { accuracy: 1, custom: { module: rewardModule, export: 'byLength', weight: 1 } },
    optim: { lr: 1e-3, maxGradNorm: 1.0 }, steps: 2, promptsPerStep: 1,
    checkpoint: { every: 1, keepLast: 2 }, output: join(tmp, out), ...extra,
  };
}

const io = () => {
  let out = '', err = '';
  return { io: { stdout: { write: (s: string) => { out += s; } }, stderr: { write: (s: string) => { err += s; } } }, out: () => out, err: () => err };
};

describe('train config', () => {
  it('fills defaults and resolves paths', () => {
    const c = validateTrainConfig({ model: 'm', data: { train: 'd.jsonl' }, steps: 3, output: 'runs/x' }, '/base');
    expect(c.algorithm).toBe('grpo');
    expect(c.model).toBe('/base/m');
    expect(c.data).toEqual({ train: '/base/d.jsonl', shuffle: true, shuffleSeed: 0, allowOutside: false });
    expect(c.rollout.G).toBe(8);
    expect(c.rollout.sampling).toEqual({ temperature: 1, topK: 0, topP: 1, seed: 0 });
    expect(c.optim.lr).toBe(1e-6);
    expect(c.optim.schedule.kind).toBe('constant');
    expect(c.loss.epsLow).toBe(0.2);
    expect(c.checkpoint).toEqual({ every: 50, keepLast: 3 });
    expect(c.promptsPerStep).toBe(1);
    expect(c.reward).toEqual({ accuracy: 1, format: null, iou: null, judge: null, searchPenalty: null, softOverlong: null, custom: null });
    expect(c.filters).toEqual({ dynamicSampling: { enabled: false, maxRounds: 4 }, overlong: false, rejectionSampling: null });
    expect(c.loss.beta).toBe(0);
    expect(c.lora).toBeNull();
    expect(c.templates.mgpo.turn1).toMatch(/\{question\}/);
  });
  it('names unknown keys with the closest valid key', () => {
    expect(closestKey('promptPerStep', ['steps', 'promptsPerStep'])).toBe('promptsPerStep');
    expect(() => validateTrainConfig({ model: 'm', data: { train: 'd' }, steps: 1, output: 'o', optim: { learningRat: 1 } }))
      .toThrow(/optim\.learningRat: unknown key; valid keys here: lr/);
    expect(() => validateTrainConfig({ model: 'm', data: { train: 'd' }, steps: 1, output: 'o', rolout: {} }))
      .toThrow(/rolout: unknown key \(did you mean "rollout"\?\)/);
    expect(() => validateTrainConfig({ model: 'm', data: { train: 'd', shufleSeed: 1 }, steps: 1, output: 'o' }))
      .toThrow(/data\.shufleSeed: unknown key \(did you mean "shuffleSeed"\?\)/);
  });
  it('names bad values by path, with what was expected and what was given', () => {
    const base = { model: 'm', data: { train: 'd' }, steps: 1, output: 'o' };
    expect(() => validateTrainConfig({ ...base, optim: { lr: 'fast' } })).toThrow(/optim\.lr: expected a number > 0, got "fast"/);
    expect(() => validateTrainConfig({ ...base, rollout: { G: 0 } })).toThrow(/rollout\.G: expected an integer >= 1, got 0/);
    expect(() => validateTrainConfig({ ...base, algorithm: 'ppo' })).toThrow(/algorithm: expected one of "grpo", "dapo", "mgpo", "search", got "ppo"/);
    expect(() => validateTrainConfig({ ...base, steps: 1.5 })).toThrow(/steps: expected an integer >= 1, got 1.5/);
    expect(() => validateTrainConfig({ data: { train: 'd' }, steps: 1, output: 'o' })).toThrow(/model: required/);
    expect(() => validateTrainConfig([])).toThrow(/top level/);
    // Every problem at once.
    expect(() => validateTrainConfig({ ...base, steps: 0, rollout: { G: -1 } })).toThrow(/2 problem\(s\)/);
  });
  it('reads JSON and YAML files; bad JSON, bad YAML and duplicate YAML keys fail clearly', () => {
    const f = join(tmp, 'bad.json');
    writeFileSync(f, '{ "steps": ');
    expect(() => loadTrainConfig(f)).toThrow(/is not valid JSON/);
    const y = join(tmp, 'run.yaml');
    writeFileSync(y, 'algorithm: mgpo\nmodel: m\ndata:\n  train: d.jsonl\nsteps: 3\noutput: runs/y\nrollout:\n  G: 4\n');
    const c = loadTrainConfig(y);
    expect(c.algorithm).toBe('mgpo');
    expect(c.rollout.G).toBe(4);
    expect(c.model).toBe(join(tmp, 'm'));
    writeFileSync(y, 'steps: 3\nsteps: 4\n');
    expect(() => loadTrainConfig(y)).toThrow(/is not valid YAML/);
    writeFileSync(y, 'rollout: [1, 2\n');
    expect(() => loadTrainConfig(y)).toThrow(/is not valid YAML/);
    writeFileSync(y, '- 1\n- 2\n');
    expect(() => loadTrainConfig(y)).toThrow(/expected an object .* at the top level/);
    expect(() => loadTrainConfig(join(tmp, 'nope.json'))).toThrow(/cannot read .*nope\.json \(ENOENT\)/);
  });
});

function checkRun(out: string, algorithm: string, steps: number[]): StepMetrics[] {
  const dir = join(tmp, out);
  const { records } = readMetrics(join(dir, METRICS_FILE));
  expect(records.map((r) => r.step)).toEqual(steps);
  for (const r of records) {
    expect(Number.isFinite(r.loss)).toBe(true);
    expect(Number.isFinite(r.grad_norm)).toBe(true);
    expect(r.lr).toBe(1e-3);
    expect(r.response_length).toBeGreaterThan(0);
    expect(r.grad_norm).toBeGreaterThan(0);   // a real update happened
    if (algorithm === 'mgpo') expect(r.valid_box_ratio).toBeGreaterThanOrEqual(0);
    else expect(r.valid_box_ratio).toBeUndefined();
  }
  expect(existsSync(join(dir, 'report.html'))).toBe(true);
  return records as unknown as StepMetrics[];
}

describe('train', () => {
  it('runs 2 GRPO steps: metrics, report, checkpoints with model, optimizer, scheduler, data', async () => {
    const seen: number[] = [];
    const cfg = validateTrainConfig(raw('grpo', 'grpo'));
    const res = await train(cfg, { onStep: (m) => seen.push(m.step) });
    expect(seen).toEqual([1, 2]);
    expect(res.resumedFrom).toBeNull();
    checkRun('grpo', 'grpo', [1, 2]);
    const cks = listCheckpointDirs(join(tmp, 'grpo'));
    expect(cks.map((c) => c.step)).toEqual([2, 1]);
    const ck = cks[0].dir;
    for (const f of ['model/config.json', 'model/tokenizer.json', 'model/preprocessor_config.json', 'optimizer.safetensors', 'optimizer.json', 'scheduler.json', 'data.json', 'trainer.json']) {
      expect(existsSync(join(ck, f)), f).toBe(true);
    }
    expect(JSON.parse(readFileSync(join(ck, 'scheduler.json'), 'utf8')).step).toBe(2);
    expect(JSON.parse(readFileSync(join(ck, 'data.json'), 'utf8'))).toMatchObject({ size: 2, epoch: 0, index: 2 });
    expect(JSON.parse(readFileSync(join(ck, 'optimizer.json'), 'utf8')).step).toBe(2);
    // Running again with the same config finds the run finished and does nothing.
    const again = await train(cfg);
    expect(again.startStep).toBe(2);
    expect(readMetrics(join(tmp, 'grpo', METRICS_FILE)).records.length).toBe(2);
  }, 60_000);

  it('runs 2 MGPO steps (two-turn rollouts with the crop tool)', async () => {
    const r = raw('mgpo', 'mgpo');
    (r.rollout as { G: number }).G = 3;
    await train(validateTrainConfig(r));
    checkRun('mgpo', 'mgpo', [1, 2]);
    expect(listCheckpointDirs(join(tmp, 'mgpo')).length).toBe(2);
  }, 60_000);

  it('resumes from the checkpoint via the CLI: steps 1 then 2, no duplicates, same step 2 as an uninterrupted run', async () => {
    await train(validateTrainConfig(raw('grpo', 'resume', { steps: 1 })));
    checkRun('resume', 'grpo', [1]);
    const file = join(tmp, 'resume.json');
    writeFileSync(file, JSON.stringify(raw('grpo', 'resume')));
    const c = io();
    expect(await main(['train', '--config', file], c.io)).toBe(0);
    expect(c.err()).toMatch(/resuming from .*checkpoint-1 \(step 1\)/);
    expect(c.out()).toMatch(/done, steps 2\.\.2/);
    const resumed = checkRun('resume', 'grpo', [1, 2]);
    // The uninterrupted GRPO run of the first test used the same config: same data, same sampling
    // seeds, same restored optimizer state, so step 2 matches it.
    const straight = readMetrics(join(tmp, 'grpo', METRICS_FILE)).records as unknown as StepMetrics[];
    expect(resumed[1].reward_mean).toBe(straight[1].reward_mean);
    expect(resumed[1].response_length).toBe(straight[1].response_length);
    expect(resumed[1].loss).toBeCloseTo(straight[1].loss, 4);
    // The weights and AdamW moments after step 2 equal the uninterrupted run's, byte for byte
    // (the checkpoint manifests hash every file).
    const manifest = (run: string) => JSON.parse(readFileSync(join(tmp, run, 'checkpoint-2', 'complete.json'), 'utf8')).files;
    const a = manifest('resume'), b = manifest('grpo');
    for (const f of ['model/model.safetensors', 'optimizer.safetensors', 'scheduler.json', 'data.json']) {
      expect(a[f], f).toBeDefined();
      expect(a[f].sha256, f).toBe(b[f].sha256);
    }
  }, 60_000);
});

describe('fovea CLI', () => {
  it('prints help and rejects bad arguments with clear messages and exit codes', async () => {
    let c = io();
    expect(await main(['--help'], c.io)).toBe(0);
    expect(c.out()).toMatch(/train --config run\.yaml/);
    c = io();
    expect(await main([], c.io)).toBe(2);
    c = io();
    expect(await main(['train'], c.io)).toBe(2);
    expect(c.err()).toMatch(/missing --config/);
    c = io();
    expect(await main(['train', '--config'], c.io)).toBe(2);
    expect(c.err()).toMatch(/--config needs a file path/);
    c = io();
    expect(await main(['train', '--confg', 'x.json'], c.io)).toBe(2);
    expect(c.err()).toMatch(/unknown argument "--confg"/);
    c = io();
    expect(await main(['frobnicate'], c.io)).toBe(2);
    expect(c.err()).toMatch(/unknown command "frobnicate"/);
    c = io();
    expect(await main(['train', '--config', join(tmp, 'missing.json')], c.io)).toBe(1);
    expect(c.err()).toMatch(/^fovea: error: train config: cannot read/);
    expect(c.err()).not.toMatch(/\n\s+at /);   // no stack without FOVEA_DEBUG=1
    const f = join(tmp, 'typo.json');
    writeFileSync(f, JSON.stringify({ ...raw('grpo', 'typo'), stepz: 2 }));
    c = io();
    expect(await main(['train', '--config', f], c.io)).toBe(1);
    expect(c.err()).toMatch(/stepz: unknown key \(did you mean "steps"\?\)/);
  });
});
