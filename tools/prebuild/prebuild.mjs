#!/usr/bin/env node
// `npm run build:prebuilt`: builds the prebuilt platform packages for this machine into
// npm/<target>/ and packs them, with @fovea/native and @fovea/core, into npm/packed/.
//
//   node tools/prebuild/prebuild.mjs [--target linux-x64|linux-arm64] [--from-dev-build] [--no-cuda]
//                                    [--cuda-archs LIST] [--static-libstdcxx] [--run-native-tests]
//                                    [--out DIR (tarballs)] [--stage-dir DIR (default npm/)]
//
// Targets: by default the CPU package of this machine (linux-x64 or linux-arm64, glibc) and, on
// x64 with nvcc, the CUDA sidecar package. `--target linux-arm64` on an x86-64 host cross
// compiles the arm64 CPU package instead (no CUDA) with tools/prebuild/toolchain-aarch64.cmake
// (Debian: apt-get install g++-aarch64-linux-gnu), building into npm/build/linux-arm64.
// --run-native-tests runs the C++ tests (fovea_native_tests) of the fresh build before staging;
// for a cross build under qemu-aarch64 (apt-get install qemu-user-static). The oldest glibc and
// libstdc++ a binary runs on are those of the build machine's (or cross sysroot's) symbols it
// uses: build releases on the oldest distribution you support; build-info.json records the
// result (minGlibc, minGlibcxx) and the loader checks it. Staging refuses a binary whose ELF
// architecture is not the package's `cpu`.
// --static-libstdcxx links libstdc++/libgcc statically: no libstdc++ requirement, but their
// archives may pull newer glibc symbols (on Debian 12 / GCC 12: arc4random, glibc 2.36).
// CUDA: SASS for sm_80, 86, 89, 90 and PTX for compute_90 (JIT-compiled on newer GPUs);
// the CUDA runtime is static (CMakeLists.txt); cuBLAS stays a run-time dlopen.
// --from-dev-build copies packages/native-cuda/build/Release instead of compiling (fast; the
// install smoke test uses it); such packages are marked "devBuild": true in build-info.json.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crossToolchain, runNativeTests } from './cross.mjs';
import { listGpuCode } from './fatbin.mjs';
import { inspectBinary } from './inspect-binary.mjs';
import { packAll } from './pack.mjs';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEFAULT_ARCHS = '80-real;86-real;89-real;90';
const WANT_SASS = ['sm_80', 'sm_86', 'sm_89', 'sm_90'];

function parseArgs(argv) {
  const o = { target: null, runTests: false, fromDevBuild: false, staticLibstdcxx: false, cuda: true, archs: DEFAULT_ARCHS, out: join(REPO, 'npm', 'packed'), stageRoot: join(REPO, 'npm') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--from-dev-build') o.fromDevBuild = true;
    else if (a === '--target') {
      o.target = argv[++i];
      if (!o.target) throw new Error('prebuild: --target needs a package directory name (linux-x64 or linux-arm64)');
    }
    else if (a === '--run-native-tests') o.runTests = true;
    else if (a === '--no-cuda') o.cuda = false;
    else if (a === '--static-libstdcxx') o.staticLibstdcxx = true;
    else if (a === '--cuda-archs') o.archs = argv[++i];
    else if (a === '--out') o.out = resolve(argv[++i]);
    else if (a === '--stage-dir') o.stageRoot = resolve(argv[++i]);
    else throw new Error(`prebuild: unknown option ${a}`);
  }
  return o;
}

function hasNvcc() {
  try { execFileSync('nvcc', ['--version'], { stdio: 'ignore' }); return true; } catch { return false; }
}

function nvccVersion() {
  try { return /release ([\d.]+)/.exec(execFileSync('nvcc', ['--version'], { encoding: 'utf8' }))?.[1] ?? null; } catch { return null; }
}

function compile(buildDir, { cuda, archs, staticLibstdcxx, cross }) {
  const env = { ...process.env, FOVEA_CUDA: cuda ? '1' : '0', FOVEA_CUDA_ARCHS: archs };
  // cmake-js takes Node's headers from npm's nodedir when npm runs it; do the same when run
  // directly (distribution-packaged Node ships headers and sets nodedir, and may be offline).
  if (!env.npm_config_nodedir) {
    try {
      const dir = execFileSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' }).trim();
      if (dir && dir !== 'undefined' && dir !== 'null') env.npm_config_nodedir = dir;
    } catch { /* npm absent: cmake-js downloads the headers */ }
  }
  const cmakeJs = join(REPO, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
  const jobs = String(Math.max(1, Math.min(16, availableParallelism())));
  // --static-libstdcxx: CMake links both the addon and the sidecar with the host C++ compiler,
  // which takes these flags. Always configure with the variable set: `compile` alone would
  // reuse a cached configuration, and cmake-js drops an empty value, so the dynamic case
  // passes -Wl,-O1 (the usual distribution default; it only tunes the symbol hash table).
  const common = ['--directory', REPO, '--out', buildDir, '--config', 'Release'];
  // A cross build adds the toolchain file; cmake-js's --arch only names the Node headers' arch
  // (the Node-API headers are the same for every architecture).
  const crossArgs = cross ? [`--CDCMAKE_TOOLCHAIN_FILE=${cross.toolchainFile}`, '--arch', cross.cpu] : [];
  const steps = [
    ['configure', ...common, ...crossArgs, `--CDCMAKE_SHARED_LINKER_FLAGS=${staticLibstdcxx ? '-static-libstdc++ -static-libgcc' : '-Wl,-O1'}`],
    ['build', ...common, '--parallel', jobs],
  ];
  for (const step of steps) {
    const r = spawnSync(process.execPath, [cmakeJs, ...step], { cwd: REPO, env, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`prebuild: cmake-js ${step[0]} failed (${r.signal ?? `exit ${r.status}`})`);
  }
  return join(buildDir, 'Release');
}

// Copies the binary next to the package template and records what it needs. The template
// (npm/<target>/package.json) is copied along when staging outside npm/.
function stage(stageRoot, target, file, builtDir, extra) {
  const dir = join(stageRoot, target);
  const src = join(builtDir, file);
  if (!existsSync(src)) throw new Error(`prebuild: ${src} was not built`);
  mkdirSync(dir, { recursive: true });
  const template = join(REPO, 'npm', target, 'package.json');
  if (resolve(template) !== resolve(join(dir, 'package.json'))) copyFileSync(template, join(dir, 'package.json'));
  copyFileSync(src, join(dir, file));
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const binary = inspectBinary(join(dir, file));
  if (!pkg.cpu?.includes(binary.cpu)) {
    throw new Error(`prebuild: ${src} is built for ${binary.machine} (${binary.cpu ?? 'unknown cpu'}), but ${pkg.name} is for cpu ${JSON.stringify(pkg.cpu)}`);
  }
  const info = { package: pkg.name, version: pkg.version, ...binary,
    buildHostGlibc: process.report.getReport().header.glibcVersionRuntime ?? null, ...extra };
  writeFileSync(join(dir, 'build-info.json'), JSON.stringify(info, null, 2) + '\n');
  console.log(`prebuild: staged ${pkg.name}@${pkg.version}: ${JSON.stringify(info)}`);
  return dir;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (process.platform !== 'linux') throw new Error(`prebuild: prebuilt packages are built on Linux only (this is ${process.platform}); elsewhere use npx fovea-native build`);
  const cpuTarget = o.target ?? `linux-${process.arch}`;
  if (!o.target && !existsSync(join(REPO, 'npm', cpuTarget, 'package.json'))) throw new Error(`prebuild: no package template npm/${cpuTarget}/ for this machine`);
  // null for a native build; throws when the target is not a CPU package or cannot be cross built.
  const cross = crossToolchain(cpuTarget, REPO);
  if (cross && o.fromDevBuild) throw new Error(`prebuild: --from-dev-build copies this machine's (${process.arch}) dev build; it cannot stage ${cpuTarget}`);
  const cudaTarget = !cross && process.arch === 'x64' && o.cuda ? 'linux-x64-cuda' : null;
  const withCuda = Boolean(cudaTarget) && (o.fromDevBuild
    ? existsSync(join(REPO, 'packages/native-cuda/build/Release/libfovea_cuda.so'))
    : hasNvcc());
  if (cudaTarget && !withCuda) console.warn('prebuild: no nvcc (or no dev-build sidecar): skipping the CUDA package');

  const builtDir = o.fromDevBuild ? join(REPO, 'packages/native-cuda/build/Release')
    : compile(join(REPO, 'npm', 'build', cpuTarget), { cuda: withCuda, archs: o.archs, staticLibstdcxx: o.staticLibstdcxx, cross });
  if (o.runTests) runNativeTests(builtDir, cross);
  const crossInfo = cross ? { crossCompiled: { toolchain: cross.triple, compiler: cross.compilerVersion } } : {};
  const staged = [stage(o.stageRoot, cpuTarget, 'fovea_native.node', builtDir, { devBuild: o.fromDevBuild, ...crossInfo })];
  if (withCuda) {
    const code = listGpuCode(join(builtDir, 'libfovea_cuda.so'));
    const missing = o.fromDevBuild ? [] : WANT_SASS.filter((s) => o.archs === DEFAULT_ARCHS && !code.sass.includes(s));
    if (missing.length) throw new Error(`prebuild: the sidecar lacks ${missing.join(', ')} (has ${code.sass.join(', ')})`);
    staged.push(stage(o.stageRoot, cudaTarget, 'libfovea_cuda.so', builtDir, { devBuild: o.fromDevBuild, cudaRuntime: nvccVersion(), sass: code.sass, ptx: code.ptx }));
  }
  const tarballs = packAll({ repo: REPO, platformDirs: staged, out: o.out });
  console.log(`prebuild: packed into ${o.out}:\n  ${tarballs.join('\n  ')}`);
}

main().catch((err) => { console.error(err.message); process.exitCode = 1; });
