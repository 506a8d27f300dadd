// The run's reward from its config: accuracy (with MMSearch-R1's search penalty when set),
// format, IoU of the crop box, an LLM judge and a custom module, each with its weight, summed;
// then DAPO's soft overlong punishment on the sampled length. Every component is kept per
// rollout so the metrics can show what moved.
//
// Invariants: the score of a rollout is Σ weight·component + softOverlong(length); a row without
// a bbox (or whose bbox is on another image than the crop) scores 0 on IoU, never an error; the
// judge's API key is read from the environment by the judge and never appears here.
import type { TrainConfig } from './config.js';
import type { Rollout } from '../rollout/rollout.js';
import type { DataRow } from '../data/dataset.js';
import type { Box, RewardContext, RewardFn, ToolCallRecord } from '../rewards/types.js';
import { accuracyReward } from '../rewards/accuracy.js';
import { formatReward } from '../rewards/format.js';
import { boxIoU } from '../rewards/iou.js';
import { llmJudgeReward } from '../rewards/judge.js';
import { searchPenalty } from '../rewards/search.js';
import { loadCustomReward } from '../rewards/custom.js';
import { softOverlongPenalty } from '../algorithms/filtering.js';

export interface ScoredRollouts {
  /** Total reward per rollout (what advantages are computed from). */
  scores: number[];
  /** Binary answer correctness per rollout (before any penalty). */
  accuracy: number[];
  /** Unweighted components per rollout, by name (accuracy, format, iou, judge, custom, overlong). */
  components: Record<string, number[]>;
}

export interface RunReward {
  score(rollouts: readonly Rollout[]): Promise<ScoredRollouts>;
  /** Names of the components this run computes (metrics columns). */
  names: string[];
}

const toBox = (b: readonly number[]): Box => ({ x1: b[0], y1: b[1], x2: b[2], y2: b[3] });

/** The crop box (original frame) and the row's ground-truth box (the trainer crops the image the
 *  row's bbox refers to, so both are in the same image's frame). */
export function cropBoxes(r: Rollout): { pred: Box | null; truth: Box | null } {
  const row = r.meta as DataRow | undefined;
  const truth = row?.bbox ? toBox(row.bbox.box) : null;
  const pred = r.tool?.ok && r.tool.boxOriginal ? toBox(r.tool.boxOriginal) : null;
  return { pred, truth };
}

/** The reward context of a rollout: its turns, row, crop box and tool calls. */
export function rewardContext(r: Rollout): RewardContext {
  const row = r.meta as DataRow;
  const { truth } = cropBoxes(r);
  return {
    response: r.answer, turns: r.responses,
    row: { answer: row.answer, choices: row.choices, question: row.question, id: row.id, ...(truth ? { bbox: [truth.x1, truth.y1, truth.x2, truth.y2] } : {}) },
    ...(r.tool ? { box: cropBoxes(r).pred, toolCalls: [{ name: 'crop', ok: r.tool.ok }] } : {}),
    ...((r as { toolCalls?: ToolCallRecord[] }).toolCalls ? { toolCalls: (r as { toolCalls?: ToolCallRecord[] }).toolCalls } : {}),
  };
}

/** Sampled (loss-masked) tokens of a rollout: its response length over all turns. */
export const responseLength = (r: Rollout): number => r.lossMask.reduce((a, b) => a + (b > 0 ? 1 : 0), 0);

export async function buildRunReward(config: TrainConfig): Promise<RunReward> {
  const rc = config.reward;
  const acc = accuracyReward();
  const accuracy: RewardFn = rc.searchPenalty != null ? searchPenalty(acc, { penalty: rc.searchPenalty }) : acc;
  const parts: { name: string; weight: number; fn: (r: Rollout, ctx: RewardContext) => number | Promise<number> }[] = [];
  parts.push({ name: 'accuracy', weight: rc.accuracy, fn: (_r, ctx) => accuracy(ctx) });
  if (rc.format) {
    const f = formatReward({ rules: rc.format.rules as never[], scope: rc.format.scope, scoring: rc.format.scoring });
    parts.push({ name: 'format', weight: rc.format.weight, fn: (_r, ctx) => f(ctx) });
  }
  if (rc.iou) {
    const th = rc.iou.threshold;
    parts.push({
      name: 'iou', weight: rc.iou.weight,
      fn: (r) => {
        const { pred, truth } = cropBoxes(r);
        if (!pred || !truth) return 0;
        const iou = boxIoU(pred, truth);
        return th == null ? iou : iou >= th ? 1 : 0;
      },
    });
  }
  if (rc.judge) {
    const j = rc.judge;
    const judge = llmJudgeReward({
      baseUrl: j.baseUrl, model: j.model, ...(j.apiKeyEnv ? { apiKeyEnv: j.apiKeyEnv } : {}),
      timeoutMs: j.timeoutMs, retries: j.retries, onFailure: j.onFailure,
    });
    parts.push({ name: 'judge', weight: j.weight, fn: (_r, ctx) => judge(ctx) });
  }
  if (rc.custom) {
    const c = await loadCustomReward(rc.custom.module, rc.custom.export);
    parts.push({ name: 'custom', weight: rc.custom.weight, fn: (_r, ctx) => c(ctx) });
  }
  const so = rc.softOverlong;
  const names = [...parts.map((p) => p.name), ...(so ? ['overlong'] : [])];
  return {
    names,
    async score(rollouts) {
      const ctxs = rollouts.map(rewardContext);
      const components: Record<string, number[]> = {};
      for (const p of parts) components[p.name] = await Promise.all(rollouts.map(async (r, i) => Number(await p.fn(r, ctxs[i]))));
      const correct = await Promise.all(ctxs.map(async (c) => Number(await acc(c))));
      if (so) components.overlong = rollouts.map((r) => so.factor * softOverlongPenalty(responseLength(r), so.maxLength, so.cacheLength));
      const scores = rollouts.map((_r, i) => {
        let s = parts.reduce((a, p) => a + p.weight * components[p.name][i], 0);
        if (so) s += components.overlong[i];
        return s;
      });
      for (const [i, s] of scores.entries()) {
        if (!Number.isFinite(s)) throw new Error(`reward: rollout ${i} scored ${s}; components ${JSON.stringify(Object.fromEntries(Object.entries(components).map(([k, v]) => [k, v[i]])))}`);
      }
      return { scores, accuracy: correct, components };
    },
  };
}
