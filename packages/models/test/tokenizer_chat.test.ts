// Tokenizer (tokenizers.js on a Qwen2-format tokenizer.json) and the conversation API.
// The fixture tokenizer (fixtures/tokenizer, made by gen_tokenizer.mjs) is a real byte-level BPE
// in Qwen2's format with Qwen's added tokens at the tiny model's ids. Its encodings are checked
// against an independent reference written here (added-token split, NFC, the Qwen regex in JS,
// GPT-2 byte map, lowest-rank-first BPE), then round trips, then the chat template against the
// spec's rendered string, image placeholder expansion, M-RoPE positions and bad input.
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { Qwen2Tokenizer } from '../src/qwen2_5_vl/tokenizer.js';
import { Qwen2_5_VLProcessor, expandImagePlaceholders, type ChatMessage } from '../src/qwen2_5_vl/chat.js';
import { getRopeIndex } from '../src/qwen2_5_vl/ropeIndex.js';
import type { RgbImage } from '../src/processor/loadImage.js';

const DIR = join(import.meta.dirname, 'fixtures', 'tokenizer');
const TJ = JSON.parse(readFileSync(join(DIR, 'tokenizer.json'), 'utf8'));
const tok = await Qwen2Tokenizer.fromDir(DIR);

// ---- independent reference tokenizer ----
const B2U: string[] = (() => {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const out = new Array<string>(256);
  bs.forEach((b, i) => { out[b] = String.fromCharCode(cs[i]); });
  return out;
})();
const RANK = new Map<string, number>((TJ.model.merges as string[]).map((m, i) => [m, i]));
const VOCAB: Record<string, number> = TJ.model.vocab;
const ADDED: { id: number; content: string }[] = TJ.added_tokens;
const SPLIT = /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

function refBpe(word: string): string[] {
  let syms = Array.from(word);
  for (;;) {
    let best = -1, at = -1;
    for (let i = 0; i + 1 < syms.length; i++) {
      const r = RANK.get(syms[i] + ' ' + syms[i + 1]);
      if (r !== undefined && (best < 0 || r < best)) { best = r; at = i; }
    }
    if (at < 0) return syms;
    syms = [...syms.slice(0, at), syms[at] + syms[at + 1], ...syms.slice(at + 2)];
  }
}

function refEncode(text: string): number[] {
  const ids: number[] = [];
  const plain = (s: string) => {
    for (const piece of s.normalize('NFC').match(SPLIT) ?? []) {
      const w = Array.from(new TextEncoder().encode(piece), (b) => B2U[b]).join('');
      for (const t of refBpe(w)) ids.push(VOCAB[t]);
    }
  };
  let start = 0, i = 0;
  while (i < text.length) {
    const hit = ADDED.filter((a) => text.startsWith(a.content, i)).sort((a, b) => b.content.length - a.content.length)[0];
    if (hit) { plain(text.slice(start, i)); ids.push(hit.id); i += hit.content.length; start = i; } else i++;
  }
  plain(text.slice(start));
  return ids;
}

const SAMPLES = [
  'Hello world!', ' the model', 'the the the', "We're sure it's fine, they'll see.", 'Numbers: 12345 and 3.14159',
  'Größe naïve café', '视觉语言模型读取图像', 'こんにちは、世界。', 'Привет, мир!', 'Emoji: 😀🚀 👍🏽 ❤️',
  '  leading spaces\n\n\ttabs\r\nCRLF   trailing   ', '<|im_start|>user\nHi<|im_end|>\n',
  'x<|image_pad|><|image_pad|>y', '<tool_call>{"name": "zoom"}</tool_call>', 'unseen wörds: zyxq ǅ ß', '',
  "DON'T SHOUT I'M HERE", 'a\u0301 e\u0301', '\u0000\u0001 control \u007f',
];

describe('Qwen2Tokenizer', () => {
  it('loads the fixture: vocab, special ids, eos/pad, template', () => {
    expect(tok.vocabSize).toBe(753);
    expect(tok.tokenToId('<|endoftext|>')).toBe(731);
    expect(tok.tokenToId('<|im_start|>')).toBe(732);
    expect(tok.tokenToId('<|im_end|>')).toBe(733);
    expect(tok.tokenToId('<|vision_start|>')).toBe(740);
    expect(tok.tokenToId('<|vision_end|>')).toBe(741);
    expect(tok.tokenToId('<|image_pad|>')).toBe(743);
    expect(tok.tokenToId('<|video_pad|>')).toBe(744);
    expect(tok.idToToken(743)).toBe('<|image_pad|>');
    expect(tok.idToToken(0)).toBe('!');
    expect(tok.idToToken(9999)).toBeUndefined();
    expect(tok.eosTokenId).toBe(733);
    expect(tok.padTokenId).toBe(731);
    expect(tok.bosTokenId).toBeNull();
    expect(tok.specialTokenIds.has(743)).toBe(true);
    expect(tok.specialTokenIds.has(745)).toBe(false); // <tool_call> is not special in Qwen2.5
    expect(tok.chatTemplate).toContain('<|vision_start|><|image_pad|><|vision_end|>');
  });

  it('hand-checked merges: " the" is one token, specials are single ids', () => {
    // merges 'Ġ t' (rank 0), 'h e' (1), 'Ġt he' (3) → 'Ġthe'
    expect(tok.tokenize(' the')).toEqual(['Ġthe']);
    expect(tok.encode(' the')).toEqual([VOCAB['Ġthe']]);
    expect(tok.encode('<|im_start|>user\n')).toEqual([732, ...refEncode('user\n')]);
    expect(tok.encode('a<|image_pad|>b')).toEqual([VOCAB.a, 743, VOCAB.b]);
    // ' model' and 'ing'-free words split into the learned pieces, not bytes
    expect(tok.tokenize(' model').length).toBe(1);
    expect(tok.tokenize('zq')).toEqual(['z', 'q']);
  });

  it('matches the reference BPE on samples, corpus lines and random strings', () => {
    for (const s of SAMPLES) expect(tok.encode(s), JSON.stringify(s)).toEqual(refEncode(s));
    const gen = readFileSync(join(DIR, 'gen_tokenizer.mjs'), 'utf8');
    const corpus = gen.slice(gen.indexOf('const CORPUS = `') + 16, gen.indexOf('`;', gen.indexOf('const CORPUS')));
    for (const line of corpus.split('\n')) expect(tok.encode(line)).toEqual(refEncode(line));
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const alphabet = [...'abcdefghijklmnopqrstuvwxyz ABCDEF .,!?\'"\n\t0123456789éß视觉😀', '<|im_end|>', '<|image_pad|>', "'s", "'LL"];
    for (let k = 0; k < 300; k++) {
      let s = '';
      const n = 1 + Math.floor(rnd() * 30);
      for (let i = 0; i < n; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
      expect(tok.encode(s), JSON.stringify(s)).toEqual(refEncode(s));
    }
  });

  it('round trips text exactly (already-NFC text), specials included', () => {
    for (const s of SAMPLES.filter((x) => x === x.normalize('NFC'))) expect(tok.decode(tok.encode(s))).toBe(s);
    expect(tok.decode(tok.encode('a\u0301'))).toBe('á'); // NFC normalizer composes
    expect(tok.decode([])).toBe('');
    expect(tok.decode(new Int32Array(tok.encode(' the model')))).toBe(' the model');
  });

  it('skipSpecialTokens drops special tokens only', () => {
    const ids = tok.encode('<|im_start|>user\nHi <tool_call>x</tool_call><|im_end|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('user\nHi <tool_call>x</tool_call>');
    expect(tok.decode([732, 743], { skipSpecialTokens: true })).toBe('');
  });

  it('a split multi-byte character decodes to U+FFFD', () => {
    const ids = tok.encode('😀');
    expect(ids.length).toBeGreaterThan(1);
    expect(tok.decode(ids.slice(0, 1))).toBe('\uFFFD');
  });

  it('bad input: ids, files, config', async () => {
    expect(() => tok.decode([5, 753])).toThrow(/ids\[1\] = 753 is not a token id .*753 ids/);
    expect(() => tok.decode([1.5])).toThrow(/ids\[0\]/);
    expect(() => tok.decode([-1])).toThrow(/ids\[0\] = -1/);
    expect(() => tok.encode(5 as unknown as string)).toThrow(/expected a string/);
    const tmp = mkdtempSync(join(tmpdir(), 'fovea-tok-'));
    await expect(Qwen2Tokenizer.fromDir(tmp)).rejects.toThrow(new RegExp(`cannot read tokenizer file.*${join(tmp, 'tokenizer.json')}`));
    writeFileSync(join(tmp, 'tokenizer.json'), '{"model": ');
    await expect(Qwen2Tokenizer.fromDir(tmp)).rejects.toThrow(/tokenizer.json is not valid JSON/);
    writeFileSync(join(tmp, 'tokenizer.json'), '{"model": {"type": "BPE", "vocab": {"a": 0}}}');
    await expect(Qwen2Tokenizer.fromDir(tmp)).rejects.toThrow(/BPE model has no "merges"/);
    writeFileSync(join(tmp, 'tokenizer.json'), '[]');
    await expect(Qwen2Tokenizer.fromDir(tmp)).rejects.toThrow(/must hold a JSON object/);
    writeFileSync(join(tmp, 'tokenizer.json'), JSON.stringify({ ...TJ, normalizer: { type: 'Nope' } }));
    await expect(Qwen2Tokenizer.fromDir(tmp)).rejects.toThrow(/cannot build the tokenizer from .*tokenizer.json: Unknown Normalizer type: Nope/);
    copyFileSync(join(DIR, 'tokenizer.json'), join(tmp, 'tokenizer.json'));
    writeFileSync(join(tmp, 'tokenizer_config.json'), '{"eos_token": "<|nope|>"}');
    await expect(Qwen2Tokenizer.fromDir(tmp)).rejects.toThrow(/eos_token '<\|nope\|>' is not a token/);
    writeFileSync(join(tmp, 'tokenizer_config.json'), 'nope');
    await expect(Qwen2Tokenizer.fromDir(tmp)).rejects.toThrow(/tokenizer_config.json is not valid JSON/);
    await expect(Qwen2Tokenizer.fromFile(join(tmp, 'missing.json'))).rejects.toThrow(/missing.json/);
    // Without tokenizer_config.json: works, no eos, no template.
    writeFileSync(join(tmp, 'tokenizer_config.json'), '{}');
    const bare = await Qwen2Tokenizer.fromDir(tmp);
    expect(bare.eosTokenId).toBeNull();
    expect(bare.chatTemplate).toBeNull();
    expect(bare.encode('<|im_start|>')).toEqual([732]);
  });
});

// ---- conversation API ----
const proc = await Qwen2_5_VLProcessor.fromPretrained(DIR);
const solid = (height: number, width: number, v = 128): RgbImage => {
  const data = new Uint8Array(height * width * 3);
  for (let i = 0; i < data.length; i++) data[i] = (v + i * 7) & 255;
  return { data, height, width, channels: 3 };
};
const PAD = '<|image_pad|>';
const imgBlock = (n: number) => `<|vision_start|>${PAD.repeat(n)}<|vision_end|>`;

describe('Qwen2_5_VLProcessor', () => {
  it('one user turn with an image: the spec\'s string, pads expanded, ids and positions', async () => {
    const messages: ChatMessage[] = [{ role: 'user', content: [{ type: 'image', image: solid(56, 56) }, { type: 'text', text: 'What is this?' }] }];
    const r = await proc.apply(messages, { addGenerationPrompt: true });
    try {
      // 56×56 → grid 1×4×4 → 4 tokens
      expect(r.imageTokenCounts).toEqual([4]);
      expect(r.text).toBe('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n' +
        `${imgBlock(4)}What is this?<|im_end|>\n<|im_start|>assistant\n`);
      expect(Array.from(r.inputIds)).toEqual(tok.encode(r.text));
      expect(Array.from(r.inputIds).filter((x) => x === 743).length).toBe(4);
      const ref = getRopeIndex(r.inputIds, [{ t: 1, h: 4, w: 4 }], { imageTokenId: 743, visionStartTokenId: 740 });
      expect(r.positionIds).toEqual(ref.positionIds);
      expect(r.ropeDelta).toBe(ref.ropeDelta);
      expect(r.ropeDelta).toBe(-2); // 2×2 image tokens take max(2,2) = 2 positions for 4 tokens
      expect(r.images!.numImageTokens).toEqual([4]);
      expect(tok.decode(r.inputIds)).toBe(r.text);
    } finally { r.images?.dispose(); }
  });

  it('multi-turn, two images of different sizes (one a PNG buffer), history kept in order', async () => {
    const png = await sharp({ create: { width: 56, height: 112, channels: 3, background: { r: 10, g: 200, b: 30 } } }).png().toBuffer();
    const messages: ChatMessage[] = [
      { role: 'user', content: [{ type: 'image', image: solid(56, 84) }, { type: 'text', text: 'Describe.' }] },
      { role: 'assistant', content: 'A pattern.' },
      { role: 'user', content: [{ type: 'text', text: 'And this one?' }, { type: 'image', image: png }] },
    ];
    const r = await proc.apply(messages, { addGenerationPrompt: true });
    try {
      expect(r.imageTokenCounts).toEqual([6, 8]); // 56×84 → 4×6 patches → 2×3; 112×56 → 8×4 → 4×2
      expect(r.text).toBe('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' +
        `<|im_start|>user\n${imgBlock(6)}Describe.<|im_end|>\n<|im_start|>assistant\nA pattern.<|im_end|>\n` +
        `<|im_start|>user\nAnd this one?${imgBlock(8)}<|im_end|>\n<|im_start|>assistant\n`);
      expect(Array.from(r.images!.gridThw.data() as Int32Array)).toEqual([1, 4, 6, 1, 8, 4]);
      const L = r.inputIds.length;
      // The token right after the first image's pads (<|vision_end|>) sits at st + max(2, 3).
      const first = r.inputIds.indexOf(743);
      const st = r.positionIds[first];
      expect(r.positionIds[first + 6]).toBe(st + 3);
      expect(r.positionIds[L + first + 6]).toBe(st + 3);
      expect(Array.from(r.positionIds.subarray(2 * L + first, 2 * L + first + 6))).toEqual([0, 1, 2, 0, 1, 2].map((c) => st + c));
      const ref = getRopeIndex(r.inputIds, [{ t: 1, h: 4, w: 6 }, { t: 1, h: 8, w: 4 }], { imageTokenId: 743, visionStartTokenId: 740 });
      expect(r.positionIds).toEqual(ref.positionIds);
      expect(r.ropeDelta).toBe(ref.ropeDelta);
    } finally { r.images?.dispose(); }
  });

  it('text only: no images, positions 0..L-1, no generation prompt by default', async () => {
    const r = await proc.apply([{ role: 'user', content: 'Hi there' }]);
    expect(r.images).toBeNull();
    expect(r.imageTokenCounts).toEqual([]);
    expect(r.text).toBe('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n');
    const L = r.inputIds.length;
    expect(Array.from(r.positionIds)).toEqual([0, 1, 2].flatMap(() => Array.from({ length: L }, (_, i) => i)));
    expect(r.ropeDelta).toBe(0);
  });

  it('an explicit system message replaces the default one', () => {
    const r = proc.applyPacked([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi' }] }], null,
      { addGenerationPrompt: true });
    expect(r.text).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
  });

  it('addVisionId prefixes "Picture N: " and applyPacked takes pre-packed images', () => {
    const packed = proc.imageProcessor.packRgb([solid(56, 56), solid(56, 56, 3)]);
    try {
      const r = proc.applyPacked([{ role: 'user', content: [{ type: 'image', image: solid(56, 56) }, { type: 'image', image: solid(56, 56, 3) }, { type: 'text', text: 'Same?' }] }],
        packed, { addVisionId: true });
      expect(r.text).toBe('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n' +
        `Picture 1: ${imgBlock(4)}Picture 2: ${imgBlock(4)}Same?<|im_end|>\n`);
      expect(r.images).toBe(packed);
    } finally { packed.dispose(); }
  });

  it('minPixels/maxPixels per call change the token count', async () => {
    const r = await proc.apply([{ role: 'user', content: [{ type: 'image', image: solid(56, 56) }] }], { minPixels: 112 * 112 });
    try { expect(r.imageTokenCounts).toEqual([16]); } finally { r.images?.dispose(); }
  });

  it('expandImagePlaceholders', () => {
    expect(expandImagePlaceholders(`a${PAD}b${PAD}c`, [2, 3])).toBe(`a${PAD.repeat(2)}b${PAD.repeat(3)}c`);
    expect(expandImagePlaceholders('no images', [])).toBe('no images');
    expect(() => expandImagePlaceholders(`a${PAD}b`, [1, 2])).toThrow(/has 1 <\|image_pad\|> placeholder\(s\) but 2 image\(s\)/);
    expect(() => expandImagePlaceholders(`a${PAD}b${PAD}`, [1])).toThrow(/has 2 .* but 1 image/);
    expect(() => expandImagePlaceholders(`a${PAD}b`, [0])).toThrow(/counts\[0\] = 0/);
  });

  it('mismatch errors say both counts', async () => {
    // A literal placeholder in the text: 1 image, 2 placeholders.
    await expect(proc.apply([{ role: 'user', content: [{ type: 'image', image: solid(56, 56) }, { type: 'text', text: `look ${PAD}` }] }]))
      .rejects.toThrow(/hold 1 image\(s\) but the rendered text has 2 <\|image_pad\|>/);
    // A template that drops images: 1 image, 0 placeholders.
    const dropping = new Qwen2_5_VLProcessor(tok, proc.imageProcessor,
      "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}{% if c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %}{% endfor %}");
    await expect(dropping.apply([{ role: 'user', content: [{ type: 'image', image: solid(56, 56) }, { type: 'text', text: 'x' }] }]))
      .rejects.toThrow(/hold 1 image\(s\) but the rendered text has 0/);
    // Packed images that do not match the messages.
    const packed = proc.imageProcessor.packRgb([solid(56, 56), solid(56, 56)]);
    try {
      expect(() => proc.applyPacked([{ role: 'user', content: [{ type: 'image', image: solid(56, 56) }] }], packed))
        .toThrow(/hold 1 image\(s\) but the packed images hold 2/);
    } finally { packed.dispose(); }
  });

  it('bad messages: role, content type, image, shape', () => {
    const bad = (m: unknown) => () => proc.applyPacked(m as ChatMessage[], null);
    expect(bad([{ role: 'tool', content: 'x' }])).toThrow(/messages\[0\].role 'tool' is unknown/);
    expect(bad([{ role: 'user', content: [{ type: 'video', video: 'a.mp4' }] }])).toThrow(/content\[0\]: unknown content type 'video'/);
    expect(bad([{ role: 'user', content: [{ type: 'text', text: 5 }] }])).toThrow(/content\[0\]: a text item needs a string/);
    expect(bad([{ role: 'user', content: [{ type: 'image', image: 42 }] }])).toThrow(/content\[0\]: 'image' must be/);
    expect(bad([{ role: 'user', content: 42 }])).toThrow(/content must be a string or an array/);
    expect(bad([])).toThrow(/non-empty array/);
    expect(bad([null])).toThrow(/messages\[0\] must be an object/);
  });

  it('template lookup: chat_template.jinja / .json take precedence; missing says where it looked', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'fovea-chat-'));
    for (const f of ['tokenizer.json', 'preprocessor_config.json']) copyFileSync(join(DIR, f), join(tmp, f));
    writeFileSync(join(tmp, 'tokenizer_config.json'), '{"eos_token": "<|im_end|>"}');
    await expect(Qwen2_5_VLProcessor.fromPretrained(tmp)).rejects.toThrow(
      new RegExp(`none found; looked for ${join(tmp, 'chat_template.jinja')}, ${join(tmp, 'chat_template.json')} and "chat_template" in ${join(tmp, 'tokenizer_config.json')}`));
    writeFileSync(join(tmp, 'chat_template.json'), JSON.stringify({ chat_template: 'J:{{ messages[0].content }}' }));
    expect((await Qwen2_5_VLProcessor.fromPretrained(tmp)).render([{ role: 'user', content: 'x' }]).text).toBe('J:x');
    writeFileSync(join(tmp, 'chat_template.jinja'), 'K:{{ messages[0].content }}');
    expect((await Qwen2_5_VLProcessor.fromPretrained(tmp)).render([{ role: 'user', content: 'x' }]).text).toBe('K:x');
    writeFileSync(join(tmp, 'chat_template.jinja'), "{{ raise_exception('no tools here') }}");
    await expect((await Qwen2_5_VLProcessor.fromPretrained(tmp)).apply([{ role: 'user', content: 'x' }]))
      .rejects.toThrow(/rendering failed: .*no tools here/);
    writeFileSync(join(tmp, 'chat_template.jinja'), '{% for %}');
    await expect(Qwen2_5_VLProcessor.fromPretrained(tmp)).rejects.toThrow(/chat template does not parse/);
    writeFileSync(join(tmp, 'chat_template.jinja'), 'ok');
    writeFileSync(join(tmp, 'config.json'), '{"image_token_id": 151655}');
    await expect(Qwen2_5_VLProcessor.fromPretrained(tmp)).rejects.toThrow(/says image_token_id 151655 but the tokenizer maps <\|image_pad\|> to 743/);
  });
});
