// The packaging contract of tools/prebuild: packing the dev build gives a platform package
// that declares os/cpu/libc and carries the binary and its build-info.json, and an
// @fovea/native tarball that pins every platform package at its own version, ships the CMake
// file for `npx fovea-native build`, and ships no build output and no install script.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const REPO = join(__dirname, '..', '..', '..');
const ADDON = join(REPO, 'packages', 'native-cuda', 'build', 'Release', 'fovea_native.node');
const SIDECAR = join(REPO, 'packages', 'native-cuda', 'build', 'Release', 'libfovea_cuda.so');
const work = mkdtempSync(join(tmpdir(), 'fovea-prebuild-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const tarList = (tgz: string) => execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).trim().split('\n');
const tarJson = (tgz: string, path: string) => JSON.parse(execFileSync('tar', ['-xzOf', tgz, path], { encoding: 'utf8' }));

const canPack = existsSync(ADDON) && existsSync(join(REPO, 'packages', 'core-ts', 'dist', 'index.js')) &&
  process.platform === 'linux' && ['x64', 'arm64'].includes(process.arch);

it.skipIf(!canPack)('packing the dev build yields installable, version-pinned tarballs', () => {
  const out = join(work, 'packed');
  const r = spawnSync(process.execPath, [join(REPO, 'tools', 'prebuild', 'prebuild.mjs'), '--from-dev-build', '--no-cuda', '--stage-dir', join(work, 'stage'), '--out', out], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const version = JSON.parse(readFileSync(join(REPO, 'packages', 'native-cuda', 'package.json'), 'utf8')).version;
  const files = readdirSync(out).sort();
  const platform = `fovea-native-linux-${process.arch}-${version}.tgz`;
  expect(files).toEqual([`fovea-core-${version}.tgz`, `fovea-native-${version}.tgz`, platform].sort());

  const plat = join(out, platform);
  expect(tarList(plat).sort()).toEqual(['package/build-info.json', 'package/fovea_native.node', 'package/package.json']);
  expect(tarJson(plat, 'package/package.json')).toMatchObject({ name: `@fovea/native-linux-${process.arch}`, version, os: ['linux'], cpu: [process.arch], libc: ['glibc'] });
  const info = tarJson(plat, 'package/build-info.json');
  expect(info.minGlibc).toMatch(/^2\.\d+$/);
  expect(info.devBuild).toBe(true);

  const native = join(out, `fovea-native-${version}.tgz`);
  const listing = tarList(native);
  expect(listing).toContain('package/cmake/CMakeLists.txt');
  expect(listing).toContain('package/loader/load.js');
  expect(listing).toContain('package/doctor.js');
  expect(listing.filter((f) => f.includes('/build/') || f.endsWith('.node') || f.endsWith('.so'))).toEqual([]);
  const pkg = tarJson(native, 'package/package.json');
  expect(pkg.optionalDependencies).toEqual({
    '@fovea/native-linux-x64': version, '@fovea/native-linux-arm64': version, '@fovea/native-linux-x64-cuda': version,
  });
  for (const hook of ['preinstall', 'install', 'postinstall']) expect(pkg.scripts?.[hook]).toBeUndefined();
  expect(pkg.bin).toEqual({ 'fovea-native': 'bin/fovea-native.js' });
  expect(pkg.exports['./doctor']).toBeDefined();
}, 300_000);

it.skipIf(!existsSync(SIDECAR))('the GPU code listing reads the dev sidecar (SASS for at least one sm)', async () => {
  const { listGpuCode } = await import('../../../tools/prebuild/fatbin.mjs');
  const code = listGpuCode(SIDECAR);
  expect(code.sass.length).toBeGreaterThan(0);
  for (const s of code.sass) expect(s).toMatch(/^sm_\d+$/);
});
