// Evaluation behind `fovea eval`: one greedy rollout per row (G = 1, temperature 0, so a run is
// deterministic), MGPO's two turns (ground → crop → answer) or GRPO's single turn, scored by
// score.ts (accuracy with the training reward, valid-box ratio, IoU in the original frame).
//
// Two entry points:
// - evaluate(opts): loads the model, processor and dataset from disk, checks the paths first
//   (an error names the missing path), optionally writes one JSON line per row to outFile;
// - evaluateLoaded(model, proc, rows, opts): an in-memory model (a training loop's validation,
//   a demo). It builds its own engine unless one is passed, and never disposes the model.
// Rows are fed to generateRollouts `batchPrompts` at a time; onProgress fires after each batch.
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GenerationEngine, Qwen2_5_VL, Qwen2_5_VLProcessor, loadImage } from '@fovea/models';
import { generateRollouts, type RolloutPrompt } from '../rollout/rollout.js';
import type { GrpoTemplate, MgpoTemplate } from '../rollout/templates.js';
import { type CropTool, MGPO_CROP_MIN_PIXELS, cropTool } from '../tools/crop.js';
import { type DataRow, formatBadRow, loadDataset } from '../data/dataset.js';
import { type EvalRowResult, type EvalScores, type EvalSummary, scoreEvalRollouts, summarize } from './score.js';

export interface EvalLoadedOptions {
  mode: 'mgpo' | 'grpo';
  /** New tokens per assistant turn. Default 256. */
  maxNewTokens?: number;
  /** Whole conversation cap (prompt and tool turn included). Default: none. */
  maxTotalTokens?: number;
  /** Rows per generateRollouts call (the granularity of onProgress; rollouts run prompt by prompt anyway). Default 1. */
  batchPrompts?: number;
  /** Pixel budget of the prompt images (default: the processor's). */
  minPixels?: number;
  maxPixels?: number;
  /** Pixel budget of the crop the tool returns (default: MGPO's 200,704 capped by the max, and the processor's max). */
  cropMinPixels?: number;
  cropMaxPixels?: number;
  /** Clip out-of-image boxes and grow too-small ones instead of rejecting them (as in training). Default false. */
  clampBoxes?: boolean;
  /** Reuse a caller's engine (not disposed); default: a new one, disposed at the end. */
  engine?: GenerationEngine;
  /** Chat templates (default: rollout/templates.ts); a training run validates with its own. */
  mgpoTemplate?: MgpoTemplate;
  grpoTemplate?: GrpoTemplate;
  /** After each batch: rows done, total, and the running summary. */
  onProgress?: (done: number, total: number, running: EvalSummary) => void;
}

export interface EvalOptions extends Omit<EvalLoadedOptions, 'engine' | 'mode'> {
  modelDir: string;
  dataFile: string;
  /** Default 'mgpo'. */
  mode?: 'mgpo' | 'grpo';
  /** Evaluate only the first `limit` valid rows. */
  limit?: number;
  /** Image paths may leave the dataset directory. Default false. */
  allowOutside?: boolean;
  /** Write one JSON line per row here. */
  outFile?: string;
  /** Skipped data rows (file:line: reason). */
  onWarning?: (msg: string) => void;
  /** After the dataset and the model are loaded, before the first rollout: rows to evaluate, valid rows in the file, skipped lines. */
  onStart?: (info: { rows: number; datasetRows: number; skippedRows: number }) => void;
}

export interface EvalResult extends EvalScores {
  /** Valid rows in the file, before `limit`. */
  datasetRows: number;
  skippedRows: number;
  outFile: string | null;
}

/**
 * The crop tool of eval and chat. Without cropMinPixels the crop is enlarged to MGPO's 200,704
 * pixels, or to the crop's max budget when that is smaller (a small model's processor may allow
 * less), so the defaults always work; explicit budgets are passed through and checked by cropTool.
 */
export function evalCropTool(
  proc: Qwen2_5_VLProcessor, o: { cropMinPixels?: number; cropMaxPixels?: number; clampBoxes?: boolean },
): CropTool {
  const maxPixels = o.cropMaxPixels ?? proc.imageProcessor.config.maxPixels;
  return cropTool({
    processor: proc.imageProcessor, clamp: o.clampBoxes ?? false, growSmall: o.clampBoxes ?? false,
    minPixels: o.cropMinPixels ?? Math.min(MGPO_CROP_MIN_PIXELS, maxPixels), maxPixels,
  });
}

function checkPositiveInt(op: string, name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isSafeInteger(v) && v >= 1)) throw new Error(`${op}: ${name} must be a positive integer, got ${String(v)}`);
}

/** Evaluates an in-memory model on validated rows (see the file comment). */
export async function evaluateLoaded(
  model: Qwen2_5_VL, proc: Qwen2_5_VLProcessor, rows: readonly DataRow[], opts: EvalLoadedOptions,
): Promise<EvalScores> {
  const op = 'evaluate';
  if (opts.mode !== 'mgpo' && opts.mode !== 'grpo') throw new Error(`${op}: mode must be 'mgpo' or 'grpo', got ${String(opts.mode)}`);
  for (const k of ['maxNewTokens', 'maxTotalTokens', 'batchPrompts', 'minPixels', 'maxPixels', 'cropMinPixels', 'cropMaxPixels'] as const) {
    checkPositiveInt(op, k, opts[k]);
  }
  const batch = opts.batchPrompts ?? 1;
  const tool = opts.mode === 'mgpo' ? evalCropTool(proc, opts) : undefined;
  const engine = opts.engine ?? new GenerationEngine(model, { tokenizer: proc.tokenizer });
  const perRow: EvalRowResult[] = [];
  try {
    for (let start = 0; start < rows.length; start += batch) {
      const chunk = rows.slice(start, start + batch);
      const prompts: RolloutPrompt[] = await Promise.all(chunk.map(async (row) => ({
        question: row.question, choices: row.choices, meta: row,
        images: await Promise.all(row.images.map((p) => loadImage(p))),
        cropImage: row.bbox?.image,
      })));
      const rollouts = await generateRollouts(model, proc, engine, prompts, {
        mode: opts.mode, G: 1, maxNewTokens: opts.maxNewTokens ?? 256, tool,
        ...(opts.mgpoTemplate ? { mgpoTemplate: opts.mgpoTemplate } : {}), ...(opts.grpoTemplate ? { grpoTemplate: opts.grpoTemplate } : {}),
        sampling: { temperature: 0 },   // greedy: evaluation is deterministic
        ...(opts.maxTotalTokens != null ? { maxTotalTokens: opts.maxTotalTokens } : {}),
        ...(opts.minPixels != null ? { minPixels: opts.minPixels } : {}),
        ...(opts.maxPixels != null ? { maxPixels: opts.maxPixels } : {}),
      });
      const scored = await scoreEvalRollouts(chunk, rollouts, opts.mode);
      perRow.push(...scored.perRow);
      opts.onProgress?.(perRow.length, rows.length, summarize(perRow, opts.mode));
    }
  } finally {
    if (!opts.engine) engine.dispose();
  }
  return { ...summarize(perRow, opts.mode), perRow };
}

/** Loads the model and the dataset, evaluates, and writes outFile when given. */
export async function evaluate(opts: EvalOptions): Promise<EvalResult> {
  const op = 'evaluate';
  if (!opts || typeof opts.modelDir !== 'string' || typeof opts.dataFile !== 'string') {
    throw new Error(`${op}: expected { modelDir: string, dataFile: string, ... }`);
  }
  checkPositiveInt(op, 'limit', opts.limit);
  const modelDir = path.resolve(opts.modelDir), dataFile = path.resolve(opts.dataFile);
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) {
    throw new Error(`${op}: model directory ${modelDir} not found; pass a folder with config.json, *.safetensors and the tokenizer files`);
  }
  if (!existsSync(path.join(modelDir, 'config.json'))) throw new Error(`${op}: ${modelDir} has no config.json; is it a Hugging Face model folder?`);
  if (!existsSync(dataFile) || !statSync(dataFile).isFile()) throw new Error(`${op}: data file ${dataFile} not found; pass a JSONL file`);
  const { rows: all, stats } = await loadDataset(dataFile, {
    allowOutside: opts.allowOutside ?? false, onBadRow: (b) => opts.onWarning?.(formatBadRow(b)),
  });
  if (all.length === 0) throw new Error(`${op}: ${dataFile} has no valid rows (${stats.skippedTotal} skipped)`);
  const rows = opts.limit != null ? all.slice(0, opts.limit) : all;
  const model = await Qwen2_5_VL.fromPretrained(modelDir);
  try {
    const proc = await Qwen2_5_VLProcessor.fromPretrained(modelDir);
    opts.onStart?.({ rows: rows.length, datasetRows: all.length, skippedRows: stats.skippedTotal });
    const { modelDir: _m, dataFile: _d, limit: _l, allowOutside: _a, outFile: _o, onWarning: _w, onStart: _s, ...rest } = opts;
    const scores = await evaluateLoaded(model, proc, rows, { ...rest, mode: opts.mode ?? 'mgpo' });
    let outFile: string | null = null;
    if (opts.outFile) {
      outFile = path.resolve(opts.outFile);
      mkdirSync(path.dirname(outFile), { recursive: true });
      writeFileSync(outFile, scores.perRow.map((r) => JSON.stringify(r)).join('\n') + '\n');
    }
    return { ...scores, datasetRows: all.length, skippedRows: stats.skippedTotal, outFile };
  } finally {
    model.dispose();
  }
}
