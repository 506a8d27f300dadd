// `fovea doctor` (doctor.js) and the `fovea-native` command: the report on a working install,
// on a broken one (it must report, not throw), the cuBLAS lookup it shows, the source build's
// refusal without a toolchain, and the version check that keeps all packages at one version.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findCublas, findDriver } from '../loader/cuda-libs.js';

const PKG = join(__dirname, '..');
const BIN = join(PKG, 'bin', 'fovea-native.js');
const ADDON = join(PKG, 'build', 'Release', 'fovea_native.node');
const work = mkdtempSync(join(tmpdir(), 'fovea-doctor-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FOVEA_'))) as Record<string, string>;
  return { ...base, FOVEA_NUM_THREADS: '2', ...extra };
}

describe.skipIf(!existsSync(ADDON))('doctor', () => {
  it('on a working install: platform, CPU, the addon that loaded, CUDA, threads; ok', async () => {
    const prev = process.env.FOVEA_NUM_THREADS;
    const { doctor } = await import('../doctor.js');
    const d = await doctor();
    process.env.FOVEA_NUM_THREADS = prev;
    expect(d.text).toMatch(new RegExp(`^platform +${process.platform}-${process.arch}`, 'm'));
    expect(d.text).toMatch(/^kernels +(portable|avx2|avx512|\w+) code path, \d+ threads/m);
    expect(d.text).toContain(`native addon  loaded ${ADDON} (local build)`);
    expect(d.text).toMatch(/^cuda mode +auto/m);
    expect(d.text).toMatch(/^ {2}cuBLAS /m);
    const report = d.report as { addon: { loaded: boolean }; cpu: { threads: number } };
    expect(report.addon.loaded).toBe(true);
    expect(report.cpu.threads).toBeGreaterThanOrEqual(1);
    if (!findDriver().found) {
      expect(d.ok).toBe(true);
      expect(d.text).toMatch(/OK: CPU engine works; CUDA is not used \(no NVIDIA driver\)$/);
    }
  });

  it('on a broken install it reports instead of throwing, and `fovea-native doctor` exits 1', () => {
    const bad = join(work, 'bad.node');
    writeFileSync(bad, 'garbage');
    const r = spawnSync(process.execPath, [BIN, 'doctor'], { env: cleanEnv({ FOVEA_NATIVE_PATH: bad }), encoding: 'utf8' });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('native addon  NOT LOADED');
    expect(r.stdout).toContain(`1. $FOVEA_NATIVE_PATH: ${bad}: fovea_native.node is not a shared library (no ELF header)`);
    expect(r.stdout).toMatch(/FAIL: the native addon does not load/);
  });

  it('`fovea-native doctor` exits 0 on a working install', () => {
    const r = spawnSync(process.execPath, [BIN, 'doctor'], { env: cleanEnv(), encoding: 'utf8' });
    expect(r.signal).toBeNull();
    if (!findDriver().found) expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('Fovea doctor (@fovea/native');
  });
});

describe('cuBLAS lookup (what the sidecar will dlopen on the first GEMM)', () => {
  it('finds libcublas in FOVEA_CUBLAS_DIR first, with libcublasLt beside it', () => {
    const dir = join(work, 'cublas');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'libcublas.so.12'), '');
    writeFileSync(join(dir, 'libcublasLt.so.12'), '');
    const prev = process.env.FOVEA_CUBLAS_DIR;
    process.env.FOVEA_CUBLAS_DIR = `/nonexistent:${dir}`;
    try {
      expect(findCublas(12)).toMatchObject({ found: true, path: join(dir, 'libcublas.so.12'), lt: true });
      expect(findCublas(13).names).toEqual(['libcublas.so.13', 'libcublas.so.12', 'libcublas.so']);
    } finally {
      if (prev === undefined) delete process.env.FOVEA_CUBLAS_DIR; else process.env.FOVEA_CUBLAS_DIR = prev;
    }
  });

  it.skipIf(findCublas().found)('when missing, it says which names and directories were searched', () => {
    const r = findCublas(13);
    expect(r.found).toBe(false);
    expect(r.tried).toContain('/usr/local/cuda/lib64');
  });
});

describe('fovea-native build', () => {
  it('without cmake or a compiler on PATH it refuses with what to install (and runs nothing)', () => {
    const bin = join(work, 'bin-no-compiler');
    mkdirSync(bin, { recursive: true });
    if (!existsSync(join(bin, 'node'))) symlinkSync(process.execPath, join(bin, 'node'));
    const r = spawnSync(process.execPath, [BIN, 'build'], { env: cleanEnv({ PATH: bin }), encoding: 'utf8' });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('fovea-native build: not found on PATH: cmake, a C++17 compiler (g++ or clang++)');
    expect(r.stderr).toContain('apt-get install cmake g++');
  });

  it('an unknown option is named', () => {
    const r = spawnSync(process.execPath, [BIN, 'build', '--fast'], { env: cleanEnv(), encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('unknown option --fast');
  });
});

it('every Fovea package and platform template is at one version (npm run version:sync -- --check)', () => {
  const r = spawnSync(process.execPath, [join(PKG, '..', '..', 'tools', 'prebuild', 'sync-versions.mjs'), '--check'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/all \d+ packages at \d+\.\d+\.\d+/);
});
