#!/usr/bin/env node
// `npm run version:sync [-- <version>] [-- --check]`: every Fovea package shares one version.
// Sets "version" in the root package.json (when a version is given), every workspace package
// and every npm/<target> platform template to it, and pins every "@fovea/*" dependency to it
// exactly (the loader refuses a platform package of another version, so ranges would only
// produce installs that fail at run time). --check changes nothing and exits 1 on any mismatch.
// After a change, run `npm install --package-lock-only` so package-lock.json follows.
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SEMVER = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/;

function manifests() {
  const root = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
  const files = root.workspaces.map((w) => join(REPO, w, 'package.json'));
  for (const d of readdirSync(join(REPO, 'npm'), { withFileTypes: true })) {
    const f = join(REPO, 'npm', d.name, 'package.json');
    if (d.isDirectory() && existsSync(f)) files.push(f);
  }
  return files;
}

function main(argv) {
  const check = argv.includes('--check');
  const given = argv.find((a) => !a.startsWith('--'));
  if (given && !SEMVER.test(given)) throw new Error(`version:sync: "${given}" is not a version like 1.2.3`);
  const rootFile = join(REPO, 'package.json');
  const root = JSON.parse(readFileSync(rootFile, 'utf8'));
  const version = given ?? root.version;
  const problems = [];
  const files = given && !check ? [rootFile, ...manifests()] : manifests();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const pkg = JSON.parse(text);
    const where = relative(REPO, file);
    if (pkg.version !== version) { problems.push(`${where}: version ${pkg.version}`); pkg.version = version; }
    for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies', 'devDependencies']) {
      for (const name of Object.keys(pkg[field] ?? {})) {
        if (name.startsWith('@fovea/') && pkg[field][name] !== version) {
          problems.push(`${where}: ${field}.${name} ${pkg[field][name]}`);
          pkg[field][name] = version;
        }
      }
    }
    const out = JSON.stringify(pkg, null, 2) + '\n';
    if (!check && out !== text && problems.some((p) => p.startsWith(where))) writeFileSync(file, out);
  }
  if (check) {
    if (problems.length) {
      console.error(`version:sync --check: not every package is at ${version}:\n  ${problems.join('\n  ')}\nRun npm run version:sync`);
      return 1;
    }
    console.log(`version:sync --check: all ${files.length} packages at ${version}`);
    return 0;
  }
  console.log(problems.length ? `version:sync: set ${version}:\n  ${problems.join('\n  ')}\nNow run npm install --package-lock-only` : `version:sync: all packages already at ${version}`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
