// The GRPO/DAPO/MGPO/search run loop behind `fovea train`. One step:
//   rows → images → G rollouts per prompt (MGPO: the two-turn grounding rollout with the crop
//   tool; search: multi-turn <search> rollouts over a local BM25 corpus, up to search.maxTurns) → the run's reward (train/rewardSetup.ts) → [DAPO dynamic sampling: drop groups whose
//   rewards are all equal and draw more prompts, up to filters.dynamicSampling.maxRounds rounds]
//   → group advantages → [overlong filtering: truncated rollouts' loss masks zeroed] → grpoStep
//   (μ epochs × mini-batches × gradient accumulation; KL to the reference policy when beta > 0)
//   → one metrics line → report.html; every `checkpoint.every` steps (and at the last step) a
//   checkpoint: the model (HF layout) or the LoRA adapter (PEFT layout), AdamW state, scheduler,
//   data position, the LoRA dropout generator and the step.
// Offline rejection sampling (filters.rejectionSampling) runs once before step 1 over the whole
// training set and keeps rows solved sometimes but not always; the kept ids are saved in the run
// directory (rejection.json) so a resumed run trains on the same rows.
// The reference policy of the KL term is the starting model: a frozen second copy, or with LoRA
// the same model with its adapters disabled.
// Resume: when output/ has a verified checkpoint, the run continues after its step: model from
// the checkpoint (or base + adapter), optimizer.loadState, scheduler step, data position, and the
// metrics log cut back to that step (so a killed run never leaves duplicate or orphan lines).
// Invariant for resume equality: everything random in a step is a function of the step number
// and sampling round (seed = rollout.sampling.seed + step·1,000,003 + round·7,919), the data
// position and the saved generator offsets.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { AdamW, type Tensor } from '@fovea/core';
import { GenerationEngine, Qwen2_5_VL, Qwen2_5_VLProcessor, loadImage } from '@fovea/models';
import type { TrainConfig } from './config.js';
import { generateRollouts, type Rollout, type RolloutPrompt } from '../rollout/rollout.js';
import { grpoStep } from '../algorithms/grpoStep.js';
import { groupAdvantages } from '../algorithms/advantages.js';
import { DynamicSamplingBuffer, passRates, rejectionSamplingFilter } from '../algorithms/filtering.js';
import { type DataRow, DataIterator, type DataIteratorState, loadDataset, formatBadRow } from '../data/dataset.js';
import { Scheduler, type ScheduleConfig } from '../optim/schedules.js';
import { MetricsWriter } from '../metrics/jsonl.js';
import { type ReportSample, writeReport } from '../report/html.js';
import { rolloutReportSample } from '../report/sampleImage.js';
import { CHECKPOINT_MODEL_DIR, loadLatestCheckpoint, saveCheckpoint } from '../checkpoint/checkpoint.js';
import { writeFileAtomic } from '../checkpoint/atomic.js';
import type { CropTool } from '../tools/crop.js';
import { evalCropTool, evaluateLoaded } from '../eval/evaluate.js';
import { LocalBm25Backend, searchTool } from '../tools/search.js';
import type { Tool } from '../tools/types.js';
import { generateToolRollouts } from '../rollout/multiTurn.js';
import { type LoraModel, applyLora } from '../lora/lora.js';
import { loadAdapter } from '../lora/peft.js';
import { boxIoU } from '../rewards/iou.js';
import { buildRunReward, cropBoxes, responseLength, type RunReward } from './rewardSetup.js';
import { loadOptimizerState, optimizerTensors } from './optimizerState.js';
import { copyModelSideFiles } from '../checkpoint/modelFiles.js';

export const METRICS_FILE = 'metrics.jsonl';
export const REJECTION_FILE = 'rejection.json';

export interface StepMetrics {
  step: number;
  reward_mean: number; reward_std: number; accuracy: number; zero_var_frac: number;
  loss: number; grad_norm: number; lr: number;
  clip_frac: number; clip_frac_low: number; clip_frac_high: number; clip_frac_dual: number;
  approx_kl: number; kl_ref?: number; entropy?: number;
  response_length: number; turns: number; valid_box_ratio?: number; crop_iou?: number;
  /** Rollouts whose loss mask was zeroed by overlong filtering. */
  overlong_masked?: number;
  /** Dynamic sampling: generation rounds this step and groups dropped for equal rewards. */
  sampling_rounds?: number; groups_dropped?: number;
  /** Greedy validation (on validation steps). */
  val_accuracy?: number; val_valid_box_ratio?: number; val_iou?: number;
  /** Optimizer updates this step (0 when dynamic sampling found no informative group). */
  updates: number;
  step_time_s: number; tokens_per_s: number; epoch: number;
  [component: `reward_${string}`]: number;
}

export interface TrainOptions {
  onStep?: (m: StepMetrics, info: { totalSteps: number; startStep: number }) => void;
  /** Called once before the first step of this invocation (startStep = resumed step, 0 when fresh). */
  onStart?: (info: { totalSteps: number; startStep: number; resumedFrom: string | null; skippedRows: number; rows: number }) => void;
  /** Bad data rows (file:line: reason) and other notices go here; default: ignored (counted in metrics). */
  onWarning?: (msg: string) => void;
  /** Progress of the offline rejection-sampling pass (rows done of total). */
  onRejectionProgress?: (done: number, total: number) => void;
}

export interface TrainResult { runDir: string; startStep: number; lastStep: number; resumedFrom: string | null; checkpoints: string[] }

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
const std = (xs: number[]) => { const m = mean(xs); return Math.sqrt(mean(xs.map((x) => (x - m) ** 2))); };

interface RunContext {
  config: TrainConfig;
  model: Qwen2_5_VL;
  proc: Qwen2_5_VLProcessor;
  engine: GenerationEngine;
  tool: CropTool | undefined;
  search: Tool<void, unknown> | undefined;
}

/** G rollouts for each row (one generation round). */
async function rolloutRows(ctx: RunContext, rows: readonly DataRow[], seed: number, G: number): Promise<Rollout[]> {
  const { config } = ctx;
  const prompts: RolloutPrompt[] = await Promise.all(rows.map(async (row) => ({
    question: row.question, choices: row.choices, meta: row,
    images: await Promise.all(row.images.map((p) => loadImage(p))),
    cropImage: row.bbox?.image,
  })));
  const s = config.rollout.sampling;
  if (ctx.search) {
    return generateToolRollouts(ctx.model, ctx.proc, ctx.engine, prompts, {
      G, tool: ctx.search, maxTurns: config.search!.maxTurns, template: config.templates.search,
      maxNewTokens: config.rollout.maxNewTokens, sampling: { temperature: s.temperature, topK: s.topK, topP: s.topP, seed: seed % 2 ** 31 },
      ...(config.rollout.maxTotalTokens != null ? { maxTotalTokens: config.rollout.maxTotalTokens } : {}),
      ...(config.rollout.minPixels != null ? { minPixels: config.rollout.minPixels } : {}),
      ...(config.rollout.maxPixels != null ? { maxPixels: config.rollout.maxPixels } : {}),
    });
  }
  return generateRollouts(ctx.model, ctx.proc, ctx.engine, prompts, {
    mode: config.algorithm === 'mgpo' ? 'mgpo' : 'grpo', G, maxNewTokens: config.rollout.maxNewTokens, tool: ctx.tool,
    mgpoTemplate: config.templates.mgpo, grpoTemplate: config.templates.grpo,
    sampling: { temperature: s.temperature, topK: s.topK, topP: s.topP, seed: seed % 2 ** 31 },
    ...(config.rollout.maxTotalTokens != null ? { maxTotalTokens: config.rollout.maxTotalTokens } : {}),
    ...(config.rollout.minPixels != null ? { minPixels: config.rollout.minPixels } : {}),
    ...(config.rollout.maxPixels != null ? { maxPixels: config.rollout.maxPixels } : {}),
  });
}

/** Offline rejection sampling: the ids of rows the starting model solves sometimes but not always. */
async function rejectionPass(ctx: RunContext, rows: readonly DataRow[], reward: RunReward, opts: TrainOptions): Promise<string[]> {
  const rs = ctx.config.filters.rejectionSampling!;
  const rates: number[] = [];
  for (const [i, row] of rows.entries()) {
    const rollouts = await rolloutRows(ctx, [row], ctx.config.rollout.sampling.seed + 0x5eed + i, rs.samples);
    const { accuracy } = await reward.score(rollouts);
    rates.push(passRates(accuracy, rs.samples)[0]);
    opts.onRejectionProgress?.(i + 1, rows.length);
  }
  const { kept } = rejectionSamplingFilter(rates, { min: rs.min, max: rs.max });
  return kept.map((i) => rows[i].id);
}

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
  const trainerState = ckpt ? JSON.parse(readFileSync(path.join(ckpt.dir, 'trainer.json'), 'utf8')) as { step: number; loraGeneratorOffset?: number } : null;
  // Full fine-tuning resumes from the checkpoint's model; LoRA from the base model + the adapter.
  const modelDir = ckpt && !config.lora ? path.join(ckpt.dir, CHECKPOINT_MODEL_DIR) : config.model;
  const model = await Qwen2_5_VL.fromPretrained(modelDir);
  const proc = await Qwen2_5_VLProcessor.fromPretrained(config.model);
  let lora: LoraModel | null = null;
  let refModel: Qwen2_5_VL | null = null;
  const { G } = config.rollout;
  const engine = new GenerationEngine(model, { tokenizer: proc.tokenizer });
  const metrics = new MetricsWriter(path.join(runDir, METRICS_FILE), ckpt ? { resumeAfterStep: startStep } : { truncate: true });
  const checkpoints: string[] = [];
  try {
    if (config.lora) {
      const l = config.lora;
      lora = ckpt
        ? loadAdapter(model, path.join(ckpt.dir, CHECKPOINT_MODEL_DIR), { seed: l.seed })
        : applyLora(model, { targetModules: l.targets, r: l.r, alpha: l.alpha, dropout: l.dropout, seed: l.seed });
      if (trainerState?.loraGeneratorOffset !== undefined) lora.generator.offset = trainerState.loraGeneratorOffset;
    } else if (config.loss.beta > 0) {
      refModel = await Qwen2_5_VL.fromPretrained(config.model);
    }
    const o = config.optim;
    const params: Tensor[] = lora ? lora.trainableParameters() : model.parameters();
    const optimizer = new AdamW(params, { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weightDecay });
    const schedCfg: ScheduleConfig = { ...o.schedule, baseLr: o.lr, totalSteps: config.steps };
    const loaded = await loadDataset(config.data.train, {
      allowOutside: config.data.allowOutside, onBadRow: (b) => opts.onWarning?.(formatBadRow(b)),
    });
    const { stats } = loaded;
    let rows = loaded.rows;
    if (rows.length === 0) throw new Error(`train: ${config.data.train} has no valid rows (${stats.skippedTotal} skipped)`);
    const cropOpts = {
      clampBoxes: config.rollout.clampBoxes,
      ...(config.rollout.cropMinPixels != null ? { cropMinPixels: config.rollout.cropMinPixels } : {}),
      ...(config.rollout.cropMaxPixels != null ? { cropMaxPixels: config.rollout.cropMaxPixels } : {}),
    };
    // MGPO's crop budget, capped by the crop's max (a small model's processor may allow less).
    const tool = config.algorithm === 'mgpo' ? evalCropTool(proc, cropOpts) : undefined;
    const val = config.validation;
    const valRows = val ? (await loadDataset(val.data, { allowOutside: config.data.allowOutside, onBadRow: (b) => opts.onWarning?.(`validation: ${formatBadRow(b)}`) })).rows.slice(0, val.limit ?? Infinity) : [];
    if (val && valRows.length === 0) throw new Error(`train: validation data ${val.data} has no valid rows`);
    const search = config.search
      ? searchTool({ backend: await LocalBm25Backend.fromJsonl(config.search.corpus), topK: config.search.topK }) as Tool<void, unknown>
      : undefined;
    const ctx: RunContext = { config, model, proc, engine, tool, search };
    const reward = await buildRunReward(config);

    if (config.filters.rejectionSampling) {
      const file = path.join(runDir, REJECTION_FILE);
      let keptIds: string[];
      if (ckpt && existsSync(file)) keptIds = (JSON.parse(readFileSync(file, 'utf8')) as { kept: string[] }).kept;
      else {
        keptIds = await rejectionPass(ctx, rows, reward, opts);
        writeFileAtomic(file, JSON.stringify({ kept: keptIds, of: rows.length, ...config.filters.rejectionSampling }, null, 1) + '\n');
      }
      const keep = new Set(keptIds);
      const before = rows.length;
      rows = rows.filter((r) => keep.has(r.id));
      opts.onWarning?.(`rejection sampling kept ${rows.length} of ${before} rows (pass rate in (${config.filters.rejectionSampling.min}, ${config.filters.rejectionSampling.max}))`);
      if (rows.length === 0) throw new Error(`train: offline rejection sampling kept no row of ${before}: the starting model solves every row always or never; widen filters.rejectionSampling.min/max or drop it`);
    }

    let data: DataIterator<DataRow>;
    let scheduler: Scheduler;
    if (ckpt) {
      const ost = loadOptimizerState(ckpt.dir, model.device, params.length);
      optimizer.loadState(ost);  // copies the tensors
      for (const p of ost.params) if (p) { p.expAvg.dispose(); p.expAvgSq.dispose(); p.master?.dispose(); }
      const sch = JSON.parse(readFileSync(path.join(ckpt.dir, 'scheduler.json'), 'utf8')) as { step: number };
      scheduler = new Scheduler(schedCfg, sch.step);
      data = DataIterator.fromJSON(rows, JSON.parse(readFileSync(path.join(ckpt.dir, 'data.json'), 'utf8')) as DataIteratorState);
    } else {
      scheduler = new Scheduler(schedCfg);
      data = new DataIterator(rows, { seed: config.data.shuffleSeed, shuffle: config.data.shuffle });
    }
    const samples: ReportSample[] = [];
    opts.onStart?.({ totalSteps: config.steps, startStep, resumedFrom: ckpt?.dir ?? null, skippedRows: stats.skippedTotal, rows: rows.length });
    const ds = config.filters.dynamicSampling;

    for (let step = startStep + 1; step <= config.steps; step++) {
      const t0 = performance.now();
      const stepSeed = config.rollout.sampling.seed + step * 1_000_003;
      // Generation rounds: one without dynamic sampling; with it, until promptsPerStep informative
      // groups are held or maxRounds rounds were drawn (then train on what was found).
      const buffer = new DynamicSamplingBuffer<{ r: Rollout; acc: number; comps: Record<string, number> }>(config.promptsPerStep, ds.enabled ? ds.maxRounds : 1);
      const seen: { r: Rollout; acc: number; score: number }[] = [];
      let kept: { r: Rollout; acc: number; score: number; comps: Record<string, number> }[] = [];
      while (true) {
        const want = ds.enabled ? buffer.missing : config.promptsPerStep;
        const rolls = await rolloutRows(ctx, data.take(want), stepSeed + buffer.rounds * 7_919, G);
        const sc = await reward.score(rolls);
        rolls.forEach((r, i) => seen.push({ r, acc: sc.accuracy[i], score: sc.scores[i] }));
        const items = rolls.map((r, i) => ({ r, acc: sc.accuracy[i], comps: Object.fromEntries(Object.entries(sc.components).map(([k, v]) => [k, v[i]])) }));
        if (!ds.enabled) { kept = items.map((it, i) => ({ ...it, score: sc.scores[i] })); buffer.rounds++; break; }
        buffer.add(items, sc.scores, G);
        if (buffer.full || buffer.exhausted) {
          kept = buffer.take().flatMap((g) => g.items.map((it, k) => ({ ...it, score: g.rewards[k] })));
          break;
        }
      }
      if (ds.enabled && kept.length === 0) opts.onWarning?.(`step ${step}: dynamic sampling found no group with differing rewards in ${buffer.rounds} round(s); no update this step`);
      const rollouts = kept.map((k) => k.r);
      const scores = kept.map((k) => k.score);
      const { advantages, stats: adv } = kept.length ? groupAdvantages(scores, G, { estimator: config.advantage.estimator })
        : { advantages: new Float64Array(0), stats: { rewardMean: 0, rewardStd: 0, groups: 0, zeroVarianceGroups: 0 } };
      // Overlong filtering: truncated responses keep their place in the group's statistics but get no loss.
      let overlongMasked = 0;
      const trained = config.filters.overlong
        ? rollouts.map((r) => (r.truncated ? (overlongMasked++, { ...r, lossMask: new Float32Array(r.lossMask.length) }) : r))
        : rollouts;
      const lr = scheduler.lr;
      optimizer.lr = lr;
      const { dualClip, normLength, entropyCoef, ...loss } = config.loss;
      const st = trained.length ? grpoStep(model, optimizer, trained, advantages, {
        loss: { ...loss, dualClip: dualClip ?? false, ...(normLength != null ? { normLength } : {}) },
        entropyCoef, ppoEpochs: o.ppoEpochs, miniBatchSize: o.miniBatchSize ?? undefined, gradAccumulation: o.gradAccumSteps,
        maxGradNorm: o.maxGradNorm ?? undefined, gradientCheckpointing: o.gradientCheckpointing,
        ...(refModel ? { refModel } : {}),
        ...(lora && config.loss.beta > 0 ? { asReference: <T>(fn: () => T): T => lora!.withDisabled(fn) } : {}),
      }) : { updates: [], loss: 0, gradNorm: 0 };
      scheduler.advance();  // one schedule step per training step (all μ × mini-batch updates of a step share its lr)
      const dt = (performance.now() - t0) / 1000;
      // Rollout statistics are over every rollout generated this step (what the policy did);
      // loss statistics over the ones trained on.
      const all = seen.map((x) => x.r);
      const lengths = all.map(responseLength);
      const um = (f: (u: (typeof st.updates)[number]) => number) => mean(st.updates.map(f));
      const ious = config.algorithm === 'mgpo' ? all.map(cropBoxes).filter((b) => b.truth).map((b) => (b.pred ? boxIoU(b.pred, b.truth!) : 0)) : [];
      const m: StepMetrics = {
        step, reward_mean: mean(seen.map((x) => x.score)), reward_std: std(seen.map((x) => x.score)), accuracy: mean(seen.map((x) => x.acc)),
        zero_var_frac: adv.groups ? adv.zeroVarianceGroups / adv.groups : 0,
        loss: st.loss, grad_norm: st.gradNorm, lr,
        clip_frac: um((u) => u.clipFracLow + u.clipFracHigh), clip_frac_low: um((u) => u.clipFracLow),
        clip_frac_high: um((u) => u.clipFracHigh), clip_frac_dual: um((u) => u.clipFracDual),
        approx_kl: um((u) => u.approxKl),
        ...(config.loss.beta > 0 && st.updates.length ? { kl_ref: um((u) => u.klRef) } : {}),
        ...(config.loss.computeEntropy && st.updates.length ? { entropy: um((u) => u.entropy ?? 0) } : {}),
        response_length: mean(lengths), turns: mean(all.map((r) => r.turns)),
        ...(config.algorithm === 'mgpo' ? { valid_box_ratio: mean(all.map((r) => (r.tool?.ok ? 1 : 0))) } : {}),
        ...(ious.length ? { crop_iou: mean(ious) } : {}),
        ...(config.filters.overlong ? { overlong_masked: overlongMasked } : {}),
        ...(ds.enabled ? { sampling_rounds: buffer.rounds, groups_dropped: buffer.droppedTotal } : {}),
        updates: st.updates.length,
        step_time_s: dt, tokens_per_s: lengths.reduce((a, b) => a + b, 0) / dt, epoch: data.position.epoch,
      };
      for (const name of reward.names) (m as unknown as Record<string, number>)[`reward_${name}`] = mean(kept.map((k) => k.comps[name]));
      if (val && ((val.every > 0 && step % val.every === 0) || step === config.steps)) {
        // Greedy validation with the run's templates, on the training engine (no second KV pool).
        const v = await evaluateLoaded(model, proc, valRows, {
          mode: config.algorithm === 'mgpo' ? 'mgpo' : 'grpo', engine, ...cropOpts,
          maxNewTokens: val.maxNewTokens ?? config.rollout.maxNewTokens, mgpoTemplate: config.templates.mgpo, grpoTemplate: config.templates.grpo,
          ...(config.rollout.maxTotalTokens != null ? { maxTotalTokens: config.rollout.maxTotalTokens } : {}),
          ...(config.rollout.minPixels != null ? { minPixels: config.rollout.minPixels } : {}),
          ...(config.rollout.maxPixels != null ? { maxPixels: config.rollout.maxPixels } : {}),
        });
        m.val_accuracy = v.accuracy;
        if (v.validBoxRatio != null) m.val_valid_box_ratio = v.validBoxRatio;
        if (v.meanIou != null) m.val_iou = v.meanIou;
      }
      metrics.write(step, { ...m, skipped_rows: stats.skippedTotal });
      for (const [i, r] of rollouts.slice(0, config.reportSamples).entries()) {
        const row = r.meta as DataRow;
        const imgIdx = row.bbox?.image ?? 0;
        samples.push(await rolloutReportSample({
          step, reward: scores[i], correct: kept[i].acc === 1, rollout: r,
          image: row.images[imgIdx] ? await loadImage(row.images[imgIdx]) : undefined, groundTruth: row.bbox?.box,
        }));
      }
      samples.splice(0, Math.max(0, samples.length - 4 * config.reportSamples));
      writeReport(runDir, { metricsFile: path.join(runDir, METRICS_FILE), title: `fovea ${config.algorithm} — ${path.basename(runDir)}`, samples, running: step < config.steps });
      const every = config.checkpoint.every;
      if ((every > 0 && step % every === 0) || step === config.steps) {
        const ost = optimizerTensors(optimizer.state());
        const info = saveCheckpoint(runDir, step, {
          model: (dir) => {
            if (lora) lora.saveAdapter(dir, { baseModelNameOrPath: config.model });
            else { model.save(dir); copyModelSideFiles(config.model, dir); }  // never from a resumed checkpoint: keepLast may have pruned it
          },
          files: {
            'optimizer.json': ost.meta, 'scheduler.json': scheduler.toJSON(), 'data.json': data.toJSON(),
            'trainer.json': { step, algorithm: config.algorithm, ...(lora ? { loraGeneratorOffset: lora.generator.offset } : {}) },
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
    refModel?.dispose();
    model.dispose();
    if (!existsSync(path.join(runDir, 'report.html'))) {
      try { writeReport(runDir, { metricsFile: path.join(runDir, METRICS_FILE), title: `fovea ${config.algorithm}` }); } catch { /* the run's own error matters more */ }
    }
  }
}
