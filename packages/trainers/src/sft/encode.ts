// A conversation → token ids + the assistant-only loss mask + its packed images.
//
// The assistant spans come from the chat template itself, never from searching the model text:
// for each assistant message k the template renders messages[0..k) with the generation prompt
// (P_k, ending "<|im_start|>assistant\n") and messages[0..k] (Q_k); Q_k − P_k is what the
// template emits for that turn (content, then the closing "<|im_end|>\n"). Every P_k/Q_k must be
// a prefix of the full rendering, else the template is not prefix-stable and we refuse.
//
// Tokens: the full text is cut at every P_k and Q_k end and each piece is tokenized on its own
// (image placeholders expanded per piece). This is exactly the sequence the model sees when it
// generates: the prompt (P_k) tokenized, then its own tokens. Pieces end at special tokens or at
// "assistant\n", so for ordinary text this equals tokenizing the whole text (tested).
// Mask: the tokens of Q_k − P_k up to and including the LAST <|im_end|> in that span (the
// template's closing token: the model learns to stop); the newline after it, system/user turns,
// "<|im_start|>assistant\n" and image tokens are never in the loss.
import {
  type ChatMessage, type GridThw, type PackedImages, type Qwen2_5_VLProcessor, expandImagePlaceholders, loadImage,
} from '@fovea/models';
import type { SftMessage } from './data.js';
import type { ResizedImageCache } from './imageCache.js';

const IMAGE_PAD = '<|image_pad|>';
const IM_END = '<|im_end|>';

/** One encoded conversation, ready to pack. */
export interface SftExample {
  id: string;
  inputIds: Int32Array;
  /** 1 where the token is an assistant token that gets loss (see the file comment). */
  lossMask: Uint8Array;
  /** Patch rows of every image, in token order ([rows, patchDim] row-major), or null. */
  pixelRows: Float32Array | null;
  patchDim: number;
  grids: GridThw[];
  /** Number of tokens with lossMask 1. */
  lossTokens: number;
}

function countPads(text: string): number {
  let n = 0;
  for (let i = text.indexOf(IMAGE_PAD); i !== -1; i = text.indexOf(IMAGE_PAD, i + IMAGE_PAD.length)) n++;
  return n;
}

/**
 * Cut points (offsets in the rendered text) and assistant spans [start, end) in pieces: the
 * template's rendering of the conversation with every assistant turn's boundaries.
 */
export function assistantSpans(proc: Qwen2_5_VLProcessor, messages: readonly ChatMessage[]): { text: string; spans: [number, number][] } {
  const full = proc.render(messages).text;
  const spans: [number, number][] = [];
  let last = 0;
  for (let k = 0; k < messages.length; k++) {
    if (messages[k].role !== 'assistant') continue;
    if (k === 0) throw new Error('sft: messages[0] is an assistant turn; a conversation starts with a system or user message');
    const p = proc.render(messages.slice(0, k), { addGenerationPrompt: true }).text;
    const q = proc.render(messages.slice(0, k + 1)).text;
    if (!q.startsWith(p) || !full.startsWith(q) || p.length < last) {
      throw new Error(`sft: the chat template does not render the conversation up to messages[${k}] as a prefix of the whole ` +
        '(its text changes when later turns are added), so the assistant spans cannot be derived from it');
    }
    spans.push([p.length, q.length]);
    last = q.length;
  }
  return { text: full, spans };
}

/** Tokenizes text cut at the given offsets, piece by piece; counts: image tokens per image. */
function encodePieces(proc: Qwen2_5_VLProcessor, text: string, cuts: number[], counts: readonly number[]): { ids: number[]; at: Map<number, number> } {
  const ids: number[] = [];
  const at = new Map<number, number>([[0, 0]]);
  let prev = 0, img = 0;
  for (const c of [...cuts, text.length]) {
    if (c < prev) throw new Error('sft: internal: cut offsets must not decrease');
    const piece = text.slice(prev, c);
    const n = countPads(piece);
    const expanded = expandImagePlaceholders(piece, counts.slice(img, img + n));
    img += n;
    for (const t of proc.tokenizer.encode(expanded, { addSpecialTokens: false })) ids.push(t);
    at.set(c, ids.length);
    prev = c;
  }
  return { ids, at };
}

/** Token ids and the assistant-only loss mask of a conversation whose images are already packed. */
export function encodeConversation(
  proc: Qwen2_5_VLProcessor, messages: readonly ChatMessage[], imageTokenCounts: readonly number[],
): { inputIds: Int32Array; lossMask: Uint8Array } {
  const { text, spans } = assistantSpans(proc, messages);
  const pads = countPads(text);
  if (pads !== imageTokenCounts.length) {
    throw new Error(`sft: the conversation renders ${pads} image placeholder(s) but ${imageTokenCounts.length} image(s) were packed`);
  }
  const { ids, at } = encodePieces(proc, text, spans.flat(), imageTokenCounts);
  const imEnd = proc.tokenizer.tokenToId(IM_END);
  const lossMask = new Uint8Array(ids.length);
  for (const [s, e] of spans) {
    const a = at.get(s)!, b = at.get(e)!;
    let end = b;  // exclusive
    if (imEnd !== undefined) {
      for (let i = b - 1; i >= a; i--) if (ids[i] === imEnd) { end = i + 1; break; }
    }
    for (let i = a; i < end; i++) {
      if (ids[i] === proc.imageTokenId || ids[i] === proc.visionStartTokenId) {
        throw new Error('sft: an assistant turn holds image tokens; images belong in system/user turns');
      }
      lossMask[i] = 1;
    }
  }
  return { inputIds: Int32Array.from(ids), lossMask };
}

/** SftMessage (paths) → ChatMessage (the processor's form). */
export function toChatMessages(messages: readonly SftMessage[]): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((it) => (it.type === 'text' ? { type: 'text' as const, text: it.text } : { type: 'image' as const, image: it.image })),
  }));
}

export interface EncodeOptions {
  minPixels?: number; maxPixels?: number;
  /** Decoded, resized images kept across calls (imageCache.ts); the result is bit-identical. */
  imageCache?: ResizedImageCache;
}

/** Loads and packs the images of a conversation, then encodes it (see the file comment). */
export async function encodeExample(
  proc: Qwen2_5_VLProcessor, id: string, messages: readonly SftMessage[], opts: EncodeOptions = {},
): Promise<SftExample> {
  const chat = toChatMessages(messages);
  const paths = messages.flatMap((m) => (typeof m.content === 'string' ? [] : m.content.flatMap((it) => (it.type === 'image' ? [it.image] : []))));
  let packed: PackedImages | null = null;
  try {
    if (paths.length) {
      const pixels = { minPixels: opts.minPixels, maxPixels: opts.maxPixels };
      const cache = opts.imageCache;
      const images = await Promise.all(paths.map((p) => (cache ? cache.get(p, proc.imageProcessor, pixels) : loadImage(p))));
      packed = await proc.imageProcessor.pack(images, pixels);
    }
    const counts = packed ? packed.numImageTokens : [];
    const { inputIds, lossMask } = encodeConversation(proc, chat, counts);
    let pixelRows: Float32Array | null = null, patchDim = 0;
    const grids: GridThw[] = [];
    if (packed) {
      pixelRows = Float32Array.from(packed.pixelValues.data() as Float32Array);
      patchDim = packed.pixelValues.shape[1];
      const g = packed.gridThw.data() as Int32Array;
      for (let i = 0; i < counts.length; i++) grids.push({ t: g[3 * i], h: g[3 * i + 1], w: g[3 * i + 2] });
    }
    return { id, inputIds, lossMask, pixelRows, patchDim, grids, lossTokens: lossMask.reduce((a, b) => a + b, 0) };
  } finally {
    packed?.dispose();
  }
}
