// `fovea demo`: grounding emerging under MGPO on the generated visual-search task, end to end on
// the CPU, through the same code a user runs (fovea sft / fovea train / evaluation):
//   1. data: train and test splits of 1568×1568 scenes (different seeds; DEMO_SCENE: a 182 px
//      yellow tile inside one 28-px token cell of the 224 view, a 42 px color mark on it — 6 px in
//      the 224 view, 48 px in a close-up — cool-colored clutter, the 'map' background), each with a
//      grounding SFT set (scene → the tile's cell as a JSON box in the model's 224×224 frame), an
//      answering SFT set (a close-up → \boxed{letter}; a share of them miss the tile) and whole MGPO
//      conversations; the test rows' hidden boxes are only used to measure IoU and the reading
//      diagnostic, never by a reward;
//   2. model: a tiny Qwen2.5-VL written as an HF directory and loaded like a real checkpoint;
//   3. cold start: SFT on the answering set alone, then on grounding + answering (twice) + MGPO conversations;
//   4. MGPO from the cold-start model, binary answer reward only (two turns: box → crop → answer);
//   5. GRPO from the same model with the same budget (one turn, no crop);
//   6. greedy evaluation on the test split: cold start (both modes), MGPO, GRPO — accuracy, the
//      valid-box ratio, how often the crop holds the tile, the IoU of the boxes with the hidden
//      ones; and the reading diagnostic (readingProbe.ts);
//   7. a table on stdout, summary.json and report.html (curves of both runs, test rollouts with
//      their boxes drawn) in the run directory.
// Budgets (DEMO_PLANS) are sized for a 2-core machine: full ≈ 8 min, quick ≈ 10 s (quick only
// checks that everything runs; it is too short to learn). The measured outcome is in the README.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GenerationEngine, Qwen2_5_VL, Qwen2_5_VLProcessor, loadImage } from '@fovea/models';
import { validateSftConfig } from '../sft/config.js';
import { sft } from '../sft/trainer.js';
import { validateTrainConfig } from '../train/config.js';
import { train, METRICS_FILE } from '../train/trainer.js';
import { evaluateLoaded } from '../eval/evaluate.js';
import type { EvalScores } from '../eval/score.js';
import { loadDataset, type DataRow } from '../data/dataset.js';
import { readMetrics, type MetricsRecord } from '../metrics/jsonl.js';
import { generateRollouts } from '../rollout/rollout.js';
import type { GrpoTemplate, MgpoTemplate } from '../rollout/templates.js';
import { rolloutReportSample } from '../report/sampleImage.js';
import { type ReportSample, renderReport } from '../report/html.js';
import { accuracyReward } from '../rewards/accuracy.js';
import { writeFileAtomic } from '../checkpoint/atomic.js';
import { writeDemoDataset, groundingAnswer, DEMO_CROP_MIN_PIXELS } from './demoDataset.js';
import { writeTinyDemoModel, type TinyModelOptions } from './tinyModel.js';
import { DEMO_MAX_PIXELS, type SceneOptions } from './scenes.js';
import { evalCropTool } from '../eval/evaluate.js';
import { readingProbe } from './readingProbe.js';

/** Short prompts: a tiny model's context is mostly image tokens, and every token costs. */
export const DEMO_MGPO_TEMPLATE: MgpoTemplate = {
  system: '',
  turn1: '{question}\nGive the box of the region to look at, as JSON.',
  cropValid: 'Region {box}:',
  cropInvalid: 'Unusable box ({reason}). The whole image:',
  turn2: '{question}\nAnswer with the letter in \\boxed{}.',
};
export const DEMO_GRPO_TEMPLATE: GrpoTemplate = { system: '', user: '{question}\nAnswer with the letter in \\boxed{}.' };

export interface DemoPlan {
  trainScenes: number;
  testScenes: number;
  /** What the question asks: the color of the mark on the tile (default; learnable in minutes) or its character. */
  detail: 'color' | 'char';
  /** Largest shift (model-frame px) of the answering set's close-ups around the tile. */
  closeUpJitter: number;
  /** Scene options of every split (palette, tile size, mark size, tile placement). */
  scene: SceneOptions;
  /** Share of the answering set's close-ups that miss the tile (labeled with the true letter), so a
   *  wrong crop still gets an answer in the format. */
  missRate: number;
  model: TinyModelOptions;
  /** Cold start in two stages: `readingSteps` on the answering set alone (reading the mark from a
   *  close-up; mixed with the rest from the start, it was not learned), then `steps` on everything,
   *  with the answering set `answerRepeat` times in the mix (once, reading slipped to 0.72 by the
   *  time the tiles were located, at 2,000 steps). */
  sft: { readingSteps: number; steps: number; answerRepeat: number; lr: number; maxTokens: number; warmupSteps: number };
  /** beta: KL to the cold-start model (keeps a near-chance policy from drifting into garbage). */
  rl: { steps: number; G: number; promptsPerStep: number; lr: number; maxNewTokens: number; temperature: number; beta: number };
}

/** The demo's scenes: a 182 px yellow tile (26 px in the 224 view: most of one 28-px token cell)
 *  carrying a 42 px mark (6 px in the 224 view, 48 px in a close-up) among cool-colored clutter, on
 *  the 'map' background (each token cell's color says where it is). */
export const DEMO_SCENE: SceneOptions = { palette: 'cool', background: 'map', tileSizeRange: [182, 182], markFraction: 42 / 182, tileInCell: true };

export const DEMO_PLANS: Record<'full' | 'quick', DemoPlan> = {
  full: {
    trainScenes: 400, testScenes: 100, detail: 'color', closeUpJitter: 3, scene: DEMO_SCENE, missRate: 0.1,
    model: { hidden: 128, layers: 2, heads: 4, kvHeads: 2, intermediate: 256, visionHidden: 64, visionDepth: 2, visionHeads: 4, visionIntermediate: 128 },
    sft: { readingSteps: 500, steps: 2000, answerRepeat: 2, lr: 1e-3, maxTokens: 1536, warmupSteps: 30 },
    rl: { steps: 50, G: 8, promptsPerStep: 4, lr: 5e-5, maxNewTokens: 48, temperature: 1, beta: 0.02 },
  },
  quick: {
    trainScenes: 12, testScenes: 6, detail: 'color', closeUpJitter: 3, scene: DEMO_SCENE, missRate: 0.1,
    model: { hidden: 64, layers: 1, heads: 2, kvHeads: 1, intermediate: 128, visionHidden: 32, visionDepth: 1, visionHeads: 2, visionIntermediate: 64 },
    sft: { readingSteps: 2, steps: 4, answerRepeat: 2, lr: 1e-3, maxTokens: 1024, warmupSteps: 1 },
    rl: { steps: 2, G: 2, promptsPerStep: 1, lr: 3e-5, maxNewTokens: 48, temperature: 1, beta: 0.04 },
  },
};

export interface DemoOptions {
  quick?: boolean;
  /** Run directory (default: ./fovea-demo, or ./fovea-demo-quick). */
  out?: string;
  seed?: number;
  /** Overrides of the plan (tests, experiments). */
  plan?: Partial<DemoPlan>;
  /** Progress lines (stage starts, per-step lines). */
  log?: (line: string) => void;
}

export interface DemoEvalRow {
  model: string; mode: 'mgpo' | 'grpo'; accuracy: number; validBoxRatio: number | null; meanIou: number | null;
  /** Share of rows whose crop holds the whole tile (the mark is in view). */
  hitRatio: number | null;
  rows: number;
}

export interface DemoSummary {
  runDir: string;
  quick: boolean;
  plan: DemoPlan;
  evals: DemoEvalRow[];
  /** Mean crop IoU of MGPO's training rollouts over the first and the last quarter of its steps. */
  rlIou: { first: number | null; last: number | null };
  /** Diagnostic (readingProbe): option-letter accuracy on test close-ups cropped around the HIDDEN
   *  box — the reading skill alone, whatever the model's own boxes. */
  reading: { coldStart: number; mgpo: number; rows: number };
  seconds: Record<string, number>;
  report: string;
}

const fmt = (x: number | null, digits = 3) => (x === null ? '-' : x.toFixed(digits));

const DEMO_TABLE_HEADER = ['model', 'mode', 'test accuracy', 'valid boxes', 'tile in crop', 'box IoU'];
const demoTableRow = (e: DemoEvalRow) => [e.model, e.mode, fmt(e.accuracy), fmt(e.validBoxRatio), fmt(e.hitRatio), fmt(e.meanIou)];

/** The evaluation table as text (printed by the CLI, shown in the report and README). */
export function formatDemoTable(evals: readonly DemoEvalRow[]): string {
  const head = DEMO_TABLE_HEADER;
  const rows = evals.map(demoTableRow);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

function meanOf(records: readonly MetricsRecord[], key: string): number | null {
  const v = records.map((r) => r[key]).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

async function evalModel(dir: string, rows: DataRow[], mode: 'mgpo' | 'grpo', maxNewTokens: number, cropOpts: object): Promise<EvalScores> {
  const model = await Qwen2_5_VL.fromPretrained(dir);
  const proc = await Qwen2_5_VLProcessor.fromPretrained(dir);
  try {
    return await evaluateLoaded(model, proc, rows, {
      mode, maxNewTokens, maxPixels: DEMO_MAX_PIXELS, mgpoTemplate: DEMO_MGPO_TEMPLATE, grpoTemplate: DEMO_GRPO_TEMPLATE, ...cropOpts,
    });
  } finally { model.dispose(); }
}

/** A few greedy MGPO test rollouts as report cards (turns, boxes drawn on the scene, the crop). */
async function sampleCards(dir: string, rows: DataRow[], maxNewTokens: number, cropOpts: { cropMinPixels: number; cropMaxPixels: number; clampBoxes: boolean }, step: number): Promise<ReportSample[]> {
  const model = await Qwen2_5_VL.fromPretrained(dir);
  const proc = await Qwen2_5_VLProcessor.fromPretrained(dir);
  const engine = new GenerationEngine(model, { tokenizer: proc.tokenizer });
  const acc = accuracyReward();
  try {
    const cards: ReportSample[] = [];
    for (const row of rows) {
      const image = await loadImage(row.images[0]);
      const [r] = await generateRollouts(model, proc, engine, [{ question: row.question, choices: row.choices, images: [image], meta: row }], {
        mode: 'mgpo', G: 1, maxNewTokens, sampling: { temperature: 0 }, maxPixels: DEMO_MAX_PIXELS,
        tool: evalCropTool(proc, cropOpts), mgpoTemplate: DEMO_MGPO_TEMPLATE,
      });
      const correct = (await acc({ response: r.answer, row: { answer: row.answer, choices: row.choices } })) === 1;
      cards.push(await rolloutReportSample({ step, reward: correct ? 1 : 0, correct, rollout: r, image, groundTruth: row.bbox?.box }));
    }
    return cards;
  } finally { engine.dispose(); model.dispose(); }
}

/** Runs the whole demo (see the file comment); returns the summary it also writes. */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoSummary> {
  const quick = opts.quick ?? false;
  const base = DEMO_PLANS[quick ? 'quick' : 'full'];
  const plan: DemoPlan = { ...base, ...opts.plan };
  const seed = opts.seed ?? 1;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`fovea demo: seed must be a non-negative integer, got ${seed}`);
  const repeat = plan.sft.answerRepeat;
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 16) throw new Error(`fovea demo: sft.answerRepeat must be an integer in [1, 16], got ${repeat}`);
  const runDir = path.resolve(opts.out ?? (quick ? 'fovea-demo-quick' : 'fovea-demo'));
  const log = opts.log ?? (() => {});
  mkdirSync(runDir, { recursive: true });
  const seconds: Record<string, number> = {};
  const t0 = performance.now();
  let tStage = t0;
  const stage = (name: string) => { const now = performance.now(); seconds[name] = (now - tStage) / 1000; tStage = now; };
  const cropOpts = { cropMinPixels: DEMO_CROP_MIN_PIXELS, cropMaxPixels: DEMO_MAX_PIXELS, clampBoxes: true };

  // 1. Data (train and test with different seeds).
  log(`[1/6] generating ${plan.trainScenes} train and ${plan.testScenes} test scenes (1568×1568, question: the ${plan.detail === 'color' ? "color of the tile's mark" : "tile's character"}) in ${path.join(runDir, 'data')}`);
  const dataDir = path.join(runDir, 'data');
  const common = {
    groundingText: DEMO_MGPO_TEMPLATE.turn1, answerText: DEMO_MGPO_TEMPLATE.turn2, answerPrefix: DEMO_MGPO_TEMPLATE.cropValid,
    cropMinPixels: cropOpts.cropMinPixels, cropMaxPixels: cropOpts.cropMaxPixels,
    scene: { ...plan.scene, detail: plan.detail }, closeUpJitter: plan.closeUpJitter, groundingBox: 'grid' as const, mgpoTemplate: DEMO_MGPO_TEMPLATE,
  };
  const trainSet = await writeDemoDataset(dataDir, { split: 'train', n: plan.trainScenes, seed: seed * 1000 + 1, ...common, missRate: plan.missRate });
  const testSet = await writeDemoDataset(dataDir, { split: 'test', n: plan.testScenes, seed: seed * 1000 + 2, ...common });
  const sftFile = path.join(dataDir, 'train_sft.jsonl');
  // Grounding, standalone answering, and whole MGPO conversations (turn 2 answered in the context of
  // turn 1's box: without them the cold start wrote another box in turn 2).
  writeFileSync(sftFile, [trainSet.grounding, ...Array<string>(plan.sft.answerRepeat).fill(trainSet.answer), trainSet.mgpo].map((f) => readFileSync(f, 'utf8')).join(''));
  stage('data');

  // 2. The tiny model.
  const modelDir = path.join(runDir, 'model');
  writeTinyDemoModel(modelDir, { seed, maxPixels: DEMO_MAX_PIXELS, ...plan.model });
  log(`[2/6] tiny Qwen2.5-VL written to ${modelDir}`);
  // The grounding turn must fit the per-turn budget, or every box is cut off (an invalid box).
  const widest = (await Qwen2_5_VLProcessor.fromPretrained(modelDir)).tokenizer.encode(groundingAnswer([888, 888, 888, 888]), { addSpecialTokens: false }).length;
  if (widest + 2 > plan.rl.maxNewTokens) throw new Error(`fovea demo: rl.maxNewTokens ${plan.rl.maxNewTokens} cannot hold a box answer (${widest} tokens + end of turn)`);
  stage('model');

  // 3. Cold start: reading first, then everything.
  const sftStage = async (name: string, from: string, train: string, steps: number): Promise<string> => {
    const out = path.join(runDir, name);
    await sft(validateSftConfig({
      model: from, data: { train, maxTokens: plan.sft.maxTokens, shuffleSeed: seed, maxPixels: DEMO_MAX_PIXELS },
      optim: { lr: plan.sft.lr, weightDecay: 0, maxGradNorm: 1, schedule: { kind: 'cosine', warmupSteps: plan.sft.warmupSteps, minRatio: 0.1 } },
      steps, checkpoint: { every: 0, keepLast: 1 }, output: out,
    }), { onStep: (m) => { if (m.step % 25 === 0 || m.step === steps) log(`  ${name} step ${m.step}/${steps} loss ${m.loss.toFixed(4)}`); } });
    return path.join(out, `checkpoint-${steps}`, 'model');
  };
  log(`[3/6] cold start: SFT on answering from close-ups (${plan.sft.readingSteps} steps), then on grounding + answering (×${plan.sft.answerRepeat}) + MGPO conversations (${plan.sft.steps} steps)`);
  const readDir = plan.sft.readingSteps > 0 ? await sftStage('sft-reading', modelDir, trainSet.answer, plan.sft.readingSteps) : modelDir;
  const coldDir = await sftStage('sft', readDir, sftFile, plan.sft.steps);
  stage('sft');

  // 4–5. MGPO and GRPO from the cold start, the same budget, answer reward only.
  const rl = plan.rl;
  const rlConfig = (algorithm: 'mgpo' | 'grpo', out: string) => validateTrainConfig({
    algorithm, model: coldDir, data: { train: trainSet.rows, shuffleSeed: seed },
    rollout: {
      G: rl.G, maxNewTokens: rl.maxNewTokens, maxPixels: DEMO_MAX_PIXELS, sampling: { temperature: rl.temperature, seed },
      clampBoxes: true, cropMinPixels: cropOpts.cropMinPixels, cropMaxPixels: cropOpts.cropMaxPixels,
    },
    reward: { accuracy: 1 }, loss: { beta: rl.beta }, templates: { mgpo: DEMO_MGPO_TEMPLATE, grpo: DEMO_GRPO_TEMPLATE },
    optim: { lr: rl.lr, weightDecay: 0, maxGradNorm: 1 }, steps: rl.steps, promptsPerStep: rl.promptsPerStep,
    checkpoint: { every: 0, keepLast: 1 }, output: out, reportSamples: 1,
  });
  const rlLog = (name: string) => (m: { step: number; reward_mean: number; crop_iou?: number; valid_box_ratio?: number }) => {
    if (m.step % 5 === 0 || m.step === rl.steps) {
      log(`  ${name} step ${m.step}/${rl.steps} reward ${m.reward_mean.toFixed(3)}${m.valid_box_ratio !== undefined ? ` valid boxes ${m.valid_box_ratio.toFixed(2)}` : ''}${m.crop_iou !== undefined ? ` IoU ${m.crop_iou.toFixed(3)}` : ''}`);
    }
  };
  log(`[4/6] MGPO: ${rl.steps} steps × ${rl.promptsPerStep} prompts × G=${rl.G}, binary answer reward only`);
  const mgpoOut = path.join(runDir, 'mgpo');
  await train(rlConfig('mgpo', mgpoOut), { onStep: rlLog('mgpo') });
  stage('mgpo');
  log(`[5/6] GRPO baseline (one turn, no crop), the same budget`);
  const grpoOut = path.join(runDir, 'grpo');
  await train(rlConfig('grpo', grpoOut), { onStep: rlLog('grpo') });
  stage('grpo');

  // 6. Greedy evaluation on the test split.
  log(`[6/6] greedy evaluation on ${plan.testScenes} test scenes`);
  const { rows: testRows } = await loadDataset(testSet.rows);
  const mgpoDir = path.join(mgpoOut, `checkpoint-${rl.steps}`, 'model');
  const grpoDir = path.join(grpoOut, `checkpoint-${rl.steps}`, 'model');
  const evals: DemoEvalRow[] = [];
  for (const [name, dir, mode] of [
    ['cold start (SFT)', coldDir, 'grpo'], ['cold start (SFT)', coldDir, 'mgpo'], ['GRPO', grpoDir, 'grpo'], ['MGPO', mgpoDir, 'mgpo'],
  ] as const) {
    const s = await evalModel(dir, testRows, mode, rl.maxNewTokens, cropOpts);
    evals.push({ model: name, mode, accuracy: s.accuracy, validBoxRatio: s.validBoxRatio, meanIou: s.meanIou, hitRatio: s.hitRatio, rows: s.rows });
    log(`  ${name} (${mode}): accuracy ${s.accuracy.toFixed(3)}${s.validBoxRatio !== null ? `, valid boxes ${s.validBoxRatio.toFixed(3)}, tile in crop ${fmt(s.hitRatio)}, IoU ${fmt(s.meanIou)}` : ''}`);
  }
  const probe = async (dir: string) => {
    const model = await Qwen2_5_VL.fromPretrained(dir);
    try { return await readingProbe(model, await Qwen2_5_VLProcessor.fromPretrained(dir), testSet.answer, { maxPixels: DEMO_MAX_PIXELS }); } finally { model.dispose(); }
  };
  const readCold = await probe(coldDir), readMgpo = await probe(mgpoDir);
  const reading = { coldStart: readCold.accuracy, mgpo: readMgpo.accuracy, rows: readCold.rows };
  log(`  reading the mark from a close-up of the hidden box (diagnostic): cold start ${fmt(reading.coldStart)}, MGPO ${fmt(reading.mgpo)}`);
  stage('eval');

  // Curves of both runs on one page, the table, and MGPO test rollouts with their boxes.
  const mgpoRecs = readMetrics(path.join(mgpoOut, METRICS_FILE)).records;
  const grpoRecs = readMetrics(path.join(grpoOut, METRICS_FILE)).records;
  const q = Math.max(1, Math.floor(mgpoRecs.length / 4));
  const rlIou = { first: meanOf(mgpoRecs.slice(0, q), 'crop_iou'), last: meanOf(mgpoRecs.slice(-q), 'crop_iou') };
  const merged: MetricsRecord[] = mgpoRecs.map((r, i) => {
    const g = grpoRecs[i] ?? {};
    return {
      step: r.step, mgpo_accuracy: r.accuracy, grpo_accuracy: g.accuracy ?? null, mgpo_valid_box_ratio: r.valid_box_ratio ?? null,
      mgpo_crop_iou: r.crop_iou ?? null, mgpo_response_length: r.response_length, grpo_response_length: g.response_length ?? null,
      mgpo_grad_norm: r.grad_norm, grpo_grad_norm: g.grad_norm ?? null,
    } as MetricsRecord;
  });
  const samples = await sampleCards(mgpoDir, testRows.slice(0, quick ? 2 : 6), rl.maxNewTokens, cropOpts, rl.steps);
  const { html } = renderReport(merged, {
    title: `fovea demo${quick ? ' (quick)' : ''}: MGPO vs GRPO on the visual-search task`, samples,
    summary: { caption: `Greedy test accuracy on ${plan.testScenes} held-out scenes (diagnostic: reading the mark from a close-up of the hidden box, cold start ${fmt(reading.coldStart)}, MGPO ${fmt(reading.mgpo)})`, header: DEMO_TABLE_HEADER, rows: evals.map(demoTableRow) },
  });
  const report = path.join(runDir, 'report.html');
  writeFileAtomic(report, html);
  seconds.total = (performance.now() - t0) / 1000;
  const summary: DemoSummary = { runDir, quick, plan, evals, rlIou, reading, seconds, report };
  writeFileAtomic(path.join(runDir, 'summary.json'), JSON.stringify(summary, null, 1) + '\n');
  return summary;
}
