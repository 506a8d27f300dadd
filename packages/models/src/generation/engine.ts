// The rollout generation engine: continuous batching over a paged KV cache.
//
// Every step packs the pending tokens of all running sequences — whole or chunked prompts of
// newly admitted ones and one token of each decoding one — into one cached forward pass
// (Qwen2_5_VL.forwardCached over @fovea/core's PagedKVCache), then samples the next token of
// each sequence whose pending tokens are all in the cache. Sequences join and leave between
// steps. A group (G rollouts of one prompt) prefills the prompt once and forks the cache, so
// the prompt's blocks are shared by reference until a child writes into a shared block.
//
// Sequences that have stopped (finished or paused) keep their cache so a conversation can
// continue (append a user turn, e.g. a tool's crop as a new image, and generate again without
// recomputing the prefix); their blocks are reclaimed on demand. When the pool runs out, the
// scheduler preempts (frees, and later recomputes) stopped sequences first, then the most
// recently admitted running ones.
//
// Positions follow Qwen2.5-VL's M-RoPE: each appended segment (prompt, continuation) gets
// get_rope_index positions shifted to start at the sequence's largest position + 1; every
// sampled token takes the next position on all three components.
import { PagedKVCache, type Tensor, cat, indexSelect, keep, noGrad, tensor, tidy } from '@fovea/core';
import type { Qwen2_5_VL } from '../qwen2_5_vl/model.js';
import type { Qwen2Tokenizer } from '../qwen2_5_vl/tokenizer.js';
import { getRopeIndex } from '../qwen2_5_vl/ropeIndex.js';
import { type VisionInput, gridsOf } from '../qwen2_5_vl/vision.js';
import { type ResolvedSampling, type SamplingParams, SeededRandom, resolveSampling, sampleToken } from './sampling.js';

export type FinishReason = 'eos' | 'stop-string' | 'length' | 'paused' | 'stopped';
export type TokenHookResult = 'pause' | 'stop' | void;

export interface GenerationRequest {
  /** Prompt token ids (e.g. Qwen2_5_VLProcessor.apply's inputIds). */
  inputIds: ArrayLike<number>;
  /** The prompt's images, packed in order (their <|image_pad|> runs are in inputIds). */
  images?: VisionInput | null;
  sampling?: SamplingParams;
  /** New tokens per turn (default 256). */
  maxNewTokens?: number;
  /** Default: the engine's eos ids. */
  stopTokenIds?: readonly number[];
  /** Stop when the turn's decoded text contains one of these (needs the engine's tokenizer). */
  stopStrings?: readonly string[];
  /**
   * Called after each sampled token. 'pause' stops the turn and keeps the cache (a tool call
   * was emitted: run the tool, append its result with engine.append, and run again); 'stop'
   * finishes the sequence.
   */
  onToken?: (seq: Sequence, token: number) => TokenHookResult;
  /** Keep a copy of the logits each token was sampled from (seq.stepLogits; tests, analysis). */
  keepLogits?: boolean;
}

export interface EngineOptions {
  /** KV blocks in the pool (default: enough for maxTokens). */
  numBlocks?: number;
  /** Tokens the pool must hold when numBlocks is not given (default 16,384). */
  maxTokens?: number;
  blockSize?: number;
  /** Tokens fed per step at most (prompts are chunked to fit; default 2,048). */
  maxBatchTokens?: number;
  /** Sequences running at once at most (default 64). */
  maxRunning?: number;
  /** Needed for stopStrings. */
  tokenizer?: Qwen2Tokenizer;
  /** End-of-sequence ids (default: the config's eos ids). */
  eosTokenIds?: readonly number[];
}

type Status = 'waiting' | 'running' | 'stopped';

/** One conversation being generated. Read its tokens, which of them were sampled, and their log-probs. */
export class Sequence {
  /** Every token: prompt, sampled tokens, appended turns. */
  readonly tokens: number[] = [];
  /** sampled[i]: tokens[i] was drawn by the engine (the RL response mask). */
  readonly sampled: boolean[] = [];
  /** logprobs[i]: log-prob of a sampled token under its sampling distribution (NaN otherwise). */
  readonly logprobs: number[] = [];
  status: Status = 'waiting';
  finishReason: FinishReason | null = null;
  /** Tokens sampled in the current turn. */
  turnTokens = 0;
  /** This turn's token budget (request.maxNewTokens, or what append() set). */
  maxNewTokens: number;
  /** With request.keepLogits: the f32 logits row behind each sampled token. */
  readonly stepLogits: Float32Array[] = [];
  /** With sampling.topLogprobs = k: the k most likely candidates at each sampled token. */
  readonly topCandidates: { token: number; logprob: number }[][] = [];

  /** @internal */ positions: number[][] = [[], [], []];
  /** @internal */ nextPos = 0;
  /** @internal */ features: Tensor | null = null;
  /** @internal */ cacheSeq: number | null = null;
  /** @internal */ computed = 0;
  /** @internal */ rng: SeededRandom;
  /** @internal */ admittedAt = -1;
  /** @internal */ followers: Sequence[] = [];
  /** @internal */ leader: Sequence | null = null;

  constructor(readonly id: number, readonly request: GenerationRequest, readonly sampling: ResolvedSampling) {
    this.rng = new SeededRandom(sampling.seed);
    this.maxNewTokens = request.maxNewTokens ?? 256;
  }
  /** The sampled tokens of the whole conversation, in order. */
  get outputTokens(): number[] { return this.tokens.filter((_, i) => this.sampled[i]); }
  get outputLogprobs(): number[] { return this.logprobs.filter((_, i) => this.sampled[i]); }
  get isStopped(): boolean { return this.status === 'stopped'; }
}

export class GenerationEngine {
  readonly cache: PagedKVCache;
  private readonly seqs = new Map<number, Sequence>();
  private nextId = 0;
  private admitClock = 0;
  private readonly maxBatchTokens: number;
  private readonly maxRunning: number;
  private readonly eos: number[];
  /** Steps run and preemptions made (for tests and monitoring). */
  stats = { steps: 0, preemptions: 0, forwardTokens: 0 };

  constructor(readonly model: Qwen2_5_VL, private readonly opts: EngineOptions = {}) {
    const t = model.config.text;
    const blockSize = opts.blockSize ?? 16;
    const numBlocks = opts.numBlocks ?? Math.ceil((opts.maxTokens ?? 16384) / blockSize);
    this.cache = new PagedKVCache({
      numLayers: t.numHiddenLayers, numKvHeads: t.numKeyValueHeads, headDim: t.headDim, numBlocks, blockSize,
      dtype: model.dtype, device: model.device,
    });
    this.maxBatchTokens = opts.maxBatchTokens ?? 2048;
    this.maxRunning = opts.maxRunning ?? 64;
    if (!Number.isSafeInteger(this.maxBatchTokens) || this.maxBatchTokens < 1) {
      throw new Error(`GenerationEngine: maxBatchTokens must be a positive integer, got ${String(opts.maxBatchTokens)}`);
    }
    const gen = model.generationConfig?.eos_token_id;
    this.eos = opts.eosTokenIds ? [...opts.eosTokenIds]
      : gen !== undefined ? (Array.isArray(gen) ? gen as number[] : [gen as number]) : model.config.eosTokenId;
  }

  /** Queues one request; returns its sequence (generated by run()/step()). */
  add(request: GenerationRequest): Sequence {
    return this.addGroup(request, 1)[0];
  }

  /**
   * Queues n rollouts of one prompt that share its KV cache: the prompt is computed once and
   * forked. Rollout i samples with seed (request.sampling.seed ?? 0) + i.
   */
  addGroup(request: GenerationRequest, n: number): Sequence[] {
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`GenerationEngine.addGroup: n must be a positive integer, got ${String(n)}`);
    if (request === null || typeof request !== 'object') throw new Error('GenerationEngine.add: request must be an object');
    const base = resolveSampling(request.sampling, 'GenerationEngine.add');
    const maxNew = request.maxNewTokens ?? 256;
    if (!Number.isSafeInteger(maxNew) || maxNew < 1) throw new Error(`GenerationEngine.add: maxNewTokens must be a positive integer, got ${String(maxNew)}`);
    if (request.stopStrings?.length && !this.opts.tokenizer) {
      throw new Error('GenerationEngine.add: stopStrings need a tokenizer (pass { tokenizer } to the engine)');
    }
    const ids = Int32Array.from(request.inputIds as ArrayLike<number>);
    if (ids.length === 0) throw new Error('GenerationEngine.add: inputIds is empty');
    const group: Sequence[] = [];
    for (let i = 0; i < n; i++) group.push(new Sequence(this.nextId++, request, { ...base, seed: base.seed + i }));
    const leader = group[0];
    // Checks ids, images and positions before anything is queued.
    noGrad(() => this.appendSegment(leader, ids, request.images ?? null));
    for (const f of group.slice(1)) {
      f.leader = leader;
      leader.followers.push(f);
      f.tokens.push(...leader.tokens);
      f.sampled.push(...leader.sampled);
      f.logprobs.push(...leader.logprobs);
      f.positions = leader.positions.map((r) => r.slice());
      f.nextPos = leader.nextPos;
      f.features = leader.features ? keep(leader.features.clone()) : null;
    }
    for (const s of group) this.seqs.set(s.id, s);
    return group;
  }

  /**
   * Continues a stopped sequence with more input (a user or tool turn, optionally with images),
   * keeping its cached prefix, and queues it to generate the next turn.
   */
  append(seq: Sequence, turn: { inputIds: ArrayLike<number>; images?: VisionInput | null; maxNewTokens?: number }): void {
    if (!this.seqs.has(seq.id) || this.seqs.get(seq.id) !== seq) {
      throw new Error(`GenerationEngine.append: sequence ${seq.id} is not in this engine (released or never added)`);
    }
    if (seq.status !== 'stopped') throw new Error(`GenerationEngine.append: sequence ${seq.id} is ${seq.status}; append after it stops`);
    const ids = Int32Array.from(turn.inputIds as ArrayLike<number>);
    if (ids.length === 0) throw new Error('GenerationEngine.append: inputIds is empty');
    noGrad(() => this.appendSegment(seq, ids, turn.images ?? null));
    seq.status = 'waiting';
    seq.finishReason = null;
    seq.turnTokens = 0;
    if (turn.maxNewTokens !== undefined) {
      if (!Number.isSafeInteger(turn.maxNewTokens) || turn.maxNewTokens < 1) {
        throw new Error(`GenerationEngine.append: maxNewTokens must be a positive integer, got ${String(turn.maxNewTokens)}`);
      }
      seq.maxNewTokens = turn.maxNewTokens;
    }
  }

  /** Frees a sequence's cache and forgets it. */
  release(seq: Sequence): void {
    if (this.seqs.get(seq.id) !== seq) throw new Error(`GenerationEngine.release: sequence ${seq.id} is not in this engine`);
    // Group members still waiting for this leader compute the prompt themselves instead.
    for (const f of seq.followers) f.leader = null;
    if (seq.leader) seq.leader.followers = seq.leader.followers.filter((f) => f !== seq);
    seq.followers = [];
    this.evict(seq);
    seq.features?.dispose();
    seq.features = null;
    this.seqs.delete(seq.id);
  }

  /** Runs steps until no sequence is waiting or running. */
  run(): void {
    while (this.step()) { /* keep going */ }
  }

  /** Queues the requests, runs them to the end, and releases them. */
  generate(requests: readonly GenerationRequest[]): Sequence[] {
    const out = requests.map((r) => this.add(r));
    this.run();
    for (const s of out) this.release(s);
    return out;
  }

  dispose(): void {
    for (const s of [...this.seqs.values()]) this.release(s);
    this.cache.dispose();
  }

  // ---- internals ----

  /** Adds ids (+ their images) to seq: tokens, M-RoPE positions continuing from nextPos, features. */
  private appendSegment(seq: Sequence, ids: Int32Array, images: VisionInput | null): void {
    const cfg = this.model.config;
    const V = cfg.text.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      if (!Number.isInteger(ids[i]) || ids[i] < 0 || ids[i] >= V) {
        throw new Error(`GenerationEngine: inputIds[${i}] = ${ids[i]} is outside the vocabulary [0, ${V})`);
      }
    }
    const grids = images ? this.model.visual.checkInput(images) : [];
    const { positionIds } = getRopeIndex(ids, grids, { imageTokenId: cfg.imageTokenId, visionStartTokenId: cfg.visionStartTokenId },
      { spatialMergeSize: cfg.vision.spatialMergeSize });
    let feats: Tensor | null = null;
    if (grids.length > 0) feats = this.model.imageFeatures(images!);  // the vision tower runs once per image
    const L = ids.length;
    let max = seq.nextPos - 1;
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < L; i++) {
        const p = positionIds[c * L + i] + seq.nextPos;
        seq.positions[c].push(p);
        max = Math.max(max, p);
      }
    }
    seq.nextPos = max + 1;
    for (const t of ids) { seq.tokens.push(t); seq.sampled.push(false); seq.logprobs.push(NaN); }
    if (feats) {
      const all = seq.features ? tidy(() => cat([seq.features!, feats!], 0)) : feats;
      if (seq.features) { seq.features.dispose(); feats.dispose(); }
      seq.features = keep(all);
    }
  }

  private evict(seq: Sequence): void {
    if (seq.cacheSeq !== null) this.cache.free(seq.cacheSeq);
    seq.cacheSeq = null;
    seq.computed = 0;
  }

  private running(): Sequence[] { return [...this.seqs.values()].filter((s) => s.status === 'running'); }

  /** Frees blocks by preempting someone other than keep: stopped sequences first, then the newest running. */
  private preemptOne(keepSeq: Sequence, batch: Set<Sequence>): boolean {
    const stopped = [...this.seqs.values()].filter((s) => s.status === 'stopped' && s.cacheSeq !== null);
    if (stopped.length) { this.evict(stopped[0]); this.stats.preemptions++; return true; }
    const victims = this.running().filter((s) => s !== keepSeq && s.cacheSeq !== null && !batch.has(s))
      .sort((a, b) => b.admittedAt - a.admittedAt);
    const v = victims[0] ?? this.running().filter((s) => s !== keepSeq && s.cacheSeq !== null)
      .sort((a, b) => b.admittedAt - a.admittedAt)[0];
    if (!v) return false;
    this.evict(v);
    v.status = 'waiting';
    batch.delete(v);
    this.stats.preemptions++;
    return true;
  }

  /** One scheduling step; false when there is nothing left to do. */
  step(): boolean {
    // Admit waiting sequences (group followers wait for their leader's prompt).
    for (const s of this.seqs.values()) {
      if (s.status !== 'waiting') continue;
      if (s.leader) continue;  // a group member waits for its leader's prompt, then forks it
      if (this.running().length >= this.maxRunning) break;
      s.status = 'running';
      s.admittedAt = this.admitClock++;
    }
    const running = this.running();
    if (running.length === 0) return false;

    // Plan: how many pending tokens each running sequence feeds this step, and reserve them.
    const plan: { seq: Sequence; n: number; slots: Int32Array }[] = [];
    const inBatch = new Set<Sequence>();
    let budget = this.maxBatchTokens;
    for (const s of running.sort((a, b) => a.admittedAt - b.admittedAt)) {
      if (s.status !== 'running') continue;  // preempted while planning
      const pending = s.tokens.length - s.computed;
      if (pending === 0) continue;
      const n = Math.min(pending, budget);
      if (n <= 0) break;
      if (s.cacheSeq === null) s.cacheSeq = this.cache.createSequence();
      let slots = this.cache.reserve(s.cacheSeq, n);
      while (slots === null) {
        if (!this.preemptOne(s, inBatch)) {
          throw new Error(`GenerationEngine: sequence ${s.id} needs ${n} more KV slots and nothing is left to preempt`);
        }
        // Planned sequences that were preempted leave the plan.
        for (let i = plan.length - 1; i >= 0; i--) if (plan[i].seq.cacheSeq === null) { budget += plan[i].n; plan.splice(i, 1); }
        slots = this.cache.reserve(s.cacheSeq, n);
      }
      plan.push({ seq: s, n, slots });
      inBatch.add(s);
      budget -= n;
    }
    if (plan.length === 0) return this.running().length > 0;

    noGrad(() => tidy(() => this.forwardAndSample(plan)));
    this.stats.steps++;
    return true;
  }

  private forwardAndSample(plan: { seq: Sequence; n: number; slots: Int32Array }[]): void {
    const cfg = this.model.config;
    const T = plan.reduce((a, p) => a + p.n, 0);
    const ids = new Int32Array(T), pos = new Int32Array(3 * T), slots = new Int32Array(T);
    const cu = new Int32Array(plan.length + 1);
    const featParts: Tensor[] = [];
    let o = 0;
    for (const [b, { seq, n, slots: sl }] of plan.entries()) {
      let padsBefore = 0;
      for (let i = 0; i < seq.computed; i++) if (seq.tokens[i] === cfg.imageTokenId) padsBefore++;
      let pads = 0;
      for (let i = 0; i < n; i++) {
        const t = seq.tokens[seq.computed + i];
        ids[o + i] = t;
        if (t === cfg.imageTokenId) pads++;
        for (let c = 0; c < 3; c++) pos[c * T + o + i] = seq.positions[c][seq.computed + i];
      }
      if (pads > 0) featParts.push(seq.features!.narrow(0, padsBefore, pads));
      slots.set(sl, o);
      o += n;
      cu[b + 1] = o;
    }
    const feats = featParts.length ? cat(featParts, 0) : null;
    const embeds = this.model.embed(ids, feats);
    const hidden = this.model.forwardCached(embeds, pos, {
      cache: this.cache, seqs: plan.map((p) => p.seq.cacheSeq!), cuSeqlensQ: cu, slots,
    });
    this.stats.forwardTokens += T;
    for (const p of plan) p.seq.computed += p.n;
    // Rows whose sequence has everything in the cache now sample the next token.
    const ready = plan.map((p, b) => ({ ...p, row: cu[b + 1] - 1 })).filter((p) => p.seq.computed === p.seq.tokens.length);
    if (ready.length === 0) return;
    const rows = indexSelect(hidden, 0, tensor(Int32Array.from(ready.map((r) => r.row)), { dtype: 'i32', device: this.model.device }));
    const logits = this.model.logits(rows).to('f32');
    const V = logits.shape[1];
    const host = logits.data() as Float32Array;
    for (const [i, r] of ready.entries()) {
      const row = host.subarray(i * V, (i + 1) * V);
      // A leader whose prompt just finished hands its cache to its followers by fork.
      const followers = r.seq.followers;
      r.seq.followers = [];
      if (followers.length) {
        const kids = this.cache.fork(r.seq.cacheSeq!, followers.length);
        followers.forEach((f, k) => {
          f.cacheSeq = kids[k];
          f.computed = r.seq.computed;
          f.leader = null;
          f.status = 'running';
          f.admittedAt = this.admitClock++;
          this.sampleInto(f, row);
        });
      }
      this.sampleInto(r.seq, row);
    }
  }

  private sampleInto(seq: Sequence, logits: Float32Array): void {
    const req = seq.request;
    const s = sampleToken(logits, seq.sampling, seq.rng);
    if (req.keepLogits) seq.stepLogits.push(Float32Array.from(logits));
    if (s.top) seq.topCandidates.push(s.top);
    seq.tokens.push(s.token);
    seq.sampled.push(true);
    seq.logprobs.push(s.logprob);
    for (let c = 0; c < 3; c++) seq.positions[c].push(seq.nextPos);
    seq.nextPos++;
    seq.turnTokens++;
    const stopIds = req.stopTokenIds ?? this.eos;
    let reason: FinishReason | null = null;
    if (stopIds.includes(s.token)) reason = 'eos';
    else if (req.stopStrings?.length) {
      const start = seq.tokens.length - seq.turnTokens;
      // The embedding can have more rows than the tokenizer has tokens (Qwen: 151,936 vs
      // 151,665); ids the tokenizer does not know decode to nothing rather than failing the run.
      const tk = this.opts.tokenizer!;
      const text = tk.decode(seq.tokens.slice(start).filter((id) => id < tk.vocabSize));
      if (req.stopStrings.some((x) => text.includes(x))) reason = 'stop-string';
    }
    if (!reason) {
      const hook = req.onToken?.(seq, s.token);
      if (hook === 'pause') reason = 'paused';
      else if (hook === 'stop') reason = 'stopped';
    }
    if (!reason && seq.turnTokens >= seq.maxNewTokens) reason = 'length';
    if (reason) {
      seq.status = 'stopped';
      seq.finishReason = reason;
    }
  }
}
