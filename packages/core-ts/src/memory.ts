// Deterministic memory release: tidy(fn) disposes every tensor created inside fn that fn does
// not return (walking arrays and plain objects in the result), as tfjs does; keep(t) exempts a
// tensor; memoryStats() reports live bytes (native) and live tensors (JS) per device.
import native from '@fovea/native';
import type { Tensor } from './tensor.js';

interface Scope { tensors: Set<Tensor> }
const scopes: Scope[] = [];
const liveTensors = new Map<number, number>();  // ordinal -> count

/** Called by the Tensor constructor. */
export function trackTensor(t: Tensor, ordinal: number): void {
  liveTensors.set(ordinal, (liveTensors.get(ordinal) ?? 0) + 1);
  if (scopes.length) scopes[scopes.length - 1].tensors.add(t);
}
/** Called when a tensor is disposed (or collected without dispose). */
export function untrackTensor(t: Tensor | null, ordinal: number): void {
  liveTensors.set(ordinal, (liveTensors.get(ordinal) ?? 1) - 1);
  if (t) for (const s of scopes) s.tensors.delete(t);
}

/** Exempts t from every enclosing tidy scope; it lives until disposed. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.tensors.delete(t);
  return t;
}

function collect(value: unknown, out: Set<Tensor>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if ((value as { __isTensor?: boolean }).__isTensor) { out.add(value as Tensor); return; }
  if (Array.isArray(value)) { for (const v of value) collect(v, out, seen); return; }
  if (value instanceof Map) { for (const v of value.values()) collect(v, out, seen); return; }
  if (Object.getPrototypeOf(value) === Object.prototype)
    for (const v of Object.values(value as object)) collect(v, out, seen);
}

/** Runs fn and disposes every tensor it created that is not part of its result. Returned
 * tensors move to the enclosing scope. Async functions are not supported (as in tfjs). */
export function tidy<T>(fn: () => T): T {
  const scope: Scope = { tensors: new Set() };
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope.tensors) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) throw new Error('tidy: fn must be synchronous (it returned a Promise)');
  const returned = new Set<Tensor>();
  collect(result, returned, new Set());
  for (const t of scope.tensors) {
    if (returned.has(t)) {
      if (scopes.length) scopes[scopes.length - 1].tensors.add(t);
    } else {
      t.dispose();
    }
  }
  return result;
}

export interface DeviceMemory {
  liveBytes: number;
  liveStorages: number;
  liveTensors: number;
  /** Freed blocks the device's caching allocator keeps for reuse (not live). */
  cachedBytes: number;
}

/** Live bytes and storages (native) and live tensors (JS) per device name. */
export function memoryStats(): Record<string, DeviceMemory> {
  const out: Record<string, DeviceMemory> = {};
  const ordinals = new Set<number>([-1, ...liveTensors.keys()]);
  for (const o of ordinals) {
    const s = native.memoryStats(o);
    out[o < 0 ? 'cpu' : `cuda:${o}`] = { ...s, cachedBytes: s.cachedBytes ?? 0, liveTensors: liveTensors.get(o) ?? 0 };
  }
  return out;
}

/** Returns the cached blocks of a device ('cpu' by default) to the OS or driver. */
export function emptyCache(device = 'cpu'): void {
  native.emptyCache(device === 'cpu' ? -1 : Number(device.split(':')[1] ?? 0));
}
