// `fovea demo --quick` end to end (what CI runs): every stage runs through the user-facing code
// (data generation, the tiny model written and loaded as an HF directory, SFT, MGPO, GRPO,
// greedy evaluation, report) and the numbers it prints are well-formed. Too short to learn:
// this checks the plumbing, not the outcome.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli.js';
import { formatDemoTable } from '../src/demo/run.js';
import { readMetrics } from '../src/metrics/jsonl.js';

const tmp = mkdtempSync(join(tmpdir(), 'fovea-demo-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const io = () => {
  let out = '', err = '';
  return { io: { stdout: { write: (s: string) => { out += s; } }, stderr: { write: (s: string) => { err += s; } } }, out: () => out, err: () => err };
};

describe('fovea demo --quick', () => {
  it('runs every stage and prints a well-formed table; writes summary.json and report.html', async () => {
    const out = join(tmp, 'run');
    const c = io();
    expect(await main(['demo', '--quick', '--out', out, '--seed', '3'], c.io)).toBe(0);
    // Progress on stderr, one line per stage.
    for (const k of ['[1/6]', '[2/6]', '[3/6]', '[4/6]', '[5/6]', '[6/6]']) expect(c.err()).toContain(k);
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(s.quick).toBe(true);
    expect(s.evals.map((e: { model: string; mode: string }) => `${e.model}/${e.mode}`)).toEqual([
      'cold start (SFT)/grpo', 'cold start (SFT)/mgpo', 'GRPO/grpo', 'MGPO/mgpo',
    ]);
    for (const e of s.evals) {
      expect(e.rows).toBe(s.plan.testScenes);
      expect(e.accuracy).toBeGreaterThanOrEqual(0);
      expect(e.accuracy).toBeLessThanOrEqual(1);
      // Accuracy is a count over the test rows.
      expect(Math.abs(e.accuracy * e.rows - Math.round(e.accuracy * e.rows))).toBeLessThan(1e-9);
      if (e.mode === 'mgpo') {
        expect(e.validBoxRatio).toBeGreaterThanOrEqual(0);
        expect(e.validBoxRatio).toBeLessThanOrEqual(1);
        expect(e.meanIou).toBeGreaterThanOrEqual(0);
        expect(e.meanIou).toBeLessThanOrEqual(1);
        expect(e.hitRatio).toBeGreaterThanOrEqual(0);
        expect(e.hitRatio).toBeLessThanOrEqual(e.validBoxRatio);   // a hit needs a valid box
      } else {
        expect(e.validBoxRatio).toBeNull();
        expect(e.meanIou).toBeNull();
        expect(e.hitRatio).toBeNull();
      }
    }
    expect(c.out()).toContain(formatDemoTable(s.evals));
    // The reading diagnostic scored every test close-up, for the cold start and MGPO.
    expect(s.reading.rows).toBe(s.plan.testScenes);
    for (const v of [s.reading.coldStart, s.reading.mgpo]) { expect(v).toBeGreaterThanOrEqual(0); expect(v).toBeLessThanOrEqual(1); }
    expect(c.out()).toContain('Reading the mark from a close-up of the hidden box');
    expect(c.out()).toContain(`run directory: ${out}`);
    expect(existsSync(join(out, 'report.html'))).toBe(true);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toContain('Greedy test accuracy');
    expect(html).toContain('mgpo_accuracy');
    // Both runs logged every step; the cold start, MGPO and GRPO models are HF directories.
    for (const run of ['mgpo', 'grpo']) {
      expect(readMetrics(join(out, run, 'metrics.jsonl')).records.map((r) => r.step)).toEqual(Array.from({ length: s.plan.rl.steps }, (_, i) => i + 1));
      expect(existsSync(join(out, run, `checkpoint-${s.plan.rl.steps}`, 'model', 'config.json'))).toBe(true);
    }
    // The cold start's two stages: answering alone, then everything, from the first stage's model.
    expect(existsSync(join(out, 'sft-reading', `checkpoint-${s.plan.sft.readingSteps}`, 'model', 'model.safetensors'))).toBe(true);
    expect(existsSync(join(out, 'sft', `checkpoint-${s.plan.sft.steps}`, 'model', 'model.safetensors'))).toBe(true);
    expect(readMetrics(join(out, 'sft-reading', 'metrics.jsonl')).records).toHaveLength(s.plan.sft.readingSteps);
    expect(existsSync(join(out, 'model', 'tokenizer.json'))).toBe(true);
    // The cold start's SFT data: the train split's grounding, answering (answerRepeat times) and
    // MGPO-transcript sets, one row each per scene.
    const sftRows = readFileSync(join(out, 'data', 'train_sft.jsonl'), 'utf8').trim().split('\n');
    const answerRows = readFileSync(join(out, 'data', 'train_answer.jsonl'), 'utf8').trim().split('\n');
    expect(s.plan.sft.answerRepeat).toBe(2);
    expect(sftRows).toHaveLength((2 + s.plan.sft.answerRepeat) * s.plan.trainScenes);
    expect(sftRows.filter((r) => r === answerRows[0])).toHaveLength(s.plan.sft.answerRepeat);
  }, 300_000);

  it('rejects bad arguments clearly', async () => {
    let c = io();
    expect(await main(['demo', '--fast'], c.io)).toBe(2);
    expect(c.err()).toMatch(/unknown option "--fast"/);
    c = io();
    expect(await main(['demo', '--seed', 'x'], c.io)).toBe(2);
    expect(c.err()).toMatch(/--seed expects an integer/);
    c = io();
    expect(await main(['demo', '--seed', '-1'], c.io)).toBe(2);
    c = io();
    expect(await main(['demo', 'extra'], c.io)).toBe(2);
    expect(c.err()).toMatch(/unexpected argument "extra"/);
  });
});

describe('demo plan checks', () => {
  it('refuses a per-turn budget too small for the box answer', async () => {
    const { runDemo, DEMO_PLANS } = await import('../src/demo/run.js');
    const out = join(tmp, 'tight');
    await expect(runDemo({ quick: true, out, plan: { rl: { ...DEMO_PLANS.quick.rl, maxNewTokens: 20 } } })).rejects.toThrow(/rl\.maxNewTokens 20 cannot hold a box answer \(\d+ tokens/);
  }, 120_000);

  it('refuses an answerRepeat outside [1, 16] before doing any work', async () => {
    const { runDemo, DEMO_PLANS } = await import('../src/demo/run.js');
    for (const answerRepeat of [0, 1.5, 17]) {
      const out = join(tmp, `repeat-${answerRepeat}`);
      await expect(runDemo({ quick: true, out, plan: { sft: { ...DEMO_PLANS.quick.sft, answerRepeat } } })).rejects.toThrow(`sft.answerRepeat must be an integer in [1, 16], got ${answerRepeat}`);
      expect(existsSync(join(out, 'data'))).toBe(false);
    }
  });
});
