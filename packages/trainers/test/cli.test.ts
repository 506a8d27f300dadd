// `fovea eval`, `fovea chat` and `fovea doctor`, driven in-process through main(argv, io):
// usage errors (unknown or misspelled flags, missing values, bad values, stray arguments) exit 2
// with a message naming the flag; missing paths exit 1 naming the path; eval prints progress on
// stderr and a summary table on stdout (numbers equal to evaluate()'s); chat prints the grounding
// turn, a box line and an answer line equal to chat()'s result; doctor prints the native
// engine's report and exits by its verdict.
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, parseFlags, formatChatResult, runDoctor } from '../src/cli.js';
import { evaluate } from '../src/eval/evaluate.js';
import { chat } from '../src/chat/chat.js';

const FIX = join(import.meta.dirname, '..', '..', 'models', 'test', 'fixtures');
const DATA_DIR = join(import.meta.dirname, 'fixtures', 'train');
const DATA = join(DATA_DIR, 'train.jsonl');
const RED = join(DATA_DIR, 'red.png');
const FAST = ['--max-new-tokens', '6', '--crop-min-pixels', String(3136 * 4), '--crop-max-pixels', '100352'];
let tmp: string, modelDir: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'fovea-cli-'));
  modelDir = join(tmp, 'model');
  cpSync(join(FIX, 'qwen25vl', 'model'), modelDir, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(FIX, 'tokenizer', f), join(modelDir, f));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const io = () => {
  let out = '', err = '';
  return { io: { stdout: { write: (s: string) => { out += s; } }, stderr: { write: (s: string) => { err += s; } } }, out: () => out, err: () => err };
};

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = io();
  const code = await main(argv, c.io);
  return { code, out: c.out(), err: c.err() };
}

describe('flag parsing', () => {
  it('reads --flag value, --flag=value, switches and positionals', () => {
    const table = { '--model': 'path', '--limit': 'int', '--clamp-boxes': 'bool', '--top-p': 'prob', '--choices': 'list' } as const;
    const r = parseFlags('x', ['--model', 'm', '--limit=3', '--clamp-boxes', 'what?', '--top-p', '0.5', '--choices', 'red | blue', '--', '--not-a-flag'], { ...table });
    expect(r.flags).toEqual({ '--model': 'm', '--limit': 3, '--clamp-boxes': true, '--top-p': 0.5, '--choices': ['red', 'blue'] });
    expect(r.positional).toEqual(['what?', '--not-a-flag']);
  });
});

describe('fovea eval / chat usage errors (exit 2)', () => {
  const cases: [string[], RegExp][] = [
    [['eval'], /fovea eval: missing --model; usage: fovea eval --model DIR --data file\.jsonl/],
    [['eval', '--model', 'm'], /missing --data/],
    [['eval', '--model'], /--model needs a value/],
    [['eval', '--model', '--data', 'd'], /--model needs a value/],
    [['eval', '--modell', 'm'], /unknown option "--modell" \(did you mean --model\?\); options: --model --mode/],
    [['eval', '--model', 'm', '--data', 'd', '--max-new-tokens', 'abc'], /--max-new-tokens expects an integer >= 1, got "abc"/],
    [['eval', '--model', 'm', '--data', 'd', '--limit', '0'], /--limit expects an integer >= 1, got "0"/],
    [['eval', '--model', 'm', '--data', 'd', '--mode', 'ppo'], /--mode expects mgpo or grpo, got "ppo"/],
    [['eval', '--model', 'm', '--data', 'd', 'extra'], /unexpected argument "extra"/],
    [['eval', '--model', 'm', '--model', 'n', '--data', 'd'], /--model is given twice/],
    [['eval', '--model', 'm', '--data', 'd', '--clamp-boxes=yes'], /--clamp-boxes is a switch and takes no value/],
    [['eval', '-x'], /unknown option "-x"/],
    [['chat', '--model', 'm', 'q?'], /fovea chat: missing --image; usage: fovea chat --model DIR --image big\.jpg "question"/],
    [['chat', '--model', 'm', '--image', 'i.jpg'], /missing the question/],
    [['chat', '--model', 'm', '--image', 'i.jpg', 'what', 'color'], /expected one question, got 2 arguments \("what" "color"\); quote the question/],
    [['chat', '--model', 'm', '--image', 'i.jpg', '--top-p', '1.5', 'q'], /--top-p expects a number in \(0, 1\], got "1\.5"/],
    [['chat', '--model', 'm', '--image', 'i.jpg', '--temperature', '-1', 'q'], /--temperature expects a number >= 0/],
    [['chat', '--model', 'm', '--image', 'i.jpg', '--seed', '3', 'q'], /only apply when sampling; add --temperature/],
    [['chat', '--model', 'm', '--image', 'i.jpg', '--choices', 'a||b', 'q'], /--choices expects options separated by \|/],
    [['chat', '--model', 'm', '--image', 'i.jpg', '--data', 'd', 'q'], /fovea chat: unknown option "--data"/],
    [['doctor', 'now'], /fovea doctor: takes no arguments, got "now"/],
  ];
  for (const [argv, msg] of cases) {
    it(argv.join(' '), async () => {
      const r = await run(argv);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(msg);
      expect(r.out).toBe('');
    });
  }

  it('help lists eval, chat and doctor', async () => {
    const r = await run(['eval', '--help']);
    expect(r.code).toBe(0);
    for (const s of ['eval --model DIR --data FILE.jsonl', 'chat --model DIR --image FILE "question"', 'doctor']) expect(r.out).toContain(s);
  });
});

describe('fovea eval / chat on the tiny model', () => {
  it('missing paths exit 1 and name the path', async () => {
    let r = await run(['eval', '--model', join(tmp, 'nomodel'), '--data', DATA]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^fovea: error: evaluate: model directory .*nomodel not found/m);
    r = await run(['eval', '--model', modelDir, '--data', join(tmp, 'nodata.jsonl')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/data file .*nodata\.jsonl not found/);
    r = await run(['chat', '--model', modelDir, '--image', join(tmp, 'big.jpg'), 'q?']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/chat: image .*big\.jpg not found/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('eval: progress on stderr, a summary table on stdout with evaluate()\'s numbers, results file', async () => {
    const out = join(tmp, 'res.jsonl');
    const r = await run(['eval', '--model', modelDir, '--data', DATA, ...FAST, '--out', out]);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/fovea eval: reading .*train\.jsonl and loading model /);
    expect(r.err).toMatch(/fovea eval: 2 row\(s\), mode mgpo, greedy/);
    expect(r.err).toMatch(/eval mgpo 1\/2 50%/);
    expect(r.err).toMatch(/eval mgpo 2\/2 100%/);
    const e = await evaluate({ modelDir, dataFile: DATA, maxNewTokens: 6, cropMinPixels: 3136 * 4, cropMaxPixels: 100352 });
    expect(r.out).toContain(`mode mgpo, greedy`);
    expect(r.out).toMatch(new RegExp(`accuracy +${e.accuracy.toFixed(4)}  \\(${e.correct}/2\\)`));
    expect(r.out).toMatch(new RegExp(`valid box ratio +${e.validBoxRatio!.toFixed(4)}`));
    expect(r.out).toMatch(/mean IoU +n\/a \(no row has a bbox\)/);
    expect(r.out).toMatch(new RegExp(`truncated +${e.truncated}/2`));
    expect(r.out).toContain(`results          ${out}`);
    expect(readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l))).toEqual(JSON.parse(JSON.stringify(e.perRow)));
    const g = await run(['eval', '--model', modelDir, '--data', DATA, '--mode', 'grpo', '--max-new-tokens', '4', '--limit', '1']);
    expect(g.code).toBe(0);
    expect(g.out).toMatch(/\(first 1 of 2\)/);
    expect(g.out).toMatch(/valid box ratio +n\/a \(grpo: no grounding turn\)/);
  }, 120_000);

  it('chat prints the grounding turn, a box line and an answer line', async () => {
    const r = await run(['chat', '--model', modelDir, '--image', RED, ...FAST, '--choices', 'red|blue', 'What color is the square?']);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/fovea chat: generating \(mgpo: ground → crop → answer, greedy\)/);
    const c = await chat({ modelDir, imagePath: RED, question: 'What color is the square?', choices: ['red', 'blue'], maxNewTokens: 6, cropMinPixels: 3136 * 4, cropMaxPixels: 100352 });
    expect(r.out).toBe(formatChatResult(c));
    expect(r.out).toMatch(/^turn 1 \(grounding\):$/m);
    expect(r.out).toMatch(/^box( \(model frame \d+x\d+\): \[.*\]\nbox \(original 96x72\): \[.*\]|: invalid \([a-z-]+\): )/m);
    expect(r.out).toMatch(/^answer: /m);
    const g = await run(['chat', '--model', modelDir, '--image', RED, '--mode', 'grpo', '--max-new-tokens', '4', '--temperature', '0.7', '--seed', '3', 'Describe it.']);
    expect(g.code).toBe(0);
    expect(g.err).toMatch(/grpo: one turn, temperature 0\.7/);
    expect(g.out).toMatch(/^box: none \(grpo mode has no grounding turn\)$/m);
    expect(g.out).toMatch(/^answer: /m);
  }, 120_000);

  it('formats a valid box in both frames and an extracted answer', () => {
    const text = formatChatResult({
      mode: 'mgpo', turn1Text: '```json\n[{"bbox_2d": [28, 14, 84.5, 70]}]\n```', modelFrame: [112, 140], originalSize: [720, 900],
      box: { valid: true, boxModel: [28, 14, 84.5, 70], boxOriginal: [180, 90, 544, 450] },
      answerText: 'It is red. \\boxed{A}', answer: { text: 'A', source: 'boxed' }, truncated: false, finishReason: 'eos',
    });
    expect(text).toContain('box (model frame 140x112): [28, 14, 84.5, 70]\nbox (original 900x720): [180, 90, 544, 450]\n');
    expect(text).toContain('answer: A  (from boxed)');
    expect(text).toContain('turn 2 (answer):\n  It is red. \\boxed{A}');
  });
});

describe('fovea doctor', () => {
  it('prints the native engine report and exits by its verdict', async () => {
    const { doctor } = await import('@fovea/native/doctor' as string) as { doctor: () => Promise<{ ok: boolean; text: string }> };
    const d = await doctor();
    const r = await run(['doctor']);
    expect(r.code).toBe(d.ok ? 0 : 1);
    expect(r.out).toMatch(/^Fovea doctor/);
    expect(r.out).toMatch(/native addon/);
  }, 60_000);

  it('a doctor module that cannot load, or lacks doctor(), or reports a failure exits 1 with a message', async () => {
    let c = io();
    expect(await runDoctor([], c.io, () => Promise.reject(new Error('Cannot find module x')))).toBe(1);
    expect(c.err()).toMatch(/fovea doctor: cannot load @fovea\/native\/doctor \(Cannot find module x\); is @fovea\/native installed\?/);
    c = io();
    expect(await runDoctor([], c.io, async () => ({ other: 1 }))).toBe(1);
    expect(c.err()).toMatch(/does not export a doctor\(\) function/);
    c = io();
    expect(await runDoctor([], c.io, async () => ({ doctor: async () => ({ ok: false, text: 'addon: not loaded', report: {} }) }))).toBe(1);
    expect(c.out()).toBe('addon: not loaded\n');
  });
});

describe('fovea sft and fovea export', () => {
  it('runs a LoRA SFT from a YAML config, then merges its adapter into an HF checkpoint directory', async () => {
    const { writeFileSync, existsSync } = await import('node:fs');
    const sftData = join(import.meta.dirname, 'fixtures', 'sft', 'train.jsonl');
    const cfg = join(tmp, 'sft.yaml');
    writeFileSync(cfg, [
      `model: ${modelDir}`, `data: { train: ${sftData}, maxTokens: 256 }`, 'lora: { r: 4, alpha: 8, targets: [q_proj, v_proj] }',
      'optim: { lr: 0.003 }', 'steps: 2', 'checkpoint: { every: 2, keepLast: 1 }', `output: ${join(tmp, 'sft-run')}`, '',
    ].join('\n'));
    let r = await run(['sft', '--config', cfg]);
    expect(r.err + r.out).toMatch(/fovea sft: done, steps 1\.\.2/);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/sft .*2\/2/);   // progress on stderr
    const adapter = join(tmp, 'sft-run', 'checkpoint-2', 'model');
    expect(existsSync(join(adapter, 'adapter_model.safetensors'))).toBe(true);
    const out = join(tmp, 'merged');
    r = await run(['export', '--model', modelDir, '--adapter', adapter, '--out', out]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/merged 4 LoRA layers; wrote \d+ tensors/);
    expect(existsSync(join(out, 'config.json'))).toBe(true);
    expect(existsSync(join(out, 'tokenizer.json'))).toBe(true);
    // Refuses to overwrite without --overwrite; usage errors exit 2.
    r = await run(['export', '--model', modelDir, '--adapter', adapter, '--out', out]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/exists/);
    expect((await run(['export', '--model', modelDir, '--out', out])).err).toMatch(/missing --adapter/);
    expect((await run(['sft'])).code).toBe(2);
    expect((await run(['sft', '--config', join(tmp, 'nope.yaml')])).code).toBe(1);
  }, 120_000);
});
