// Elementwise ops: unary (with up to two scalar parameters), binary with broadcasting, where,
// fill and strided copy with dtype conversion. The op codes are part of the JS <-> native
// contract (packages/core-ts/src/native/opcodes.ts) and of the CUDA sidecar ABI.
//
// Conventions shared by the CPU and CUDA paths:
//  - `out` is contiguous and freshly allocated by the caller; inputs are views with out's
//    shape (broadcast dimensions carry stride 0), any strides.
//  - Float dtypes compute in float (double for f64); bf16/f16 round once on store.
//  - Comparison ops write bool; every other binary op writes the inputs' dtype.
#pragma once
#include "core/tensor_view.h"

namespace fovea {

enum class UnaryOp : int {
  Neg = 0, Exp, Log, Sqrt, Rsqrt, Abs, Silu, Gelu, Sigmoid, Tanh, Relu,
  PowScalar,   // x^alpha
  Clamp,       // min(max(x, alpha), beta); alpha/beta may be -inf/+inf
  AddScalar,   // x + alpha
  MulScalar,   // x * alpha
  Sin, Cos, Reciprocal, Square, Sign, LogicalNot,
  Count
};

enum class BinaryOp : int {
  Add = 0, Sub, Mul, Div, Pow, Maximum, Minimum,
  Eq, Ne, Lt, Le, Gt, Ge,            // -> bool
  SiluBackward,     // (x, dy) -> dy * silu'(x)
  GeluBackward,     // (x, dy) -> dy * gelu'(x)   (erf form)
  SigmoidBackward,  // (y, dy) -> dy * y * (1 - y)
  TanhBackward,     // (y, dy) -> dy * (1 - y^2)
  ReluBackward,     // (x, dy) -> x > 0 ? dy : 0
  LogicalAnd, LogicalOr,
  Count
};

inline bool binary_op_is_comparison(BinaryOp op) {
  return op >= BinaryOp::Eq && op <= BinaryOp::Ge;
}

void unary_cpu(UnaryOp op, const TensorView& x, const TensorView& out, double alpha, double beta);
void binary_cpu(BinaryOp op, const TensorView& a, const TensorView& b, const TensorView& out);
// out = cond ? a : b; cond is bool; a, b broadcast to out's shape.
void where_cpu(const TensorView& cond, const TensorView& a, const TensorView& b,
               const TensorView& out);
void fill_cpu(const TensorView& out, double value);
// dst (any strides, same shape) = cast(src). The workhorse of contiguous(), to(dtype), cat.
void copy_cpu(const TensorView& src, const TensorView& dst);

}  // namespace fovea
