// Reverse-mode differentiation. backward(root) walks the graph from root's node in reverse
// topological order, calling each node's backward with the summed gradients of its outputs,
// and accumulates (+=) into the .grad of leaf tensors that require grad. Intermediate
// gradients are disposed as soon as the walk ends; leaf gradients are kept. Without
// retainGraph the walked nodes release their saved tensors.
import type { Tensor } from '../tensor.js';
import { nextTensorId, shapeStr } from '../tensor.js';
import { keep, tidy } from '../memory.js';
import { noGrad } from './grad_mode.js';
import type { Node } from './node.js';
import { onesLike } from '../ops/creation.js';

export interface BackwardOptions { retainGraph?: boolean }

/** Adds g into leaf.grad. A gradient that nothing else can see once the walk has released
 * its nodes (created during this backward, handed out once, contiguous, its storage held by
 * no other tensor) becomes the leaf's .grad as is; anything else is copied first, so two
 * leaves never share a buffer and later in-place accumulation cannot corrupt another tensor.
 * This keeps a large gradient (an lm_head's, say) from existing twice. */
function accumulateLeaf(leaf: Tensor, g: Tensor, adoptable: boolean): void {
  if (leaf.isDisposed) return;
  if (g.shape.length !== leaf.shape.length || g.shape.some((s, i) => s !== leaf.shape[i])) {
    throw new Error(`backward: gradient ${shapeStr(g.shape)} does not match leaf ${shapeStr(leaf.shape)}`);
  }
  if (leaf.grad && !leaf.grad.isDisposed) {
    leaf.grad.add_(g);
  } else if (adoptable && g.dtype === leaf.dtype && g.ordinal === leaf.ordinal && g.isContiguous() &&
             g.offset === 0 && g.storage.refCount === 1 && !g.gradFn) {
    leaf.grad = keep(g);
  } else {
    leaf.grad = keep(g.to(leaf.dtype).clone());
  }
}

export function backward(root: Tensor, grad?: Tensor | null, opts: BackwardOptions = {}): void {
  root.assertAlive('backward');
  if (!root.requiresGrad) {
    throw new Error('backward: tensor does not require grad (no input of its graph has requiresGrad)');
  }
  if (!grad && root.size !== 1) {
    throw new Error(`backward: grad can be implicit only for a one-element output, got ${shapeStr(root.shape)}`);
  }
  if (grad && (grad.shape.length !== root.shape.length || grad.shape.some((s, i) => s !== root.shape[i]))) {
    throw new Error(`backward: grad ${shapeStr(grad.shape)} must match the output ${shapeStr(root.shape)}`);
  }
  noGrad(() => tidy(() => {
    const firstId = nextTensorId();
    const g0 = grad ?? onesLike(root);
    if (!root.gradFn) { accumulateLeaf(root, g0, false); return; }
    // How many times each gradient tensor has been handed along an edge in this walk.
    const handedOut = new Map<Tensor, number>();
    // Leaf gradients are summed here and applied after the walk, once the released nodes no
    // longer hold views of them (so an op may hand back a view of a saved gradient).
    const leafGrads = new Map<Tensor, { g: Tensor; adoptable: boolean }>();
    const leafGradValues = new Set<Tensor>();
    const addLeafGrad = (leaf: Tensor, g: Tensor, adoptable: boolean) => {
      const prev = leafGrads.get(leaf);
      const sum = prev ? prev.g.add(g) : g;
      leafGradValues.add(g);
      leafGradValues.add(sum);
      leafGrads.set(leaf, prev ? { g: sum, adoptable: true } : { g, adoptable });
    };

    // Count, for every node reachable from root, how many child edges feed it.
    const deps = new Map<Node, number>();
    const stack: Node[] = [root.gradFn];
    deps.set(root.gradFn, 0);
    const visited = new Set<Node>([root.gradFn]);
    while (stack.length) {
      const n = stack.pop()!;
      for (const e of n.edges) {
        if (e && 'node' in e) {
          deps.set(e.node, (deps.get(e.node) ?? 0) + 1);
          if (!visited.has(e.node)) { visited.add(e.node); stack.push(e.node); }
        }
      }
    }

    // A gradient may be freed once consumed if nothing else can still see it: not the
    // caller's, handed along at most one edge, and not on its way to a leaf.
    const disposable = (t: Tensor) => t !== grad && (handedOut.get(t) ?? 0) <= 1 && !leafGradValues.has(t);
    const pending = new Map<Node, (Tensor | null)[]>();
    const addGrad = (n: Node, idx: number, g: Tensor) => {
      let arr = pending.get(n);
      if (!arr) { arr = new Array(n.numOutputs).fill(null); pending.set(n, arr); }
      const prev = arr[idx];
      arr[idx] = prev ? prev.add(g) : g;
      if (prev) for (const t of [prev, g]) if (disposable(t)) t.dispose();
    };
    addGrad(root.gradFn, root.outputIndex, g0);

    const ready: Node[] = [root.gradFn];
    const walked: Node[] = [];
    while (ready.length) {
      const n = ready.pop()!;
      const grads = pending.get(n) ?? new Array(n.numOutputs).fill(null);
      pending.delete(n);
      const inGrads = n.run(grads);
      for (const g of inGrads) if (g) handedOut.set(g, (handedOut.get(g) ?? 0) + 1);
      // Free as we go: the node's saved tensors, and the gradients it consumed unless they
      // live on (passed through as an input gradient, owned by the caller, or bound for a
      // leaf). Storage is reference counted, so a gradient returned as a view of one of them
      // stays valid. Without this every intermediate gradient of the walk is alive at once.
      if (!opts.retainGraph) n.dropSaved(inGrads);
      for (const g of grads) if (g && !inGrads.includes(g) && disposable(g)) g.dispose();
      n.edges.forEach((e, i) => {
        const g = inGrads[i];
        if (!e) return;
        if (g) {
          if ('leaf' in e) addLeafGrad(e.leaf, g, g.id >= firstId && handedOut.get(g) === 1 && !grads.includes(g));
          else addGrad(e.node, e.outputIndex, g);
        }
        if ('node' in e) {
          const left = deps.get(e.node)! - 1;
          deps.set(e.node, left);
          if (left === 0) ready.push(e.node);
        }
      });
      walked.push(n);
    }
    // Release only after the walk: releasing a node unreferences its parents, which could
    // otherwise free a parent before its turn.
    if (!opts.retainGraph) for (const n of walked) n.release();
    for (const [leaf, { g, adoptable }] of leafGrads) accumulateLeaf(leaf, g, adoptable);
  }));
}

declare module '../tensor.js' {
  interface Tensor {
    /** Backpropagates from this tensor; grad defaults to 1 for a one-element tensor. */
    backward(grad?: Tensor | null, opts?: BackwardOptions): void;
  }
}
import { Tensor as TensorClass } from '../tensor.js';
TensorClass.prototype.backward = function (grad?: Tensor | null, opts?: BackwardOptions) {
  backward(this, grad, opts);
};
