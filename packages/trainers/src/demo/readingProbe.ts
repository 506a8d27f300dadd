// The demo's diagnostic of the reading skill alone: on the test split's answering set (a close-up
// that holds the tile, cropped around the HIDDEN box, + the question), which option letter does the
// model score highest at the answer position? It separates "cannot read the mark" from "does not
// look at the right place" in the demo's table; it never feeds a reward or training.
// Scoring is teacher-forced: the conversation is encoded exactly as SFT encodes it (chat template,
// images packed with the given budget), one forward pass, and the logits of the option letters'
// tokens are compared at the position that predicts the first letter of the assistant turn.
import { tidy, tensor } from '@fovea/core';
import type { Qwen2_5_VL, Qwen2_5_VLProcessor } from '@fovea/models';
import { encodeExample } from '../sft/encode.js';
import { loadSftDataset } from '../sft/data.js';

export interface ReadingProbeResult {
  /** Rows scored (rows whose assistant turn holds one of the option letters). */
  rows: number;
  correct: number;
  accuracy: number;
}

/** Scores the first `limit` rows of an answering-set JSONL (see the file comment). */
export async function readingProbe(
  model: Qwen2_5_VL, proc: Qwen2_5_VLProcessor, answerFile: string,
  opts: { maxPixels: number; letters?: readonly string[]; limit?: number },
): Promise<ReadingProbeResult> {
  const letters = opts.letters ?? ['A', 'B', 'C', 'D'];
  const ids = letters.map((l) => {
    const t = proc.tokenizer.encode(l, { addSpecialTokens: false });
    if (t.length !== 1) throw new Error(`readingProbe: option letter ${JSON.stringify(l)} is ${t.length} tokens; expected one`);
    return t[0];
  });
  const { rows } = await loadSftDataset(answerFile);
  let scored = 0, correct = 0;
  for (const row of rows.slice(0, opts.limit ?? rows.length)) {
    const ex = await encodeExample(proc, row.id, row.messages, { maxPixels: opts.maxPixels });
    let at = -1;
    for (let i = 1; i < ex.inputIds.length && at < 0; i++) if (ex.lossMask[i] && ids.includes(ex.inputIds[i])) at = i;
    if (at < 0 || !ex.pixelRows) continue;
    const best = tidy(() => {
      const images = { pixelValues: tensor(ex.pixelRows!, { shape: [ex.pixelRows!.length / ex.patchDim, ex.patchDim] }), gridThw: ex.grids };
      const hidden = model.forward({ inputIds: ex.inputIds.subarray(0, at), images });
      const logits = model.logits(hidden).data() as Float32Array;   // [at, V]: small (one conversation)
      const V = logits.length / at, o = (at - 1) * V;
      let k = 0;
      for (let j = 1; j < ids.length; j++) if (logits[o + ids[j]] > logits[o + ids[k]]) k = j;
      return ids[k];
    });
    scored++;
    if (best === ex.inputIds[at]) correct++;
  }
  return { rows: scored, correct, accuracy: scored ? correct / scored : 0 };
}
