// A node of the autograd graph: one recorded op. It holds edges to its inputs (the node
// that produced each, or the leaf tensor itself), the tensors its backward needs (saved as
// private aliases, so disposing the user's tensors cannot free them), and the backward
// function. Nodes are reference counted (output tensors alive + child nodes pointing here);
// at zero, or after backward() without retainGraph, the saved tensors are released.
import type { Tensor } from '../tensor.js';

let nodesCreated = 0;
/** How many nodes have been created so far: a node whose seq is below a value read earlier
 * existed before that point (checkpoint uses this to tell its recomputed graph apart). */
export function nodeCount(): number { return nodesCreated; }

export type Edge = { node: Node; outputIndex: number } | { leaf: Tensor } | null;

/** grads[i] is the gradient of output i (null if it got none). Returns one gradient per
 * input (null where none flows), shaped like that input. */
export type BackwardFn = (grads: (Tensor | null)[], saved: Tensor[]) => (Tensor | null)[];

export class Node {
  readonly name: string;
  /** Creation order, 0, 1, 2, ... (see nodeCount). */
  readonly seq = nodesCreated++;
  readonly edges: Edge[];
  readonly numOutputs: number;
  readonly outputMeta: { shape: number[]; dtype: string; device: string }[];
  private saved: Tensor[];
  private fn: BackwardFn | null;
  private refs = 0;
  private freed = false;
  private savedDropped = false;

  constructor(name: string, edges: Edge[], outputs: Tensor[], saved: Tensor[], fn: BackwardFn) {
    this.name = name;
    this.edges = edges;
    this.numOutputs = outputs.length;
    this.outputMeta = outputs.map((o) => ({ shape: o.shape.slice(), dtype: o.dtype, device: o.device }));
    this.saved = saved;
    this.fn = fn;
    for (const e of edges) if (e && 'node' in e) e.node.retain();
  }

  get isReleased(): boolean { return this.freed; }

  retain(): void { this.refs++; }

  /** Drops one reference; at zero the node frees its saved tensors and lets go of parents. */
  unref(): void {
    if (--this.refs <= 0) this.release();
  }

  run(grads: (Tensor | null)[]): (Tensor | null)[] {
    if (this.freed || !this.fn || this.savedDropped) {
      throw new Error(
        `backward: the graph through ${this.name} was already freed. Call backward({ retainGraph: true }) ` +
        'the first time to backpropagate through it twice.');
    }
    return this.fn(grads, this.saved);
  }

  /** Frees the saved tensors but keeps the links to parents (backward() calls this right after
   * the node has run, so its memory is reusable during the rest of the walk; release() follows
   * once the walk is over). The node cannot run again. */
  dropSaved(keepAlive: readonly (Tensor | null)[] = []): void {
    if (this.savedDropped || this.freed) return;
    this.savedDropped = true;
    // A backward may hand back a saved tensor itself as a gradient: that one flows on.
    for (const s of this.saved) if (!keepAlive.includes(s)) s.dispose();
    this.saved = [];
  }

  /** Frees saved tensors; parents are unreferenced. Safe to call more than once. */
  release(): void {
    if (this.freed) return;
    this.freed = true;
    for (const s of this.saved) s.dispose();
    this.saved = [];
    this.fn = null;
    for (const e of this.edges) if (e && 'node' in e) e.node.unref();
  }
}
