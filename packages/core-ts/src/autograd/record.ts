// record(): how an op joins the autograd graph. Ops compute outputs with grad recording
// off in their own code, then call record() with their inputs, outputs, the tensors their
// backward needs, and the backward function.
import type { Tensor } from '../tensor.js';
import { isFloat } from '../dtype.js';
import { keep } from '../memory.js';
import { isGradEnabled } from './grad_mode.js';
import { type BackwardFn, type Edge, Node } from './node.js';

/** True when recording is on and some input requires a gradient. */
export function needsGrad(inputs: readonly (Tensor | null | undefined)[]): boolean {
  if (!isGradEnabled()) return false;
  for (const t of inputs) if (t && t.requiresGrad) return true;
  return false;
}

/** A private alias of t for a node to save: shares storage, outlives the user's tensor. */
function saveAlias(t: Tensor): Tensor {
  return keep(t.viewAs(t.shape.slice(), t.strides.slice(), t.offset));
}

export function record(
  name: string,
  inputs: readonly (Tensor | null | undefined)[],
  outputs: readonly Tensor[],
  backward: BackwardFn,
  save: readonly Tensor[] = [],
): void {
  if (!needsGrad(inputs)) return;
  const edges: Edge[] = inputs.map((t) => {
    if (!t || !t.requiresGrad) return null;
    if (t.gradFn) return { node: t.gradFn, outputIndex: t.outputIndex };
    return { leaf: t };
  });
  const node = new Node(name, edges, outputs.slice(), save.map(saveAlias), backward);
  outputs.forEach((o, i) => {
    if (!isFloat(o.dtype)) return;
    o.requiresGrad = true;
    o.gradFn = node;
    o.outputIndex = i;
    node.retain();
  });
}
