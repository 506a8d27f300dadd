// Custom rewards loaded by module path: working modules, and the clear errors for a missing
// file, a missing export, a non-function, a module that throws on import, and bad return values.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { explainReward, loadCustomReward, weightedSum, type RewardContext } from '../src/rewards/index.js';

const dir = mkdtempSync(join(tmpdir(), 'fovea-rewards-'));
writeFileSync(join(dir, 'ok.mjs'), [
  'export default (ctx) => (ctx.response.includes(ctx.row.answer) ? 1 : 0);',
  'export const asyncLen = async (ctx) => ctx.response.length / 10;',
  'export const detailed = (ctx) => ({ score: 0.5, details: { why: "half" } });',
  'export const notFn = 42;',
  'export const nan = () => NaN;',
  'export const str = () => "1";',
].join('\n'));
writeFileSync(join(dir, 'broken.mjs'), 'throw new Error("module init failed");\n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ctx: RewardContext = { response: 'Paris!!!!!', row: { answer: 'Paris' } };

describe('loadCustomReward', () => {
  it('loads default and named exports, sync and async, relative to baseDir', async () => {
    const def = await loadCustomReward('./ok.mjs', undefined, { baseDir: dir });
    expect(await def(ctx)).toBe(1);
    const len = await loadCustomReward(join(dir, 'ok.mjs'), 'asyncLen');
    expect(await len(ctx)).toBe(1);
    const det = await loadCustomReward('./ok.mjs', 'detailed', { baseDir: dir });
    expect(await explainReward(det, ctx)).toEqual({ score: 0.5, details: { why: 'half' } });
    expect(await weightedSum([{ reward: def, weight: 0.5 }, { reward: det, weight: 1 }])(ctx)).toBe(1);
  });

  it('gives clear errors', async () => {
    await expect(loadCustomReward('./missing.mjs', 'default', { baseDir: dir })).rejects.toThrow(
      new RegExp(`module not found: ${join(dir, 'missing.mjs').replace(/[.\\/]/g, '\\$&')} \\(from './missing.mjs' relative to`),
    );
    await expect(loadCustomReward('./ok.mjs', 'nope', { baseDir: dir })).rejects.toThrow(/has no export 'nope'; its exports are: (?=.*asyncLen)(?=.*default)/);
    await expect(loadCustomReward('./ok.mjs', 'notFn', { baseDir: dir })).rejects.toThrow(/export 'notFn' of .*ok\.mjs is the number 42, not a function/);
    await expect(loadCustomReward('./broken.mjs', 'default', { baseDir: dir })).rejects.toThrow(/failed to import .*broken\.mjs: module init failed/);
    await expect(loadCustomReward('fovea-no-such-package-xyz')).rejects.toThrow(/failed to import fovea-no-such-package-xyz/);
    await expect(loadCustomReward('')).rejects.toThrow(/non-empty string/);
    const nan = await loadCustomReward('./ok.mjs', 'nan', { baseDir: dir });
    await expect(nan(ctx)).rejects.toThrow(/custom reward nan from .*ok\.mjs returned the number NaN; expected a finite number/);
    const str = await loadCustomReward('./ok.mjs', 'str', { baseDir: dir });
    await expect(str(ctx)).rejects.toThrow(/returned a string \("1"\)/);
  });
});
