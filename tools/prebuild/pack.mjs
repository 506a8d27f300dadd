// Packs the npm tarballs a release (or the install smoke test) needs into one directory:
// each staged platform package (npm/<target>/), @fovea/native and @fovea/core.
// @fovea/native is packed from a staging copy that gains two things the repository copy does
// not carry: optionalDependencies on every platform package at exactly its own version (kept
// out of the workspace package.json so package-lock.json and `npm ci` stay unaffected), and
// cmake/CMakeLists.txt (the root build file) so `npx fovea-native build` works once installed.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function npmPack(cwd, out) {
  const json = execFileSync('npm', ['pack', '--json', '--pack-destination', out], { cwd, encoding: 'utf8' });
  return join(out, JSON.parse(json)[0].filename);
}

/** The platform package names @fovea/native lists as optional dependencies (npm/<dir>). */
export function platformPackageNames(repo) {
  const dirs = ['linux-x64', 'linux-arm64', 'linux-x64-cuda'];
  return dirs.map((d) => JSON.parse(readFileSync(join(repo, 'npm', d, 'package.json'), 'utf8')).name);
}

export function packNative(repo, out) {
  const src = join(repo, 'packages', 'native-cuda');
  const pkg = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8'));
  const stage = mkdtempSync(join(tmpdir(), 'fovea-native-pack-'));
  try {
    for (const f of pkg.files.filter((x) => x !== 'cmake')) {
      if (!existsSync(join(src, f))) throw new Error(`pack: @fovea/native lists ${f} in "files" but ${join(src, f)} is missing`);
      cpSync(join(src, f), join(stage, f), { recursive: true });
    }
    mkdirSync(join(stage, 'cmake'));
    cpSync(join(repo, 'CMakeLists.txt'), join(stage, 'cmake', 'CMakeLists.txt'));
    pkg.optionalDependencies = Object.fromEntries(platformPackageNames(repo).map((n) => [n, pkg.version]));
    pkg.scripts = { build: 'fovea-native build' };  // the repository scripts point at ../..
    delete pkg.devDependencies;
    writeFileSync(join(stage, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
    return npmPack(stage, out);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

export function packCore(repo, out) {
  const dir = join(repo, 'packages', 'core-ts');
  if (!existsSync(join(dir, 'dist', 'index.js'))) throw new Error('pack: packages/core-ts/dist is missing; run npx tsc -b packages/core-ts first');
  return npmPack(dir, out);
}

/** Packs everything; returns the tarball paths. */
export function packAll({ repo, platformDirs, out }) {
  mkdirSync(out, { recursive: true });
  return [...platformDirs.map((d) => npmPack(d, out)), packNative(repo, out), packCore(repo, out)];
}
