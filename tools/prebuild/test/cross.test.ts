// The arm64 cross build's tooling: which targets cross compile (and the errors for those that
// cannot), the ELF inspection of binaries of either architecture, and — when the cross build
// exists (npm run build:prebuilt -- --target linux-arm64) and qemu-user is installed — that
// its C++ tests pass under emulation and its addon is an aarch64 binary with a glibc floor.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
// @ts-ignore: plain .mjs tooling without type declarations
import { crossToolchain, runNativeTests } from '../cross.mjs';
// @ts-ignore: plain .mjs tooling without type declarations
import { elfArch, inspectBinary } from '../inspect-binary.mjs';

const REPO = join(__dirname, '..', '..', '..');
const PREBUILD = join(REPO, 'tools', 'prebuild', 'prebuild.mjs');
const ARM64_OUT = join(REPO, 'npm', 'build', 'linux-arm64', 'Release');
const X64_ADDON = join(REPO, 'packages', 'native-cuda', 'build', 'Release', 'fovea_native.node');
const work = mkdtempSync(join(tmpdir(), 'fovea-cross-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const has = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const hasCrossGxx = has('aarch64-linux-gnu-g++');
const hasQemu = has('qemu-aarch64-static') || has('qemu-aarch64');
const prebuild = (...args: string[]) => spawnSync(process.execPath, [PREBUILD, ...args], { encoding: 'utf8', cwd: REPO });

describe('crossToolchain', () => {
  it('is null for the machine\'s own CPU package', () => {
    expect(crossToolchain('linux-x64', REPO, 'x64')).toBeNull();
    expect(crossToolchain('linux-arm64', REPO, 'arm64')).toBeNull();
  });

  it('names what is wrong with a target that is not a prebuilt CPU package', () => {
    expect(() => crossToolchain('linux-x64-cuda', REPO, 'x64')).toThrow(/linux-x64-cuda is not a prebuilt CPU package \(expected one of linux-x64, linux-arm64/);
    expect(() => crossToolchain('linux-riscv64', REPO, 'x64')).toThrow(/linux-riscv64 is not a prebuilt CPU package/);
  });

  it('refuses a cross pair it has no toolchain for', () => {
    expect(() => crossToolchain('linux-x64', REPO, 'arm64')).toThrow(/cannot cross compile linux-x64 on a arm64 machine \(supported: linux-arm64 on x64\)/);
  });

  it.skipIf(!hasCrossGxx)('returns the aarch64 toolchain on x64 when the cross compiler is installed', () => {
    const t = crossToolchain('linux-arm64', REPO, 'x64');
    expect(t).toMatchObject({ cpu: 'arm64', triple: 'aarch64-linux-gnu', sysroot: '/usr/aarch64-linux-gnu' });
    expect(t.compilerVersion).toMatch(/aarch64-linux-gnu-g\+\+/);
    expect(existsSync(t.toolchainFile)).toBe(true);
  });
});

describe('prebuild --target errors (before any compiling)', () => {
  it('a missing --target value', () => {
    const r = prebuild('--target');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--target needs a package directory name/);
  });
  it('the CUDA package as a --target', () => {
    const r = prebuild('--target', 'linux-x64-cuda');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/not a prebuilt CPU package/);
  });
  it.skipIf(!hasCrossGxx || process.arch !== 'x64')('--from-dev-build with a cross target', () => {
    const r = prebuild('--target', 'linux-arm64', '--from-dev-build');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--from-dev-build copies this machine's \(x64\) dev build; it cannot stage linux-arm64/);
  });
});

describe('inspect-binary', () => {
  it('names a missing file and a file that is not ELF', () => {
    expect(() => inspectBinary(join(work, 'absent.node'))).toThrow(/absent\.node does not exist \(expected a built binary\)/);
    const text = join(work, 'not-elf.node');
    writeFileSync(text, 'not an ELF file\n');
    expect(() => inspectBinary(text)).toThrow(/cannot read .*not-elf\.node as an ELF file/);
  });

  it.skipIf(!existsSync(X64_ADDON) || process.arch !== 'x64')('reads the x64 dev addon as x64 with a glibc floor', () => {
    const info = inspectBinary(X64_ADDON);
    expect(info.cpu).toBe('x64');
    expect(info.minGlibc).toMatch(/^2\.\d+$/);
    expect(info.needed).toContain('libc.so.6');
  });

  it.skipIf(!existsSync(join(ARM64_OUT, 'fovea_native.node')))('reads the cross-built addon as aarch64 with a glibc floor', () => {
    expect(elfArch(join(ARM64_OUT, 'fovea_native.node'))).toEqual({ elfClass: 'ELF64', machine: 'AArch64', cpu: 'arm64' });
    const info = inspectBinary(join(ARM64_OUT, 'fovea_native.node'));
    expect(info.minGlibc).toMatch(/^2\.\d+$/);
    expect(info.needed).toContain('libc.so.6');
  });
});

describe('the cross-built C++ tests under qemu-aarch64', () => {
  const tests = join(ARM64_OUT, 'fovea_native_tests');
  const cross = hasCrossGxx && process.arch === 'x64' ? crossToolchain('linux-arm64', REPO, 'x64') : null;

  it('runNativeTests names a build without the test binary', () => {
    expect(() => runNativeTests(work, null)).toThrow(/fovea_native_tests was not built/);
  });

  const devTests = join(REPO, 'packages', 'native-cuda', 'build', 'Release', 'fovea_native_tests');
  it.skipIf(!existsSync(devTests))('a filter that matches no test is an error, not a pass', () => {
    expect(() => runNativeTests(join(REPO, 'packages', 'native-cuda', 'build', 'Release'), null, 'no_such_test_name'))
      .toThrow(/ran no test matching "no_such_test_name"/);
  });

  it.skipIf(!cross || !hasQemu || !existsSync(tests))('thread pool, matmul and image tests pass on aarch64', () => {
    for (const filter of ['thread_pool', 'matmul', 'image_resize']) {
      const r = runNativeTests(ARM64_OUT, cross, filter);
      expect(r.failed).toBe(0);
      expect(r.passed).toBeGreaterThan(1);
    }
  });

  // The run-time dispatch must settle on the portable kernels on aarch64, whatever FOVEA_ISA asks.
  it.skipIf(!cross || !hasQemu || !existsSync(join(ARM64_OUT, '..', 'libfovea_kernels.a')))('isa() is portable on aarch64', () => {
    const src = join(work, 'isa_probe.cpp'), exe = join(work, 'isa_probe');
    writeFileSync(src, '#include <cstdio>\n#include "core/cpu_features.h"\nint main() { std::printf("%s\\n", fovea::isa_name(fovea::isa())); }\n');
    execFileSync('aarch64-linux-gnu-g++', ['-std=c++17', '-I', join(REPO, 'packages', 'native-cuda', 'src'), src,
      join(ARM64_OUT, '..', 'libfovea_kernels.a'), '-lpthread', '-o', exe]);
    const qemu = has('qemu-aarch64-static') ? 'qemu-aarch64-static' : 'qemu-aarch64';
    for (const env of [{}, { FOVEA_ISA: 'avx512' }, { FOVEA_ISA: 'avx2' }]) {
      const out = execFileSync(qemu, ['-L', cross.sysroot, exe], { encoding: 'utf8', env: { ...process.env, ...env } });
      expect(out.trim()).toBe('portable');
    }
  });
});
