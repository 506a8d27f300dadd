// The GRPO/MGPO run loop behind `fovea train`: one step = take promptsPerStep rows → load their
// images → G rollouts per prompt (MGPO: the two-turn grounding rollout with the crop tool) →
// accuracy reward per rollout → group advantages → grpoStep → one metrics line → report.html;
// every `checkpoint.every` steps (and at the last step) a checkpoint holding the model (HF
// layout), AdamW state, scheduler, data position and the step.
// Resume: when output/ has a verified checkpoint, the run continues after its step: model from
// the checkpoint's model dir, optimizer.loadState, scheduler step, data position, and the
// metrics log cut back to that step (so a killed run never leaves duplicate or orphan lines).
// Invariant for resume equality: everything random in a step is a function of the step number
// (sampling seed = rollout.sampling.seed + step·1,000,003) and the data position.
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { AdamW, type AdamWState, type Tensor, loadSafetensors } from '@fovea/core';
import { GenerationEngine, Qwen2_5_VL, Qwen2_5_VLProcessor, loadImage } from '@fovea/models';
import type { TrainConfig } from './config.js';
import { generateRollouts, type Rollout, type RolloutPrompt } from '../rollout/rollout.js';
import { grpoStep } from '../algorithms/grpoStep.js';
import { groupAdvantages } from '../algorithms/advantages.js';
import { accuracyReward } from '../rewards/accuracy.js';
import { loadCustomReward } from '../rewards/custom.js';
import type { RewardContext } from '../rewards/types.js';
import { type DataRow, DataIterator, type DataIteratorState, loadDataset, formatBadRow } from '../data/dataset.js';
import { Scheduler, type ScheduleConfig } from '../optim/schedules.js';
import { MetricsWriter } from '../metrics/jsonl.js';
import { type ReportSample, writeReport } from '../report/html.js';
import { CHECKPOINT_MODEL_DIR, loadLatestCheckpoint, saveCheckpoint } from '../checkpoint/checkpoint.js';
import { cropTool } from '../tools/crop.js';

export const METRICS_FILE = 'metrics.jsonl';

export interface StepMetrics {
  step: number;
  reward_mean: number; reward_std: number; accuracy: number; zero_var_frac: number;
  reward_custom?: number; loss: number; grad_norm: number; lr: number; clip_frac: number; approx_kl: number;
  response_length: number; valid_box_ratio?: number; step_time_s: number; tokens_per_s: number;
  epoch: number;
}

export interface TrainOptions {
  onStep?: (m: StepMetrics, info: { totalSteps: number; startStep: number }) => void;
  /** Called once before the first step of this invocation (startStep = resumed step, 0 when fresh). */
  onStart?: (info: { totalSteps: number; startStep: number; resumedFrom: string | null; skippedRows: number }) => void;
  /** Bad data rows (file:line: reason) go here; default: ignored (they are counted in metrics). */
  onWarning?: (msg: string) => void;
}

export interface TrainResult { runDir: string; startStep: number; lastStep: number; resumedFrom: string | null; checkpoints: string[] }

/** Files of the source model dir that a checkpoint's model dir needs besides config + weights. */
function copyModelSideFiles(src: string, dst: string): void {
  for (const f of readdirSync(src)) {
    if (f === 'config.json' || f.endsWith('.safetensors') || f.endsWith('.safetensors.index.json')) continue;
    const p = path.join(src, f);
    cpSync(p, path.join(dst, f), { recursive: true });
  }
}

function optimizerTensors(st: AdamWState): { meta: object; tensors: Map<string, Tensor> } {
  const tensors = new Map<string, Tensor>();
  const present = st.params.map((p, i) => {
    if (!p) return null;
    tensors.set(`${i}.exp_avg`, p.expAvg); tensors.set(`${i}.exp_avg_sq`, p.expAvgSq);
    if (p.master) tensors.set(`${i}.master`, p.master);
    return { step: p.step, master: p.master !== null };
  });
  return { meta: { step: st.step, params: present }, tensors };
}

function loadOptimizerState(dir: string, device: string): AdamWState {
  const meta = JSON.parse(readFileSync(path.join(dir, 'optimizer.json'), 'utf8')) as { step: number; params: ({ step: number; master: boolean } | null)[] };
  const t = loadSafetensors(path.join(dir, 'optimizer.safetensors'), { device });
  const get = (k: string): Tensor => {
    const x = t.get(k);
    if (!x) throw new Error(`train: checkpoint ${dir} optimizer.safetensors lacks ${k}`);
    return x;
  };
  return {
    step: meta.step,
    params: meta.params.map((p, i) => (p ? { step: p.step, expAvg: get(`${i}.exp_avg`), expAvgSq: get(`${i}.exp_avg_sq`), master: p.master ? get(`${i}.master`) : null } : null)),
  };
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/** Runs (or resumes) the training run described by a validated config. */
export async function train(config: TrainConfig, opts: TrainOptions = {}): Promise<TrainResult> {
  const runDir = config.output;
  mkdirSync(runDir, { recursive: true });
  const ckpt = loadLatestCheckpoint(runDir, { verify: 'size' });
  for (const s of ckpt?.skipped ?? []) opts.onWarning?.(`skipped checkpoint ${s.dir}: ${s.reason}`);
  const startStep = ckpt?.step ?? 0;
  if (startStep >= config.steps) {
    return { runDir, startStep, lastStep: startStep, resumedFrom: ckpt?.dir ?? null, checkpoints: [] };
  }
  const modelDir = ckpt ? path.join(ckpt.dir, CHECKPOINT_MODEL_DIR) : config.model;
  const model = await Qwen2_5_VL.fromPretrained(modelDir);
  const proc = await Qwen2_5_VLProcessor.fromPretrained(modelDir);
  const { G, maxNewTokens } = config.rollout;
  const engine = new GenerationEngine(model, { tokenizer: proc.tokenizer });
  const metrics = new MetricsWriter(path.join(runDir, METRICS_FILE), ckpt ? { resumeAfterStep: startStep } : { truncate: true });
  const checkpoints: string[] = [];
  try {
    const o = config.optim;
    const optimizer = new AdamW(model.parameters(), { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weightDecay });
    const schedCfg: ScheduleConfig = { ...o.schedule, baseLr: o.lr, totalSteps: config.steps };
    const { rows, stats } = await loadDataset(config.data.train, {
      allowOutside: config.data.allowOutside, onBadRow: (b) => opts.onWarning?.(formatBadRow(b)),
    });
    if (rows.length === 0) throw new Error(`train: ${config.data.train} has no valid rows (${stats.skippedTotal} skipped)`);
    let data: DataIterator<DataRow>;
    let scheduler: Scheduler;
    if (ckpt) {
      const ost = loadOptimizerState(ckpt.dir, model.device);
      optimizer.loadState(ost);  // copies the tensors
      for (const p of ost.params) if (p) { p.expAvg.dispose(); p.expAvgSq.dispose(); p.master?.dispose(); }
      const sch = JSON.parse(readFileSync(path.join(ckpt.dir, 'scheduler.json'), 'utf8')) as { step: number };
      scheduler = new Scheduler(schedCfg, sch.step);
      data = DataIterator.fromJSON(rows, JSON.parse(readFileSync(path.join(ckpt.dir, 'data.json'), 'utf8')) as DataIteratorState);
    } else {
      scheduler = new Scheduler(schedCfg);
      data = new DataIterator(rows, { seed: config.data.shuffleSeed, shuffle: config.data.shuffle });
    }
    const tool = config.algorithm === 'mgpo'
      ? cropTool({
        processor: proc.imageProcessor, clamp: config.rollout.clampBoxes, growSmall: config.rollout.clampBoxes,
        ...(config.rollout.cropMinPixels != null ? { minPixels: config.rollout.cropMinPixels } : {}),
        ...(config.rollout.cropMaxPixels != null ? { maxPixels: config.rollout.cropMaxPixels } : {}),
      })
      : undefined;
    const accuracy = accuracyReward();
    const custom = config.reward.custom ? await loadCustomReward(config.reward.custom.module, config.reward.custom.export) : null;
    const samples: ReportSample[] = [];
    opts.onStart?.({ totalSteps: config.steps, startStep, resumedFrom: ckpt?.dir ?? null, skippedRows: stats.skippedTotal });

    for (let step = startStep + 1; step <= config.steps; step++) {
      const t0 = performance.now();
      const batch = data.take(config.promptsPerStep);
      const prompts: RolloutPrompt[] = await Promise.all(batch.map(async (row) => ({
        question: row.question, choices: row.choices, meta: row,
        images: await Promise.all(row.images.map((p) => loadImage(p))),
        cropImage: row.bbox?.image,
      })));
      const s = config.rollout.sampling;
      const rollouts: Rollout[] = await generateRollouts(model, proc, engine, prompts, {
        mode: config.algorithm, G, maxNewTokens, tool,
        sampling: { temperature: s.temperature, topK: s.topK, topP: s.topP, seed: (s.seed + step * 1_000_003) % 2 ** 31 },
        ...(config.rollout.maxTotalTokens != null ? { maxTotalTokens: config.rollout.maxTotalTokens } : {}),
        ...(config.rollout.minPixels != null ? { minPixels: config.rollout.minPixels } : {}),
        ...(config.rollout.maxPixels != null ? { maxPixels: config.rollout.maxPixels } : {}),
      });
      const ctxs: RewardContext[] = rollouts.map((r) => {
        const row = r.meta as DataRow;
        return { response: r.answer, turns: r.responses, row: { answer: row.answer, choices: row.choices, question: row.question } };
      });
      const acc = await Promise.all(ctxs.map((c) => accuracy(c)));
      const extra = custom ? await Promise.all(ctxs.map((c) => custom(c))) : null;
      const scores = acc.map((a, i) => config.reward.accuracy * a + (extra ? config.reward.custom!.weight * extra[i] : 0));
      const { advantages, stats: adv } = groupAdvantages(scores, G, { estimator: config.advantage.estimator });
      const lr = scheduler.lr;
      optimizer.lr = lr;
      const { dualClip, normLength, ...loss } = config.loss;
      const st = grpoStep(model, optimizer, rollouts, advantages, {
        loss: { ...loss, dualClip: dualClip ?? false, ...(normLength != null ? { normLength } : {}) },
        ppoEpochs: o.ppoEpochs, miniBatchSize: o.miniBatchSize ?? undefined,
        maxGradNorm: o.maxGradNorm ?? undefined, gradientCheckpointing: o.gradientCheckpointing,
      });
      scheduler.advance();  // one schedule step per training step (all μ × mini-batch updates of a step share its lr)
      const dt = (performance.now() - t0) / 1000;
      const sampled = rollouts.map((r) => r.lossMask.reduce((a, b) => a + b, 0));
      const m: StepMetrics = {
        step, reward_mean: adv.rewardMean, reward_std: adv.rewardStd, accuracy: mean(acc),
        ...(extra ? { reward_custom: mean(extra) } : {}),
        zero_var_frac: adv.groups ? adv.zeroVarianceGroups / adv.groups : 0,
        loss: st.loss, grad_norm: st.gradNorm, lr,
        clip_frac: mean(st.updates.map((u) => u.clipFracLow + u.clipFracHigh)), approx_kl: mean(st.updates.map((u) => u.approxKl)),
        response_length: mean(sampled),
        ...(config.algorithm === 'mgpo' ? { valid_box_ratio: mean(rollouts.map((r) => (r.tool?.ok ? 1 : 0))) } : {}),
        step_time_s: dt, tokens_per_s: sampled.reduce((a, b) => a + b, 0) / dt, epoch: data.position.epoch,
      };
      metrics.write(step, { ...m, skipped_rows: stats.skippedTotal });
      for (const r of rollouts.slice(0, config.reportSamples)) {
        samples.push({ step, text: r.responses.join('\n---\n'), reward: scores[rollouts.indexOf(r)] });
      }
      samples.splice(0, Math.max(0, samples.length - 4 * config.reportSamples));
      writeReport(runDir, { metricsFile: path.join(runDir, METRICS_FILE), title: `fovea ${config.algorithm} — ${path.basename(runDir)}`, samples, running: step < config.steps });
      const every = config.checkpoint.every;
      if ((every > 0 && step % every === 0) || step === config.steps) {
        const ost = optimizerTensors(optimizer.state());
        const info = saveCheckpoint(runDir, step, {
          model: (dir) => { model.save(dir); copyModelSideFiles(modelDir, dir); },
          files: {
            'optimizer.json': ost.meta, 'scheduler.json': scheduler.toJSON(), 'data.json': data.toJSON(),
            'trainer.json': { step, algorithm: config.algorithm },
          },
          tensors: { optimizer: ost.tensors },
        }, { keepLast: config.checkpoint.keepLast });
        checkpoints.push(info.dir);
      }
      opts.onStep?.(m, { totalSteps: config.steps, startStep });
    }
    return { runDir, startStep, lastStep: config.steps, resumedFrom: ckpt?.dir ?? null, checkpoints };
  } finally {
    metrics.close();
    engine.dispose();
    model.dispose();
    if (!existsSync(path.join(runDir, 'report.html'))) {
      try { writeReport(runDir, { metricsFile: path.join(runDir, METRICS_FILE), title: `fovea ${config.algorithm}` }); } catch { /* the run's own error matters more */ }
    }
  }
}
