#!/usr/bin/env node
// The `fovea` command (the bin of @fovea/trainers). `fovea train --config run.json` runs or
// resumes a GRPO/MGPO run with a progress bar; `eval` and `chat` are not implemented yet (exit
// 2). Errors print one clear message and exit non-zero; the stack only with FOVEA_DEBUG=1.
// `main(argv, io)` is exported so tests drive the CLI in-process.
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { loadTrainConfig } from './train/config.js';
import { train } from './train/trainer.js';
import { ProgressBar, type ProgressStream } from './report/progress.js';

export const USAGE = `Usage: fovea <command> [options]

Commands:
  train --config run.json   Run (or resume) a GRPO/MGPO training run described by a JSON config
                            (YAML is not supported yet). Writes metrics.jsonl, report.html and
                            checkpoints into the config's "output" folder; rerun to resume.
  eval                      (not implemented yet)
  chat                      (not implemented yet)

Options:
  -h, --help                Show this help.
Environment:
  FOVEA_DEBUG=1             Print stack traces on errors.
`;

export class UsageError extends Error {}

export interface CliIo { stdout: ProgressStream; stderr: ProgressStream }

function parseTrainArgs(args: string[]): { config: string } {
  let config: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--config' || a === '-c') {
      if (i + 1 >= args.length || args[i + 1].startsWith('-')) throw new UsageError(`fovea train: ${a} needs a file path (fovea train --config run.json)`);
      config = args[++i];
    } else if (a.startsWith('--config=')) config = a.slice('--config='.length);
    else throw new UsageError(`fovea train: unknown argument ${JSON.stringify(a)}; usage: fovea train --config run.json`);
  }
  if (!config) throw new UsageError('fovea train: missing --config <file.json>; usage: fovea train --config run.json');
  return { config };
}

/** Runs the CLI; returns the exit code (0 ok, 1 failure, 2 usage error / not implemented). */
export async function main(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  try {
    const [cmd, ...rest] = argv;
    if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
      io.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    }
    if (rest.includes('-h') || rest.includes('--help')) { io.stdout.write(USAGE); return 0; }
    if (cmd === 'eval' || cmd === 'chat') {
      io.stderr.write(`fovea ${cmd}: not implemented yet\n`);
      return 2;
    }
    if (cmd !== 'train') throw new UsageError(`fovea: unknown command ${JSON.stringify(cmd)}; commands: train, eval, chat (fovea --help)`);
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
