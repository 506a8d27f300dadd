// Finds the CUDA pieces on disk without loading any of them: the NVIDIA driver library
// (libcuda.so.1, plus the kernel module's version from /proc), the Fovea CUDA sidecar
// (libfovea_cuda.so) and cuBLAS (which the sidecar dlopen()s on the first GEMM). Each finder
// returns what it found and every place it looked, so messages and `fovea doctor` can list
// them. The sidecar search mirrors core/cuda_loader.cpp; the cuBLAS search mirrors
// src/cuda/cublas_dyn.cu. Invariant: nothing here dlopen()s, so nothing here can crash.
import { createRequire } from 'node:module';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { elfProblem } from './elf.js';
import { libcProblem } from './platform.js';

const SIDECAR = 'libfovea_cuda.so';
const MULTIARCH = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' }[process.arch];

function ldLibraryPath() {
  return (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
}

// The dynamic loader's cache holds every library name it knows, as plain strings.
let ldCache = null;
function inLdCache(name) {
  if (ldCache === null) {
    try { ldCache = readFileSync('/etc/ld.so.cache').toString('latin1'); } catch { ldCache = ''; }
  }
  return ldCache.includes(`\0${name}\0`) || ldCache.includes(`/${name}\0`);
}

function systemLibDirs() {
  const dirs = [];
  if (MULTIARCH) dirs.push(`/usr/lib/${MULTIARCH}`, `/lib/${MULTIARCH}`);
  dirs.push('/usr/lib64', '/lib64', '/usr/lib', '/usr/local/nvidia/lib64', '/usr/lib/wsl/lib');
  return dirs;
}

/** libcuda.so.1 and the kernel driver version. found: the library is somewhere dlopen looks. */
export function findDriver() {
  const dirs = [...ldLibraryPath(), ...systemLibDirs()];
  let path = null;
  for (const d of dirs) {
    if (existsSync(join(d, 'libcuda.so.1'))) { path = join(d, 'libcuda.so.1'); break; }
  }
  const cached = !path && inLdCache('libcuda.so.1');
  let version = null;
  try {
    version = /Kernel Module(?: for \w+)?\s+([\d.]+)/.exec(readFileSync('/proc/driver/nvidia/version', 'utf8'))?.[1] ?? null;
  } catch { /* no kernel module */ }
  return {
    found: Boolean(path || cached),
    path: path ?? (cached ? 'libcuda.so.1 (in the dynamic loader cache)' : null),
    kernelModuleVersion: version,
    tried: [...dirs, '/etc/ld.so.cache'],
  };
}

/** The version field of a package.json, or null. */
function readVersion(pkgJson) {
  try { return JSON.parse(readFileSync(pkgJson, 'utf8')).version ?? null; } catch { return null; }
}

/**
 * The sidecar this process would use, first match wins:
 *   $FOVEA_CUDA_SIDECAR (the only candidate when set), next to the addon, the prebuilt
 *   package `cudaPackage` (same version as @fovea/native, else refused), LD_LIBRARY_PATH.
 * Returns { path, source, fromPackage, tried: [{ path, source, problem }] }.
 */
export function findSidecar({ addonPath, cudaPackage, ownVersion, resolveFrom }) {
  const tried = [];
  const accept = (path, source, fromPackage = null) => {
    if (!existsSync(path)) { tried.push({ path, source, problem: 'not found' }); return null; }
    const problem = elfProblem(path);
    if (problem) { tried.push({ path, source, problem: `${SIDECAR} ${problem}` }); return null; }
    tried.push({ path, source, problem: null });
    return { path, source, fromPackage, tried };
  };
  const env = process.env.FOVEA_CUDA_SIDECAR;
  if (env) {
    let p = env;
    try { if (statSync(env).isDirectory()) p = join(env, SIDECAR); } catch { /* reported as not found */ }
    return accept(p, '$FOVEA_CUDA_SIDECAR') ?? { path: null, source: null, fromPackage: null, tried };
  }
  if (addonPath) {
    const hit = accept(join(dirname(addonPath), SIDECAR), 'next to the addon');
    if (hit) return hit;
  }
  if (cudaPackage) {
    let pkgJson = null;
    try { pkgJson = createRequire(resolveFrom).resolve(`${cudaPackage}/package.json`); } catch { /* not installed */ }
    if (!pkgJson) {
      tried.push({ path: cudaPackage, source: 'prebuilt package', problem: 'not installed' });
    } else {
      const version = readVersion(pkgJson);
      if (version !== ownVersion) {
        tried.push({ path: dirname(pkgJson), source: `prebuilt ${cudaPackage}`,
          problem: `version ${version} refused: @fovea/native is ${ownVersion} and the sidecar must be the same version (npm install ${cudaPackage}@${ownVersion})` });
      } else if (libcProblem(dirname(pkgJson))) {
        tried.push({ path: dirname(pkgJson), source: `prebuilt ${cudaPackage}`, problem: `refused: ${libcProblem(dirname(pkgJson))}` });
      } else {
        const hit = accept(join(dirname(pkgJson), SIDECAR), `prebuilt ${cudaPackage}@${version}`, cudaPackage);
        if (hit) return hit;
      }
    }
  }
  for (const dir of ldLibraryPath()) {  // the core's last resort: dlopen's own search
    const p = join(dir, SIDECAR);
    if (existsSync(p)) return accept(p, 'LD_LIBRARY_PATH') ?? { path: null, source: null, fromPackage: null, tried };
  }
  return { path: null, source: null, fromPackage: null, tried };
}

/** cuBLAS as the sidecar will look for it (runtimeMajor first, then 13, 12, unversioned). */
export function findCublas(runtimeMajor = null) {
  const suffixes = [...new Set([runtimeMajor, 13, 12].filter(Boolean).map((m) => `.so.${m}`)), '.so'];
  const dirs = [
    ...(process.env.FOVEA_CUBLAS_DIR ?? '').split(':').filter(Boolean),
    ...ldLibraryPath(),
    ...['CUDA_HOME', 'CUDA_PATH'].filter((v) => process.env[v]).map((v) => join(process.env[v], 'lib64')),
    '/usr/local/cuda/lib64',
    ...systemLibDirs(),
  ];
  for (const d of dirs) {
    for (const s of suffixes) {
      if (existsSync(join(d, `libcublas${s}`))) {
        return { found: true, path: join(d, `libcublas${s}`), lt: existsSync(join(d, `libcublasLt${s}`)), tried: dirs, names: suffixes.map((x) => `libcublas${x}`) };
      }
    }
  }
  for (const s of suffixes) {
    if (inLdCache(`libcublas${s}`)) return { found: true, path: `libcublas${s} (in the dynamic loader cache)`, lt: inLdCache(`libcublasLt${s}`), tried: dirs, names: suffixes.map((x) => `libcublas${x}`) };
  }
  return { found: false, path: null, lt: false, tried: [...dirs, '/etc/ld.so.cache'], names: suffixes.map((x) => `libcublas${x}`) };
}
