// Writes one split of the demo's visual-search task to disk: the scenes as PNGs, the RL/eval
// JSONL (data/dataset.ts format, with the hidden ground-truth tile box — for IoU only, never for
// the reward) and three cold-start SFT sets in the chat format
//   {"messages": [{"role", "content": string | [{"type": "image", "image": "rel.png"}, {"type": "text", "text"}]}]}:
// - <split>_grounding.jsonl: scene + "where is the tile?" → ```json [{"bbox_2d": [...], "label": "tile"}]```
//   with the box in the pixels of the RESIZED image the model sees (Qwen2.5-VL's convention);
// - <split>_answer.jsonl: a close-up of the tile + the question → \boxed{<letter>};
// - <split>_mgpo.jsonl: the whole MGPO conversation (system, turn 1 → box, tool turn with the
//   crop → \boxed{<letter>}), built with the same templates and crop tool as the rollouts.
// Close-ups are produced by the real crop tool (cropTool with clamp + growSmall, the demo's crop
// budget) and stored already resized to the frame the tool packs them in, so any processor whose
// budget admits that frame sees exactly the pixels the RL tool turn shows.
// Invariant: the split is a pure function of (seed, n, options); item i uses scene seed
// deriveSeed(seed, i). Paths in the JSONL files are relative to `dir`.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ImageProcessor, resizeBicubic } from '@fovea/models';
import { MGPO_TEMPLATE, type MgpoTemplate, checkMgpoTemplate, formatQuestion } from '../rollout/templates.js';
import { type CropResult, boxContains, cropTool } from '../tools/crop.js';
import { fillTemplate } from '../tools/types.js';
import { deriveSeed, Rng } from './rng.js';
import { type Box, DEMO_MAX_PIXELS, DEMO_MIN_PIXELS, type Scene, type SceneOptions, encodePng, generateScene, overlaps } from './scenes.js';

export type DemoSplit = 'train' | 'test';

export interface DemoDatasetOptions {
  split: DemoSplit;
  /** Prefix of the files and image folder (letters, digits, '-', '_'); default the split. Lets a
   *  second set of the same split (other scene options, say) share the directory. */
  name?: string;
  n: number;
  seed: number;
  scene?: SceneOptions;
  /** The crop tool's pixel budget for the returned image; default DEMO_CROP_MIN_PIXELS and the model's maxPixels. */
  cropMinPixels?: number;
  cropMaxPixels?: number;
  /** User text of the grounding set; placeholder {question} (optional): the row's question with its choices. */
  groundingText?: string;
  /** User text after the close-up in the answer set; placeholder {question}. Default MGPO's turn 2. */
  answerText?: string;
  /** User text before the close-up in the answer set (as the tool turn's text); placeholder {box}
   *  (the crop in original pixels). Default: none. */
  answerPrefix?: string;
  /** Largest shift (model-frame pixels) of the close-up box around the tile in the answer set; default 8. */
  closeUpJitter?: number;
  /** The grounding answer: 'tile', the tile's own box in the model frame (default); or 'grid', the
   *  smallest box on the 28-px merged-token grid of the model frame that covers the tile (one cell
   *  for a small tile placed with scene.tileInCell: 8 choices per coordinate on a 224 frame). */
  groundingBox?: 'tile' | 'grid';
  /** Share of answer-set rows whose close-up is a grid cell that MISSES the tile (still labeled
   *  with the true letter: the model learns to answer, i.e. guess, after a wrong crop instead of
   *  leaving the answer format, as an MGPO rollout with a bad box needs); default 0. */
  missRate?: number;
  /** Templates of the MGPO transcripts (<split>_mgpo.jsonl); default the library's MGPO_TEMPLATE. An
   *  empty system text leaves the system turn out, as the rollouts do. */
  mgpoTemplate?: MgpoTemplate;
  /** Called after each item is written. */
  onItem?: (index: number, scene: Scene) => void;
}

export interface DemoDatasetResult {
  dir: string;
  /** JSONL files (absolute paths). */
  rows: string;
  grounding: string;
  answer: string;
  mgpo: string;
  n: number;
  /** [h, w] every scene is resized to for the model. */
  modelFrame: [number, number];
}

/**
 * The crop budget's floor: a grown minimal box (29 model px = 203–204 original px at the default
 * scale 7) is enlarged to 224×224 (64 image tokens). Not 224² itself: smart_resize's enlarge branch
 * then rounds 204 px up to 252 (floating point in ceil), past the model's budget.
 */
export const DEMO_CROP_MIN_PIXELS = 200 * 200;
export const DEMO_GROUNDING_TEXT = 'Where is the small tile? Answer with its box as JSON.';
export const DEMO_BOX_LABEL = 'tile';

/** The assistant's grounding answer for a model-frame box, as Qwen2.5-VL writes it. */
export function groundingAnswer(box: Box, label = DEMO_BOX_LABEL): string {
  return '```json\n' + JSON.stringify([{ bbox_2d: box, label }]).replace(/,/g, ', ').replace(/":/g, '": ') + '\n```';
}

/** The assistant's final answer: the option letter in \boxed{}. */
export function boxedAnswer(letter: string): string { return `\\boxed{${letter}}`; }

/** The tile box in the model frame, rounded to integers (exact when the tile is grid-snapped). */
export function modelFrameBox(box: Box, original: [number, number], frame: [number, number]): Box {
  const [H, W] = original, [h, w] = frame;
  return [Math.round((box[0] * w) / W), Math.round((box[1] * h) / H), Math.round((box[2] * w) / W), Math.round((box[3] * h) / H)];
}

/** The crop tool configured as the demo uses it (shared with the demo runner). */
export function demoCropTool(opts: { cropMinPixels?: number; cropMaxPixels?: number; scene?: SceneOptions } = {}) {
  const maxPixels = opts.scene?.modelMaxPixels ?? DEMO_MAX_PIXELS, minPixels = opts.scene?.modelMinPixels ?? DEMO_MIN_PIXELS;
  return cropTool({
    processor: new ImageProcessor({ maxPixels, minPixels }), clamp: true, growSmall: true,
    minPixels: opts.cropMinPixels ?? Math.min(DEMO_CROP_MIN_PIXELS, maxPixels), maxPixels: opts.cropMaxPixels ?? maxPixels,
  });
}

/** The smallest box on the `unit`-px grid (default 28: merged tokens) of the model frame covering `box`. */
export function gridBox(box: Box, unit = 28): Box {
  return [Math.floor(box[0] / unit) * unit, Math.floor(box[1] / unit) * unit, Math.ceil(box[2] / unit) * unit, Math.ceil(box[3] / unit) * unit];
}

function checkOptions(dir: string, o: DemoDatasetOptions): void {
  if (typeof dir !== 'string' || dir.length === 0) throw new Error('writeDemoDataset: dir must be a non-empty path');
  if (o?.split !== 'train' && o?.split !== 'test') throw new Error(`writeDemoDataset: split must be 'train' or 'test', got ${JSON.stringify(o?.split)}`);
  if (!Number.isInteger(o.n) || o.n < 1 || o.n > 1_000_000) throw new Error(`writeDemoDataset: n must be an integer in [1, 1000000], got ${o.n}`);
  if (!Number.isSafeInteger(o.seed) || o.seed < 0) throw new Error(`writeDemoDataset: seed must be a non-negative safe integer, got ${o.seed}`);
  if (o.name !== undefined && (typeof o.name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(o.name))) {
    throw new Error(`writeDemoDataset: name must be 1-64 letters, digits, '-' or '_', got ${JSON.stringify(o.name)}`);
  }
  const j = o.closeUpJitter ?? 8;
  if (!Number.isInteger(j) || j < 0) throw new Error(`writeDemoDataset: closeUpJitter must be a non-negative integer, got ${o.closeUpJitter}`);
  if (o.missRate !== undefined && !(typeof o.missRate === 'number' && o.missRate >= 0 && o.missRate <= 1)) {
    throw new Error(`writeDemoDataset: missRate must be a number in [0, 1], got ${o.missRate}`);
  }
  if (o.groundingBox !== undefined && o.groundingBox !== 'tile' && o.groundingBox !== 'grid') {
    throw new Error(`writeDemoDataset: groundingBox must be 'tile' or 'grid', got ${JSON.stringify(o.groundingBox)}`);
  }
}

/** Writes the split under `dir` (created if needed); see the file comment for the files. */
export async function writeDemoDataset(dir: string, opts: DemoDatasetOptions): Promise<DemoDatasetResult> {
  checkOptions(dir, opts);
  const { n, seed } = opts;
  const split = opts.name ?? opts.split;
  const root = path.resolve(dir);
  await fsp.mkdir(path.join(root, split), { recursive: true });
  const tool = demoCropTool(opts);
  const groundingText = opts.groundingText ?? DEMO_GROUNDING_TEXT;
  const answerText = opts.answerText ?? MGPO_TEMPLATE.turn2;
  fillTemplate(answerText, { question: '' }, 'writeDemoDataset answerText');
  fillTemplate(groundingText, { question: '' }, 'writeDemoDataset groundingText');
  const answerPrefix = opts.answerPrefix ?? '';
  fillTemplate(answerPrefix, { box: '' }, 'writeDemoDataset answerPrefix');
  const jitter = opts.closeUpJitter ?? 8;
  const mt = opts.mgpoTemplate ?? MGPO_TEMPLATE;
  checkMgpoTemplate(mt);
  const lines = { rows: [] as string[], grounding: [] as string[], answer: [] as string[], mgpo: [] as string[] };
  let modelFrame: [number, number] = [0, 0];

  for (let i = 0; i < n; i++) {
    const sceneSeed = deriveSeed(seed, i);
    const scene = await generateScene(sceneSeed, opts.scene);
    modelFrame = scene.modelFrame;
    const id = `${split}-${String(i).padStart(5, '0')}`;
    const rel = (name: string) => `${split}/${id}-${name}.png`;
    await fsp.writeFile(path.join(root, rel('scene')), scene.png);
    const question = formatQuestion(scene.question, scene.choices);
    const tileBox = modelFrameBox(scene.target.box, [scene.height, scene.width], scene.modelFrame);
    const box = opts.groundingBox === 'grid' ? gridBox(tileBox) : tileBox;
    const boxText = groundingAnswer(box);
    const input = { original: scene.image, modelFrame: scene.modelFrame };

    // The close-up the tool returns for the exact box (MGPO transcript) and for a shifted one (answer set).
    const exact = tool.crop(boxText, input);
    const rng = new Rng(deriveSeed(sceneSeed, 1));   // independent of the scene's own draws
    const dx = rng.int(-jitter, jitter), dy = rng.int(-jitter, jitter);
    let shifted = tool.crop(groundingAnswer([box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy]), input);
    if (!shifted.ok || !boxContains(shifted.boxOriginal!, scene.target.box)) shifted = exact;
    if (rng.float() < (opts.missRate ?? 0)) {
      // A 28-px cell of the model frame whose crop does not overlap the tile.
      const [fh, fw] = scene.modelFrame, t = scene.target.box;
      for (let attempt = 0; attempt < 100; attempt++) {
        const cx = 28 * rng.int(0, Math.floor(fw / 28) - 1), cy = 28 * rng.int(0, Math.floor(fh / 28) - 1);
        const miss = tool.crop(groundingAnswer([cx, cy, cx + 28, cy + 28]), input);
        const b = miss.boxOriginal;
        if (miss.ok && b && !overlaps(b, t, 0)) { shifted = miss; break; }
      }
    }
    if (!exact.ok || !boxContains(exact.boxOriginal!, scene.target.box)) {
      throw new Error(`writeDemoDataset: item ${id}: the crop tool rejects the tile's own box ${JSON.stringify(box)} ` +
        `(${exact.message ?? 'crop does not contain the tile'}); the scene/crop options are inconsistent`);
    }
    await writeCloseUp(root, rel('crop'), exact);
    if (shifted !== exact) await writeCloseUp(root, rel('closeup'), shifted);
    const closeUp = shifted === exact ? rel('crop') : rel('closeup');

    lines.rows.push(JSON.stringify({
      id, images: [rel('scene')], question: scene.question, choices: scene.choices, answer: scene.answer,
      bbox: { image: 0, box: scene.target.box }, dataSource: 'fovea-demo', sceneSeed, target: scene.target.char,
    }));
    lines.grounding.push(JSON.stringify({ messages: [
      { role: 'user', content: [{ type: 'image', image: rel('scene') }, { type: 'text', text: fillTemplate(groundingText, { question }, 'groundingText') }] },
      { role: 'assistant', content: boxText },
    ] }));
    lines.answer.push(JSON.stringify({ messages: [
      { role: 'user', content: [
        ...(answerPrefix ? [{ type: 'text', text: fillTemplate(answerPrefix, { box: `[${shifted.boxOriginal!.join(', ')}]` }, 'answerPrefix') }] : []),
        { type: 'image', image: closeUp }, { type: 'text', text: fillTemplate(answerText, { question }, 'answerText') },
      ] },
      { role: 'assistant', content: boxedAnswer(scene.answer) },
    ] }));
    lines.mgpo.push(JSON.stringify({ messages: [
      ...(mt.system ? [{ role: 'system', content: mt.system }] : []),
      { role: 'user', content: [{ type: 'image', image: rel('scene') }, { type: 'text', text: fillTemplate(mt.turn1, { question }, 'turn1') }] },
      { role: 'assistant', content: boxText },
      { role: 'user', content: [
        { type: 'text', text: fillTemplate(mt.cropValid, { box: `[${exact.boxOriginal!.join(', ')}]` }, 'cropValid') },
        { type: 'image', image: rel('crop') },
        { type: 'text', text: fillTemplate(mt.turn2, { question }, 'turn2') },
      ] },
      { role: 'assistant', content: boxedAnswer(scene.answer) },
    ] }));
    opts.onItem?.(i, scene);
  }
  const file = (name: string) => path.join(root, `${split}${name}.jsonl`);
  const out: DemoDatasetResult = {
    dir: root, rows: file(''), grounding: file('_grounding'), answer: file('_answer'), mgpo: file('_mgpo'), n, modelFrame,
  };
  await fsp.writeFile(out.rows, lines.rows.join('\n') + '\n');
  await fsp.writeFile(out.grounding, lines.grounding.join('\n') + '\n');
  await fsp.writeFile(out.answer, lines.answer.join('\n') + '\n');
  await fsp.writeFile(out.mgpo, lines.mgpo.join('\n') + '\n');
  return out;
}

/** Saves a crop resized to the frame the tool packs it in (Pillow-exact bicubic, as the processor). */
async function writeCloseUp(root: string, rel: string, crop: CropResult): Promise<void> {
  const [h, w] = crop.imageFrame;
  const img = crop.image.height === h && crop.image.width === w ? crop.image : resizeBicubic(crop.image, h, w);
  await fsp.writeFile(path.join(root, rel), await encodePng(img));
}
