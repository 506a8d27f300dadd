// The basic layers: Linear (x·Wᵀ + b), Embedding (row lookup) and RMSNorm. Initializations
// follow PyTorch's defaults (Linear: U(±1/√in) for weight and bias; Embedding: N(0, 1);
// RMSNorm: ones) drawn from a seeded generator.
import type { DType } from '../dtype.js';
import { Tensor } from '../tensor.js';
import { Generator, ones, rand, randn } from '../ops/creation.js';
import { linear } from '../ops/matmul.js';
import { embedding } from '../ops/indexing.js';
import { rmsNorm } from '../ops/rmsnorm.js';
import { Module } from './module.js';

export interface LayerOptions { dtype?: DType; device?: string; generator?: Generator; seed?: number }

export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  weight: Tensor;
  bias: Tensor | null;
  constructor(inFeatures: number, outFeatures: number, opts: LayerOptions & { bias?: boolean } = {}) {
    super();
    if (!Number.isInteger(inFeatures) || !Number.isInteger(outFeatures) || inFeatures <= 0 || outFeatures <= 0) {
      throw new Error(`Linear: features must be positive integers, got ${inFeatures} → ${outFeatures}`);
    }
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const bound = 1 / Math.sqrt(inFeatures);
    const o = { dtype: opts.dtype, device: opts.device, generator: opts.generator, seed: opts.seed, low: -bound, high: bound };
    this.weight = this.registerParameter('weight', rand([outFeatures, inFeatures], o));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', rand([outFeatures], o));
  }
  forward(x: Tensor): Tensor { return linear(x, this.weight, this.bias); }
}

export class Embedding extends Module {
  weight: Tensor;
  constructor(numEmbeddings: number, dim: number, opts: LayerOptions = {}) {
    super();
    if (!Number.isInteger(numEmbeddings) || !Number.isInteger(dim) || numEmbeddings <= 0 || dim <= 0) {
      throw new Error(`Embedding: sizes must be positive integers, got [${numEmbeddings}, ${dim}]`);
    }
    this.weight = this.registerParameter('weight', randn([numEmbeddings, dim], opts));
  }
  forward(ids: Tensor): Tensor { return embedding(this.weight, ids); }
}

export class RMSNorm extends Module {
  weight: Tensor;
  readonly eps: number;
  constructor(dim: number, opts: LayerOptions & { eps?: number } = {}) {
    super();
    this.eps = opts.eps ?? 1e-6;
    this.weight = this.registerParameter('weight', ones([dim], { dtype: opts.dtype, device: opts.device }));
  }
  forward(x: Tensor): Tensor { return rmsNorm(x, this.weight, this.eps); }
}
