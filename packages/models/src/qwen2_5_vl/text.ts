// The Qwen2.5-VL language model (HF Qwen2_5_VLModel): Qwen2 decoder layers over packed
// sequences. Each layer: h += o_proj(attn(RMSNorm(h))); h += MLP(RMSNorm(h)), with q/k/v
// biased, o_proj and the MLP not, M-RoPE applied to q and k, and causal grouped-query
// flashAttention within each packed sequence (cuSeqlens), so no padding token is computed.
import { Module, type Tensor, checkpoint, flashAttention, isGradEnabled, noGrad, rotary, tidy } from '@fovea/core';
import type { TextConfig } from './config.js';
import { QLinear, QRMSNorm, type ParamSource, SwiGLU } from './layers.js';
import type { RotaryTables } from './rope.js';

/** Packed-sequence attention segments shared by every layer of one forward pass. */
export interface TextSegments { cuSeqlens: Tensor; maxSeqlen: number }

/** What a cached forward needs of a KV cache (@fovea/core's PagedKVCache implements it). */
export interface KVCacheLike {
  write(layer: number, k: Tensor, v: Tensor, slots: Int32Array): void;
  attention(layer: number, q: Tensor, seqs: readonly number[], cuSeqlensQ: ArrayLike<number>): Tensor;
}

/**
 * One cached step over several sequences: the new tokens of seqs[b] are rows
 * cuSeqlensQ[b]..cuSeqlensQ[b+1] of the input, and slots (from the cache's reserve) say where
 * their keys and values go. They attend to everything cached before them plus themselves.
 */
export interface CachedStep { cache: KVCacheLike; seqs: readonly number[]; cuSeqlensQ: Int32Array; slots: Int32Array }

export class TextAttention extends Module {
  readonly q_proj: QLinear;
  readonly k_proj: QLinear;
  readonly v_proj: QLinear;
  readonly o_proj: QLinear;
  constructor(src: ParamSource, prefix: string, private readonly cfg: TextConfig) {
    super();
    const { hiddenSize: d, numAttentionHeads: hq, numKeyValueHeads: hkv, headDim: hd } = cfg;
    this.q_proj = this.registerModule('q_proj', new QLinear(src, `${prefix}.q_proj`, d, hq * hd, true));
    this.k_proj = this.registerModule('k_proj', new QLinear(src, `${prefix}.k_proj`, d, hkv * hd, true));
    this.v_proj = this.registerModule('v_proj', new QLinear(src, `${prefix}.v_proj`, d, hkv * hd, true));
    this.o_proj = this.registerModule('o_proj', new QLinear(src, `${prefix}.o_proj`, hq * hd, d, false));
  }
  forward(x: Tensor, rope: RotaryTables, seg: TextSegments): Tensor {
    return tidy(() => {
      const n = x.shape[0], { numAttentionHeads: hq, numKeyValueHeads: hkv, headDim: hd } = this.cfg;
      const q = rotary(this.q_proj.forward(x).reshape([n, hq, hd]), rope.cos, rope.sin);
      const k = rotary(this.k_proj.forward(x).reshape([n, hkv, hd]), rope.cos, rope.sin);
      const v = this.v_proj.forward(x).reshape([n, hkv, hd]);
      const { out } = flashAttention(q, k, v, {
        cuSeqlensQ: seg.cuSeqlens, cuSeqlensK: seg.cuSeqlens, maxSeqlenQ: seg.maxSeqlen, maxSeqlenK: seg.maxSeqlen, causal: true,
      });
      return this.o_proj.forward(out.reshape([n, hq * hd]));
    });
  }
  /** Attention of new tokens against the cache (no autograd): writes their K and V, then attends. */
  forwardCached(x: Tensor, rope: RotaryTables, step: CachedStep, layer: number): Tensor {
    return tidy(() => {
      const n = x.shape[0], { numAttentionHeads: hq, numKeyValueHeads: hkv, headDim: hd } = this.cfg;
      const q = rotary(this.q_proj.forward(x).reshape([n, hq, hd]), rope.cos, rope.sin);
      const k = rotary(this.k_proj.forward(x).reshape([n, hkv, hd]), rope.cos, rope.sin);
      const v = this.v_proj.forward(x).reshape([n, hkv, hd]);
      step.cache.write(layer, k, v, step.slots);
      const out = step.cache.attention(layer, q, step.seqs, step.cuSeqlensQ);
      return this.o_proj.forward(out.reshape([n, hq * hd]));
    });
  }
}

export class DecoderLayer extends Module {
  readonly self_attn: TextAttention;
  readonly mlp: SwiGLU;
  readonly input_layernorm: QRMSNorm;
  readonly post_attention_layernorm: QRMSNorm;
  constructor(src: ParamSource, prefix: string, cfg: TextConfig) {
    super();
    this.self_attn = this.registerModule('self_attn', new TextAttention(src, `${prefix}.self_attn`, cfg));
    this.mlp = this.registerModule('mlp', new SwiGLU(src, `${prefix}.mlp`, cfg.hiddenSize, cfg.intermediateSize, false));
    this.input_layernorm = this.registerModule('input_layernorm',
      new QRMSNorm(src, `${prefix}.input_layernorm`, cfg.hiddenSize, cfg.rmsNormEps));
    this.post_attention_layernorm = this.registerModule('post_attention_layernorm',
      new QRMSNorm(src, `${prefix}.post_attention_layernorm`, cfg.hiddenSize, cfg.rmsNormEps));
  }
  forward(h: Tensor, rope: RotaryTables, seg: TextSegments): Tensor {
    return tidy(() => {
      const h1 = h.add(this.self_attn.forward(this.input_layernorm.forward(h), rope, seg));
      return h1.add(this.mlp.forward(this.post_attention_layernorm.forward(h1)));
    });
  }
  forwardCached(h: Tensor, rope: RotaryTables, step: CachedStep, layer: number): Tensor {
    return tidy(() => {
      const h1 = h.add(this.self_attn.forwardCached(this.input_layernorm.forward(h), rope, step, layer));
      return h1.add(this.mlp.forward(this.post_attention_layernorm.forward(h1)));
    });
  }
}

export interface TextForwardOptions {
  gradientCheckpointing?: boolean;
  /** Called with each layer's output, for inspection. */
  onLayer?: (index: number, h: Tensor) => void;
}

/** The decoder stack and final norm; embeddings are looked up by the caller (images merge in). */
export class TextModel extends Module {
  readonly embed_tokens: Module;
  readonly embedWeight: Tensor;
  readonly layers: DecoderLayer[] = [];
  readonly norm: QRMSNorm;
  constructor(src: ParamSource, prefix: string, readonly cfg: TextConfig) {
    super();
    this.embed_tokens = this.registerModule('embed_tokens', new Module());
    this.embedWeight = this.embed_tokens.registerParameter('weight',
      src(`${prefix}.embed_tokens.weight`, [cfg.vocabSize, cfg.hiddenSize]));
    const list = this.registerModule('layers', new Module());
    for (let i = 0; i < cfg.numHiddenLayers; i++) {
      this.layers.push(list.registerModule(String(i), new DecoderLayer(src, `${prefix}.layers.${i}`, cfg)));
    }
    this.norm = this.registerModule('norm', new QRMSNorm(src, `${prefix}.norm`, cfg.hiddenSize, cfg.rmsNormEps));
  }

  /** Final hidden states [L, hidden] (after the last norm) for input embeddings [L, hidden]. */
  forward(embeds: Tensor, rope: RotaryTables, seg: TextSegments, opts: TextForwardOptions = {}): Tensor {
    const ckpt = (opts.gradientCheckpointing ?? false) && isGradEnabled();
    return tidy(() => {
      let h = embeds;
      for (const [i, layer] of this.layers.entries()) {
        // Tables and offsets are checkpoint inputs so the node keeps them for the recompute.
        h = ckpt
          ? checkpoint((x: Tensor, c: Tensor, s: Tensor, u: Tensor) =>
            layer.forward(x, { cos: c, sin: s }, { cuSeqlens: u, maxSeqlen: seg.maxSeqlen }),
          [h, rope.cos, rope.sin, seg.cuSeqlens], { params: layer.parameters() }) as Tensor
          : layer.forward(h, rope, seg);
        opts.onLayer?.(i, h);
      }
      return this.norm.forward(h);
    });
  }

  /** Final hidden states of new tokens whose keys and values go into a KV cache (inference). */
  forwardCached(embeds: Tensor, rope: RotaryTables, step: CachedStep): Tensor {
    return noGrad(() => tidy(() => {
      let h = embeds;
      for (const [i, layer] of this.layers.entries()) h = layer.forwardCached(h, rope, step, i);
      return this.norm.forward(h);
    }));
  }
}
