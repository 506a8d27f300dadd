// The declarative config schema shared by `fovea train` (train/config.ts) and `fovea sft`
// (sft/config.ts): a Spec per field, and one checker that fills defaults, resolves paths against
// the config file's folder, and names every problem by its path and what was expected
// (`optim.lr: expected a number > 0, got "fast"`), suggesting the closest valid key for an
// unknown one. Problems are collected, not thrown, so a config reports all of them at once.
import path from 'node:path';

export type Spec =
  | { t: 'string'; def?: string | null; path?: boolean; allowEmpty?: boolean; nullable?: boolean }
  | { t: 'int'; min: number; def?: number | null; nullable?: boolean }
  | { t: 'num'; min?: number; max?: number; gt?: number; lt?: number; def?: number | null; nullable?: boolean }
  | { t: 'bool'; def: boolean }
  | { t: 'enum'; values: readonly string[]; def?: string }
  | { t: 'pair'; def: [number, number] }
  /** `expected`: the wording of the error (default: "a [non-empty] list of strings"). */
  | { t: 'strings'; def?: readonly string[]; values?: readonly string[]; nonEmpty?: boolean; expected?: string }
  | { t: 'obj'; fields: Record<string, Spec>; optional?: boolean };

/** Keeps a spec's literal type inside a schema literal (for nullable fields). */
export const opt = <T extends Spec>(s: T) => s;

/** Edit distance (for "did you mean"). */
function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]; d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length];
}

/** The valid key closest to `key`, or null when none is close enough to suggest. */
export function closestKey(key: string, valid: readonly string[]): string | null {
  let best: string | null = null, bestD = Infinity;
  for (const v of valid) { const dd = levenshtein(key, v); if (dd < bestD) { bestD = dd; best = v; } }
  return best !== null && bestD <= Math.max(2, Math.floor(best.length / 2)) ? best : null;
}

/** A value as error messages show it. */
export const showValue = (v: unknown) => (v === undefined ? 'nothing' : typeof v === 'string' || Array.isArray(v) ? JSON.stringify(v) : v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v));

function describe(spec: Spec): string {
  switch (spec.t) {
    case 'int': return `an integer >= ${spec.min}${spec.nullable ? ' or null' : ''}`;
    case 'num': {
      const parts = [spec.gt !== undefined ? `> ${spec.gt}` : '', spec.min !== undefined ? `>= ${spec.min}` : '',
        spec.lt !== undefined ? `< ${spec.lt}` : '', spec.max !== undefined ? `<= ${spec.max}` : ''].filter(Boolean);
      return `a number${parts.length ? ' ' + parts.join(' and ') : ''}${spec.nullable ? ' or null' : ''}`;
    }
    case 'string': return spec.path ? 'a path (string)' : 'a string';
    case 'strings': return spec.expected ?? `a${spec.nonEmpty ? ' non-empty' : ''} list of strings`;
    case 'enum': return `one of ${spec.values.map((s) => JSON.stringify(s)).join(', ')}`;
    case 'pair': return '[beta1, beta2] with both in [0, 1)';
    case 'bool': return 'true or false';
    case 'obj': return 'an object';
  }
}

/** Checks `v` against `spec` at path `at`; returns the value with defaults filled (problems go to `errors`). */
export function checkSpec(spec: Spec, v: unknown, at: string, baseDir: string, errors: string[]): unknown {
  const bad = (want = describe(spec)) => { errors.push(`${at}: expected ${want}, got ${showValue(v)}`); return undefined; };
  if (spec.t === 'obj') {
    if (v === undefined || (v === null && spec.optional)) { if (spec.optional) return null; v = {}; }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return bad();
    const keys = Object.keys(spec.fields);
    for (const k of Object.keys(v as object)) {
      if (k in spec.fields) continue;
      const near = closestKey(k, keys);
      errors.push(`${at ? at + '.' : ''}${k}: unknown key${near ? ` (did you mean "${near}"?)` : ''}; valid keys here: ${keys.join(', ')}`);
    }
    const out: Record<string, unknown> = {};
    for (const k of keys) out[k] = checkSpec(spec.fields[k], (v as Record<string, unknown>)[k], at ? `${at}.${k}` : k, baseDir, errors);
    return out;
  }
  if (v === undefined && 'def' in spec && spec.def !== undefined) return Array.isArray(spec.def) ? [...spec.def] : spec.def;
  if (v === undefined) { errors.push(`${at}: required, expected ${describe(spec)}`); return undefined; }
  switch (spec.t) {
    case 'string':
      if (v === null && spec.nullable) return null;
      if (typeof v !== 'string' || (v === '' && !spec.allowEmpty)) return bad(spec.allowEmpty ? 'a string' : 'a non-empty string');
      return spec.path ? path.resolve(baseDir, v) : v;
    case 'strings': {
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '') || (spec.nonEmpty && v.length === 0)) return bad();
      const unknown = spec.values ? (v as string[]).filter((x) => !spec.values!.includes(x)) : [];
      if (unknown.length) return bad(`a list of ${spec.values!.map((x) => JSON.stringify(x)).join(', ')}`);
      return [...v];
    }
    case 'bool': return typeof v === 'boolean' ? v : bad();
    case 'enum': return typeof v === 'string' && spec.values.includes(v) ? v : bad();
    case 'pair': return Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && x >= 0 && x < 1) ? v : bad();
    case 'int': case 'num':
      if (v === null && spec.nullable) return null;
      if (typeof v !== 'number' || !Number.isFinite(v) || (spec.t === 'int' && !Number.isSafeInteger(v))) return bad();
      if (spec.min !== undefined && v < spec.min) return bad();
      if (spec.t === 'num' && ((spec.gt !== undefined && v <= spec.gt) || (spec.max !== undefined && v > spec.max) || (spec.lt !== undefined && v >= spec.lt))) return bad();
      return v;
  }
}
