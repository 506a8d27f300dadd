// @fovea/core: tensors, autograd, ops, nn and safetensors over the native engine.
// Importing this module attaches every op to Tensor.prototype.
import native from '@fovea/native';
import './ops/shape.js';
import './ops/elementwise.js';
import './ops/reduce.js';
import './ops/matmul.js';
import './ops/softmax.js';
import './ops/indexing.js';
import './autograd/backward.js';

export { Tensor, shapeStr, numelOf } from './tensor.js';
export type { NestedArray, HostArray } from './tensor.js';
export { type DType, DTYPES, isFloat, promoteTypes } from './dtype.js';
export { type Device, parseDevice } from './device.js';
export { tidy, keep, memoryStats, emptyCache, type DeviceMemory } from './memory.js';
export { noGrad, enableGrad, isGradEnabled } from './autograd/grad_mode.js';
export { backward, type BackwardOptions } from './autograd/backward.js';
export { gradcheck, type GradcheckOptions, type GradcheckResult } from './autograd/gradcheck.js';
export { record, needsGrad } from './autograd/record.js';
export { checkpoint, type CheckpointOptions } from './autograd/checkpoint.js';
export { PagedKVCache, type PagedKVCacheOptions } from './kvcache/pagedKVCache.js';
export {
  tensor, zeros, ones, full, zerosLike, onesLike, fullLike, arange, rand, randn, manualSeed, Generator,
  type CreateOptions, type TensorOptions, type RandomOptions,
} from './ops/creation.js';
export {
  add, sub, mul, div, pow, powScalar, maximum, minimum, eq, ne, lt, le, gt, ge, where,
  neg, exp, log, sqrt, rsqrt, abs, silu, gelu, sigmoid, tanh, relu, sin, cos, square, reciprocal, clamp, cast,
  type Operand,
} from './ops/elementwise.js';
export { sum, mean, max, min, argmax, argmin, logsumexp, variance, type Dims } from './ops/reduce.js';
export { matmul, linear } from './ops/matmul.js';
export { softmax, logSoftmax } from './ops/softmax.js';
export { rmsNorm } from './ops/rmsnorm.js';
export { rotary } from './ops/rotary.js';
export { embedding, indexSelect, gather, scatterAdd } from './ops/indexing.js';
export { cat, stack, split } from './ops/join.js';
export { crossEntropy, type CrossEntropyOptions } from './ops/loss.js';
export { grpoLoss, tokenLogprobs, type GrpoConfig, type GrpoLossArgs, type GrpoStats, type GrpoAggregation, type GrpoKl } from './ops/grpoLoss.js';
export { flashAttention, attention, type FlashAttentionOptions, type AttentionOptions } from './ops/flashAttention.js';

/** Threads used by CPU kernels (FOVEA_NUM_THREADS sets the default). */
export function numThreads(): number { return native.numThreads(); }
export function setNumThreads(n: number): void { native.setNumThreads(n); }
/** The SIMD instruction set the CPU kernels use. */
export function cpuIsa(): string { return native.isa(); }
/** Whether CUDA can be used, and why not. */
export function cudaStatus() { return native.cudaStatus(); }
export { Module } from './nn/module.js';
export { Linear, Embedding, RMSNorm, type LayerOptions } from './nn/layers.js';
export { SGD, AdamW } from './optim/optimizers.js';
export type { AdamWOptions, AdamWParamState, AdamWState } from './optim/optimizers.js';
export { clipGradNorm, type ClipGradNormOptions } from './optim/clip.js';
export * from './safetensors/index.js';
