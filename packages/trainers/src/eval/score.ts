// Scoring of evaluation rollouts, kept pure (no model, no engine) so it can be tested on crafted
// rollouts: per row, the accuracy reward on the final turn (the same reward training uses, so an
// eval accuracy and a training accuracy mean the same thing), the crop tool's box (MGPO) and the
// IoU of that box against the row's ground-truth bbox.
//
// Invariants:
// - exactly one rollout per row (G = 1), matched by rollout.promptIndex (rows[i] ↔ promptIndex i);
// - IoU is measured in the ORIGINAL image frame: the crop tool's boxOriginal (integer pixels,
//   half-open) against row.bbox.box (pixels of images[bbox.image], which is the image the tool
//   crops: the rollout prompt's cropImage is bbox.image). An invalid or missing box scores IoU 0;
//   a row without bbox has iou null and is left out of meanIou; `hit` says whether the crop holds
//   the whole ground-truth box (the detail the question needs is in view), null like iou;
// - grpo rollouts have no grounding step: box and iou are null, validBoxRatio and meanIou null.
import { type CropFailure, type CropReport, boxContains } from '../tools/crop.js';
import type { Box } from '../tools/boxParser.js';
import { accuracyReward } from '../rewards/accuracy.js';
import { boxIoU } from '../rewards/iou.js';
import type { RewardRow } from '../rewards/types.js';

/** The row fields scoring reads (a DataRow has them all). */
export interface EvalRow {
  id: string;
  question: string;
  answer: string;
  choices?: string[];
  bbox?: { box: [number, number, number, number]; image: number };
}

/** The rollout fields scoring reads (a Rollout has them all). */
export interface EvalRollout {
  promptIndex: number;
  responses: string[];
  answer: string;
  truncated: boolean;
  invalidToken: boolean;
  finishReason: string | null;
  tool?: CropReport;
}

/** The grounding step's outcome for one row (null in grpo mode). */
export interface EvalBox {
  valid: boolean;
  reason?: CropFailure;
  message?: string;
  /** Model frame (the resized image the model saw), after clamp/grow. Present when valid. */
  boxModel?: Box;
  /** Original image pixels [x1, y1, x2, y2), half-open. Present when valid. */
  boxOriginal?: Box;
}

export interface EvalRowResult {
  id: string;
  correct: boolean;
  /** The letter or text the accuracy reward extracted from the final turn (null: none found). */
  extracted: string | null;
  truth: unknown;
  /** The final assistant turn's text. */
  answerText: string;
  box: EvalBox | null;
  /** IoU (original frame) of the crop box against row.bbox; null when the row has no bbox or in grpo mode. */
  iou: number | null;
  /** Whether the crop holds the whole row.bbox (the detail is in view); null like iou. */
  hit: boolean | null;
  /** Every assistant turn's text. */
  turns: string[];
  truncated: boolean;
  invalidToken: boolean;
  finishReason: string | null;
}

export interface EvalSummary {
  mode: 'mgpo' | 'grpo';
  rows: number;
  correct: number;
  accuracy: number;
  /** MGPO: share of rows whose turn-1 box was valid; null in grpo mode. */
  validBoxRatio: number | null;
  /** Mean IoU over rows with a bbox (MGPO); null when there are none or in grpo mode. */
  meanIou: number | null;
  /** Rows that entered meanIou. */
  iouRows: number;
  /** Share of those rows whose crop holds the whole ground-truth box; null like meanIou. */
  hitRatio: number | null;
  truncated: number;
}

export interface EvalScores extends EvalSummary { perRow: EvalRowResult[] }

const toRewardBox = (b: readonly number[]) => ({ x1: b[0], y1: b[1], x2: b[2], y2: b[3] });

function boxOf(tool: CropReport | undefined): EvalBox {
  if (!tool) return { valid: false, reason: 'no-box', message: 'the rollout ended before the grounding step ran' };
  if (!tool.ok) return { valid: false, reason: tool.reason, message: tool.message };
  return { valid: true, boxModel: tool.boxModel, boxOriginal: tool.boxOriginal };
}

/** Scores one greedy rollout per row (see the file comment). Throws when they do not pair up. */
export async function scoreEvalRollouts(
  rows: readonly EvalRow[], rollouts: readonly EvalRollout[], mode: 'mgpo' | 'grpo',
): Promise<EvalScores> {
  if (mode !== 'mgpo' && mode !== 'grpo') throw new Error(`scoreEvalRollouts: mode must be 'mgpo' or 'grpo', got ${String(mode)}`);
  if (rollouts.length !== rows.length) {
    throw new Error(`scoreEvalRollouts: expected one rollout per row (G = 1): ${rows.length} row(s) but ${rollouts.length} rollout(s)`);
  }
  const byPrompt = new Map<number, EvalRollout>();
  for (const r of rollouts) {
    if (!Number.isInteger(r.promptIndex) || r.promptIndex < 0 || r.promptIndex >= rows.length || byPrompt.has(r.promptIndex)) {
      throw new Error(`scoreEvalRollouts: rollout promptIndex ${r.promptIndex} is out of range [0, ${rows.length}) or repeated; expected each row exactly once`);
    }
    byPrompt.set(r.promptIndex, r);
  }
  const accuracy = accuracyReward();
  const perRow: EvalRowResult[] = [];
  for (const [i, row] of rows.entries()) {
    const r = byPrompt.get(i)!;
    const rewardRow: RewardRow = { id: row.id, answer: row.answer, question: row.question, ...(row.choices ? { choices: row.choices } : {}) };
    const acc = await accuracy.explain({ response: r.answer, turns: r.responses, row: rewardRow });
    const details = acc.details ?? {};
    const box = mode === 'mgpo' ? boxOf(r.tool) : null;
    let iou: number | null = null, hit: boolean | null = null;
    if (box && row.bbox) {
      const b = box.valid ? box.boxOriginal : undefined, t = row.bbox.box;
      iou = b ? boxIoU(toRewardBox(b), toRewardBox(t)) : 0;
      hit = b !== undefined && boxContains(b, t);
    }
    perRow.push({
      id: row.id, correct: acc.score === 1, extracted: (details.extracted as string | null | undefined) ?? null, truth: details.truth ?? row.answer,
      answerText: r.answer, box, iou, hit, turns: r.responses, truncated: r.truncated, invalidToken: r.invalidToken, finishReason: r.finishReason,
    });
  }
  return { ...summarize(perRow, mode), perRow };
}

/** The aggregate numbers of per-row results. */
export function summarize(perRow: readonly EvalRowResult[], mode: 'mgpo' | 'grpo'): EvalSummary {
  const n = perRow.length;
  const correct = perRow.filter((r) => r.correct).length;
  const ious = perRow.map((r) => r.iou).filter((v): v is number => v !== null);
  const hits = perRow.map((r) => r.hit).filter((v): v is boolean => v !== null);
  return {
    mode, rows: n, correct, accuracy: n ? correct / n : 0,
    validBoxRatio: mode === 'mgpo' && n ? perRow.filter((r) => r.box?.valid).length / n : null,
    meanIou: ious.length ? ious.reduce((a, b) => a + b, 0) / ious.length : null,
    iouRows: ious.length,
    hitRatio: hits.length ? hits.filter(Boolean).length / hits.length : null,
    truncated: perRow.filter((r) => r.truncated).length,
  };
}
