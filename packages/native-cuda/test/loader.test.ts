// The loader's failure modes, each in a child Node (the loader decides once per process):
// a corrupted, truncated or wrong-architecture fovea_native.node, a prebuilt package or CUDA
// sidecar package of another version, a sidecar of another ABI, a sidecar whose probe
// crashes, an unusable driver, FOVEA_DEVICE=cuda without a GPU. Every case must end with a
// message naming what was tried and the fix, and the process must exit normally (status,
// never a signal). Needs the dev build (npm run build:native); the fake-sidecar cases also
// need a C++ compiler and are skipped without one.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findDriver } from '../loader/cuda-libs.js';

const PKG = join(__dirname, '..');
const ADDON = join(PKG, 'build', 'Release', 'fovea_native.node');
const SIDECAR = join(PKG, 'build', 'Release', 'libfovea_cuda.so');
const VERSION = JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8')).version;
const work = mkdtempSync(join(tmpdir(), 'fovea-loader-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const hasCompiler = spawnSync('c++', ['--version']).status === 0;
const realDriver = findDriver().found;

interface Run { status: number | null; signal: string | null; stdout: string; stderr: string }

/** Runs `script` (an ES module body) in a child Node with a clean FOVEA_* environment. */
function run(script: string, env: Record<string, string> = {}, cwd = PKG): Run {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FOVEA_'))) as Record<string, string>;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd, env: { ...base, FOVEA_NUM_THREADS: '1', ...env }, encoding: 'utf8', timeout: 120_000,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}
const IMPORT_NATIVE = `const m = await import('@fovea/native'); console.log('LOADED', m.addonPath);`;

function file(name: string, data: Buffer | string): string {
  const p = join(work, name);
  writeFileSync(p, data);
  return p;
}

/** An installed-looking tree: node_modules/@fovea/native (no build/) plus optional prebuilt packages. */
function fakeInstall(name: string, prebuilt: Record<string, { version: string; files: Record<string, string> }>): string {
  const root = join(work, name);
  const native = join(root, 'node_modules', '@fovea', 'native');
  mkdirSync(native, { recursive: true });
  for (const f of ['index.js', 'index.d.ts', 'doctor.js', 'package.json', 'loader', 'bin']) cpSync(join(PKG, f), join(native, f), { recursive: true });
  for (const [pkg, { version, files }] of Object.entries(prebuilt)) {
    const dir = join(root, 'node_modules', ...pkg.split('/'));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: pkg, version }));
    for (const [dest, src] of Object.entries(files)) cpSync(src, join(dir, dest));
  }
  return root;
}

function expectCleanExit(r: Run, status: number) {
  expect(r.signal, `killed by a signal; stderr:\n${r.stderr}`).toBeNull();
  expect(r.status, r.stderr).toBe(status);
}

describe.skipIf(!existsSync(ADDON))('addon file problems', () => {
  it('a file that is not a shared library is refused before dlopen, with the fix', () => {
    const bad = file('corrupt.node', Buffer.from('this is not an ELF file at all, just text\n'.repeat(50)));
    const r = run(IMPORT_NATIVE, { FOVEA_NATIVE_PATH: bad });
    expectCleanExit(r, 1);
    expect(r.stderr).toContain(`$FOVEA_NATIVE_PATH: ${bad}: fovea_native.node is not a shared library (no ELF header)`);
    expect(r.stderr).toMatch(/Fix:[\s\S]*unset it[\s\S]*npx fovea-native build/);
  });

  it('an empty file and a cut-off header are named as such', () => {
    expect(run(IMPORT_NATIVE, { FOVEA_NATIVE_PATH: file('empty.node', '') }).stderr).toContain('is empty (0 bytes)');
    const cut = readFileSync(ADDON).subarray(0, 12);
    expect(run(IMPORT_NATIVE, { FOVEA_NATIVE_PATH: file('cut.node', cut) }).stderr).toContain('is truncated (12 bytes');
  });

  it('a library cut short after a valid header is refused (dlopen would die of SIGBUS)', () => {
    const whole = readFileSync(ADDON);
    for (const keep of [8192, Math.floor(whole.length / 2), whole.length - 1]) {
      const r = run(IMPORT_NATIVE, { FOVEA_NATIVE_PATH: file(`cut-${keep}.node`, whole.subarray(0, keep)) });
      expectCleanExit(r, 1);
      expect(r.stderr).toContain(`fovea_native.node is truncated: ${keep} bytes, but its headers say it needs at least`);
    }
  });

  it('a library of another CPU architecture says which one it is', () => {
    const buf = Buffer.from(readFileSync(ADDON));
    buf.writeUInt16LE(process.arch === 'arm64' ? 62 : 183, 18);  // e_machine: x86-64 or AArch64
    const r = run(IMPORT_NATIVE, { FOVEA_NATIVE_PATH: file('other-arch.node', buf) });
    expectCleanExit(r, 1);
    expect(r.stderr).toContain(`is built for ${process.arch === 'arm64' ? 'x64' : 'arm64'}, but this Node runs on ${process.arch}`);
  });

  it.skipIf(!existsSync(SIDECAR))('a damaged sidecar is never dlopened: cudaStatus names it instead of crashing', () => {
    const whole = readFileSync(SIDECAR);
    const cut = file('libfovea_cuda_cut.so', whole.subarray(0, whole.length >> 1));
    const r = run(`const n = (await import('@fovea/native')).default; console.log(n.cudaStatus().reason);`, { FOVEA_CUDA_SIDECAR: cut });
    expectCleanExit(r, 0);
    expect(r.stdout).toContain(`no usable CUDA sidecar (libfovea_cuda.so). Tried: ${cut} ($FOVEA_CUDA_SIDECAR): libfovea_cuda.so is truncated`);
  });

  it('a missing FOVEA_NATIVE_PATH is the only candidate (no silent fallback)', () => {
    const r = run(IMPORT_NATIVE, { FOVEA_NATIVE_PATH: '/nonexistent/fovea_native.node' });
    expectCleanExit(r, 1);
    expect(r.stderr).toMatch(/1\. \$FOVEA_NATIVE_PATH: \/nonexistent\/fovea_native\.node: not found/);
    expect(r.stderr).not.toContain('local build');
  });
});

describe.skipIf(!existsSync(ADDON) || process.platform !== 'linux' || process.arch !== 'x64')('prebuilt packages', () => {
  const cpuPkg = '@fovea/native-linux-x64', cudaPkg = '@fovea/native-linux-x64-cuda';

  it('with no local build and no prebuilt package, the error lists both and how to build', () => {
    const root = fakeInstall('none', {});
    const r = run(IMPORT_NATIVE, {}, root);
    expectCleanExit(r, 1);
    expect(r.stderr).toMatch(/1\. local build: .*build\/Release\/fovea_native\.node: not found/);
    expect(r.stderr).toContain(`prebuilt package: ${cpuPkg}: not installed`);
    expect(r.stderr).toContain(`npm install ${cpuPkg}@${VERSION}`);
    expect(r.stderr).toContain('npx fovea-native build');
  });

  it('a same-version prebuilt package is loaded', () => {
    const root = fakeInstall('same', { [cpuPkg]: { version: VERSION, files: { 'fovea_native.node': ADDON } } });
    const r = run(`${IMPORT_NATIVE} console.log((await import('@fovea/native')).default.numThreads());`, {}, root);
    expectCleanExit(r, 0);
    expect(r.stdout).toContain(`LOADED ${join(root, 'node_modules', '@fovea', 'native-linux-x64', 'fovea_native.node')}`);
  });

  it('a prebuilt package of another version is refused with the version to install', () => {
    const root = fakeInstall('mismatch', { [cpuPkg]: { version: '0.0.1', files: { 'fovea_native.node': ADDON } } });
    const r = run(IMPORT_NATIVE, {}, root);
    expectCleanExit(r, 1);
    expect(r.stderr).toContain(`refused: version 0.0.1 differs from @fovea/native ${VERSION}`);
    expect(r.stderr).toContain(`npm install ${cpuPkg}@${VERSION}`);
  });

  it('a prebuilt package built for a newer glibc than this one is refused before dlopen', () => {
    const root = fakeInstall('new-glibc', { [cpuPkg]: { version: VERSION, files: { 'fovea_native.node': ADDON } } });
    writeFileSync(join(root, 'node_modules', '@fovea', 'native-linux-x64', 'build-info.json'), JSON.stringify({ minGlibc: '2.999' }));
    const r = run(IMPORT_NATIVE, {}, root);
    expectCleanExit(r, 1);
    expect(r.stderr).toMatch(/refused: needs glibc 2\.999 or newer, but this system has glibc 2\.\d+: build from source \(npx fovea-native build\)/);
  });

  it.skipIf(realDriver)('a CUDA sidecar package of another version is refused (doctor says so)', () => {
    const root = fakeInstall('cuda-mismatch', {
      [cpuPkg]: { version: VERSION, files: { 'fovea_native.node': ADDON } },
      [cudaPkg]: { version: '0.0.1', files: existsSync(SIDECAR) ? { 'libfovea_cuda.so': SIDECAR } : {} },
    });
    const r = run(`const { doctor } = await import('@fovea/native/doctor'); const d = await doctor(); console.log(d.text);`, {}, root);
    expectCleanExit(r, 0);
    expect(r.stdout).toContain(`version 0.0.1 refused: @fovea/native is ${VERSION} and the sidecar must be the same version (npm install ${cudaPkg}@${VERSION})`);
  });
});

describe.skipIf(!existsSync(ADDON))('FOVEA_DEVICE', () => {
  it.skipIf(realDriver)('FOVEA_DEVICE=cuda without a driver throws at import with what was looked for and the fix', () => {
    const r = run(IMPORT_NATIVE, { FOVEA_DEVICE: 'cuda' });
    expectCleanExit(r, 1);
    expect(r.stderr).toContain('FOVEA_DEVICE=cuda asks for CUDA, but no NVIDIA driver: libcuda.so.1 was not found in');
    expect(r.stderr).toMatch(/Fix: install the NVIDIA driver.*FOVEA_DEVICE=cpu/);
  });

  it('an unknown FOVEA_DEVICE is named', () => {
    const r = run(IMPORT_NATIVE, { FOVEA_DEVICE: 'gpu' });
    expectCleanExit(r, 1);
    expect(r.stderr).toContain('FOVEA_DEVICE="gpu" is not understood; use cpu, cuda, cuda:N or auto');
  });

  it('FOVEA_DEVICE=cpu keeps CUDA closed: cudaStatus says why and cuda tensors throw', () => {
    const r = run(`const n = (await import('@fovea/native')).default; console.log(JSON.stringify(n.cudaStatus()));
      try { n.storageAlloc(0, 16); console.log('NO ERROR'); } catch (e) { console.log('ERR', e.message); }`, { FOVEA_DEVICE: 'cpu' });
    expectCleanExit(r, 0);
    expect(JSON.parse(r.stdout.split('\n')[0])).toEqual({ available: false, reason: 'CUDA is unavailable: FOVEA_DEVICE=cpu', devices: [] });
    expect(r.stdout).toContain('ERR storageAlloc: CUDA is unavailable: FOVEA_DEVICE=cpu');
  });
});

// A driver that is "installed" but broken: a libcuda.so.1 that is not a library, found through
// LD_LIBRARY_PATH. The loader sees a driver, so it probes in a child and falls back loudly.
describe.skipIf(!existsSync(SIDECAR) || realDriver)('CUDA expected but broken', () => {
  const fakeDriverDir = join(work, 'fake-driver');
  mkdirSync(fakeDriverDir, { recursive: true });
  writeFileSync(join(fakeDriverDir, 'libcuda.so.1'), 'not a driver');
  const env = { LD_LIBRARY_PATH: fakeDriverDir };

  it('falls back to the CPU with one loud message naming the reason; the CPU still works', () => {
    const r = run(`const n = (await import('@fovea/native')).default; await import('@fovea/native/doctor');
      console.log(n.cudaStatus().reason); console.log('threads', n.numThreads());`, env);
    expectCleanExit(r, 0);
    expect(r.stderr.match(/CUDA IS UNAVAILABLE\. FOVEA IS RUNNING ON THE CPU\./g)).toHaveLength(1);
    expect(r.stderr).toContain(`Reason: no NVIDIA driver: ${join(fakeDriverDir, 'libcuda.so.1')}`);
    expect(r.stdout).toContain('CUDA is unavailable: no NVIDIA driver');
    expect(r.stdout).toContain('threads 1');
  });

  it('the same with FOVEA_DEVICE=cuda is an error, not a fallback', () => {
    const r = run(IMPORT_NATIVE, { ...env, FOVEA_DEVICE: 'cuda' });
    expectCleanExit(r, 1);
    expect(r.stderr).toContain('FOVEA_DEVICE=cuda asks for CUDA, but no NVIDIA driver');
    expect(r.stderr).not.toContain('RUNNING ON THE CPU');
  });

  it('the doctor reports it and is not ok', () => {
    const r = run(`const { doctor } = await import('@fovea/native/doctor'); const d = await doctor(); console.log(d.text); process.exitCode = d.ok ? 0 : 3;`, env);
    expectCleanExit(r, 3);
    expect(r.stdout).toMatch(/probe\s+failed: no NVIDIA driver/);
    expect(r.stdout).toContain('FAIL: an NVIDIA driver is installed but CUDA is not usable');
  });
});

// Fake sidecars built from the real ABI header: one whose probe crashes the process, one of
// another ABI version. Both are loaded only by the probe child.
describe.skipIf(!hasCompiler || !existsSync(ADDON) || realDriver || process.platform !== 'linux')('broken sidecars', () => {
  const fakeDriverDir = join(work, 'fake-driver-2');
  mkdirSync(fakeDriverDir, { recursive: true });
  writeFileSync(join(fakeDriverDir, 'libcuda.so.1'), 'not a driver');
  function fakeSidecar(name: string, abi: string): string {
    const src = file(`${name}.cpp`, `// Test double of libfovea_cuda.so (see loader.test.ts).
#include <csignal>
#include "core/cuda_api.h"
static int crash_probe(int*, int*, int*) { std::raise(SIGSEGV); return 1; }
static const char* no_error() { return ""; }
static fovea::FoveaCudaApi make() { fovea::FoveaCudaApi t{}; t.abi_version = ${abi}; t.last_error = no_error; t.probe = crash_probe; return t; }
static const fovea::FoveaCudaApi table = make();
extern "C" __attribute__((visibility("default"))) const fovea::FoveaCudaApi* fovea_cuda_api() { return &table; }
`);
    const out = join(work, name, 'libfovea_cuda.so');
    mkdirSync(join(work, name), { recursive: true });
    const r = spawnSync('c++', ['-std=c++17', '-shared', '-fPIC', '-I', join(PKG, 'src'), '-o', out, src], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`compiling the fake sidecar failed:\n${r.stderr}`);
    return out;
  }

  it('a sidecar that crashes while probing kills only the probe child; the user process falls back', () => {
    const crashing = fakeSidecar('crashing', 'FOVEA_CUDA_ABI_VERSION');
    const env = { LD_LIBRARY_PATH: fakeDriverDir, FOVEA_CUDA_SIDECAR: crashing };
    const r = run(`const n = (await import('@fovea/native')).default; console.log('alive', n.cudaStatus().available);`, env);
    expectCleanExit(r, 0);
    expect(r.stdout).toContain('alive false');
    expect(r.stderr).toContain(`the CUDA probe (a child process that loads ${crashing} and runs a test kernel) was killed by SIGSEGV`);
    const strict = run(IMPORT_NATIVE, { ...env, FOVEA_DEVICE: 'cuda' });
    expectCleanExit(strict, 1);
    expect(strict.stderr).toContain('was killed by SIGSEGV');
  });

  it('a sidecar of another ABI version is refused with "rebuild together"', () => {
    const old = fakeSidecar('old-abi', '(FOVEA_CUDA_ABI_VERSION - 1)');
    const r = run(IMPORT_NATIVE, { LD_LIBRARY_PATH: fakeDriverDir, FOVEA_CUDA_SIDECAR: old });
    expectCleanExit(r, 0);
    expect(r.stderr).toMatch(/was built for CUDA ABI version \d+ but this core expects version \d+: rebuild the addon and the sidecar together/);
  });
});
