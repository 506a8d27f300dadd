#!/usr/bin/env node
// The `fovea` command (the bin of @fovea/trainers):
//   train   runs or resumes a GRPO/MGPO run (progress bar on stderr);
//   eval    greedy evaluation of a model on a JSONL dataset (progress on stderr, summary on stdout);
//   chat    one question about one image: ground → crop → answer, prints the box and the answer;
//   sft     supervised fine-tuning (cold start; full or LoRA) from a JSON/YAML config;
//   export  merges a LoRA adapter into its base model and writes an HF checkpoint directory;
//   doctor  the native engine's environment report (@fovea/native/doctor).
// Exit codes: 0 ok, 1 failure (a missing path, a bad model, a failed check), 2 usage error
// (unknown command or flag, a flag without its value, a bad value). Errors print one clear
// message; the stack only with FOVEA_DEBUG=1. `main(argv, io)` is exported so tests drive the
// CLI in-process.
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { loadTrainConfig, closestKey } from './train/config.js';
import { train } from './train/trainer.js';
import { ProgressBar, type ProgressStream } from './report/progress.js';
import { evaluate, type EvalResult } from './eval/evaluate.js';
import { chat, type ChatResult } from './chat/chat.js';
import { loadSftConfig } from './sft/config.js';
import { sft } from './sft/trainer.js';
import { exportMergedModel } from './lora/export.js';
import { formatDemoTable, runDemo } from './demo/run.js';

export const USAGE = `Usage: fovea <command> [options]

Commands:
  train --config run.yaml   Run (or resume) a GRPO/DAPO/MGPO/search training run described by a
                            YAML or JSON config. Writes metrics.jsonl, report.html and checkpoints
                            into the config's "output" folder; rerun to resume.
  sft --config sft.yaml     Supervised fine-tuning (cold start) on packed conversations, loss on
                            assistant tokens only; full or LoRA. Same outputs and resume as train.
  export --model DIR --adapter DIR --out DIR [--overwrite]
                            Merge a LoRA adapter (PEFT layout) into its base model and write a
                            Hugging Face checkpoint directory (same tensor names, dtypes, shapes).
  eval --model DIR --data FILE.jsonl
                            Greedy evaluation (one rollout per row): accuracy, valid-box ratio and
                            mean IoU against the rows' bbox (mgpo). Progress on stderr, a summary
                            table on stdout.
      --mode mgpo|grpo        mgpo (default): ground → crop → answer; grpo: one turn
      --max-new-tokens N      tokens per assistant turn (default 256)
      --max-total-tokens N    cap on the whole conversation
      --limit N               only the first N valid rows
      --batch N               rows per rollout call (progress granularity, default 1)
      --out FILE.jsonl        write one result line per row
      --allow-outside         image paths may leave the dataset's folder
  chat --model DIR --image FILE "question"
                            Ask one question about one image; prints the grounding turn, the box
                            in the model's frame and in the original image's pixels, and the answer.
      --mode mgpo|grpo        as for eval (default mgpo)
      --max-new-tokens N      tokens per assistant turn (default 256)
      --choices "A text|B text"  multiple choice: options separated by |, answer read as a letter
      --temperature T         0 = greedy (default); > 0 samples, with --top-k N, --top-p P, --seed N
  demo [--quick] [--out DIR] [--seed N]
                            The main job at small scale: generate a visual-search task, write a
                            tiny Qwen2.5-VL, cold-start it (SFT), train MGPO and a GRPO baseline
                            with the same budget, and evaluate them greedily (≈8 min on 2 cores;
                            --quick ≈10 s and too short to learn). Prints a table; writes
                            report.html and summary.json in DIR (default ./fovea-demo).
  doctor                    Check the native engine: addon, CPU features, CUDA sidecar and devices.

Options shared by eval and chat:
  --min-pixels N, --max-pixels N            pixel budget of the input image(s)
  --crop-min-pixels N, --crop-max-pixels N  pixel budget of the enlarged crop (mgpo)
  --clamp-boxes                             clip out-of-image boxes and grow small ones instead of rejecting
  -h, --help                                Show this help.
Exit codes: 0 ok, 1 failure (missing file, bad model, failed check), 2 usage error.
Environment:
  FOVEA_DEBUG=1             Print stack traces on errors.
`;

export class UsageError extends Error {}

export interface CliIo { stdout: ProgressStream; stderr: ProgressStream }

function parseTrainArgs(args: string[], cmd = 'train'): { config: string } {
  let config: string | undefined;
  const usage = `fovea ${cmd} --config ${cmd === 'train' ? 'run' : cmd}.yaml`;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--config' || a === '-c') {
      if (i + 1 >= args.length || args[i + 1].startsWith('-')) throw new UsageError(`fovea ${cmd}: ${a} needs a file path (${usage})`);
      config = args[++i];
    } else if (a.startsWith('--config=')) config = a.slice('--config='.length);
    else throw new UsageError(`fovea ${cmd}: unknown argument ${JSON.stringify(a)}; usage: ${usage}`);
  }
  if (!config) throw new UsageError(`fovea ${cmd}: missing --config <file.yaml|file.json>; usage: ${usage}`);
  return { config };
}

async function runSft(args: string[], io: CliIo): Promise<number> {
  const { config: file } = parseTrainArgs(args, 'sft');
  const config = loadSftConfig(file);
  let bar: ProgressBar | null = null;
  const res = await sft(config, {
    onWarning: (m) => io.stderr.write(`warning: ${m}\n`),
    onStart: ({ totalSteps, startStep, resumedFrom }) => {
      if (resumedFrom) io.stderr.write(`resuming from ${resumedFrom} (step ${startStep})\n`);
      bar = new ProgressBar({ total: totalSteps - startStep, label: 'sft', stream: io.stderr, logEvery: 1 });
    },
    onStep: (m) => (bar as ProgressBar | null)?.tick(1, { step: m.step, loss: m.loss, lr: m.lr }),
  });
  io.stdout.write(`fovea sft: done, steps ${res.startStep + 1}..${res.lastStep}; run ${res.runDir}\n`);
  return 0;
}

async function runDemoCommand(args: string[], io: CliIo): Promise<number> {
  const { flags, positional } = parseFlags('demo', args, { '--quick': 'bool', '--out': 'path', '--seed': 'seed' });
  if (positional.length) throw new UsageError(`fovea demo: unexpected argument ${JSON.stringify(positional[0])}; usage: fovea demo [--quick] [--out DIR] [--seed N]`);
  const seed = flags['--seed'] as number | undefined;
  if (seed !== undefined && seed < 0) throw new UsageError(`fovea demo: --seed expects an integer >= 0, got ${seed}`);
  const t0 = performance.now();
  const s = await runDemo({
    quick: flags['--quick'] === true, out: flags['--out'] as string | undefined, seed,
    log: (line) => io.stderr.write(`${line}  (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`),
  });
  io.stdout.write(`\n${formatDemoTable(s.evals)}\n\n`);
  if (s.rlIou.first !== null) io.stdout.write(`MGPO crop IoU during RL: ${s.rlIou.first.toFixed(3)} (first quarter of steps) → ${s.rlIou.last!.toFixed(3)} (last quarter)\n`);
  io.stdout.write(`Reading the mark from a close-up of the hidden box (diagnostic, ${s.reading.rows} rows): cold start ${s.reading.coldStart.toFixed(3)}, MGPO ${s.reading.mgpo.toFixed(3)}\n`);
  io.stdout.write(`${s.quick ? 'quick run (too short to learn: it checks that every stage runs)' : 'full run'}; ${s.seconds.total.toFixed(0)} s\n`);
  io.stdout.write(`report: ${s.report}\nrun directory: ${s.runDir}\n`);
  return 0;
}

async function runExport(args: string[], io: CliIo): Promise<number> {
  const usage = 'fovea export --model DIR --adapter DIR --out DIR [--overwrite]';
  const { flags, positional } = parseFlags('export', args, { '--model': 'path', '--adapter': 'path', '--out': 'path', '--overwrite': 'bool' });
  if (positional.length) throw new UsageError(`fovea export: unexpected argument ${JSON.stringify(positional[0])}; usage: ${usage}`);
  const res = await exportMergedModel({
    modelDir: required('export', flags, '--model', usage), adapterDir: required('export', flags, '--adapter', usage),
    outDir: required('export', flags, '--out', usage), overwrite: flags['--overwrite'] === true,
  });
  io.stdout.write(`fovea export: merged ${res.mergedLayers} LoRA layers; wrote ${res.tensors} tensors (${res.dtype}) to ${res.outDir}\n`);
  return 0;
}

// ---- eval / chat flags: one table per command, one parser ----

/** int: integer >= 1; count: integer >= 0; seed: any safe integer; temp: number >= 0; prob: (0, 1]. */
type FlagKind = 'path' | 'mode' | 'int' | 'count' | 'seed' | 'temp' | 'prob' | 'list' | 'bool';
type Flags = Record<string, string | number | boolean | string[]>;

const COMMON_FLAGS: Record<string, FlagKind> = {
  '--model': 'path', '--mode': 'mode', '--max-new-tokens': 'int', '--min-pixels': 'int', '--max-pixels': 'int',
  '--crop-min-pixels': 'int', '--crop-max-pixels': 'int', '--clamp-boxes': 'bool',
};
const EVAL_FLAGS: Record<string, FlagKind> = {
  ...COMMON_FLAGS, '--data': 'path', '--limit': 'int', '--batch': 'int', '--out': 'path', '--max-total-tokens': 'int', '--allow-outside': 'bool',
};
const CHAT_FLAGS: Record<string, FlagKind> = {
  ...COMMON_FLAGS, '--image': 'path', '--choices': 'list', '--temperature': 'temp', '--top-k': 'count', '--top-p': 'prob', '--seed': 'seed',
};

function flagValue(cmd: string, flag: string, kind: FlagKind, raw: string): string | number | string[] {
  const bad = (want: string) => new UsageError(`fovea ${cmd}: ${flag} expects ${want}, got ${JSON.stringify(raw)}`);
  const num = Number(raw);
  switch (kind) {
    case 'path': if (raw === '') throw bad('a path'); return raw;
    case 'mode': if (raw !== 'mgpo' && raw !== 'grpo') throw bad('mgpo or grpo'); return raw;
    case 'int': if (raw.trim() === '' || !Number.isSafeInteger(num) || num < 1) throw bad('an integer >= 1'); return num;
    case 'count': if (raw.trim() === '' || !Number.isSafeInteger(num) || num < 0) throw bad('an integer >= 0'); return num;
    case 'seed': if (raw.trim() === '' || !Number.isSafeInteger(num)) throw bad('an integer'); return num;
    case 'temp': if (raw.trim() === '' || !Number.isFinite(num) || num < 0) throw bad('a number >= 0 (0 = greedy)'); return num;
    case 'prob': if (raw.trim() === '' || !(num > 0 && num <= 1)) throw bad('a number in (0, 1]'); return num;
    case 'list': {
      const items = raw.split('|').map((x) => x.trim());
      if (items.some((x) => x === '')) throw bad('options separated by | ("red|blue"), none empty');
      return items;
    }
    default: throw new Error(`fovea ${cmd}: flag kind ${kind as string}`);
  }
}

/** Parses `--flag value`, `--flag=value` and boolean `--flag`; the rest (and all after `--`) is positional. */
export function parseFlags(cmd: string, args: readonly string[], table: Record<string, FlagKind>): { flags: Flags; positional: string[] } {
  const flags: Flags = {};
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') { positional.push(...args.slice(i + 1)); break; }
    if (!a.startsWith('--') || a === '-') {
      if (a.startsWith('-') && a.length > 1 && Number.isNaN(Number(a))) throw new UsageError(`fovea ${cmd}: unknown option ${JSON.stringify(a)} (fovea --help)`);
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(0, eq) : a;
    const kind = table[name];
    if (!kind) {
      const near = closestKey(name, Object.keys(table));
      throw new UsageError(`fovea ${cmd}: unknown option ${JSON.stringify(name)}${near ? ` (did you mean ${near}?)` : ''}; options: ${Object.keys(table).join(' ')}`);
    }
    if (name in flags) throw new UsageError(`fovea ${cmd}: ${name} is given twice`);
    if (kind === 'bool') {
      if (eq >= 0) throw new UsageError(`fovea ${cmd}: ${name} is a switch and takes no value`);
      flags[name] = true;
      continue;
    }
    let raw: string;
    if (eq >= 0) raw = a.slice(eq + 1);
    else {
      const next = args[i + 1];
      if (next === undefined || next.startsWith('--')) throw new UsageError(`fovea ${cmd}: ${name} needs a value (fovea --help)`);
      raw = next;
      i++;
    }
    flags[name] = flagValue(cmd, name, kind, raw);
  }
  return { flags, positional };
}

function required(cmd: string, flags: Flags, name: string, example: string): string {
  const v = flags[name];
  if (typeof v !== 'string') throw new UsageError(`fovea ${cmd}: missing ${name}; usage: ${example}`);
  return v;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

function pixelOptions(f: Flags) {
  return {
    minPixels: num(f['--min-pixels']), maxPixels: num(f['--max-pixels']),
    cropMinPixels: num(f['--crop-min-pixels']), cropMaxPixels: num(f['--crop-max-pixels']),
    clampBoxes: f['--clamp-boxes'] === true,
  };
}

const fmt = (v: number | null, digits = 4) => (v === null ? 'n/a' : v.toFixed(digits));

/** The eval summary table (stdout). */
export function formatEvalSummary(r: EvalResult, info: { model: string; data: string }): string {
  const rows: [string, string][] = [
    ['accuracy', `${fmt(r.accuracy)}  (${r.correct}/${r.rows})`],
    ['valid box ratio', r.validBoxRatio === null ? 'n/a (grpo: no grounding turn)' : `${fmt(r.validBoxRatio)}  (${r.perRow.filter((x) => x.box?.valid).length}/${r.rows})`],
    ['mean IoU', r.meanIou === null ? `n/a (${r.mode === 'grpo' ? 'grpo: no box' : 'no row has a bbox'})` : `${fmt(r.meanIou)}  (${r.iouRows} row(s) with bbox)`],
    ['truncated', `${r.truncated}/${r.rows}`],
  ];
  if (r.outFile) rows.push(['results', r.outFile]);
  const w = Math.max(...rows.map(([k]) => k.length));
  const skipped = r.skippedRows ? `, ${r.skippedRows} skipped` : '';
  const limited = r.rows < r.datasetRows ? ` (first ${r.rows} of ${r.datasetRows})` : '';
  return `fovea eval: ${info.data}${limited}${skipped}\n  model ${info.model}, mode ${r.mode}, greedy\n` +
    rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

async function runEval(args: string[], io: CliIo): Promise<number> {
  const example = 'fovea eval --model DIR --data file.jsonl';
  const { flags: f, positional } = parseFlags('eval', args, EVAL_FLAGS);
  if (positional.length) throw new UsageError(`fovea eval: unexpected argument ${JSON.stringify(positional[0])}; usage: ${example}`);
  const model = required('eval', f, '--model', example), data = required('eval', f, '--data', example);
  let bar: ProgressBar | null = null;
  const mode = (f['--mode'] as 'mgpo' | 'grpo' | undefined) ?? 'mgpo';
  io.stderr.write(`fovea eval: reading ${data} and loading model ${model}\n`);
  const res = await evaluate({
    modelDir: model, dataFile: data, mode, ...pixelOptions(f),
    maxNewTokens: num(f['--max-new-tokens']), maxTotalTokens: num(f['--max-total-tokens']),
    limit: num(f['--limit']), batchPrompts: num(f['--batch']), allowOutside: f['--allow-outside'] === true,
    outFile: f['--out'] as string | undefined,
    onWarning: (m) => io.stderr.write(`warning: ${m}\n`),
    onStart: ({ rows }) => {
      io.stderr.write(`fovea eval: ${rows} row(s), mode ${mode}, greedy\n`);
      bar = new ProgressBar({ total: rows, label: `eval ${mode}`, stream: io.stderr, logEvery: 1 });
    },
    onProgress: (done, _total, s) => (bar as ProgressBar | null)?.update(done, {
      acc: Number(s.accuracy.toFixed(3)), ...(s.validBoxRatio !== null ? { box: Number(s.validBoxRatio.toFixed(3)) } : {}),
    }),
  });
  (bar as ProgressBar | null)?.finish();
  io.stdout.write(formatEvalSummary(res, { model, data }));
  return 0;
}

const boxText = (b: readonly number[]) => `[${b.map((v) => (Number.isInteger(v) ? v : Number(v.toFixed(1)))).join(', ')}]`;
const indent = (t: string) => (t === '' ? '  (empty)' : t.split('\n').map((l) => `  ${l}`).join('\n'));

/** What `fovea chat` prints (stdout). */
export function formatChatResult(r: ChatResult): string {
  const [mh, mw] = r.modelFrame, [oh, ow] = r.originalSize;
  const lines: string[] = [];
  if (r.mode === 'mgpo') {
    lines.push('turn 1 (grounding):', indent(r.turn1Text ?? ''));
    const b = r.box!;
    if (b.valid) {
      lines.push(`box (model frame ${mw}x${mh}): ${boxText(b.boxModel!)}`);
      lines.push(`box (original ${ow}x${oh}): ${boxText(b.boxOriginal!)}`);
    } else {
      lines.push(`box: invalid (${b.reason}): ${b.message ?? ''} — the original image was shown again`);
    }
    lines.push('turn 2 (answer):', indent(r.answerText));
  } else {
    lines.push('box: none (grpo mode has no grounding turn)', 'reply:', indent(r.answerText));
  }
  lines.push(r.answer ? `answer: ${r.answer.text}  (from ${r.answer.source})` : 'answer: none found in the reply');
  if (r.truncated) lines.push('note: the reply hit its token budget (--max-new-tokens)');
  return lines.join('\n') + '\n';
}

async function runChat(args: string[], io: CliIo): Promise<number> {
  const example = 'fovea chat --model DIR --image big.jpg "question"';
  const { flags: f, positional } = parseFlags('chat', args, CHAT_FLAGS);
  const model = required('chat', f, '--model', example), image = required('chat', f, '--image', example);
  if (positional.length === 0) throw new UsageError(`fovea chat: missing the question; usage: ${example}`);
  if (positional.length > 1) {
    throw new UsageError(`fovea chat: expected one question, got ${positional.length} arguments (${positional.map((p) => JSON.stringify(p)).join(' ')}); quote the question`);
  }
  if (positional[0].trim() === '') throw new UsageError('fovea chat: the question is empty');
  const temperature = num(f['--temperature']) ?? 0;
  if (temperature === 0 && (f['--top-k'] !== undefined || f['--top-p'] !== undefined || f['--seed'] !== undefined)) {
    throw new UsageError('fovea chat: --top-k, --top-p and --seed only apply when sampling; add --temperature T (> 0)');
  }
  const res = await chat({
    modelDir: model, imagePath: image, question: positional[0], mode: (f['--mode'] as 'mgpo' | 'grpo' | undefined) ?? 'mgpo',
    maxNewTokens: num(f['--max-new-tokens']), choices: f['--choices'] as string[] | undefined, ...pixelOptions(f),
    sampling: { temperature, topK: num(f['--top-k']) ?? 0, topP: num(f['--top-p']) ?? 1, seed: num(f['--seed']) ?? 0 },
    onStage: (m) => io.stderr.write(`fovea chat: ${m}\n`),
  });
  io.stdout.write(formatChatResult(res));
  return 0;
}

/** The doctor module's path; a variable so TypeScript does not need its types at build time. */
const DOCTOR_MODULE = '@fovea/native/doctor';

/** `fovea doctor`; `load` imports the doctor module (replaceable so tests can make it fail). */
export async function runDoctor(args: string[], io: CliIo, load: () => Promise<unknown> = () => import(DOCTOR_MODULE)): Promise<number> {
  if (args.length) throw new UsageError(`fovea doctor: takes no arguments, got ${JSON.stringify(args[0])}`);
  let mod: { doctor?: () => Promise<{ ok: boolean; text: string }> };
  try {
    mod = await load() as typeof mod;
  } catch (e) {
    io.stderr.write(`fovea doctor: cannot load ${DOCTOR_MODULE} (${(e as Error).message}); is @fovea/native installed? (npm ci at the repository root)\n`);
    return 1;
  }
  if (!mod || typeof mod.doctor !== 'function') {
    io.stderr.write(`fovea doctor: ${DOCTOR_MODULE} does not export a doctor() function; reinstall @fovea/native\n`);
    return 1;
  }
  const r = await mod.doctor();
  io.stdout.write(r.text.endsWith('\n') ? r.text : `${r.text}\n`);
  return r.ok ? 0 : 1;
}

/** Runs the CLI; returns the exit code (0 ok, 1 failure, 2 usage error). */
export async function main(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  try {
    const [cmd, ...rest] = argv;
    if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
      io.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    }
    if (rest.includes('-h') || rest.includes('--help')) { io.stdout.write(USAGE); return 0; }
    if (cmd === 'eval') return await runEval(rest, io);
    if (cmd === 'chat') return await runChat(rest, io);
    if (cmd === 'doctor') return await runDoctor(rest, io);
    if (cmd === 'sft') return await runSft(rest, io);
    if (cmd === 'demo') return await runDemoCommand(rest, io);
    if (cmd === 'export') return await runExport(rest, io);
    if (cmd !== 'train') throw new UsageError(`fovea: unknown command ${JSON.stringify(cmd)}; commands: train, sft, eval, chat, export, demo, doctor (fovea --help)`);
    const { config: file } = parseTrainArgs(rest);
    const config = loadTrainConfig(file);
    let bar: ProgressBar | null = null;
    const res = await train(config, {
      onWarning: (m) => io.stderr.write(`warning: ${m}\n`),
      onStart: ({ totalSteps, startStep, resumedFrom }) => {
        if (resumedFrom) io.stderr.write(`resuming from ${resumedFrom} (step ${startStep})\n`);
        bar = new ProgressBar({ total: totalSteps - startStep, label: `train ${config.algorithm}`, stream: io.stderr, logEvery: 1 });
      },
      onStep: (m) => (bar as ProgressBar | null)?.tick(1, { step: m.step, reward: m.reward_mean, loss: m.loss, lr: m.lr }),
    });
    if (res.startStep >= config.steps && res.checkpoints.length === 0) io.stdout.write(`fovea train: ${res.runDir} already finished ${res.startStep} steps (steps = ${config.steps})\n`);
    else io.stdout.write(`fovea train: done, steps ${res.startStep + 1}..${res.lastStep}; report ${res.runDir}/report.html\n`);
    return 0;
  } catch (e) {
    const err = e as Error;
    io.stderr.write(`${err instanceof UsageError ? '' : 'fovea: error: '}${err.message}\n`);
    if (process.env.FOVEA_DEBUG === '1' && err.stack) io.stderr.write(`${err.stack}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

function isEntry(): boolean {
  if (!process.argv[1]) return false;
  try { return import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href; } catch { return false; }
}

if (isEntry()) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
