// The text tokenizer of a Hugging Face checkpoint: tokenizer.json run by @huggingface/tokenizers
// (tokenizers.js, pure JS) plus the metadata of tokenizer_config.json (eos/pad/bos, chat
// template). For Qwen2/Qwen2.5-VL that is byte-level BPE: NFC normalizer, Qwen's split regex
// (Oniguruma, translated by tokenizers.js), ByteLevel pre-tokenizer/decoder, and added tokens
// (<|im_start|>, <|image_pad|>, …) that are matched in the raw text before anything else, so a
// special token written in the text always becomes its id.
// Why a wrapper: numbers in and out (no undefined ids slipping through for unknown tokens or
// ids), errors that name the file, and the config fields the processor and trainers need.
// Lossless round trips matter for RL (sampled ids must not be re-tokenized): decode does no
// clean-up of spaces unless tokenizer_config.json asks for it.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

export interface TokenizerEncodeOptions {
  /** Run the post-processor's special tokens (BOS etc.; none for Qwen). Default true, as HF. */
  addSpecialTokens?: boolean;
}

export interface TokenizerDecodeOptions {
  /** Drop tokens marked special (Qwen: <|im_start|>, <|image_pad|>, … but not <tool_call>). */
  skipSpecialTokens?: boolean;
}

type Json = Record<string, any>;

async function readJson(path: string, what: string): Promise<Json> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`Qwen2Tokenizer: cannot read ${what} ${path}: ${(err as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`Qwen2Tokenizer: ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`Qwen2Tokenizer: ${path} must hold a JSON object`);
  return v as Json;
}

/** A special-token entry of tokenizer_config.json: a string, an AddedToken dict, or null. */
function tokenContent(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content;
  return null;
}

export class Qwen2Tokenizer {
  /** Token ids the tokenizer can produce: max id + 1 (the model's embedding may have more rows). */
  readonly vocabSize: number;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly bosTokenId: number | null;
  /** Ids of added tokens marked special (and additional_special_tokens). */
  readonly specialTokenIds: ReadonlySet<number>;
  /** tokenizer_config.json's chat_template (the "default" one if it holds a list), or null. */
  readonly chatTemplate: string | null;
  /** tokenizer_config.json as read. */
  readonly config: Readonly<Json>;
  private readonly hf: HfTokenizer;
  private readonly clean: boolean;

  /** From parsed tokenizer.json and tokenizer_config.json objects; `source` names them in errors. */
  constructor(tokenizerJson: unknown, tokenizerConfig: unknown = {}, source = 'tokenizer.json') {
    const tj = tokenizerJson as Json;
    if (!tj || typeof tj !== 'object' || Array.isArray(tj)) throw new Error(`Qwen2Tokenizer: ${source} must be a JSON object`);
    const model = tj.model;
    if (!model || typeof model !== 'object') throw new Error(`Qwen2Tokenizer: ${source} has no "model" object`);
    if (!model.vocab || typeof model.vocab !== 'object') throw new Error(`Qwen2Tokenizer: ${source}: model has no "vocab"`);
    if (model.type === 'BPE' && !Array.isArray(model.merges)) throw new Error(`Qwen2Tokenizer: ${source}: BPE model has no "merges" array`);
    const added = tj.added_tokens ?? [];
    if (!Array.isArray(added)) throw new Error(`Qwen2Tokenizer: ${source}: "added_tokens" must be an array`);
    added.forEach((t: Json, i: number) => {
      if (!t || !Number.isInteger(t.id) || t.id < 0 || typeof t.content !== 'string') {
        throw new Error(`Qwen2Tokenizer: ${source}: added_tokens[${i}] needs an integer "id" and a string "content"`);
      }
    });
    const cfg = (tokenizerConfig ?? {}) as Json;
    if (typeof cfg !== 'object' || Array.isArray(cfg)) throw new Error('Qwen2Tokenizer: tokenizer_config must be a JSON object');
    // tokenizers.js wants these five keys present; null means "none", as in tokenizer.json.
    const full = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...tj, added_tokens: added };
    try {
      this.hf = new HfTokenizer(full, cfg);
    } catch (err) {
      throw new Error(`Qwen2Tokenizer: cannot build the tokenizer from ${source}: ${(err as Error).message}`);
    }
    let max = -1;
    for (const v of Object.values(model.vocab)) {
      if (!Number.isInteger(v) || (v as number) < 0) throw new Error(`Qwen2Tokenizer: ${source}: vocab ids must be non-negative integers, got ${v}`);
      if ((v as number) > max) max = v as number;
    }
    for (const t of added) max = Math.max(max, t.id);
    this.vocabSize = max + 1;
    this.config = cfg;
    this.clean = cfg.clean_up_tokenization_spaces === true;
    const special = new Set<number>(added.filter((t: Json) => t.special).map((t: Json) => t.id as number));
    for (const s of cfg.additional_special_tokens ?? []) {
      const id = this.tokenToId(tokenContent(s) ?? '');
      if (id !== undefined) special.add(id);
    }
    this.specialTokenIds = special;
    const idOf = (key: string): number | null => {
      const c = tokenContent(cfg[key]);
      if (c === null) return null;
      const id = this.tokenToId(c);
      if (id === undefined) throw new Error(`Qwen2Tokenizer: tokenizer_config ${key} '${c}' is not a token of ${source}`);
      return id;
    };
    this.eosTokenId = idOf('eos_token');
    this.padTokenId = idOf('pad_token');
    this.bosTokenId = idOf('bos_token');
    const ct = cfg.chat_template;
    if (typeof ct === 'string') this.chatTemplate = ct;
    else if (Array.isArray(ct)) this.chatTemplate = ct.find((t: Json) => t?.name === 'default')?.template ?? null;
    else this.chatTemplate = null;
  }

  /** Reads tokenizer.json and, when given, tokenizer_config.json. */
  static async fromFile(tokenizerJsonPath: string, tokenizerConfigPath?: string): Promise<Qwen2Tokenizer> {
    const tj = await readJson(tokenizerJsonPath, 'tokenizer file');
    const cfg = tokenizerConfigPath === undefined ? {} : await readJson(tokenizerConfigPath, 'tokenizer config');
    return new Qwen2Tokenizer(tj, cfg, tokenizerJsonPath);
  }

  /** A checkpoint directory: tokenizer.json (required) and tokenizer_config.json (optional). */
  static async fromDir(dir: string): Promise<Qwen2Tokenizer> {
    const cfgPath = join(dir, 'tokenizer_config.json');
    // tokenizer_config.json is optional (no chat template, no eos then); a broken one is an error.
    const cfg = existsSync(cfgPath) ? await readJson(cfgPath, 'tokenizer config') : {};
    const path = join(dir, 'tokenizer.json');
    const tj = await readJson(path, 'tokenizer file (a Hugging Face checkpoint directory holds tokenizer.json)');
    return new Qwen2Tokenizer(tj, cfg, path);
  }

  /** Text → token ids. Special tokens written in the text (e.g. <|im_start|>) map to their ids. */
  encode(text: string, opts: TokenizerEncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new Error(`Qwen2Tokenizer.encode: expected a string, got ${typeof text}`);
    const { ids, tokens } = this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true });
    for (let i = 0; i < ids.length; i++) {
      if (!Number.isInteger(ids[i])) {
        throw new Error(`Qwen2Tokenizer.encode: piece '${tokens[i]}' has no id (the vocabulary lacks it and there is no unk token)`);
      }
    }
    return ids;
  }

  /** Text → token strings (byte-level symbols for Qwen), without post-processing. */
  tokenize(text: string): string[] {
    if (typeof text !== 'string') throw new Error(`Qwen2Tokenizer.tokenize: expected a string, got ${typeof text}`);
    return this.hf.tokenize(text);
  }

  /** Token ids → text. Invalid UTF-8 (a split multi-byte character) decodes to U+FFFD, as HF. */
  decode(ids: ArrayLike<number>, opts: TokenizerDecodeOptions = {}): string {
    if (!ids || typeof ids.length !== 'number') throw new Error('Qwen2Tokenizer.decode: expected an array of token ids');
    const list = Array.from(ids);
    list.forEach((id, i) => {
      if (!Number.isInteger(id) || this.idToToken(id) === undefined) {
        throw new Error(`Qwen2Tokenizer.decode: ids[${i}] = ${id} is not a token id of this tokenizer (vocabulary of ${this.vocabSize} ids)`);
      }
    });
    const kept = opts.skipSpecialTokens ? list.filter((id) => !this.specialTokenIds.has(id)) : list;
    if (kept.length === 0) return '';
    return this.hf.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: this.clean });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.hf.id_to_token(id) : undefined;
  }
}
