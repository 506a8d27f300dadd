// What machine this is, in the terms the prebuilt packages use: os, cpu, libc (glibc and its
// version, or musl), and the names of the packages that would fit it. Pure reads of the
// process and /proc; nothing here loads native code.
//
// Invariant: packageNames() is the single place that maps a machine to package names; the
// prebuild tool (tools/prebuild) and the loader agree because both go through npm/<dir>/.
import { readFileSync } from 'node:fs';

let libc = null;  // detectLibc() result; a diagnostic report is too costly to build twice

/** The libc this Node runs on: 'glibc' with its version, 'musl', or null off Linux. */
export function detectLibc() {
  if (libc) return libc;
  if (process.platform !== 'linux') return (libc = { family: null, version: null });
  const header = process.report?.getReport?.().header ?? {};
  if (header.glibcVersionRuntime) return (libc = { family: 'glibc', version: header.glibcVersionRuntime });
  return (libc = { family: 'musl', version: null });
}

/** Prebuilt package directory names under npm/ and on the registry (as @fovea/native-<dir>). */
export const PREBUILT_TARGETS = {
  'linux-x64': { os: 'linux', cpu: 'x64', libc: 'glibc', kind: 'cpu' },
  'linux-arm64': { os: 'linux', cpu: 'arm64', libc: 'glibc', kind: 'cpu' },
  'linux-x64-cuda': { os: 'linux', cpu: 'x64', libc: 'glibc', kind: 'cuda' },
};

/**
 * The prebuilt packages that fit this machine: { cpu, cuda } package names (each null when no
 * prebuilt exists for this platform), plus why not when null.
 */
export function packageNames(platform = process.platform, arch = process.arch, libc = detectLibc().family) {
  const key = `${platform}-${arch}`;
  const fits = (dir) => {
    const t = PREBUILT_TARGETS[dir];
    return t && t.os === platform && t.cpu === arch && t.libc === libc;
  };
  const cpu = fits(key) ? `@fovea/native-${key}` : null;
  const cuda = fits(`${key}-cuda`) ? `@fovea/native-${key}-cuda` : null;
  let why = '';
  if (!cpu) {
    why = `no prebuilt @fovea/native binary exists for ${platform}-${arch}` +
      (libc ? ` with ${libc}` : '') + ` (prebuilt: ${Object.keys(PREBUILT_TARGETS).filter((d) => PREBUILT_TARGETS[d].kind === 'cpu').map((d) => `${d} glibc`).join(', ')})`;
  }
  return { cpu, cuda, why };
}

/** CPU model and the SIMD flags the kernels care about, from /proc/cpuinfo (Linux). */
export function cpuFeatures() {
  const wanted = ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_bf16', 'asimd', 'sve', 'bf16'];
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const model = /^(?:model name|Model)\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? null;
    const flagsLine = /^(?:flags|Features)\s*:\s*(.+)$/m.exec(info)?.[1] ?? '';
    const flags = new Set(flagsLine.trim().split(/\s+/));
    return { model, flags: wanted.filter((f) => flags.has(f)) };
  } catch {
    return { model: null, flags: [] };
  }
}

/** Compares dotted versions numerically ('2.9' < '2.34'); negative, 0 or positive. */
export function compareVersions(a, b) {
  const pa = String(a).split('.').map(Number), pb = String(b).split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  }
  return 0;
}

/**
 * Why a prebuilt package's binary cannot run on this libc, from its build-info.json (written
 * by tools/prebuild), or null. dlopen would say the same with less context.
 */
export function libcProblem(packageDir) {
  let info;
  try { info = JSON.parse(readFileSync(`${packageDir}/build-info.json`, 'utf8')); } catch { return null; }
  const { family, version } = detectLibc();
  if (family === 'glibc' && info.minGlibc && version && compareVersions(version, info.minGlibc) < 0) {
    return `needs glibc ${info.minGlibc} or newer, but this system has glibc ${version}: build from source (npx fovea-native build)`;
  }
  return null;
}
