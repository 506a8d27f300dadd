// Qwen2.5-VL's 3-D M-RoPE position ids (Hugging Face `get_rope_index`, images only).
// Every token gets a (t, h, w) triple. Text tokens get t = h = w = a running counter. An image's
// tokens are laid out as its merged grid (gh/m × gw/m, raster order): token (r, c) gets
// (st, st + r, st + c) where st is the position the image would start at; t stays 0 within an
// image (second_per_grid_t = 0 for images). Text after an image resumes at max(position) + 1,
// so the first text token after an image is st + max(gh/m, gw/m).
// An image is a `<|vision_start|>` followed by exactly gt·gh·gw/m² `<|image_pad|>` tokens; the
// grids are consumed in order. Layout of the result: [3, L] row-major (t row, h row, w row).
// Videos are not handled (their t index needs second_per_grid_t and tokens_per_second).

export interface GridThw { t: number; h: number; w: number }

export interface RopeTokens {
  /** `<|image_pad|>` id (config image_token_id). */
  imageTokenId: number;
  /** `<|vision_start|>` id (config vision_start_token_id). */
  visionStartTokenId: number;
}

export interface RopeIndexOptions {
  /** Patches merged per side into one LLM token (vision_config.spatial_merge_size). Default 2. */
  spatialMergeSize?: number;
  /** 1 = real token, 0 = padding. Padding slots get position 1 (as HF) and are skipped. */
  attentionMask?: ArrayLike<number>;
}

export interface RopeIndex {
  /** i32 [3, L] row-major: t row, then h row, then w row. */
  positionIds: Int32Array;
  /** (max position + 1) − L, L counting padding; decode steps add it to the cache position. */
  ropeDelta: number;
}

function checkInt(x: number, what: string): void {
  if (!Number.isInteger(x)) throw new Error(`getRopeIndex: ${what} must be an integer, got ${x}`);
}

function checkArgs(grids: readonly GridThw[], tokens: RopeTokens, m: number): void {
  if (!Number.isInteger(m) || m < 1) throw new Error(`getRopeIndex: spatialMergeSize must be a positive integer, got ${m}`);
  if (!tokens || typeof tokens !== 'object') throw new Error('getRopeIndex: tokens {imageTokenId, visionStartTokenId} is required');
  checkInt(tokens.imageTokenId, 'tokens.imageTokenId');
  checkInt(tokens.visionStartTokenId, 'tokens.visionStartTokenId');
  if (!Array.isArray(grids)) throw new Error('getRopeIndex: grids must be an array of {t, h, w}');
  grids.forEach((g, i) => {
    if (!g || ![g.t, g.h, g.w].every((v) => Number.isInteger(v) && v >= 1)) {
      throw new Error(`getRopeIndex: grids[${i}] must be positive integers {t, h, w}, got ${JSON.stringify(g)}`);
    }
    if (g.h % m !== 0 || g.w % m !== 0) {
      throw new Error(`getRopeIndex: grids[${i}] ${g.t}×${g.h}×${g.w}: h and w must be multiples of spatialMergeSize ${m}`);
    }
  });
}

/** Number of images in `ids[from, to)`: `<|vision_start|>` directly followed by `<|image_pad|>`. */
function countImages(ids: ArrayLike<number>, from: number, to: number, tokens: RopeTokens): number {
  let n = 0;
  for (let i = from; i + 1 < to; i++) if (ids[i] === tokens.visionStartTokenId && ids[i + 1] === tokens.imageTokenId) n++;
  return n;
}

/**
 * Positions of the tokens `ids[k]` for k in `order` (the unmasked slots of one sequence), written
 * to out[c·stride + order[k]]. Consumes grids from `gridStart`. Returns max position and the
 * number of grids used. `where` prefixes errors (which sequence).
 */
function fillSequence(
  ids: ArrayLike<number>, order: ArrayLike<number>, grids: readonly GridThw[], gridStart: number,
  tokens: RopeTokens, m: number, out: Int32Array, stride: number, where: string,
): { maxPos: number; gridsUsed: number } {
  const n = order.length;
  const tok = (k: number) => ids[order[k]];
  let next = 0; // the position the next text token gets (max so far + 1)
  let gi = gridStart;
  const put = (k: number, t: number, h: number, w: number) => {
    const s = order[k];
    out[s] = t; out[stride + s] = h; out[2 * stride + s] = w;
  };
  let k = 0;
  while (k < n) {
    const id = tok(k);
    if (id === tokens.imageTokenId) {
      const prev = k > 0 ? tok(k - 1) : undefined;
      if (prev !== tokens.visionStartTokenId) {
        throw new Error(`getRopeIndex: ${where}<|image_pad|> (id ${tokens.imageTokenId}) at token ${k} is not ` +
          `preceded by <|vision_start|> (id ${tokens.visionStartTokenId}); each image must start with <|vision_start|>`);
      }
      let run = 0;
      while (k + run < n && tok(k + run) === tokens.imageTokenId) run++;
      if (gi >= grids.length) {
        const total = countImages(Array.from(order, (s) => ids[s]), 0, n, tokens);
        throw new Error(`getRopeIndex: ${where}the text has more images than grids: image ${gi - gridStart + 1} of ` +
          `${total} in this sequence at token ${k}, but only ${grids.length} grid(s) were given in all`);
      }
      const g = grids[gi];
      const gh = g.h / m, gw = g.w / m, count = g.t * gh * gw;
      if (run !== count) {
        throw new Error(`getRopeIndex: ${where}image ${gi} has ${run} <|image_pad|> tokens in the text (from token ${k}) ` +
          `but its grid ${g.t}×${g.h}×${g.w} with merge ${m} needs ${count}`);
      }
      const st = next;
      let i = k;
      for (let tt = 0; tt < g.t; tt++) {
        for (let r = 0; r < gh; r++) for (let c = 0; c < gw; c++) put(i++, st, st + r, st + c);
      }
      next = st + Math.max(gh, gw); // max(t=0, r, c) + 1 over the image, t index being 0
      k += count;
      gi++;
    } else {
      put(k, next, next, next);
      next++;
      k++;
    }
  }
  return { maxPos: next - 1, gridsUsed: gi - gridStart };
}

function checkIds(inputIds: ArrayLike<number>, op: string): void {
  if (!inputIds || typeof inputIds.length !== 'number') throw new Error(`${op}: inputIds must be an array of token ids`);
  for (let i = 0; i < inputIds.length; i++) {
    if (!Number.isInteger(inputIds[i])) throw new Error(`${op}: inputIds[${i}] = ${inputIds[i]} is not an integer token id`);
  }
}

/**
 * M-RoPE position ids of ONE sequence, as HF get_rope_index computes them: positions over the
 * tokens whose attention mask is 1, padding slots set to 1.
 */
export function getRopeIndex(
  inputIds: ArrayLike<number>, grids: readonly GridThw[], tokens: RopeTokens, opts: RopeIndexOptions = {},
): RopeIndex {
  const m = opts.spatialMergeSize ?? 2;
  checkArgs(grids, tokens, m);
  checkIds(inputIds, 'getRopeIndex');
  const L = inputIds.length;
  let order: Int32Array;
  const mask = opts.attentionMask;
  if (mask !== undefined) {
    if (!mask || mask.length !== L) {
      throw new Error(`getRopeIndex: attentionMask has length ${mask?.length} but inputIds has ${L}; they must match`);
    }
    const keep: number[] = [];
    for (let i = 0; i < L; i++) {
      if (mask[i] !== 0 && mask[i] !== 1) throw new Error(`getRopeIndex: attentionMask[${i}] = ${mask[i]}; expected 0 or 1`);
      if (mask[i] === 1) keep.push(i);
    }
    order = Int32Array.from(keep);
  } else {
    order = new Int32Array(L);
    for (let i = 0; i < L; i++) order[i] = i;
  }
  if (order.length === 0) throw new Error(`getRopeIndex: the sequence has no tokens (length ${L}, none unmasked)`);
  const positionIds = new Int32Array(3 * L).fill(1); // padding slots keep 1, as HF
  const { maxPos, gridsUsed } = fillSequence(inputIds, order, grids, 0, tokens, m, positionIds, L, '');
  if (gridsUsed !== grids.length) {
    throw new Error(`getRopeIndex: ${grids.length} grid(s) given but the text has ${gridsUsed} image(s) ` +
      `(<|vision_start|><|image_pad|>…); each image needs exactly one grid`);
  }
  return { positionIds, ropeDelta: maxPos + 1 - L };
}

/**
 * Position ids of a packed batch: sequences concatenated back to back, sequence s covering
 * tokens [cuSeqlens[s], cuSeqlens[s+1]); positions restart at 0 in each; grids are consumed in
 * order across sequences. Returns i32 [3, totalL]. No padding inside a packed batch.
 */
export function getRopeIndexPacked(
  inputIds: ArrayLike<number>, cuSeqlens: ArrayLike<number>, grids: readonly GridThw[], tokens: RopeTokens,
  opts: Omit<RopeIndexOptions, 'attentionMask'> = {},
): Int32Array {
  const m = opts.spatialMergeSize ?? 2;
  checkArgs(grids, tokens, m);
  checkIds(inputIds, 'getRopeIndexPacked');
  const L = inputIds.length;
  if (!cuSeqlens || cuSeqlens.length < 2) throw new Error('getRopeIndexPacked: cuSeqlens needs at least 2 entries [0, …, totalL]');
  if (cuSeqlens[0] !== 0 || cuSeqlens[cuSeqlens.length - 1] !== L) {
    throw new Error(`getRopeIndexPacked: cuSeqlens must start at 0 and end at the number of tokens ${L}, ` +
      `got [${cuSeqlens[0]}, …, ${cuSeqlens[cuSeqlens.length - 1]}]`);
  }
  for (let s = 0; s + 1 < cuSeqlens.length; s++) {
    if (!Number.isInteger(cuSeqlens[s + 1]) || cuSeqlens[s + 1] < cuSeqlens[s]) {
      throw new Error(`getRopeIndexPacked: cuSeqlens must be non-decreasing integers, got ${cuSeqlens[s]} then ${cuSeqlens[s + 1]} at ${s}`);
    }
  }
  const out = new Int32Array(3 * L);
  let gi = 0;
  for (let s = 0; s + 1 < cuSeqlens.length; s++) {
    const a = cuSeqlens[s], b = cuSeqlens[s + 1];
    if (a === b) continue;
    // A sequence's tokens are the slots a..b-1; positions are written in place, restarting at 0.
    const order = new Int32Array(b - a);
    for (let i = 0; i < b - a; i++) order[i] = a + i;
    const { gridsUsed } = fillSequence(inputIds, order, grids, gi, tokens, m, out, L, `sequence ${s}: `);
    gi += gridsUsed;
  }
  if (gi !== grids.length) {
    throw new Error(`getRopeIndexPacked: ${grids.length} grid(s) given but the packed sequences hold ${gi} image(s); ` +
      'each image needs exactly one grid, in order');
  }
  return out;
}

/**
 * Position ids for a decode step (HF: cache_position + rope_delta, the same for t, h and w):
 * `count` new tokens after `cacheLength` cached ones. Returns i32 [3, count].
 */
export function decodePositions(cacheLength: number, ropeDelta: number, count = 1): Int32Array {
  if (!Number.isInteger(cacheLength) || cacheLength < 0) throw new Error(`decodePositions: cacheLength must be a non-negative integer, got ${cacheLength}`);
  if (!Number.isInteger(ropeDelta)) throw new Error(`decodePositions: ropeDelta must be an integer, got ${ropeDelta}`);
  if (!Number.isInteger(count) || count < 1) throw new Error(`decodePositions: count must be a positive integer, got ${count}`);
  const out = new Int32Array(3 * count);
  for (let i = 0; i < count; i++) out[i] = out[count + i] = out[2 * count + i] = cacheLength + ropeDelta + i;
  return out;
}
