// Gradient checkpointing (activation recomputation): checkpoint(fn, inputs) runs a block (a
// decoder layer, a vision block) without keeping its intermediates, and recomputes them when
// the backward reaches it. Memory for saved activations drops from one set per block to one
// block's worth plus the block inputs.
//
// Design (PyTorch's reentrant checkpoint):
// - Forward: fn runs under noGrad inside tidy, so nothing it creates outlives it except its
//   outputs. One node, 'checkpoint', is recorded with edges to inputs + params; it saves only
//   aliases of the inputs (so the caller may dispose them).
// - Backward of that node: with recording on, fn runs again on fresh detached aliases of the
//   saved inputs (requiresGrad as the originals had), then a nested backward() runs from the
//   recomputed outputs with the incoming gradients (one output: backward(o, g); several:
//   backward of Σ sum(o_i·g_i), whose gradient w.r.t. each o_i is exactly g_i). The aliases'
//   .grad become the node's input gradients. Everything the recompute made is disposed
//   (tidy) when the node's backward returns.
// - Params are passed explicitly because fn reads module weights from its closure, where
//   checkpoint cannot see them: without them a block whose inputs need no gradient (layer 0
//   over a frozen embedding) would record nothing and its weights would silently get no
//   gradient. The nested backward accumulates (+=) straight into each param's .grad; the
//   node returns null on param edges so nothing is counted twice. A param also used outside
//   the block gets the sum: the outer backward applies its leaf gradients after its walk, so
//   it adds (+=) into the .grad the nested backward wrote during the walk; a nested backward
//   adopts a fresh gradient as .grad only where the param had none.
// - With recording off, or nothing requiring grad, fn is simply called (no tidy, no node).
// - The recomputed graph must be closed: every leaf it reaches is an input alias or a listed
//   param, and no node predates the recompute. A tensor with history from outside (a
//   non-leaf captured by fn) would make the nested backward walk and free the outer graph, so
//   it is an error naming the fix (pass it in inputs) rather than a wrong gradient.
// - Nested checkpoints work: the inner one is a plain call during the outer forward (grad
//   off) and records its own node during the outer recompute (list the inner params in the
//   outer's params too: the outer recompute reads them).
// - RNG: fn runs twice and must compute the same thing both times. The ops here are
//   deterministic; a random op (dropout) would need the generator state saved in the forward
//   and replayed in the recompute, which this does not do. Shapes are checked; values are not.
import { Tensor, nextTensorId, shapeStr } from '../tensor.js';
import { tidy } from '../memory.js';
import { isFloat } from '../dtype.js';
import { enableGrad, isGradEnabled, noGrad } from './grad_mode.js';
import { type Node, nodeCount } from './node.js';
import { record } from './record.js';
import { backward } from './backward.js';
import { add, mul } from '../ops/elementwise.js';
import { sum } from '../ops/reduce.js';

export interface CheckpointOptions {
  /** Tensors fn reads besides inputs (module weights); those requiring grad get .grad
   * accumulated exactly as without checkpointing. Must be leaves. */
  params?: Tensor[];
}

type BlockFn = (...inputs: Tensor[]) => Tensor | Tensor[];

const OP = 'checkpoint';

function checkArgs(fn: unknown, inputs: unknown, opts: unknown): Tensor[] {
  if (typeof fn !== 'function') throw new Error(`${OP}: fn must be a function (...inputs) => Tensor | Tensor[], got ${typeof fn}`);
  if (!Array.isArray(inputs)) throw new Error(`${OP}: inputs must be an array of tensors, got ${typeof inputs}`);
  inputs.forEach((t, i) => {
    if (!(t instanceof Tensor)) throw new Error(`${OP}: inputs[${i}] must be a Tensor, got ${t === null ? 'null' : typeof t}`);
    if (t.isDisposed) throw new Error(`${OP}: inputs[${i}] ${shapeStr(t.shape)} was disposed`);
  });
  if (opts === undefined || opts === null) return [];
  if (typeof opts !== 'object') throw new Error(`${OP}: opts must be an object { params?: Tensor[] }, got ${typeof opts}`);
  const params = (opts as CheckpointOptions).params ?? [];
  if (!Array.isArray(params)) throw new Error(`${OP}: opts.params must be an array of tensors, got ${typeof params}`);
  params.forEach((t, i) => {
    if (!(t instanceof Tensor)) throw new Error(`${OP}: opts.params[${i}] must be a Tensor, got ${t === null ? 'null' : typeof t}`);
    if (t.isDisposed) throw new Error(`${OP}: opts.params[${i}] ${shapeStr(t.shape)} was disposed`);
    if (t.gradFn) {
      throw new Error(`${OP}: opts.params[${i}] ${shapeStr(t.shape)} has autograd history (made by ${t.gradFn.name}); ` +
        'params must be leaves (weights) — pass a computed tensor in inputs and read it from fn\'s arguments');
    }
  });
  return params;
}

/** fn's result as a list, with a clear error for anything but a Tensor or Tensor[]. */
function outputsOf(result: unknown, when: string): Tensor[] {
  const list = Array.isArray(result) ? result : [result];
  if (Array.isArray(result) && result.length === 0) throw new Error(`${OP}: fn returned an empty array ${when}; expected a Tensor or Tensor[]`);
  list.forEach((t, i) => {
    if (!(t instanceof Tensor)) {
      const what = t === null ? 'null' : typeof t === 'object' ? 'an object that is not a Tensor' : typeof t;
      throw new Error(`${OP}: fn must return a Tensor or Tensor[], got ${Array.isArray(result) ? `${what} at [${i}]` : what} ${when}`);
    }
    if (t.isDisposed) throw new Error(`${OP}: fn returned a disposed tensor ${when}`);
  });
  return list as Tensor[];
}

/** Checks that the recomputed graph only reaches the input aliases and the params. */
function checkClosed(outs: Tensor[], allowed: Set<Tensor>, firstSeq: number): void {
  const outside = (what: string) => new Error(
    `${OP}: fn read ${what} that requires grad but is neither one of inputs (use fn's arguments) nor in ` +
    'opts.params; its gradient would be wrong. Pass it in inputs (if computed) or opts.params (if a weight)');
  const seen = new Set<Node>();
  const stack: Node[] = [];
  for (const o of outs) {
    if (o.gradFn) stack.push(o.gradFn);
    else if (o.requiresGrad && !allowed.has(o)) throw outside(`a leaf ${shapeStr(o.shape)}`);
  }
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    if (n.seq < firstSeq) throw outside(`a tensor with autograd history (made by ${n.name})`);
    for (const e of n.edges) {
      if (!e) continue;
      if ('node' in e) stack.push(e.node);
      else if (!allowed.has(e.leaf)) throw outside(`a leaf ${shapeStr(e.leaf.shape)}`);
    }
  }
}

interface Recompute {
  fn: BlockFn;
  /** Fresh detached aliases of the saved inputs (requiresGrad as the originals). */
  aliases: Tensor[];
  params: Tensor[];
  /** What the forward returned, to check the recomputation against. */
  meta: { shape: number[]; dtype: string }[];
  /** The incoming gradient of each output (null: none). */
  grads: (Tensor | null)[];
  /** nodeCount() before the recomputation: older nodes belong to the outer graph. */
  firstSeq: number;
}

/** Runs fn again with recording on (the caller has enabled it, inside a tidy), backpropagates
 * the incoming gradients through the recomputation, and returns the aliases' gradients. */
function recomputeBackward({ fn, aliases, params, meta, grads, firstSeq }: Recompute): (Tensor | null)[] {
  const re = outputsOf(fn(...aliases), 'in the backward recomputation');
  if (re.length !== meta.length || re.some((o, i) => o.dtype !== meta[i].dtype ||
      o.shape.length !== meta[i].shape.length || o.shape.some((s, j) => s !== meta[i].shape[j]))) {
    const desc = (l: { shape: number[]; dtype: string }[]) => l.map((m) => `${shapeStr(m.shape)} ${m.dtype}`).join(', ');
    throw new Error(`${OP}: the recomputation returned ${desc(re)} but the forward returned ${desc(meta)}; ` +
      'fn must compute the same thing every time it runs');
  }
  checkClosed(re, new Set<Tensor>([...aliases, ...params]), firstSeq);

  const roots: Tensor[] = [], rootGrads: Tensor[] = [];
  re.forEach((o, i) => {
    const g = grads[i];
    if (!g || !o.requiresGrad) return;  // no gradient arrives, or none can flow back
    roots.push(o);
    rootGrads.push(g.dtype === o.dtype ? g : noGrad(() => g.to(o.dtype)));
  });
  if (roots.length === 1) {
    backward(roots[0], rootGrads[0]);
  } else if (roots.length > 1) {
    // d/do_i Σ_j sum(o_j·g_j) = g_i exactly (the seed 1 times g_i).
    const dots = roots.map((o, i) => sum(mul(o, rootGrads[i])));
    backward(dots.reduce((a, b) => add(a, b)));
  }
  // The aliases' gradients are kept (exempt from every scope); hand each on as a fresh view
  // in the current scope, so the outer walk frees or adopts it like any op's gradient.
  return aliases.map((a) => {
    const g = a.grad;
    a.grad = null;
    if (!g) return null;
    const v = g.viewAs(g.shape.slice(), g.strides.slice(), g.offset);
    g.dispose();
    return v;
  });
}

/** Runs fn(...inputs) without keeping its intermediates; in backward, runs it again with
 * recording on and backpropagates through the recomputation. params: tensors fn reads
 * besides inputs (module weights) that need gradients — they get their .grad accumulated
 * exactly as without checkpointing. fn must be deterministic (see the top comment). */
export function checkpoint(fn: (...inputs: Tensor[]) => Tensor, inputs: Tensor[], opts?: CheckpointOptions): Tensor;
export function checkpoint(fn: (...inputs: Tensor[]) => Tensor[], inputs: Tensor[], opts?: CheckpointOptions): Tensor[];
export function checkpoint(fn: BlockFn, inputs: Tensor[], opts?: CheckpointOptions): Tensor | Tensor[];
export function checkpoint(fn: BlockFn, inputs: Tensor[], opts?: CheckpointOptions): Tensor | Tensor[] {
  const params = checkArgs(fn, inputs, opts);
  const wantsGrad = isGradEnabled() && [...inputs, ...params].some((t) => t.requiresGrad);
  if (!wantsGrad) {
    const r = fn(...inputs);
    outputsOf(r, 'without recording (no gradient needed)');
    return r;
  }

  const firstId = nextTensorId();
  const result = tidy(() => noGrad(() => fn(...inputs)));
  const raw = outputsOf(result, 'in the forward');
  // An output that existed before fn ran (an input returned as is) or that appears twice
  // gets a fresh alias, so recording never rewrites a caller's tensor or one output twice.
  const seenOut = new Set<Tensor>();
  const outs = raw.map((t) => {
    const fresh = t.id >= firstId && !seenOut.has(t);
    seenOut.add(t);
    return fresh ? t : t.viewAs(t.shape.slice(), t.strides.slice(), t.offset);
  });
  // No float output: no gradient can flow back, and a node no output holds would never be freed.
  if (!outs.some((o) => isFloat(o.dtype))) return Array.isArray(result) ? outs : outs[0];
  const meta = outs.map((o) => ({ shape: o.shape.slice(), dtype: o.dtype }));
  const inputNeedsGrad = inputs.map((t) => t.requiresGrad);
  const nIn = inputs.length;

  record(OP, [...inputs, ...params], outs, (grads, saved) => {
    if (grads.every((g) => !g)) return new Array(nIn + params.length).fill(null);
    const firstSeq = nodeCount();
    return enableGrad(() => tidy(() => {
      const aliases = saved.map((s, i) => {
        const a = s.viewAs(s.shape.slice(), s.strides.slice(), s.offset);
        if (inputNeedsGrad[i]) a.requiresGrad = true;
        return a;
      });
      try {
        const inGrads = recomputeBackward({ fn, aliases, params, meta, grads, firstSeq });
        return [...inGrads, ...params.map(() => null)];  // params got theirs directly
      } catch (e) {
        for (const a of aliases) { a.grad?.dispose(); a.grad = null; }
        throw e;
      }
    }));
  }, inputs);
  return Array.isArray(result) ? outs : outs[0];
}
