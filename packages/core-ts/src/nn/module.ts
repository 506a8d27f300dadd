// Module: a tree of named parameters and submodules, as torch.nn.Module. Names are dotted
// paths ("layers.0.mlp.up.weight") so that state dicts line up with Hugging Face checkpoints.
import { Tensor, shapeStr } from '../tensor.js';
import { keep } from '../memory.js';
import { noGrad } from '../autograd/grad_mode.js';

export class Module {
  private readonly _params = new Map<string, Tensor>();
  private readonly _modules = new Map<string, Module>();
  training = true;

  /** Registers (or replaces) a parameter; it requires grad unless it is not a float tensor. */
  registerParameter(name: string, t: Tensor, requiresGrad = true): Tensor {
    if (name.includes('.')) throw new Error(`registerParameter: name '${name}' must not contain '.'`);
    const old = this._params.get(name);
    if (old && old !== t) old.dispose();
    keep(t);
    if (requiresGrad && !t.requiresGrad && t.isLeaf) t.requiresGrad = true;
    this._params.set(name, t);
    return t;
  }

  registerModule<M extends Module>(name: string, m: M): M {
    if (name.includes('.')) throw new Error(`registerModule: name '${name}' must not contain '.'`);
    this._modules.set(name, m);
    return m;
  }

  /** [dotted name, parameter] for every parameter in the tree, depth first. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, p] of this._params) out.push([prefix + n, p]);
    for (const [n, m] of this._modules) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] { return this.namedParameters().map(([, p]) => p); }

  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix.replace(/\.$/, ''), this]];
    for (const [n, m] of this._modules) out.push(...m.namedModules(`${prefix}${n}.`));
    return out;
  }

  /** Number of parameter elements. */
  numParameters(): number { return this.parameters().reduce((n, p) => n + p.size, 0); }

  zeroGrad(): void {
    for (const p of this.parameters()) { if (p.grad) { p.grad.dispose(); p.grad = null; } }
  }

  train(on = true): this { for (const [, m] of this.namedModules()) m.training = on; return this; }
  eval(): this { return this.train(false); }

  /** Name → parameter (the tensors themselves, not copies). */
  stateDict(): Map<string, Tensor> { return new Map(this.namedParameters()); }

  /** Copies values in by name. strict: every parameter must be present and nothing extra. */
  loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, opts: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
    const strict = opts.strict ?? true;
    const src = state instanceof Map ? state : new Map(Object.entries(state));
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !src.has(k));
    const unexpected = [...src.keys()].filter((k) => !own.has(k));
    if (strict && (missing.length || unexpected.length)) {
      throw new Error(`loadStateDict: missing ${JSON.stringify(missing)}, unexpected ${JSON.stringify(unexpected)}`);
    }
    noGrad(() => {
      for (const [k, p] of own) {
        const v = src.get(k);
        if (!v) continue;
        if (v.shape.length !== p.shape.length || v.shape.some((s, i) => s !== p.shape[i])) {
          throw new Error(`loadStateDict: '${k}' has shape ${shapeStr(v.shape)} but the parameter is ${shapeStr(p.shape)}`);
        }
        p.copy_(v);
      }
    });
    return { missing, unexpected };
  }

  /** Moves/casts every parameter (replacing the tensors). */
  to(target: string): this {
    for (const [, m] of this.namedModules()) {
      for (const [n, p] of m._params) {
        const moved = noGrad(() => p.to(target).contiguous());
        const req = p.requiresGrad;
        m.registerParameter(n, keep(moved), false);
        if (req) moved.requiresGrad = true;
      }
    }
    return this;
  }

  dispose(): void {
    for (const p of this.parameters()) { p.grad?.dispose(); p.dispose(); }
  }
}
