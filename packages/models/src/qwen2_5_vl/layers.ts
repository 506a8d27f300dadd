// The weight-holding pieces of the Qwen2.5-VL graph. Unlike @fovea/core's nn layers they do
// not initialize anything: each parameter comes from a ParamSource (a loaded checkpoint, or a
// seeded random initializer for tests and benchmarks), asked for by its full Hugging Face name
// and shape, so a 7B model never holds a throwaway random copy of its weights.
import { Module, type Tensor, linear, rmsNorm, silu } from '@fovea/core';

/** Supplies the parameter called name (canonical HF layout) with the given shape. */
export type ParamSource = (name: string, shape: number[]) => Tensor;

export class QLinear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(src: ParamSource, prefix: string, inFeatures: number, outFeatures: number, bias: boolean) {
    super();
    this.weight = this.registerParameter('weight', src(`${prefix}.weight`, [outFeatures, inFeatures]));
    this.bias = bias ? this.registerParameter('bias', src(`${prefix}.bias`, [outFeatures])) : null;
  }
  /** Optional hook (LoRA, @fovea/trainers): maps (input, base output) to the layer's output.
   * It owns base: it returns it or disposes it. */
  adapter: { forward(x: Tensor, base: Tensor): Tensor } | null = null;
  forward(x: Tensor): Tensor {
    const y = linear(x, this.weight, this.bias);
    return this.adapter ? this.adapter.forward(x, y) : y;
  }
}

export class QRMSNorm extends Module {
  readonly weight: Tensor;
  constructor(src: ParamSource, prefix: string, dim: number, readonly eps: number) {
    super();
    this.weight = this.registerParameter('weight', src(`${prefix}.weight`, [dim]));
  }
  forward(x: Tensor): Tensor { return rmsNorm(x, this.weight, this.eps); }
}

/** down(silu(gate(x)) · up(x)), the SwiGLU MLP of both towers (biases in the vision one). */
export class SwiGLU extends Module {
  readonly gate_proj: QLinear;
  readonly up_proj: QLinear;
  readonly down_proj: QLinear;
  constructor(src: ParamSource, prefix: string, hidden: number, intermediate: number, bias: boolean) {
    super();
    this.gate_proj = this.registerModule('gate_proj', new QLinear(src, `${prefix}.gate_proj`, hidden, intermediate, bias));
    this.up_proj = this.registerModule('up_proj', new QLinear(src, `${prefix}.up_proj`, hidden, intermediate, bias));
    this.down_proj = this.registerModule('down_proj', new QLinear(src, `${prefix}.down_proj`, intermediate, hidden, bias));
  }
  forward(x: Tensor): Tensor {
    const g = this.gate_proj.forward(x);
    const a = silu(g);
    g.dispose();
    const u = this.up_proj.forward(x);
    const p = a.mul(u);
    a.dispose(); u.dispose();
    const y = this.down_proj.forward(p);
    p.dispose();
    return y;
  }
}
