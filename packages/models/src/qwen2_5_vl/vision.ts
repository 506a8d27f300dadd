// The Qwen2.5-VL vision tower (HF Qwen2_5_VisionTransformerPretrainedModel) over a packed
// batch of images:
//   patch embedding (the Conv3d as one GEMM over 3·T·ps·ps = 1176-wide rows, no bias)
//   → window permutation of the merged units (2×2 patch blocks), rotary table permuted alike
//   → depth × [h += proj(attn(RMSNorm(h))); h += MLP(RMSNorm(h))], attention non-causal
//     within windows (cuWindowSeqlens) or, in fullatt_block_indexes, within each image
//   → merger: RMSNorm, each 2×2 block's 4 rows side by side, Linear → GELU(erf) → Linear
//   → inverse permutation: one row per image token, images in order, raster order inside.
// The permutation never crosses an image, so full-attention segments are unaffected by it.
import {
  Module, type Tensor, checkpoint, flashAttention, gelu, indexSelect, isGradEnabled, linear, rotary, tensor, tidy,
} from '@fovea/core';
import type { VisionConfig } from './config.js';
import { type Grid, visionIndex } from '../processor/visionIndex.js';
import { QLinear, QRMSNorm, type ParamSource, SwiGLU } from './layers.js';
import { type RotaryTables, visionRotaryTables } from './rope.js';

/** The attention segments and rotary tables one forward pass shares across blocks. */
interface VisionContext {
  rope: RotaryTables;
  cuFull: Tensor;
  maxFull: number;
  cuWindow: Tensor;
  maxWindow: number;
}

export class VisionAttention extends Module {
  readonly qkv: QLinear;
  readonly proj: QLinear;
  constructor(src: ParamSource, prefix: string, private readonly cfg: VisionConfig) {
    super();
    const d = cfg.hiddenSize;
    this.qkv = this.registerModule('qkv', new QLinear(src, `${prefix}.qkv`, d, 3 * d, true));
    this.proj = this.registerModule('proj', new QLinear(src, `${prefix}.proj`, d, d, true));
  }
  forward(x: Tensor, rope: RotaryTables, cu: Tensor, maxSeqlen: number): Tensor {
    return tidy(() => {
      const n = x.shape[0], { numHeads: h, headDim: hd } = this.cfg;
      const qkv = this.qkv.forward(x).reshape([n, 3, h, hd]);
      const q = rotary(qkv.select(1, 0), rope.cos, rope.sin);
      const k = rotary(qkv.select(1, 1), rope.cos, rope.sin);
      const v = qkv.select(1, 2);
      const { out } = flashAttention(q, k, v, { cuSeqlensQ: cu, cuSeqlensK: cu, maxSeqlenQ: maxSeqlen, maxSeqlenK: maxSeqlen });
      return this.proj.forward(out.reshape([n, h * hd]));
    });
  }
}

export class VisionBlock extends Module {
  readonly norm1: QRMSNorm;
  readonly norm2: QRMSNorm;
  readonly attn: VisionAttention;
  readonly mlp: SwiGLU;
  constructor(src: ParamSource, prefix: string, cfg: VisionConfig, readonly fullAttention: boolean) {
    super();
    this.norm1 = this.registerModule('norm1', new QRMSNorm(src, `${prefix}.norm1`, cfg.hiddenSize, cfg.rmsNormEps));
    this.norm2 = this.registerModule('norm2', new QRMSNorm(src, `${prefix}.norm2`, cfg.hiddenSize, cfg.rmsNormEps));
    this.attn = this.registerModule('attn', new VisionAttention(src, `${prefix}.attn`, cfg));
    this.mlp = this.registerModule('mlp', new SwiGLU(src, `${prefix}.mlp`, cfg.hiddenSize, cfg.intermediateSize, true));
  }
  forward(h: Tensor, rope: RotaryTables, cu: Tensor, maxSeqlen: number): Tensor {
    return tidy(() => {
      const h1 = h.add(this.attn.forward(this.norm1.forward(h), rope, cu, maxSeqlen));
      return h1.add(this.mlp.forward(this.norm2.forward(h1)));
    });
  }
}

export class PatchMerger extends Module {
  readonly ln_q: QRMSNorm;
  readonly mlp: Module;
  private readonly fc1: QLinear;
  private readonly fc2: QLinear;
  private readonly unit: number;
  constructor(src: ParamSource, prefix: string, cfg: VisionConfig) {
    super();
    this.unit = cfg.spatialMergeSize ** 2;
    const wide = cfg.hiddenSize * this.unit;
    this.ln_q = this.registerModule('ln_q', new QRMSNorm(src, `${prefix}.ln_q`, cfg.hiddenSize, cfg.rmsNormEps));
    this.mlp = this.registerModule('mlp', new Module());
    this.fc1 = this.mlp.registerModule('0', new QLinear(src, `${prefix}.mlp.0`, wide, wide, true));
    this.fc2 = this.mlp.registerModule('2', new QLinear(src, `${prefix}.mlp.2`, wide, cfg.outHiddenSize, true));
  }
  forward(h: Tensor): Tensor {
    return tidy(() => {
      const x = this.ln_q.forward(h);
      const wide = x.reshape([x.shape[0] / this.unit, x.shape[1] * this.unit]);
      return this.fc2.forward(gelu(this.fc1.forward(wide)));
    });
  }
}

/** What the tower needs of a packed image batch (PackedImages satisfies it). */
export interface VisionInput {
  /** f32 [ΣP, inChannels·T·ps·ps], HF row order. Cast to the model's dtype here. */
  pixelValues: Tensor;
  /** i32 [n, 3] (t, h, w) patch grids, or the grids themselves. */
  gridThw: Tensor | readonly Grid[];
}

export function gridsOf(g: Tensor | readonly Grid[]): Grid[] {
  if (Array.isArray(g)) return (g as Grid[]).map((x) => ({ t: x.t, h: x.h, w: x.w }));
  const t = g as Tensor;
  if (t.ndim !== 2 || t.shape[1] !== 3) throw new Error(`VisionTower: gridThw must be [n, 3], got [${t.shape.join(', ')}]`);
  const d = t.data();
  const out: Grid[] = [];
  for (let i = 0; i < t.shape[0]; i++) out.push({ t: Number(d[i * 3]), h: Number(d[i * 3 + 1]), w: Number(d[i * 3 + 2]) });
  return out;
}

export interface VisionForwardOptions {
  /** Recompute each block in the backward instead of keeping its activations. */
  gradientCheckpointing?: boolean;
  /** Called with each block's output (window order), for inspection. */
  onBlock?: (index: number, h: Tensor) => void;
}

export class VisionTower extends Module {
  readonly patch_embed: Module;
  readonly blocks: VisionBlock[] = [];
  readonly merger: PatchMerger;
  private readonly patchWeight: Tensor;
  readonly patchDim: number;

  constructor(src: ParamSource, prefix: string, readonly cfg: VisionConfig) {
    super();
    const { hiddenSize: d, inChannels: c, temporalPatchSize: tp, patchSize: ps } = cfg;
    this.patchDim = c * tp * ps * ps;
    this.patch_embed = this.registerModule('patch_embed', new Module());
    const proj = this.patch_embed.registerModule('proj', new Module());
    this.patchWeight = proj.registerParameter('weight', src(`${prefix}.patch_embed.proj.weight`, [d, c, tp, ps, ps]));
    const list = this.registerModule('blocks', new Module());
    for (let i = 0; i < cfg.depth; i++) {
      const b = new VisionBlock(src, `${prefix}.blocks.${i}`, cfg, cfg.fullattBlockIndexes.includes(i));
      this.blocks.push(list.registerModule(String(i), b));
    }
    this.merger = this.registerModule('merger', new PatchMerger(src, `${prefix}.merger`, cfg));
  }

  /** Checks the batch against the config; returns its grids. */
  checkInput(input: VisionInput): Grid[] {
    const pv = input.pixelValues;
    const grids = gridsOf(input.gridThw);
    const m = this.cfg.spatialMergeSize;
    let rows = 0;
    for (const [i, g] of grids.entries()) {
      if (![g.t, g.h, g.w].every((x) => Number.isInteger(x) && x >= 1) || g.h % m !== 0 || g.w % m !== 0) {
        throw new Error(`VisionTower: grid ${i} (${g.t}, ${g.h}, ${g.w}) must be positive integers with h and w multiples of ${m}`);
      }
      rows += g.t * g.h * g.w;
    }
    if (pv.ndim !== 2 || pv.shape[1] !== this.patchDim || pv.shape[0] !== rows) {
      throw new Error(`VisionTower: pixelValues is [${pv.shape.join(', ')}], expected [${rows}, ${this.patchDim}] ` +
        `(Σ t·h·w over the grids, channels·temporal·patch²)`);
    }
    return grids;
  }

  /** Image features [Σ tokens, outHiddenSize], one row per <|image_pad|> token in order. */
  forward(input: VisionInput, opts: VisionForwardOptions = {}): Tensor {
    const grids = this.checkInput(input);
    const cfg = this.cfg, unit = cfg.spatialMergeSize ** 2, d = cfg.hiddenSize;
    const idx = visionIndex(grids, cfg.spatialMergeSize, cfg.windowSize / cfg.spatialMergeSize / cfg.patchSize);
    const dev = this.patchWeight.device, dtype = this.patchWeight.dtype;
    return tidy(() => {
      const ctx: VisionContext = {
        rope: visionRotaryTables(idx.rotaryPosIds, idx.windowIndex, cfg.headDim, cfg.ropeTheta, unit, dev),
        cuFull: tensor(idx.cuSeqlens, { dtype: 'i32', device: dev }),
        maxFull: idx.maxSeqlen,
        cuWindow: tensor(idx.cuWindowSeqlens, { dtype: 'i32', device: dev }),
        maxWindow: idx.maxWindowSeqlen,
      };
      const windowIndex = tensor(idx.windowIndex, { dtype: 'i32', device: dev });
      const windowInverse = tensor(idx.windowInverse, { dtype: 'i32', device: dev });
      const n = input.pixelValues.shape[0];
      const pv = input.pixelValues.to(dev).to(dtype);
      const w = this.patchWeight.reshape([d, this.patchDim]);
      let h = linear(pv, w).reshape([n / unit, unit * d]);
      h = indexSelect(h, 0, windowIndex).reshape([n, d]);
      const ckpt = (opts.gradientCheckpointing ?? false) && isGradEnabled();
      for (const [i, b] of this.blocks.entries()) {
        const cu = b.fullAttention ? ctx.cuFull : ctx.cuWindow;
        const max = b.fullAttention ? ctx.maxFull : ctx.maxWindow;
        // The tables and offsets go in as checkpoint inputs so the node keeps them alive
        // for the recomputation after this tidy has released its own references.
        h = ckpt
          ? checkpoint((x: Tensor, c: Tensor, s: Tensor, u: Tensor) => b.forward(x, { cos: c, sin: s }, u, max),
            [h, ctx.rope.cos, ctx.rope.sin, cu], { params: b.parameters() }) as Tensor
          : b.forward(h, ctx.rope, cu, max);
        opts.onBlock?.(i, h);
      }
      return indexSelect(this.merger.forward(h), 0, windowInverse);
    });
  }
}
