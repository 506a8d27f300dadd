// Finds and loads the native addon (fovea_native.node). First match wins:
//   1. $FOVEA_NATIVE_PATH: when set, the only candidate (a typo must not fall back silently);
//   2. a local build in this package: build/Release, then build-debug/Debug (developers, and
//      users who ran `npx fovea-native build`);
//   3. the prebuilt package for this machine (@fovea/native-<os>-<cpu>), only at exactly
//      @fovea/native's version and only if this glibc is at least the one its build-info.json
//      names; otherwise it is refused with a message.
// Each candidate's file is checked (ELF header: not corrupted, this CPU architecture) before
// dlopen, and every attempt is recorded, so the final error says what was tried, why each
// failed and the fix. Never runs a compiler.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { elfProblem } from './elf.js';
import { detectLibc, libcProblem, packageNames } from './platform.js';

export const PACKAGE_ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(join(PACKAGE_ROOT, 'index.js'));
export const OWN_VERSION = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version;
export const ADDON_FILE = 'fovea_native.node';

/** The candidates in lookup order: [{ path, source, problem? }] (problem set when refused up front). */
export function addonCandidates(root = PACKAGE_ROOT) {
  const env = process.env.FOVEA_NATIVE_PATH;
  if (env) return [{ path: env, source: '$FOVEA_NATIVE_PATH' }];
  const out = [
    { path: join(root, 'build', 'Release', ADDON_FILE), source: 'local build' },
    { path: join(root, 'build-debug', 'Debug', ADDON_FILE), source: 'local debug build' },
  ];
  const { cpu } = packageNames();
  if (cpu) {
    let pkgJson = null;
    try { pkgJson = createRequire(join(root, 'index.js')).resolve(`${cpu}/package.json`); } catch { /* not installed */ }
    if (!pkgJson) {
      out.push({ path: cpu, source: 'prebuilt package', problem: 'not installed' });
    } else {
      const version = JSON.parse(readFileSync(pkgJson, 'utf8')).version;
      const path = join(dirname(pkgJson), ADDON_FILE);
      const source = `prebuilt ${cpu}@${version}`;
      if (version !== OWN_VERSION) {
        out.push({ path, source, problem: `refused: version ${version} differs from @fovea/native ${OWN_VERSION}; the two must be the same version (npm install ${cpu}@${OWN_VERSION})` });
      } else {
        const libc = libcProblem(dirname(pkgJson));
        out.push(libc ? { path, source, problem: `refused: ${libc}` } : { path, source });
      }
    }
  }
  return out;
}

// Extra advice for loader errors whose cause is known.
function hintFor(message) {
  const glibc = /GLIBC_([\d.]+)' not found/.exec(message);
  if (glibc) return ` (this binary needs glibc ${glibc[1]} or newer; this system has ${detectLibc().version ?? 'another libc'}: build from source)`;
  if (/GLIBCXX_|CXXABI_/.test(message)) return ' (this binary needs a newer libstdc++ than this system has: build from source)';
  return '';
}

/** Tries each candidate; returns { addon, path, source, attempts } or { addon: null, attempts }. */
export function tryLoadAddon(root = PACKAGE_ROOT) {
  const attempts = [];
  for (const c of addonCandidates(root)) {
    if (c.problem) { attempts.push({ ...c, loaded: false }); continue; }
    if (!existsSync(c.path)) { attempts.push({ ...c, loaded: false, problem: 'not found' }); continue; }
    const bad = elfProblem(c.path);
    if (bad) { attempts.push({ ...c, loaded: false, problem: `${ADDON_FILE} ${bad}` }); continue; }
    try {
      const addon = require(c.path);
      attempts.push({ ...c, loaded: true, problem: null });
      return { addon, path: c.path, source: c.source, attempts };
    } catch (err) {
      attempts.push({ ...c, loaded: false, problem: `${err.message.split('\n')[0]}${hintFor(err.message)}` });
    }
  }
  return { addon: null, path: null, source: null, attempts };
}

/** The error for "nothing loaded": what this machine is, what was tried, and the fixes. */
export function loadErrorMessage(attempts) {
  const libc = detectLibc();
  const { cpu, why } = packageNames();
  const where = `${process.platform}-${process.arch}${libc.family ? ` ${libc.family}${libc.version ? ` ${libc.version}` : ''}` : ''}`;
  const lines = [
    `fovea: could not load the native engine (@fovea/native ${OWN_VERSION}) on ${where}, Node ${process.versions.node}.`,
    'Tried, in order:',
    ...attempts.map((a, i) => `  ${i + 1}. ${a.source}: ${a.path}: ${a.problem}`),
    'Fix:',
  ];
  if (process.env.FOVEA_NATIVE_PATH) lines.push('  - point FOVEA_NATIVE_PATH at a working fovea_native.node for this machine, or unset it to use the installed one');
  if (cpu) lines.push(`  - install the prebuilt binary at the same version: npm install ${cpu}@${OWN_VERSION} (npm installs it by itself unless optional dependencies are omitted, e.g. --omit=optional)`);
  else lines.push(`  - ${why}`);
  lines.push('  - or build from source (needs cmake >= 3.20 and a C++17 compiler; nvcc adds the CUDA sidecar): npx fovea-native build');
  return lines.join('\n');
}
