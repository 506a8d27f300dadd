// The seeded random source of the demo's generated data: mulberry32 (data/dataset.ts) behind a
// few helpers. Invariant: a (seed, stream) pair always yields the same sequence, on any machine,
// so a scene is a pure function of its seed.
import { mulberry32 } from '../data/dataset.js';

/** 32-bit integer mix (MurmurHash3's finalizer): turns nearby seeds into unrelated states. */
function mix32(h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A seed for item `index` of a set seeded with `seed` (both non-negative safe integers). */
export function deriveSeed(seed: number, index: number): number {
  for (const [name, v] of [['seed', seed], ['index', index]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`deriveSeed: ${name} must be a non-negative safe integer, got ${v}`);
  }
  const lo = seed >>> 0, hi = Math.floor(seed / 0x100000000) >>> 0;
  return mix32(mix32(lo ^ 0x3c6ef372) ^ mix32(hi + 0x1b873593) ^ mix32(Math.imul(index + 1, 0x27d4eb2f)));
}

export class Rng {
  private readonly next: () => number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`Rng: seed must be a non-negative safe integer, got ${seed}`);
    this.next = mulberry32(deriveSeed(seed, 0));
  }

  /** Uniform in [0, 1). */
  float(): number { return this.next() / 0x100000000; }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number { return lo + (hi - lo) * this.float(); }

  /** Uniform integer in [lo, hi] (both inclusive). */
  int(lo: number, hi: number): number {
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo) throw new Error(`Rng.int: need integers lo <= hi, got ${lo}, ${hi}`);
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick: the list is empty');
    return items[Math.floor(this.float() * items.length)];
  }

  /** A Fisher–Yates shuffled copy. */
  shuffled<T>(items: readonly T[]): T[] {
    const a = items.slice();
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.float() * (i + 1));
      const t = a[i]; a[i] = a[j]; a[j] = t;
    }
    return a;
  }
}
