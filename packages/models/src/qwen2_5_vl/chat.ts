// The conversation API of Qwen2.5-VL (HF Qwen2_5_VLProcessor.apply_chat_template + __call__):
// messages → the checkpoint's chat template rendered with @huggingface/jinja → each image's
// single <|image_pad|> expanded to that image's number of tokens (gh·gw/merge², in order) →
// token ids → 3-D M-RoPE position ids. Images are packed by the ImageProcessor in message order.
// Invariant: the i-th <|image_pad|> run in inputIds belongs to the i-th image of `images`, and
// its length is imageTokenCounts[i]; the model's feature scatter relies on exactly this.
// Images never reach the template engine: it sees {type: 'image', image: ''} (the Qwen template
// only tests that the key exists), so a multi-megabyte Buffer is never walked by jinja.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { ImageProcessor, type PackedImages } from '../processor/imageProcessor.js';
import { type ImageSource, isRgbImage } from '../processor/loadImage.js';
import { Qwen2Tokenizer } from './tokenizer.js';
import { type GridThw, getRopeIndex } from './ropeIndex.js';

export type ChatRole = 'system' | 'user' | 'assistant';
export type ChatContentItem = { type: 'image'; image: ImageSource } | { type: 'text'; text: string };
export interface ChatMessage { role: ChatRole; content: string | ChatContentItem[] }

export interface ChatOptions {
  /** Append "<|im_start|>assistant\n" so the model answers next. Default false, as HF. */
  addGenerationPrompt?: boolean;
  /** The template's add_vision_id: prefix each image with "Picture N: ". Default false. */
  addVisionId?: boolean;
  /** Per-call pixel limits for the image resize (default: preprocessor_config.json). */
  minPixels?: number;
  maxPixels?: number;
}

export interface ChatInputs {
  /** Token ids of the whole conversation, image placeholders expanded. */
  inputIds: Int32Array;
  /** The rendered, expanded text that was tokenized. */
  text: string;
  /** The packed images (caller disposes), or null for a text-only conversation. */
  images: PackedImages | null;
  /** <|image_pad|> tokens per image, in order. */
  imageTokenCounts: number[];
  /** i32 [3, L] (t, h, w rows). */
  positionIds: Int32Array;
  ropeDelta: number;
}

export const IMAGE_PAD = '<|image_pad|>';
export const VISION_START = '<|vision_start|>';
const ROLES = new Set(['system', 'user', 'assistant']);

/** A tokenizer_config special-token entry (string, {content} dict or null) as template text. */
function tokenText(v: unknown): string {
  if (typeof v === 'string') return v;
  const c = (v as { content?: unknown } | null)?.content;
  return typeof c === 'string' ? c : '';
}

function countOccurrences(text: string, needle: string): number {
  let n = 0;
  for (let i = text.indexOf(needle); i !== -1; i = text.indexOf(needle, i + needle.length)) n++;
  return n;
}

/** Replaces the i-th `pad` in `text` by counts[i] copies of it (HF's processor expansion). */
export function expandImagePlaceholders(text: string, counts: readonly number[], pad = IMAGE_PAD): string {
  const parts = text.split(pad);
  if (parts.length - 1 !== counts.length) {
    throw new Error(`expandImagePlaceholders: the text has ${parts.length - 1} ${pad} placeholder(s) but ${counts.length} image(s) were given; ` +
      'each image needs exactly one placeholder');
  }
  counts.forEach((c, i) => {
    if (!Number.isInteger(c) || c < 1) throw new Error(`expandImagePlaceholders: counts[${i}] = ${c}; expected a positive integer`);
  });
  let out = parts[0];
  for (let i = 0; i < counts.length; i++) out += pad.repeat(counts[i]) + parts[i + 1];
  return out;
}

/**
 * Checks the messages and splits them into what the template sees (images replaced by a marker)
 * and the image sources in order.
 */
export function prepareMessages(messages: readonly ChatMessage[]): { forTemplate: unknown[]; images: ImageSource[] } {
  if (!Array.isArray(messages) || messages.length === 0) throw new Error('chat: messages must be a non-empty array of {role, content}');
  const images: ImageSource[] = [];
  const forTemplate = messages.map((m, i) => {
    if (!m || typeof m !== 'object') throw new Error(`chat: messages[${i}] must be an object {role, content}`);
    if (!ROLES.has(m.role)) throw new Error(`chat: messages[${i}].role '${m.role}' is unknown; expected system, user or assistant`);
    if (typeof m.content === 'string') return { role: m.role, content: m.content };
    if (!Array.isArray(m.content)) throw new Error(`chat: messages[${i}].content must be a string or an array of {type: 'image'|'text'} items`);
    const content = (m.content as ChatContentItem[]).map((item: ChatContentItem, j: number) => {
      const where = `chat: messages[${i}].content[${j}]`;
      if (!item || typeof item !== 'object') throw new Error(`${where} must be {type: 'image', image} or {type: 'text', text}`);
      if (item.type === 'text') {
        if (typeof item.text !== 'string') throw new Error(`${where}: a text item needs a string 'text'`);
        return { type: 'text', text: item.text };
      }
      if (item.type === 'image') {
        const img = item.image;
        if (!(typeof img === 'string' || img instanceof Uint8Array || isRgbImage(img))) {
          throw new Error(`${where}: 'image' must be a file path, a Buffer/Uint8Array of encoded bytes or an RgbImage {data, height, width, channels: 3}`);
        }
        images.push(img);
        return { type: 'image', image: '' };
      }
      throw new Error(`${where}: unknown content type '${(item as { type?: unknown }).type}'; expected 'image' or 'text' (videos are not supported)`);
    });
    return { role: m.role, content };
  });
  return { forTemplate, images };
}

/** Where a checkpoint keeps its chat template, in the order looked at (newest layout first). */
export function findChatTemplate(dir: string, tokenizer?: Qwen2Tokenizer): string {
  const jinja = join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) return readFileSync(jinja, 'utf8');
  const json = join(dir, 'chat_template.json');
  if (existsSync(json)) {
    let v: any;
    try {
      v = JSON.parse(readFileSync(json, 'utf8'));
    } catch (err) {
      throw new Error(`chat template: ${json} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof v?.chat_template !== 'string') throw new Error(`chat template: ${json} has no string "chat_template"`);
    return v.chat_template;
  }
  if (tokenizer?.chatTemplate) return tokenizer.chatTemplate;
  throw new Error(`chat template: none found; looked for ${jinja}, ${json} and "chat_template" in ${join(dir, 'tokenizer_config.json')}`);
}

export interface ProcessorLoadOptions {
  /** Use this Jinja template instead of the checkpoint's. */
  chatTemplate?: string;
}

export class Qwen2_5_VLProcessor {
  readonly imageTokenId: number;
  readonly visionStartTokenId: number;
  private readonly template: Template;

  constructor(
    readonly tokenizer: Qwen2Tokenizer, readonly imageProcessor: ImageProcessor, readonly chatTemplate: string,
  ) {
    const pad = tokenizer.tokenToId(IMAGE_PAD), vs = tokenizer.tokenToId(VISION_START);
    if (pad === undefined || vs === undefined) {
      throw new Error(`Qwen2_5_VLProcessor: the tokenizer lacks ${pad === undefined ? IMAGE_PAD : VISION_START}; not a Qwen2-VL tokenizer`);
    }
    this.imageTokenId = pad;
    this.visionStartTokenId = vs;
    try {
      this.template = new Template(chatTemplate);
    } catch (err) {
      throw new Error(`Qwen2_5_VLProcessor: the chat template does not parse: ${(err as Error).message}`);
    }
  }

  /** tokenizer.json, tokenizer_config.json, preprocessor_config.json and the chat template of `dir`. */
  static async fromPretrained(dir: string, opts: ProcessorLoadOptions = {}): Promise<Qwen2_5_VLProcessor> {
    const tokenizer = await Qwen2Tokenizer.fromDir(dir);
    const imageProcessor = await ImageProcessor.fromPretrained(dir);
    const template = opts.chatTemplate ?? findChatTemplate(dir, tokenizer);
    const p = new Qwen2_5_VLProcessor(tokenizer, imageProcessor, template);
    // The model's config names the token ids it was trained with; they must agree.
    const cfgPath = join(dir, 'config.json');
    if (existsSync(cfgPath)) {
      const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
      const want = cfg.image_token_id ?? cfg.text_config?.image_token_id;
      if (want !== undefined && want !== p.imageTokenId) {
        throw new Error(`Qwen2_5_VLProcessor: ${cfgPath} says image_token_id ${want} but the tokenizer maps ${IMAGE_PAD} to ${p.imageTokenId}`);
      }
    }
    return p;
  }

  /** The chat template's text, one <|image_pad|> per image (not yet expanded). */
  render(messages: readonly ChatMessage[], opts: ChatOptions = {}): { text: string; images: ImageSource[] } {
    const { forTemplate, images } = prepareMessages(messages);
    const cfg = this.tokenizer.config;
    let text: string;
    try {
      text = this.template.render({
        messages: forTemplate,
        add_generation_prompt: opts.addGenerationPrompt ?? false,
        add_vision_id: opts.addVisionId ?? false,
        bos_token: tokenText(cfg.bos_token), eos_token: tokenText(cfg.eos_token),
      });
    } catch (err) {
      throw new Error(`chat template: rendering failed: ${(err as Error).message}`);
    }
    const pads = countOccurrences(text, IMAGE_PAD);
    if (pads !== images.length) {
      throw new Error(`chat: the messages hold ${images.length} image(s) but the rendered text has ${pads} ${IMAGE_PAD} placeholder(s); ` +
        `each image needs exactly one (is ${IMAGE_PAD} written in a text item, or does the template drop images?)`);
    }
    return { text, images };
  }

  /** Renders, packs the images, expands, tokenizes and computes M-RoPE positions. */
  async apply(messages: readonly ChatMessage[], opts: ChatOptions = {}): Promise<ChatInputs> {
    const { images } = this.render(messages, opts); // checks placeholders before any decoding
    const packed = images.length > 0
      ? await this.imageProcessor.pack(images, { minPixels: opts.minPixels, maxPixels: opts.maxPixels })
      : null;
    try {
      return this.applyPacked(messages, packed, opts);
    } catch (err) {
      packed?.dispose();
      throw err;
    }
  }

  /** apply() with the images already packed (in message order), synchronously. */
  applyPacked(messages: readonly ChatMessage[], packed: PackedImages | null, opts: ChatOptions = {}): ChatInputs {
    const { text: rendered, images } = this.render(messages, opts);
    const counts = packed ? packed.numImageTokens : [];
    if (counts.length !== images.length) {
      throw new Error(`chat: the messages hold ${images.length} image(s) but the packed images hold ${counts.length}`);
    }
    const grids: GridThw[] = [];
    if (packed) {
      const g = packed.gridThw.data() as Int32Array;
      for (let i = 0; i < counts.length; i++) grids.push({ t: g[3 * i], h: g[3 * i + 1], w: g[3 * i + 2] });
    }
    const text = expandImagePlaceholders(rendered, counts);
    const inputIds = Int32Array.from(this.tokenizer.encode(text, { addSpecialTokens: false }));
    const { positionIds, ropeDelta } = getRopeIndex(inputIds, grids,
      { imageTokenId: this.imageTokenId, visionStartTokenId: this.visionStartTokenId },
      { spatialMergeSize: this.imageProcessor.config.mergeSize });
    return { inputIds, text, images: packed, imageTokenCounts: [...counts], positionIds, ropeDelta };
  }
}
