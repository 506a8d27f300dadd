// LoRA (Hu et al., 2021) on the linear layers of a Qwen2.5-VL Module tree, as PEFT does it:
// each target linear y = x·Wᵀ + b gains two trainable leaves A [r, in] and B [out, r] and
// computes y = x·Wᵀ + b + (dropout(x)·Aᵀ·Bᵀ)·(alpha/r). A starts Kaiming-uniform(a = √5), i.e.
// U(±1/√in), and B at zero, so a fresh adapter leaves the model's output unchanged. Every base
// parameter is frozen. The adapter rides on QLinear's `adapter` hook (models' layers.ts), so the
// graph code is untouched; merge() folds (alpha/r)·B·A into W in place for fast inference or
// export, unmerge() takes it back out.
//
// Targets follow PEFT: a list of names matches a module path equal to a name or ending in
// ".name"; a RegExp must match the whole path. Paths are the HF legacy layout's
// (model.layers.0.self_attn.q_proj, visual.blocks.0.attn.qkv). Only the language model is
// adapted unless includeVision is set.
//
// Dropout draws its masks from the LoraModel's seeded Generator, and only while the layer is in
// training mode with gradients recorded (never in eval() or under noGrad). Caveat: with
// gradient checkpointing the recomputed forward draws fresh masks, so use dropout 0 there.
import { Generator, type Module, type Tensor, isGradEnabled, keep, linear, noGrad, rand, zeros } from '@fovea/core';
import { type SaveAdapterOptions, saveAdapter } from './peft.js';

/** A linear layer LoRA can wrap: QLinear of @fovea/models (weight [out, in], the adapter hook). */
export interface AdaptableLinear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  adapter: { forward(x: Tensor, base: Tensor): Tensor } | null;
}

export interface LoraOptions {
  /** Module names (PEFT suffix matching: 'q_proj', 'mlp.down_proj', ...) or a RegExp on the full path. */
  targetModules: readonly string[] | RegExp;
  /** Rank (integer ≥ 1). */
  r: number;
  /** Scaling numerator: the update is (alpha/r)·B·A (default alpha = r). */
  alpha?: number;
  /** Dropout probability on the adapter's input, in [0, 1) (default 0). */
  dropout?: number;
  /** Seed of A's initialization and of the dropout masks (default 0). */
  seed?: number;
  /** Adapt matching layers of the vision tower too (default false: language model only). */
  includeVision?: boolean;
  /** rsLoRA scaling alpha/√r instead of alpha/r (PEFT's use_rslora; default false). */
  useRslora?: boolean;
  /** Internal (loadAdapter): require only that the targets match something overall, as PEFT,
   * instead of every listed name matching at least one layer. */
  lenientTargets?: boolean;
}

/** The resolved configuration of a LoraModel (what adapter_config.json records). */
export interface LoraConfig {
  targetModules: string[] | RegExp;
  r: number;
  alpha: number;
  dropout: number;
  seed: number;
  includeVision: boolean;
  useRslora: boolean;
}

const VISION_PREFIX = /^(model\.)?visual\./;

export function isAdaptableLinear(m: Module): m is AdaptableLinear {
  const w = (m as unknown as { weight?: Tensor }).weight;
  return 'adapter' in m && w !== undefined && w !== null && typeof w === 'object' && w.shape?.length === 2;
}

/** PEFT's rule: a name matches path === name or path ending in '.' + name; a RegExp must match the whole path. */
export function matchesTarget(path: string, target: string | RegExp): boolean {
  if (typeof target === 'string') return path === target || path.endsWith(`.${target}`);
  const m = new RegExp(target.source, target.flags.replace(/[gy]/g, '')).exec(path);
  return m !== null && m.index === 0 && m[0].length === path.length;
}

/** One adapted linear layer: the hook QLinear calls with its input and base output. */
export class LoraLayer {
  readonly inFeatures: number;
  readonly outFeatures: number;
  constructor(
    readonly path: string,
    readonly base: AdaptableLinear,
    /** [r, in], trainable. */
    readonly loraA: Tensor,
    /** [out, r], trainable. */
    readonly loraB: Tensor,
    private readonly owner: LoraModel,
  ) {
    [this.outFeatures, this.inFeatures] = base.weight.shape;
  }

  forward(x: Tensor, base: Tensor): Tensor {
    const o = this.owner;
    if (!o.enabled || o.merged) return base;
    const p = o.config.dropout;
    let xin = x;
    if (p > 0 && this.base.training && isGradEnabled()) {
      const keepMask = noGrad(() => {
        const u = rand(x.shape, { dtype: x.dtype, device: x.device, generator: o.generator });
        const ge = u.ge(p);
        const m = ge.cast(x.dtype).mul(1 / (1 - p));
        u.dispose(); ge.dispose();
        return m;
      });
      xin = x.mul(keepMask);
      keepMask.dispose();
    }
    const h = linear(xin, this.loraA);
    if (xin !== x) xin.dispose();
    const d = linear(h, this.loraB);
    h.dispose();
    const ds = d.mul(o.scaling);
    d.dispose();
    const y = base.add(ds);
    ds.dispose(); base.dispose();
    return y;
  }

  /** (scaling)·B·A, [out, in], without autograd. */
  delta(): Tensor {
    return noGrad(() => {
      const ba = this.loraB.matmul(this.loraA);
      const s = ba.mul(this.owner.scaling);
      ba.dispose();
      return s;
    });
  }
}

/** The handle applyLora returns: the adapted layers, their parameters, merge/unmerge, on/off. */
export class LoraModel {
  /** Module path (HF legacy layout) → adapted layer, in the model's module order. */
  readonly layers = new Map<string, LoraLayer>();
  /** Draws A's initialization, then the dropout masks (checkpoint its seed and offset). */
  readonly generator: Generator;
  private _enabled = true;
  private _merged = false;
  private removed = false;
  private readonly frozen: [Tensor, boolean][] = [];

  constructor(readonly model: Module, readonly config: LoraConfig) {
    this.generator = new Generator(config.seed);
  }

  get scaling(): number {
    const { alpha, r, useRslora } = this.config;
    return useRslora ? alpha / Math.sqrt(r) : alpha / r;
  }
  get enabled(): boolean { return this._enabled; }
  get merged(): boolean { return this._merged; }

  /** Every A and B, in module order (A before B): hand these to the optimizer. */
  trainableParameters(): Tensor[] {
    return [...this.layers.values()].flatMap((l) => [l.loraA, l.loraB]);
  }

  /** [path.lora_A / path.lora_B, tensor] pairs in module order. */
  namedTrainableParameters(): [string, Tensor][] {
    return [...this.layers.values()].flatMap((l): [string, Tensor][] => [[`${l.path}.lora_A`, l.loraA], [`${l.path}.lora_B`, l.loraB]]);
  }

  numTrainableParameters(): number { return this.trainableParameters().reduce((n, p) => n + p.size, 0); }

  /** Folds W += scaling·B·A into every adapted weight in place; the adapters then stay out of forward. */
  merge(): void {
    this.checkAlive('merge');
    if (this._merged) throw new Error('LoraModel.merge: the adapters are already merged; call unmerge() first');
    noGrad(() => {
      for (const l of this.layers.values()) {
        const d = l.delta();
        l.base.weight.add_(d);
        d.dispose();
      }
    });
    this._merged = true;
  }

  /** Subtracts scaling·B·A from every merged weight (the inverse of merge, up to rounding). */
  unmerge(): void {
    this.checkAlive('unmerge');
    if (!this._merged) throw new Error('LoraModel.unmerge: the adapters are not merged');
    noGrad(() => {
      for (const l of this.layers.values()) {
        const d = l.delta();
        l.base.weight.add_(d, -1);
        d.dispose();
      }
    });
    this._merged = false;
  }

  /** The forward skips the adapters (the base model's output) until enable(). */
  disable(): void { this.checkAlive('disable'); this._enabled = false; }
  enable(): void { this.checkAlive('enable'); this._enabled = true; }

  /** Writes the adapter in PEFT's layout (adapter_model.safetensors, adapter_config.json). */
  saveAdapter(dir: string, opts: SaveAdapterOptions = {}): void { saveAdapter(this, dir, opts); }

  /** Runs fn with the adapters disabled (e.g. the reference policy's logprobs). */
  withDisabled<T>(fn: () => T): T {
    const was = this._enabled;
    this._enabled = false;
    try { return fn(); } finally { this._enabled = was; }
  }

  /** Takes the adapters out of the model (unmerging first if merged), restores requiresGrad on
   * the base parameters and frees A and B. The handle is unusable afterwards. */
  remove(): void {
    this.checkAlive('remove');
    if (this._merged) this.unmerge();
    for (const l of this.layers.values()) {
      l.base.adapter = null;
      l.loraA.grad?.dispose(); l.loraB.grad?.dispose();
      l.loraA.dispose(); l.loraB.dispose();
    }
    for (const [p, req] of this.frozen) if (!p.isDisposed) p.requiresGrad = req;
    this.layers.clear();
    this.removed = true;
  }

  /** Internal: applyLora's bookkeeping. */
  freezeBase(): void {
    for (const [, p] of this.model.namedParameters()) {
      this.frozen.push([p, p.requiresGrad]);
      if (p.isLeaf) p.requiresGrad = false;
    }
  }

  private checkAlive(op: string): void {
    if (this.removed) throw new Error(`LoraModel.${op}: this LoraModel was removed`);
  }
}

/** The adaptable linear layers of a model: [path, layer], in module order. */
export function adaptableLinears(model: Module, includeVision: boolean): [string, AdaptableLinear][] {
  return model.namedModules()
    .filter(([path, m]) => path !== '' && isAdaptableLinear(m) && (includeVision || !VISION_PREFIX.test(path)))
    .map(([path, m]) => [path, m as AdaptableLinear]);
}

function checkOptions(opts: LoraOptions): LoraConfig {
  if (opts === null || typeof opts !== 'object') throw new Error('applyLora: options must be an object');
  const { r } = opts;
  if (!Number.isInteger(r) || r < 1) throw new Error(`applyLora: r must be an integer ≥ 1, got ${r}`);
  const alpha = opts.alpha ?? r;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new Error(`applyLora: alpha must be a finite number, got ${alpha}`);
  const dropout = opts.dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) throw new Error(`applyLora: dropout must be in [0, 1), got ${dropout}`);
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`applyLora: seed must be a non-negative safe integer, got ${seed}`);
  const t = opts.targetModules;
  let targetModules: string[] | RegExp;
  if (t instanceof RegExp) targetModules = t;
  else if (Array.isArray(t) && t.length > 0 && t.every((s) => typeof s === 'string' && s.length > 0)) targetModules = [...t];
  else throw new Error(`applyLora: targetModules must be a non-empty array of module names or a RegExp, got ${JSON.stringify(t)}`);
  return { targetModules, r, alpha, dropout, seed, includeVision: opts.includeVision ?? false, useRslora: opts.useRslora ?? false };
}

/** The short target name of a path: its last component, or the last two when that is an index (mlp.0). */
function shortName(path: string): string {
  const parts = path.split('.');
  const last = parts[parts.length - 1];
  return /^\d+$/.test(last) && parts.length > 1 ? `${parts[parts.length - 2]}.${last}` : last;
}

function describeAvailable(model: Module, includeVision: boolean): string {
  const all = adaptableLinears(model, true);
  const text = [...new Set(all.filter(([p]) => !VISION_PREFIX.test(p)).map(([p]) => shortName(p)))];
  const vision = [...new Set(all.filter(([p]) => VISION_PREFIX.test(p)).map(([p]) => shortName(p)))];
  let s = `available in the language model: ${text.join(', ') || '(none)'}`;
  if (includeVision) s += `; in the vision tower: ${vision.join(', ') || '(none)'}`;
  else if (vision.length) s += ` (vision tower, with includeVision: ${vision.join(', ')})`;
  return s;
}

/**
 * Adds LoRA adapters to the target linear layers of model and freezes every base parameter.
 * Returns the handle that owns the adapters (A, B, merge/unmerge, save via saveAdapter).
 */
export function applyLora(model: Module, opts: LoraOptions): LoraModel {
  if (model === null || typeof model !== 'object' || typeof (model as Module).namedModules !== 'function') {
    throw new Error('applyLora: model must be a Module (e.g. a Qwen2_5_VL)');
  }
  const config = checkOptions(opts);
  const candidates = adaptableLinears(model, config.includeVision);
  const targets = config.targetModules;
  const chosen = candidates.filter(([p]) => (targets instanceof RegExp ? matchesTarget(p, targets) : targets.some((t) => matchesTarget(p, t))));
  const where = config.includeVision ? 'the model' : 'the language model';
  if (!(targets instanceof RegExp) && !opts.lenientTargets) {
    const unused = targets.filter((t) => !candidates.some(([p]) => matchesTarget(p, t)));
    if (unused.length) {
      throw new Error(`applyLora: target ${unused.map((u) => `'${u}'`).join(', ')} matches no linear layer of ${where}; ` +
        describeAvailable(model, config.includeVision));
    }
  }
  if (chosen.length === 0) {
    throw new Error(`applyLora: targetModules ${targets instanceof RegExp ? String(targets) : JSON.stringify(targets)} match no linear ` +
      `layer of ${where} (a RegExp must match the whole module path, e.g. /model\\.layers\\.\\d+\\.self_attn\\.q_proj/); ` +
      describeAvailable(model, config.includeVision));
  }
  const busy = chosen.find(([, m]) => m.adapter !== null);
  if (busy) throw new Error(`applyLora: ${busy[0]} already has an adapter; call remove() on the existing LoraModel first`);

  const lm = new LoraModel(model, config);
  lm.freezeBase();
  noGrad(() => {
    for (const [path, m] of chosen) {
      const [out, inF] = m.weight.shape;
      const o = { dtype: m.weight.dtype, device: m.weight.device };
      // kaiming_uniform_(a=√5) on [r, in]: bound = √(2/(1+5))·√(3/in) = 1/√in.
      const bound = 1 / Math.sqrt(inF);
      const A = rand([config.r, inF], { ...o, generator: lm.generator, low: -bound, high: bound });
      const B = zeros([out, config.r], o);
      keep(A); keep(B);  // outlive any tidy() the caller is in
      A.requiresGrad = true;
      B.requiresGrad = true;
      const layer = new LoraLayer(path, m, A, B, lm);
      lm.layers.set(path, layer);
      m.adapter = layer;
    }
  });
  return lm;
}
