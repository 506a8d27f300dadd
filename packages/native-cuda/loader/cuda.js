// Decides, once per process, whether this process may use CUDA, before the addon ever touches
// the sidecar. Order: $FOVEA_DEVICE; the driver library on disk; the sidecar on disk; then a
// child process that loads the sidecar, lists devices and runs tiny kernels (so a broken
// driver kills the child, not the user's process). Outcomes:
//   enabled   the probe passed;
//   unavailable  no driver, so nothing expected CUDA: quiet; the core's lazy check (or, with
//             no sound sidecar, the wrapper below) reports the reason;
//   disabled  CUDA was expected (a driver is installed) but failed: the addon is wrapped so
//             CUDA calls throw the reason, and a loud message goes to stderr once;
//   error     FOVEA_DEVICE=cuda[:N] and CUDA is not usable: the import throws.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findCublas, findDriver, findSidecar } from './cuda-libs.js';

const PROBE = fileURLToPath(new URL('./cuda-probe-child.js', import.meta.url));
const WARNED = Symbol.for('fovea.native.cudaFallbackWarned');

/** $FOVEA_DEVICE as { mode: 'auto' | 'cpu' | 'cuda', ordinal }; throws on anything else. */
export function deviceMode(value = process.env.FOVEA_DEVICE) {
  if (value === undefined || value === '' || value === 'auto') return { mode: 'auto', ordinal: 0 };
  if (value === 'cpu') return { mode: 'cpu', ordinal: -1 };
  const m = /^cuda(?::(\d+))?$/.exec(value);
  if (m) return { mode: 'cuda', ordinal: m[1] === undefined ? 0 : Number(m[1]) };
  throw new Error(`fovea: FOVEA_DEVICE=${JSON.stringify(value)} is not understood; use cpu, cuda, cuda:N or auto (the default)`);
}

/** Runs the probe child against addonPath + sidecarPath. Never throws. */
export function probeCuda(addonPath, sidecarPath) {
  const r = spawnSync(process.execPath, [PROBE, addonPath], {
    env: { ...process.env, FOVEA_CUDA_SIDECAR: sidecarPath },
    encoding: 'utf8', timeout: 120_000, maxBuffer: 1 << 20,
  });
  const stderrTail = (r.stderr ?? '').trim().split('\n').slice(-3).join(' | ');
  if (r.error) return { ok: false, reason: `the CUDA probe could not run: ${r.error.message}` };
  if (r.signal) {
    return { ok: false, signal: r.signal,
      reason: `the CUDA probe (a child process that loads ${sidecarPath} and runs a test kernel) was killed by ${r.signal}` +
        `${stderrTail ? ` (${stderrTail})` : ''}: the NVIDIA driver or the sidecar is broken; check that nvidia-smi works and that the driver matches the kernel module` };
  }
  const line = (r.stdout ?? '').trim().split('\n').pop();
  try {
    const res = JSON.parse(line);
    if (!res.ok && res.reason) res.reason = res.reason.replace(/^CUDA is unavailable: /, '');
    return res;
  } catch {
    return { ok: false, reason: `the CUDA probe exited with code ${r.status} without a result${stderrTail ? `: ${stderrTail}` : ''}` };
  }
}

function fixFor(report) {
  if (!report.driver.found) return 'install the NVIDIA driver (nvidia-smi must work; in a container use the NVIDIA container toolkit, docker run --gpus all)';
  if (!report.sidecar.path) return `install the CUDA sidecar (npm install ${report.cudaPackage ?? '@fovea/native-linux-x64-cuda'}@${report.ownVersion}, linux-x64 glibc only) or build it from source with nvcc (npx fovea-native build)`;
  return 'run `npx fovea-native doctor` for details; update the NVIDIA driver if it is older than the sidecar\'s CUDA runtime';
}

/** Stderr, once per process, loud: CUDA was expected and is not used. */
export function warnCpuFallback(reason, fix) {
  if (globalThis[WARNED]) return;
  globalThis[WARNED] = true;
  const bar = '*'.repeat(78);
  process.stderr.write([
    `fovea: ${bar}`,
    'fovea: CUDA IS UNAVAILABLE. FOVEA IS RUNNING ON THE CPU.',
    `fovea: Reason: ${reason}`,
    `fovea: Fix: ${fix}.`,
    'fovea: Set FOVEA_DEVICE=cpu to run on the CPU without this message, or FOVEA_DEVICE=cuda to make it an error.',
    `fovea: ${bar}`,
  ].join('\n') + '\n');
}

/** The addon with every way into CUDA throwing `reason` (the sidecar is never loaded). */
export function withCudaDisabled(addon, reason) {
  const refuse = (name) => {
    const fn = addon[name];
    return (device, ...rest) => {
      if (typeof device === 'number' && device >= 0) throw new Error(`${name}: ${reason}`);
      return fn(device, ...rest);
    };
  };
  return {
    ...addon,
    cudaStatus: () => ({ available: false, reason, devices: [] }),
    cudaCheckDevice: () => { throw new Error(reason); },
    cudaSynchronize: () => { throw new Error(reason); },
    storageAlloc: refuse('storageAlloc'),
    memoryStats: refuse('memoryStats'),
    emptyCache: refuse('emptyCache'),
  };
}

/**
 * Everything known about CUDA on this machine, running the probe child when `probe` says so
 * ('needed': only when a driver and a sidecar are present; 'always': whenever a sidecar is).
 */
export function inspectCuda({ addonPath, cudaPackage, ownVersion, resolveFrom, probe = 'needed' }) {
  const { mode, ordinal } = deviceMode();
  const report = { mode, ordinal, ownVersion, cudaPackage, driver: findDriver(), sidecar: { path: null, tried: [] }, probe: null };
  if (mode === 'cpu' && probe !== 'always') return report;
  report.sidecar = findSidecar({ addonPath, cudaPackage, ownVersion, resolveFrom });
  const wantProbe = report.sidecar.path && addonPath && process.env.FOVEA_CUDA_PROBE !== '0' &&
    (probe === 'always' || report.driver.found);
  if (wantProbe) report.probe = probeCuda(addonPath, report.sidecar.path);
  const major = report.probe?.runtimeVersion ? Math.floor(report.probe.runtimeVersion / 1000) : null;
  report.cublas = findCublas(major);
  return report;
}

function describe(report) {
  if (report.probe && !report.probe.ok) return report.probe.reason;
  if (report.probe?.ok && report.ordinal >= report.probe.devices.length) {
    return `cuda:${report.ordinal} does not exist: the probe found ${report.probe.devices.length} CUDA device(s)`;
  }
  const problems = [];
  if (!report.sidecar.path) {
    problems.push('no usable CUDA sidecar (libfovea_cuda.so). Tried: ' +
      report.sidecar.tried.map((t) => `${t.path} (${t.source}): ${t.problem}`).join('; '));
  }
  if (!report.driver.found) problems.push(`no NVIDIA driver: libcuda.so.1 was not found in ${report.driver.tried.join(', ')}`);
  return problems.length ? problems.join('; and ') : null;
}

/**
 * Applies the decision to a loaded addon: returns { addon, cuda } where addon may be wrapped.
 * Throws for FOVEA_DEVICE=cuda when CUDA is unusable.
 */
export function setupCuda(addon, ctx) {
  const report = inspectCuda(ctx);
  if (report.mode === 'cpu') {
    report.state = 'disabled';
    report.reason = 'CUDA is unavailable: FOVEA_DEVICE=cpu';
    return { addon: withCudaDisabled(addon, report.reason), cuda: report };
  }
  const problem = describe(report);
  if (!problem) {
    report.state = 'enabled';
    // Point the core at the sidecar we probed (it would not look inside another package).
    if (report.sidecar.fromPackage && !process.env.FOVEA_CUDA_SIDECAR) process.env.FOVEA_CUDA_SIDECAR = report.sidecar.path;
    if (report.probe?.ok && report.probe.gemmError) {
      warnCpuFallback(`CUDA works but GEMM does not: ${report.probe.gemmError}`, 'install cuBLAS (see the message) and set FOVEA_CUBLAS_DIR; until then matmul on CUDA tensors throws this error');
    }
    return { addon, cuda: report };
  }
  report.reason = `CUDA is unavailable: ${problem}`;
  const fix = fixFor(report);
  if (report.mode === 'cuda') {
    throw new Error(`fovea: FOVEA_DEVICE=${process.env.FOVEA_DEVICE} asks for CUDA, but ${problem}.\nFix: ${fix}; or set FOVEA_DEVICE=cpu (or unset it) to run on the CPU.`);
  }
  if (!report.driver.found) {
    // Nothing on this machine expects CUDA: stay quiet. With a sound sidecar the core reports
    // the driver's absence lazily; without one, keep the core from dlopen()ing anything (a
    // damaged file it would find could crash the process) and report what we looked for.
    report.state = 'unavailable';
    return { addon: report.sidecar.path ? addon : withCudaDisabled(addon, report.reason), cuda: report };
  }
  report.state = 'disabled';
  warnCpuFallback(problem, fix);
  return { addon: withCudaDisabled(addon, report.reason), cuda: report };
}
