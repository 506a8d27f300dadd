// Op codes of the native elementwise and reduction kernels. They mirror the enums in
// @fovea/native's src/ops/elementwise/elementwise.h and src/ops/reduce/reduce.h.
export const UNARY = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, abs: 5, silu: 6, gelu: 7, sigmoid: 8, tanh: 9, relu: 10,
  powScalar: 11, clamp: 12, addScalar: 13, mulScalar: 14, sin: 15, cos: 16, reciprocal: 17,
  square: 18, sign: 19, logicalNot: 20,
} as const;

export const BINARY = {
  add: 0, sub: 1, mul: 2, div: 3, pow: 4, maximum: 5, minimum: 6,
  eq: 7, ne: 8, lt: 9, le: 10, gt: 11, ge: 12,
  siluBackward: 13, geluBackward: 14, sigmoidBackward: 15, tanhBackward: 16, reluBackward: 17,
  logicalAnd: 18, logicalOr: 19,
} as const;

export const REDUCE = { sum: 0, mean: 1, max: 2, min: 3, argmax: 4, argmin: 5, logsumexp: 6, prod: 7 } as const;
