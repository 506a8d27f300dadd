// The SFT run loop (cold start), mirroring train/trainer.ts: one step = gradAccumSteps packs →
// for each pack the packed forward and the assistant-only token-mean cross-entropy, scaled by
// its share of the step's loss tokens (so the step's gradient is that of the token-mean over
// ALL the step's loss tokens) → backward → global-norm clip → AdamW → scheduler → one metrics
// line; every `checkpoint.every` steps (and at the last) a checkpoint holding the model (HF
// layout) or, with LoRA, only the adapter (PEFT layout), the AdamW state, the scheduler, the
// data position and the LoRA dropout generator's offset.
// Packs: rows are drawn in DataIterator order and added while the pack stays within
// data.maxTokens (and data.maxRowsPerPack, when set); the first row that does not fit is put back
// (the iterator is rewound to it) and starts the next pack. A row longer than maxTokens alone, or one that fails to encode (an
// unreadable image, a template that is not prefix-stable), is skipped with a warning (once per
// row) and counted in the step's `skipped_in_step`; it never ends the run.
// Images: decoded and resized once and kept for later epochs (imageCache.ts, data.imageCacheMB;
// the packed pixels are bit-identical to decoding again).
// Resume: a verified checkpoint in output/ continues after its step with the model (or the
// adapter on the base model), optimizer, scheduler, data position and dropout generator restored
// and the metrics log cut back to that step. Everything in a step is a function of the restored
// state, so a resumed run writes the same metrics lines (timings aside) as an uninterrupted one.
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { AdamW, type Tensor, backward, clipGradNorm, loadSafetensors, noGrad, tidy } from '@fovea/core';
import { Qwen2_5_VL, Qwen2_5_VLProcessor } from '@fovea/models';
import type { SftConfig } from './config.js';
import { type SftRow, loadSftDataset } from './data.js';
import { type SftExample, encodeExample } from './encode.js';
import { ResizedImageCache } from './imageCache.js';
import { buildSftBatch, sftLoss } from './pack.js';
import { copyModelSideFiles } from '../checkpoint/modelFiles.js';
import { loadOptimizerState, optimizerTensors } from '../train/optimizerState.js';
import { batchHidden } from '../algorithms/grpoStep.js';
import { DataIterator, type DataIteratorState, formatBadRow } from '../data/dataset.js';
import { Scheduler, type ScheduleConfig } from '../optim/schedules.js';
import { MetricsWriter } from '../metrics/jsonl.js';
import { CHECKPOINT_MODEL_DIR, loadLatestCheckpoint, saveCheckpoint } from '../checkpoint/checkpoint.js';
import { type LoraModel, applyLora } from '../lora/lora.js';
import { ADAPTER_WEIGHTS_NAME, adapterStateDict } from '../lora/peft.js';

export const SFT_METRICS_FILE = 'metrics.jsonl';

export interface SftStepMetrics {
  step: number;
  /** Mean cross-entropy over the step's assistant (loss) tokens. */
  loss: number;
  loss_tokens: number;
  /** All tokens of the step's packs (prompt and image tokens included). */
  tokens: number;
  sequences: number;
  lr: number;
  grad_norm: number;
  step_time_s: number;
  tokens_per_s: number;
  epoch: number;
  skipped_in_step: number;
}

export interface SftOptions {
  onStep?: (m: SftStepMetrics, info: { totalSteps: number; startStep: number }) => void;
  /** Once before the first step of this invocation (startStep = resumed step, 0 when fresh). */
  onStart?: (info: { totalSteps: number; startStep: number; resumedFrom: string | null; rows: number; skippedRows: number; trainableParameters: number }) => void;
  /** Bad rows and skipped checkpoints (file:line: reason); default: ignored (they are counted). */
  onWarning?: (msg: string) => void;
}

export interface SftResult { runDir: string; startStep: number; lastStep: number; resumedFrom: string | null; checkpoints: string[] }

interface TrainerMeta { step: number; kind: 'sft'; mode: 'full' | 'lora' }

/** Copies a checkpoint's adapter weights into the freshly applied LoraModel (same targets). */
function restoreAdapter(lora: LoraModel, dir: string, device: string): void {
  const file = path.join(dir, ADAPTER_WEIGHTS_NAME);
  const saved = loadSafetensors(file, { device });
  try {
    const want = adapterStateDict(lora);
    const missing = [...want.keys()].filter((k) => !saved.has(k));
    const extra = [...saved.keys()].filter((k) => !want.has(k));
    if (missing.length || extra.length) {
      throw new Error(`sft: ${file} does not match this run's lora targets (${missing.length} missing, e.g. ${missing[0] ?? '-'}; ` +
        `${extra.length} unexpected, e.g. ${extra[0] ?? '-'}); resume with the same lora settings`);
    }
    noGrad(() => { for (const [k, t] of want) t.copy_(saved.get(k)!); });
  } finally {
    for (const t of saved.values()) t.dispose();
  }
}

/** Runs (or resumes) the SFT run described by a validated config. */
export async function sft(config: SftConfig, opts: SftOptions = {}): Promise<SftResult> {
  const runDir = config.output;
  mkdirSync(runDir, { recursive: true });
  const ckpt = loadLatestCheckpoint(runDir, { verify: 'size' });
  for (const s of ckpt?.skipped ?? []) opts.onWarning?.(`skipped checkpoint ${s.dir}: ${s.reason}`);
  const startStep = ckpt?.step ?? 0;
  const mode = config.lora ? 'lora' : 'full';
  if (ckpt) {
    const meta = JSON.parse(readFileSync(path.join(ckpt.dir, 'trainer.json'), 'utf8')) as TrainerMeta;
    if (meta.kind !== 'sft') throw new Error(`sft: ${ckpt.dir} is a checkpoint of a ${meta.kind ?? 'non-SFT'} run; use another output directory`);
    if (meta.mode !== mode) {
      throw new Error(`sft: ${ckpt.dir} was written by a ${meta.mode} fine-tuning run but this config asks for ${mode} fine-tuning ` +
        `(${mode === 'lora' ? 'remove "lora"' : 'add the same "lora" section'} or use another output directory)`);
    }
  }
  if (startStep >= config.steps) return { runDir, startStep, lastStep: startStep, resumedFrom: ckpt?.dir ?? null, checkpoints: [] };

  const ckptModel = ckpt ? path.join(ckpt.dir, CHECKPOINT_MODEL_DIR) : null;
  const model = await Qwen2_5_VL.fromPretrained(ckptModel && mode === 'full' ? ckptModel : config.model, { device: config.device, dtype: config.dtype });
  let lora: LoraModel | null = null;
  const metrics = new MetricsWriter(path.join(runDir, SFT_METRICS_FILE), ckpt ? { resumeAfterStep: startStep } : { truncate: true });
  const checkpoints: string[] = [];
  try {
    model.train();
    const proc = await Qwen2_5_VLProcessor.fromPretrained(config.model);
    if (config.lora) {
      const l = config.lora;
      lora = applyLora(model, { targetModules: l.targets, r: l.r, alpha: l.alpha, dropout: l.dropout, seed: l.seed, includeVision: l.includeVision, useRslora: l.useRslora });
      if (ckptModel) restoreAdapter(lora, ckptModel, model.device);
    }
    const params: Tensor[] = lora ? lora.trainableParameters() : model.parameters().filter((p) => p.requiresGrad);
    const o = config.optim;
    const optimizer = new AdamW(params, { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weightDecay });
    const schedCfg: ScheduleConfig = { ...o.schedule, baseLr: o.lr, totalSteps: config.steps };
    const { rows, stats } = await loadSftDataset(config.data.train, {
      allowOutside: config.data.allowOutside, onBadRow: (b) => opts.onWarning?.(formatBadRow(b)),
    });
    if (rows.length === 0) throw new Error(`sft: ${config.data.train} has no valid rows (${stats.skippedTotal} skipped; see the warnings)`);
    let data: DataIterator<SftRow>;
    let scheduler: Scheduler;
    if (ckpt) {
      const ost = loadOptimizerState(ckpt.dir, model.device, params.length);
      optimizer.loadState(ost);  // copies the tensors
      for (const p of ost.params) if (p) { p.expAvg.dispose(); p.expAvgSq.dispose(); p.master?.dispose(); }
      scheduler = new Scheduler(schedCfg, (JSON.parse(readFileSync(path.join(ckpt.dir, 'scheduler.json'), 'utf8')) as { step: number }).step);
      data = DataIterator.fromJSON(rows, JSON.parse(readFileSync(path.join(ckpt.dir, 'data.json'), 'utf8')) as DataIteratorState);
      const rng = JSON.parse(readFileSync(path.join(ckpt.dir, 'rng.json'), 'utf8')) as { loraDropout: { seed: number; offset: number } | null };
      if (lora && rng.loraDropout) { lora.generator.seed = rng.loraDropout.seed; lora.generator.offset = rng.loraDropout.offset; }
    } else {
      scheduler = new Scheduler(schedCfg);
      data = new DataIterator(rows, { seed: config.data.shuffleSeed, shuffle: config.data.shuffle });
    }
    opts.onStart?.({
      totalSteps: config.steps, startStep, resumedFrom: ckpt?.dir ?? null, rows: rows.length, skippedRows: stats.skippedTotal,
      trainableParameters: params.reduce((n, p) => n + p.size, 0),
    });

    const maxTokens = config.data.maxTokens, maxRows = config.data.maxRowsPerPack ?? Infinity;
    const pixels = { ...(config.data.minPixels != null ? { minPixels: config.data.minPixels } : {}), ...(config.data.maxPixels != null ? { maxPixels: config.data.maxPixels } : {}) };
    const imageCache = new ResizedImageCache(config.data.imageCacheMB * 2 ** 20);
    const rejected = new Set<number>();
    let pending: { rowIndex: number; ex: SftExample } | null = null;
    let skippedInStep = 0;
    const reject = (rowIndex: number, row: SftRow, why: string) => {
      rejected.add(rowIndex);
      opts.onWarning?.(`${row.source.file}:${row.source.line}: skipped: ${why}`);
    };
    /** The next pack (≥ 1 conversation, ≤ maxTokens tokens, ≤ maxRowsPerPack); see the file comment. */
    const nextPack = async (): Promise<SftExample[]> => {
      const pack: SftExample[] = [];
      let tokens = 0;
      for (;;) {
        const pos = data.position;
        const { row, rowIndex } = data.next();
        let ex: SftExample | null = pending?.rowIndex === rowIndex ? pending.ex : null;
        pending = null;
        if (!ex && !rejected.has(rowIndex)) {
          try {
            ex = await encodeExample(proc, row.id, row.messages, { ...pixels, imageCache });
            if (ex.inputIds.length > maxTokens) { reject(rowIndex, row, `the conversation is ${ex.inputIds.length} tokens, more than data.maxTokens (${maxTokens})`); ex = null; }
          } catch (e) {
            reject(rowIndex, row, (e as Error).message);
          }
        }
        if (!ex) {
          skippedInStep++;
          if (rejected.size === rows.length) {
            throw new Error(`sft: none of the ${rows.length} rows of ${config.data.train} can be trained on (each is too long for data.maxTokens ` +
              `= ${maxTokens} or fails to encode; see the warnings)`);
          }
          continue;
        }
        if (pack.length > 0 && tokens + ex.inputIds.length > maxTokens) {
          data.seek(pos);  // put the row back: it opens the next pack
          pending = { rowIndex, ex };
          return pack;
        }
        pack.push(ex);
        tokens += ex.inputIds.length;
        if (pack.length === maxRows) return pack;
      }
    };

    const gc = o.gradientCheckpointing;
    for (let step = startStep + 1; step <= config.steps; step++) {
      const t0 = performance.now();
      skippedInStep = 0;
      const batches = [];
      for (let a = 0; a < o.gradAccumSteps; a++) batches.push(buildSftBatch(model, await nextPack()));
      const lossTokens = batches.reduce((n, b) => n + b.lossTokens, 0);
      let nll = 0;
      for (const b of batches) {
        tidy(() => {
          const r = sftLoss(model, batchHidden(model, b, gc), b);
          nll += r.nllSum;
          // Token-mean over the whole step: each pack's mean weighted by its share of the tokens.
          backward(batches.length === 1 ? r.loss : r.loss.mul(b.lossTokens / lossTokens));
        });
      }
      const gradNorm = clipGradNorm(params, o.maxGradNorm ?? Infinity);
      const lr = scheduler.lr;
      optimizer.lr = lr;
      optimizer.step();
      optimizer.zeroGrad();
      scheduler.advance();
      const dt = (performance.now() - t0) / 1000;
      const tokens = batches.reduce((n, b) => n + b.totalTokens, 0);
      const m: SftStepMetrics = {
        step, loss: nll / lossTokens, loss_tokens: lossTokens, tokens, sequences: batches.reduce((n, b) => n + b.numSeqs, 0),
        lr, grad_norm: gradNorm, step_time_s: dt, tokens_per_s: tokens / dt, epoch: data.position.epoch, skipped_in_step: skippedInStep,
      };
      metrics.write(step, { ...m, skipped_rows: stats.skippedTotal });
      const every = config.checkpoint.every;
      if ((every > 0 && step % every === 0) || step === config.steps) {
        const ost = optimizerTensors(optimizer.state());
        const info = saveCheckpoint(runDir, step, {
          model: (dir) => {
            if (lora) lora.saveAdapter(dir, { baseModelNameOrPath: config.model });
            else { model.save(dir); copyModelSideFiles(config.model, dir); }
          },
          files: {
            'optimizer.json': ost.meta, 'scheduler.json': scheduler.toJSON(), 'data.json': data.toJSON(),
            'rng.json': { loraDropout: lora ? { seed: lora.generator.seed, offset: lora.generator.offset } : null },
            'trainer.json': { step, kind: 'sft', mode } satisfies TrainerMeta,
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
    lora?.remove();
    model.dispose();
  }
}
