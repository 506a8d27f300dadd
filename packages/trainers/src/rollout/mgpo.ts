// MGPO's tool turn: the user turn the system inserts after turn 1 — the crop of the region the
// model named (or the original image when the box is invalid or missing), the question again and
// the answer instruction — as token ids ready for GenerationEngine.append.
//
// The ids come from the chat template itself, never from hand-written markup: we render the
// conversation up to a sentinel assistant message, render it again with the new user turn and
// the generation prompt, and take the difference (the closing of the assistant turn + the user
// turn + "<|im_start|>assistant\n"). If the model already emitted the closing token (eos), that
// token is not inserted twice. The model's own tokens are never decoded and re-encoded: only
// this system text is tokenized.
import {
  type ChatMessage, type PackedImages, type Qwen2_5_VLProcessor, type RgbImage, expandImagePlaceholders,
} from '@fovea/models';
import { type CropResult, type CropTool, CROP_FAILURE_PHRASES } from '../tools/crop.js';
import { fillTemplate } from '../tools/types.js';
import type { MgpoTemplate } from './templates.js';

const SENTINEL = '\u0000fovea-assistant-turn\u0000';

/** Token ids of a user turn (text before the image, the image, text after) appended after an
 *  assistant turn, ending with the generation prompt. `lastToken`: the last id the model sampled. */
export function userTurnIds(
  proc: Qwen2_5_VLProcessor, system: string, image: RgbImage, before: string, after: string,
  numImageTokens: number, lastToken: number | undefined,
): Int32Array {
  const head: ChatMessage[] = [
    ...(system ? [{ role: 'system' as const, content: system }] : []),
    { role: 'user', content: 'q' },
    { role: 'assistant', content: SENTINEL },
  ];
  const a = proc.render(head).text;
  const content = [
    ...(before ? [{ type: 'text' as const, text: before }] : []),
    { type: 'image' as const, image },
    ...(after ? [{ type: 'text' as const, text: after }] : []),
  ];
  const b = proc.render([...head, { role: 'user', content }], { addGenerationPrompt: true }).text;
  const at = a.lastIndexOf(SENTINEL);
  if (at < 0 || !b.startsWith(a)) {
    throw new Error('mgpo: the chat template does not render a conversation as a prefix of its continuation; cannot build the tool turn');
  }
  const text = a.slice(at + SENTINEL.length) + b.slice(a.length);
  const ids = proc.tokenizer.encode(expandImagePlaceholders(text, [numImageTokens]), { addSpecialTokens: false });
  // The template closes the assistant turn with eos (<|im_end|>); the model may have sampled it.
  if (lastToken !== undefined && ids.length > 0 && ids[0] === lastToken) ids.shift();
  return Int32Array.from(ids);
}

export interface MgpoToolTurn {
  /** The crop tool's result (image: the crop, or the original on an invalid box). */
  result: CropResult;
  /** The returned image packed with the tool's pixel budget (caller disposes). */
  packed: PackedImages;
  /** Ids of the inserted user turn. */
  inputIds: Int32Array;
}

/** Runs the crop tool on turn 1's text against the ORIGINAL image and builds the tool turn. */
export function mgpoToolTurn(
  proc: Qwen2_5_VLProcessor, tool: CropTool, template: MgpoTemplate, turn1Text: string,
  original: RgbImage, modelFrame: [number, number], question: string, lastToken: number | undefined,
): MgpoToolTurn {
  const result = tool.crop(turn1Text, { original, modelFrame });
  const before = result.ok
    ? fillTemplate(template.cropValid, { box: `[${result.boxOriginal!.join(', ')}]` }, 'mgpo template cropValid')
    : fillTemplate(template.cropInvalid, { reason: CROP_FAILURE_PHRASES[result.reason!] }, 'mgpo template cropInvalid');
  const after = fillTemplate(template.turn2, { question }, 'mgpo template turn2');
  const packed = tool.pack(result);
  try {
    const n = packed.numImageTokens[0];
    if (n !== result.numImageTokens) {
      throw new Error(`mgpo: the crop packs to ${n} image tokens but the tool reported ${result.numImageTokens}`);
    }
    return { result, packed, inputIds: userTurnIds(proc, template.system, result.image, before, after, n, lastToken) };
  } catch (err) {
    packed.dispose();
    throw err;
  }
}
