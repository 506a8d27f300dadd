// Custom reward functions loaded by module path (config: `reward: { module: ./my_reward.mjs,
// export: score }`). The module is imported dynamically; the export must be a function
// (ctx: RewardContext) => number | Promise<number>, or a factory's result of that shape.
// Every failure names the module, the export and the fix: a missing file says which path was
// tried, a missing export lists the ones that exist, a non-function says what it was, and a
// call that returns a non-number is caught at the first rollout rather than as a NaN advantage.

import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describeValue, makeReward, type DetailedReward, type RewardFn, type RewardResult } from './types.js';

export interface LoadCustomRewardOptions {
  /** Directory relative paths are resolved against (the config file's). Default process.cwd(). */
  baseDir?: string;
}

function isPathLike(spec: string): boolean {
  return spec.startsWith('.') || isAbsolute(spec) || spec.startsWith('file:');
}

/**
 * Imports `modulePath` and returns its `exportName` export (default: 'default') as a checked
 * reward. Relative paths resolve against opts.baseDir; bare names import a package.
 */
export async function loadCustomReward(modulePath: string, exportName = 'default', opts: LoadCustomRewardOptions = {}): Promise<DetailedReward> {
  if (typeof modulePath !== 'string' || modulePath.length === 0) {
    throw new Error('loadCustomReward: modulePath must be a non-empty string (a file path or package name)');
  }
  let specifier = modulePath;
  let shown = modulePath;
  if (isPathLike(modulePath) && !modulePath.startsWith('file:')) {
    const base = opts.baseDir ?? process.cwd();
    const abs = resolve(base, modulePath);
    shown = abs;
    if (!existsSync(abs)) {
      throw new Error(`loadCustomReward: module not found: ${abs} (from '${modulePath}' relative to ${base}); check the path, or set baseDir to the config file's directory`);
    }
    specifier = pathToFileURL(abs).href;
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(specifier)) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`loadCustomReward: failed to import ${shown}: ${(e as Error)?.message ?? String(e)}`);
  }
  // Object.keys, not `in`: some loaders (vite-node under vitest) proxy the namespace.
  const names = Object.keys(mod);
  if (!names.includes(exportName) || mod[exportName] === undefined) {
    throw new Error(`loadCustomReward: ${shown} has no export '${exportName}'; its exports are: ${names.length ? names.join(', ') : '(none)'}`);
  }
  const fn = mod[exportName];
  if (typeof fn !== 'function') {
    throw new Error(`loadCustomReward: export '${exportName}' of ${shown} is ${describeValue(fn)}, not a function; expected (ctx) => number | Promise<number>`);
  }
  const user = fn as RewardFn;
  const label = `${exportName} from ${shown}`;
  return makeReward(`custom:${exportName}`, async (ctx): Promise<RewardResult> => {
    const v: unknown = await user(ctx);
    if (typeof v === 'number' && Number.isFinite(v)) return { score: v };
    // A function may also return { score, details } like the built-ins' explain().
    if (v && typeof v === 'object' && typeof (v as RewardResult).score === 'number' && Number.isFinite((v as RewardResult).score)) {
      return v as RewardResult;
    }
    throw new Error(`custom reward ${label} returned ${describeValue(v)}; expected a finite number`);
  });
}
