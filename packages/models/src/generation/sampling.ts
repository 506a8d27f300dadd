// Token sampling for rollouts: greedy, temperature, top-k, top-p, with a seeded generator per
// sequence so the same request and seed give the same tokens on any batch composition.
// Order as in transformers and vLLM: temperature, then top-k, then top-p on what top-k kept.
// Ties at a cut-off are kept (a candidate set is "every token at least as likely as the
// k-th / the nucleus boundary"), so the result does not depend on token order.
//
// Each sampled token comes with its log-probability under the distribution it was drawn from
// (after temperature and truncation, renormalized): the trainer's old log-prob when it trains
// with the same sampling settings. Greedy (temperature 0) draws from a point mass: log-prob 0.

export interface SamplingParams {
  /** 0 means greedy. Default 1. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off). Default 0. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose mass reaches topP, in (0, 1]. Default 1. */
  topP?: number;
  /** Seed of this sequence's generator (default 0). */
  seed?: number;
  /** Also return the n most likely candidates (after temperature, before truncation). Default 0. */
  topLogprobs?: number;
}

export interface ResolvedSampling { temperature: number; topK: number; topP: number; seed: number; topLogprobs: number }

export function resolveSampling(p: SamplingParams = {}, where = 'sampling'): ResolvedSampling {
  if (p === null || typeof p !== 'object') throw new Error(`${where}: sampling parameters must be an object`);
  const temperature = p.temperature ?? 1, topK = p.topK ?? 0, topP = p.topP ?? 1, seed = p.seed ?? 0, topLogprobs = p.topLogprobs ?? 0;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new Error(`${where}: temperature must be a finite number >= 0 (0 = greedy), got ${String(temperature)}`);
  }
  if (!Number.isSafeInteger(topK) || topK < 0) throw new Error(`${where}: topK must be an integer >= 0 (0 = off), got ${String(topK)}`);
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw new Error(`${where}: topP must be in (0, 1], got ${String(topP)}`);
  if (!Number.isSafeInteger(seed)) throw new Error(`${where}: seed must be an integer, got ${String(seed)}`);
  if (!Number.isSafeInteger(topLogprobs) || topLogprobs < 0) {
    throw new Error(`${where}: topLogprobs must be an integer >= 0, got ${String(topLogprobs)}`);
  }
  return { temperature, topK, topP, seed, topLogprobs };
}

/** xoshiro128** seeded through splitmix32: a small, fast, well-mixed 32-bit generator. */
export class SeededRandom {
  private s = new Uint32Array(4);
  constructor(seed: number) {
    let x = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }
  private nextU32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 11);
    return r;
  }
  /** Uniform in [0, 1) with 53 random bits. */
  next(): number { return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / 9007199254740992; }
}

function rotl(x: number, k: number): number { return ((x << k) | (x >>> (32 - k))) >>> 0; }

export interface SampledToken {
  token: number;
  /** log p(token) under the (truncated, renormalized) distribution it was drawn from. */
  logprob: number;
  /** The topLogprobs most likely tokens with their log-probs after temperature (T = 1 when greedy). */
  top?: { token: number; logprob: number }[];
}

function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** The value of the k-th largest element (1-based). */
function kthLargest(x: Float64Array, k: number): number {
  const s = Float64Array.from(x).sort();
  return s[s.length - k];
}

/**
 * Samples one token from logits [V] (any float array) with p's settings and rng. NaN logits are
 * an error (they would make the distribution meaningless); −∞ logits are tokens never drawn.
 */
export function sampleToken(logits: ArrayLike<number>, p: ResolvedSampling, rng: SeededRandom): SampledToken {
  const V = logits.length;
  if (V === 0) throw new Error('sampleToken: empty logits');
  const t = p.temperature === 0 ? 1 : p.temperature;
  const scaled = new Float64Array(V);
  let max = -Infinity;
  for (let i = 0; i < V; i++) {
    const v = logits[i];
    if (Number.isNaN(v)) throw new Error(`sampleToken: logit ${i} is NaN`);
    scaled[i] = v / t;
    if (scaled[i] > max) max = scaled[i];
  }
  if (max === -Infinity || max === Infinity) throw new Error(`sampleToken: logits must have a finite maximum, got ${max}`);
  let top: SampledToken['top'];
  if (p.topLogprobs > 0) {
    let z = 0;
    for (let i = 0; i < V; i++) z += Math.exp(scaled[i] - max);
    const lz = max + Math.log(z);
    const k = Math.min(p.topLogprobs, V);
    const cut = kthLargest(scaled, k);
    const cand: number[] = [];
    for (let i = 0; i < V && cand.length < 4 * k + 16; i++) if (scaled[i] >= cut) cand.push(i);
    cand.sort((a, b) => scaled[b] - scaled[a] || a - b);
    top = cand.slice(0, k).map((i) => ({ token: i, logprob: scaled[i] - lz }));
  }
  if (p.temperature === 0) return { token: argmax(scaled), logprob: 0, ...(top ? { top } : {}) };

  const { prob, z } = truncatedProbs(scaled, max, p);
  const u = rng.next() * z;
  let acc = 0, token = -1;
  for (let i = 0; i < V; i++) {
    if (prob[i] === 0) continue;
    acc += prob[i];
    token = i;
    if (u < acc) break;
  }
  return { token, logprob: Math.log(prob[token] / z), ...(top ? { top } : {}) };
}

/**
 * exp(scaled − max) for the tokens that survive top-k and then top-p, 0 elsewhere, and their
 * sum z. The nucleus is the smallest set of most likely survivors whose mass reaches topP·z;
 * every token as likely as its least likely member is kept too.
 */
function truncatedProbs(scaled: Float64Array, max: number, p: ResolvedSampling): { prob: Float64Array; z: number } {
  const V = scaled.length;
  let floor = -Infinity;
  if (p.topK > 0 && p.topK < V) floor = kthLargest(scaled, p.topK);
  const prob = new Float64Array(V);
  let z = 0;
  for (let i = 0; i < V; i++) {
    if (scaled[i] >= floor) { prob[i] = Math.exp(scaled[i] - max); z += prob[i]; }
  }
  if (p.topP < 1) {
    const sorted = Float64Array.from(prob).sort().reverse();
    const need = p.topP * z * (1 - 1e-12);
    let acc = 0, cut = sorted[0];
    for (let i = 0; i < V && sorted[i] > 0; i++) {
      acc += sorted[i];
      cut = sorted[i];
      if (acc >= need) break;
    }
    z = 0;
    for (let i = 0; i < V; i++) {
      if (prob[i] < cut) prob[i] = 0;
      z += prob[i];
    }
  }
  return { prob, z };
}

/** The candidate set sampleToken draws from (for tests and inspection): token ids, ascending. */
export function candidateSet(logits: ArrayLike<number>, p: ResolvedSampling): number[] {
  if (p.temperature === 0) return [argmax(logits)];
  const scaled = Float64Array.from(logits, (v) => v / p.temperature);
  let max = -Infinity;
  for (const v of scaled) max = Math.max(max, v);
  const { prob } = truncatedProbs(scaled, max, p);
  const out: number[] = [];
  for (let i = 0; i < prob.length; i++) if (prob[i] > 0) out.push(i);
  return out;
}
