// Cross compilation of a prebuilt CPU package on another architecture (today: linux-arm64 on an
// x86-64 Linux host with Debian's g++-aarch64-linux-gnu), and running the C++ tests of a build,
// natively or under qemu-user for a cross build.
//
// Invariants: a native build (target cpu = this machine's) gets null and no toolchain; only the
// pairs in CROSS are cross built, anything else is an Error naming the target and what is
// supported; a missing cross compiler or emulator is an Error that names the Debian package.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PREBUILT_TARGETS } from '../../packages/native-cuda/loader/platform.js';

// target cpu -> how an x86-64 host builds for it.
const CROSS = {
  arm64: {
    host: 'x64', triple: 'aarch64-linux-gnu', toolchain: 'toolchain-aarch64.cmake',
    compilerPackage: 'g++-aarch64-linux-gnu', emulators: ['qemu-aarch64-static', 'qemu-aarch64'], emulatorPackage: 'qemu-user-static',
  },
};

function firstLine(cmd, args) {
  try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0].trim(); } catch { return null; }
}

/**
 * How to build `target` (an npm/<dir> name) on this machine: null when it is this machine's own
 * CPU package, else { cpu, triple, toolchainFile, sysroot, compilerVersion, emulators, emulatorPackage }.
 */
export function crossToolchain(target, repo, hostArch = process.arch) {
  const t = PREBUILT_TARGETS[target];
  const cpuTargets = Object.keys(PREBUILT_TARGETS).filter((d) => PREBUILT_TARGETS[d].kind === 'cpu');
  if (!t || t.kind !== 'cpu') throw new Error(`prebuild: --target ${target} is not a prebuilt CPU package (expected one of ${cpuTargets.join(', ')}; the CUDA package is built with the x64 one)`);
  if (t.cpu === hostArch) return null;
  const c = CROSS[t.cpu];
  if (!c || c.host !== hostArch) {
    throw new Error(`prebuild: cannot cross compile ${target} on a ${hostArch} machine (supported: ${Object.entries(CROSS).map(([cpu, x]) => `linux-${cpu} on ${x.host}`).join(', ')}); build it on a ${t.cpu} machine`);
  }
  const compilerVersion = firstLine(`${c.triple}-g++`, ['--version']);
  if (!compilerVersion) throw new Error(`prebuild: ${c.triple}-g++ is not installed (needed to cross compile ${target}): apt-get install ${c.compilerPackage}`);
  return {
    cpu: t.cpu, triple: c.triple, compilerVersion, sysroot: `/usr/${c.triple}`,
    toolchainFile: join(repo, 'tools', 'prebuild', c.toolchain), emulators: c.emulators, emulatorPackage: c.emulatorPackage,
  };
}

/**
 * Runs builtDir/fovea_native_tests (under qemu-user when `cross` is set), optionally only the
 * tests whose name contains `filter`, echoing its output. Returns { passed, failed, skipped,
 * output }; throws when a test fails, the binary crashes, or no test ran at all.
 */
export function runNativeTests(builtDir, cross, filter = null) {
  const tests = join(builtDir, 'fovea_native_tests');
  if (!existsSync(tests)) throw new Error(`prebuild: ${tests} was not built (the C++ tests come from packages/native-cuda/tests/*.cpp)`);
  let cmd = tests, args = [];
  if (cross) {
    cmd = cross.emulators.find((e) => firstLine(e, ['--version']));
    if (!cmd) throw new Error(`prebuild: no ${cross.emulators.join(' / ')} to run the ${cross.cpu} tests: apt-get install ${cross.emulatorPackage}`);
    args = ['-L', cross.sysroot, tests];
  }
  if (filter) args.push(filter);
  console.log(`prebuild: running ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  process.stdout.write(output);
  const summary = /(\d+) passed, (\d+) failed, (\d+) skipped\s*$/.exec(r.stdout ?? '');
  if (r.status !== 0 || !summary) throw new Error(`prebuild: fovea_native_tests failed (${r.error?.message ?? r.signal ?? `exit ${r.status}`})`);
  const [passed, failed, skipped] = summary.slice(1).map(Number);
  if (passed === 0) throw new Error(`prebuild: fovea_native_tests ran no test${filter ? ` matching "${filter}"` : ''}`);
  return { passed, failed, skipped, output };
}
