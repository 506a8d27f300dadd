// `fovea doctor`: what this machine is and what the native engine found on it. Never throws
// for a broken install (that is what it diagnoses): it loads the addon through the same loader
// as index.js, runs the CUDA probe in a child process whenever a sidecar exists (so a broken
// driver cannot crash it), and returns { ok, text, report }. ok is false when the addon does
// not load, when FOVEA_DEVICE=cuda cannot be honoured, or when an NVIDIA driver is installed
// but CUDA (or its cuBLAS) does not work.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { inspectCuda } from './loader/cuda.js';
import { loadErrorMessage, OWN_VERSION, PACKAGE_ROOT, tryLoadAddon } from './loader/load.js';
import { cpuFeatures, detectLibc, packageNames } from './loader/platform.js';

const cudaVersion = (v) => (v ? `${Math.floor(v / 1000)}.${(v % 1000) / 10}` : null);
const gib = (b) => `${(b / 2 ** 30).toFixed(1)} GiB`;

function prebuiltInfo(name) {
  if (!name) return null;
  try {
    const pkgJson = createRequire(join(PACKAGE_ROOT, 'index.js')).resolve(`${name}/package.json`);
    const pkg = JSON.parse(readFileSync(pkgJson, 'utf8'));
    let build = null;  // build-info.json, written by tools/prebuild next to the binary
    try { build = JSON.parse(readFileSync(join(dirname(pkgJson), 'build-info.json'), 'utf8')); } catch { /* older or hand-made package */ }
    return { name, installed: true, version: pkg.version, dir: dirname(pkgJson), build };
  } catch {
    return { name, installed: false };
  }
}

function verdict(report) {
  const { addon, cuda } = report;
  if (!addon.loaded) return { ok: false, line: 'FAIL: the native addon does not load (see above for what was tried and the fix)' };
  const p = cuda.probe;
  const cudaOk = p?.ok && cuda.ordinal < p.devices.length;
  if (cuda.mode === 'cuda' && !cudaOk) return { ok: false, line: `FAIL: FOVEA_DEVICE=${process.env.FOVEA_DEVICE} but CUDA is not usable: ${p?.reason ?? (cuda.sidecar.path ? 'no probe result' : 'no CUDA sidecar')}` };
  if (cuda.mode !== 'cpu' && cuda.driver.found && !cudaOk) return { ok: false, line: `FAIL: an NVIDIA driver is installed but CUDA is not usable: ${p?.reason ?? 'no CUDA sidecar (libfovea_cuda.so) found'}` };
  if (cudaOk && p.gemmError) return { ok: false, line: `FAIL: CUDA works but GEMM does not: ${p.gemmError}` };
  if (cudaOk) return { ok: true, line: `OK: CPU engine and CUDA (${p.devices.length} device(s))` };
  return { ok: true, line: `OK: CPU engine works; CUDA is not used (${cuda.mode === 'cpu' ? 'FOVEA_DEVICE=cpu' : cuda.driver.found ? 'see above' : 'no NVIDIA driver'})` };
}

/** Inspects the installation; see the top comment. */
export async function doctor() {
  const libc = detectLibc();
  const names = packageNames();
  const loaded = tryLoadAddon();
  const addon = loaded.addon;
  const cuda = inspectCuda({ addonPath: loaded.path, cudaPackage: names.cuda, ownVersion: OWN_VERSION, resolveFrom: join(PACKAGE_ROOT, 'index.js'), probe: 'always' });
  const report = {
    version: OWN_VERSION,
    platform: { os: process.platform, arch: process.arch, libc: libc.family, glibc: libc.version, node: process.versions.node, napi: process.versions.napi },
    cpu: { ...cpuFeatures(), kernelIsa: addon ? addon.isa() : null, threads: addon ? addon.numThreads() : null, FOVEA_NUM_THREADS: process.env.FOVEA_NUM_THREADS ?? null },
    addon: { loaded: Boolean(addon), path: loaded.path, source: loaded.source, attempts: loaded.attempts, error: addon ? null : loadErrorMessage(loaded.attempts) },
    prebuilt: { cpu: prebuiltInfo(names.cpu), cuda: prebuiltInfo(names.cuda), none: names.cpu ? null : names.why },
    cuda,
  };
  const v = verdict(report);
  report.ok = v.ok;

  const L = [];
  const row = (k, val) => L.push(`${k.padEnd(14)}${val}`);
  L.push(`Fovea doctor (@fovea/native ${OWN_VERSION})`);
  row('platform', `${process.platform}-${process.arch}${libc.family ? `, ${libc.family}${libc.version ? ` ${libc.version}` : ''}` : ''}, Node ${process.versions.node} (N-API ${process.versions.napi})`);
  row('cpu', `${report.cpu.model ?? 'unknown model'}; features: ${report.cpu.flags.join(' ') || 'none detected'}`);
  row('kernels', addon ? `${report.cpu.kernelIsa} code path, ${report.cpu.threads} threads (FOVEA_NUM_THREADS=${report.cpu.FOVEA_NUM_THREADS ?? 'unset'})` : 'not loaded');
  row('native addon', addon ? `loaded ${loaded.path} (${loaded.source})` : 'NOT LOADED');
  loaded.attempts.forEach((a, i) => row(i ? '' : '  tried', `${i + 1}. ${a.source}: ${a.path}: ${a.loaded ? 'loaded' : a.problem}`));
  for (const p of [report.prebuilt.cpu, report.prebuilt.cuda].filter(Boolean)) {
    const b = p.build;
    const built = b ? ` (needs glibc >= ${b.minGlibc}, libstdc++ ${b.libstdcxx === 'static' ? 'static' : `>= GLIBCXX ${b.minGlibcxx}`}` +
      `${b.cudaRuntime ? `, CUDA runtime ${b.cudaRuntime}, SASS ${b.sass.join(' ')}, PTX ${b.ptx.join(' ')}` : ''}${b.devBuild ? ', packed from a dev build' : ''})` : '';
    row('prebuilt', p.installed ? `${p.name}@${p.version} in ${p.dir}${built}` : `${p.name}: not installed`);
  }
  if (report.prebuilt.none) row('prebuilt', report.prebuilt.none);
  row('cuda mode', `${cuda.mode}${process.env.FOVEA_DEVICE ? ` (FOVEA_DEVICE=${process.env.FOVEA_DEVICE})` : ' (FOVEA_DEVICE unset)'}`);
  row('  driver', cuda.driver.found ? `${cuda.driver.path}${cuda.driver.kernelModuleVersion ? `, kernel module ${cuda.driver.kernelModuleVersion}` : ''}` : `libcuda.so.1 not found (looked in ${cuda.driver.tried.join(', ')})`);
  if (cuda.sidecar.path) row('  sidecar', `${cuda.sidecar.path} (${cuda.sidecar.source})`);
  else row('  sidecar', `none: ${cuda.sidecar.tried.map((t) => `${t.path} (${t.source}): ${t.problem}`).join('; ') || 'not looked up'}`);
  const p = cuda.probe;
  if (p) {
    row('  probe', p.ok ? 'passed (sidecar loaded, test kernels ran in a child process)' : `failed: ${p.reason}`);
    row('  versions', `driver supports CUDA ${cudaVersion(p.driverVersion) ?? 'unknown'}, sidecar runtime CUDA ${cudaVersion(p.runtimeVersion) ?? report.prebuilt.cuda?.build?.cudaRuntime ?? 'unknown (reported once a driver loads)'} (linked statically)`);
    row('  devices', p.devices?.length ? p.devices.map((d, i) => `cuda:${i} ${d.name}, ${gib(d.totalBytes)}, sm_${d.computeCapability.replace('.', '')}, ${d.smCount} SMs`).join('; ') : 'none');
    if (p.ok) row('  gemm', p.gemmError ? `FAILED: ${p.gemmError}` : 'cuBLAS GEMM passed');
  }
  if (cuda.cublas) row('  cuBLAS', cuda.cublas.found ? `${cuda.cublas.path}${cuda.cublas.lt ? ' (+ libcublasLt)' : ' (libcublasLt not beside it)'}` : `not found (${cuda.cublas.names.join(', ')} in ${cuda.cublas.tried.join(', ')}); only matmul on CUDA needs it: set FOVEA_CUBLAS_DIR to its directory`);
  if (!addon) L.push('', report.addon.error);
  L.push('', v.line);
  return { ok: v.ok, text: L.join('\n'), report };
}
