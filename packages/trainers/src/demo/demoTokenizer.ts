// The demo model's small tokenizer: Qwen2's byte-level BPE format (NFC normalizer, Qwen's split
// regex, ByteLevel pre-tokenizer/decoder, the 22 Qwen added tokens) with a tiny vocabulary — the
// 256 byte symbols, `numMerges` merges learned here from the demo's own strings (rollout
// templates, tool texts, questions, JSON boxes, \boxed{} answers), then the added tokens — so the
// embedding and the lm head stay small (512 rows by default) and the demo's prompts stay short.
// Being byte-level it encodes ANY string and decodes back to it (after NFC).
// Invariants: training is deterministic (pair counts weighted by piece frequency; the most frequent
// pair first, ties broken by the smaller pair string); the added tokens' ids are
// firstSpecialId = 256 + numMerges, in Qwen's order (<|endoftext|>, <|im_start|>, <|im_end|>, …).

/** Qwen2's pre-tokenizer split, as tokenizer.json stores it (Oniguruma syntax). */
export const QWEN_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** The same split in JavaScript syntax (for training). */
const SPLIT_JS = /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** Qwen2-VL's added tokens in id order, with their "special" flag. */
export const QWEN_ADDED_TOKENS: readonly [string, boolean][] = [
  ['<|endoftext|>', true], ['<|im_start|>', true], ['<|im_end|>', true],
  ['<|object_ref_start|>', true], ['<|object_ref_end|>', true], ['<|box_start|>', true], ['<|box_end|>', true],
  ['<|quad_start|>', true], ['<|quad_end|>', true], ['<|vision_start|>', true], ['<|vision_end|>', true],
  ['<|vision_pad|>', true], ['<|image_pad|>', true], ['<|video_pad|>', true],
  ['<tool_call>', false], ['</tool_call>', false], ['<|fim_prefix|>', false], ['<|fim_middle|>', false],
  ['<|fim_suffix|>', false], ['<|fim_pad|>', false], ['<|repo_name|>', false], ['<|file_sep|>', false],
];

/** Qwen2-VL / Qwen2.5-VL-Instruct's chat template (as in their tokenizer_config.json). */
export const QWEN_VL_CHAT_TEMPLATE =
  "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/**
 * GPT-2's bytes_to_unicode: sym[b] is the printable symbol standing for byte b; `order` lists the
 * bytes in Qwen's id order (printable ones first), so byte order[i] has id i.
 */
function byteSymbols(): { sym: string[]; order: number[] } {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + extra++); }
  const sym = new Array<string>(256);
  bs.forEach((b, i) => { sym[b] = String.fromCharCode(cs[i]); });
  return { sym, order: bs };
}

export interface DemoTokenizerFiles {
  /** tokenizer.json and tokenizer_config.json contents. */
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  /** Id of each added token by content. */
  addedIds: Record<string, number>;
  /** Total ids (256 + merges + added tokens). */
  vocabSize: number;
}

/** Learns `numMerges` byte-level BPE merges from `corpus` (see the file comment). */
export function learnMerges(corpus: readonly string[], numMerges: number): { vocab: Record<string, number>; merges: string[] } {
  if (!Number.isInteger(numMerges) || numMerges < 0) throw new Error(`learnMerges: numMerges must be a non-negative integer, got ${numMerges}`);
  const { sym, order } = byteSymbols();
  const vocab: Record<string, number> = Object.fromEntries(order.map((b, i) => [sym[b], i]));
  const enc = new TextEncoder();
  const freq = new Map<string, number>();
  for (const text of corpus) {
    for (const piece of text.normalize('NFC').match(SPLIT_JS) ?? []) {
      const w = Array.from(enc.encode(piece), (b) => sym[b]).join('');
      freq.set(w, (freq.get(w) ?? 0) + 1);
    }
  }
  const words = [...freq].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([w, f]) => ({ syms: Array.from(w), f }));
  const merges: string[] = [];
  while (merges.length < numMerges) {
    const counts = new Map<string, number>();
    for (const { syms, f } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const k = syms[i] + ' ' + syms[i + 1];
        counts.set(k, (counts.get(k) ?? 0) + f);
      }
    }
    let best: string | null = null, bestN = 0;
    for (const [k, c] of counts) if (c > bestN || (c === bestN && best !== null && k < best)) { best = k; bestN = c; }
    if (best === null) throw new Error(`learnMerges: the corpus allows only ${merges.length} merges, ${numMerges} asked; give more text or fewer merges`);
    const [a, b] = best.split(' ');
    merges.push(best);
    vocab[a + b] = 256 + merges.length - 1;
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) { out.push(a + b); i++; } else out.push(w.syms[i]);
      }
      w.syms = out;
    }
  }
  return { vocab, merges };
}

/** tokenizer.json + tokenizer_config.json of a Qwen2-format byte-level BPE trained on `corpus`. */
export function buildDemoTokenizer(corpus: readonly string[], numMerges: number): DemoTokenizerFiles {
  const { vocab, merges } = learnMerges(corpus, numMerges);
  const first = 256 + merges.length;
  const added = QWEN_ADDED_TOKENS.map(([content, special], i) => ({
    id: first + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special,
  }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const tokenizerJson = {
    version: '1.0', truncation: null, padding: null, added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN_SPLIT_REGEX }, behavior: 'Isolated', invert: false }, byteLevel],
    },
    post_processor: byteLevel, decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
  const tokenizerConfig = {
    add_bos_token: false, add_prefix_space: false,
    added_tokens_decoder: Object.fromEntries(added.map(({ id, ...t }) => [String(id), t])),
    additional_special_tokens: QWEN_ADDED_TOKENS.slice(1, 14).map(([c]) => c),
    bos_token: null, chat_template: QWEN_VL_CHAT_TEMPLATE, clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>', errors: 'replace', model_max_length: 32768, pad_token: '<|endoftext|>',
    split_special_tokens: false, tokenizer_class: 'Qwen2Tokenizer', unk_token: null,
  };
  return {
    tokenizerJson, tokenizerConfig, vocabSize: first + added.length,
    addedIds: Object.fromEntries(added.map((t) => [t.content, t.id])),
  };
}
