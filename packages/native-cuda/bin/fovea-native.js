#!/usr/bin/env node
// `npx fovea-native <command>`:
//   doctor              what was found and loaded (exit 1 when something is broken)
//   build [--no-cuda] [--cuda-archs "80;86;89;90"]
//                       opt-in source build into this package's build/Release, which the
//                       loader then prefers over the prebuilt package. Needs cmake >= 3.20 and
//                       a C++17 compiler (nvcc adds the CUDA sidecar). No install script ever
//                       runs this: compiling is always the user's explicit choice.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { PACKAGE_ROOT } from '../loader/load.js';

const USAGE = 'usage: fovea-native doctor | fovea-native build [--no-cuda] [--cuda-archs "80;86;89;90"]';

function onPath(cmd) {
  return (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, cmd)));
}

// The CMake source tree: the repository root in a checkout; in an installed package, a
// directory build-src/ beside it that mirrors the repository's layout (the root CMakeLists.txt,
// shipped as cmake/CMakeLists.txt, and packages/native-cuda -> this package). build-src/ is
// kept: CMake's cache remembers its source directory, so a rebuild must find the same one.
function sourceTree() {
  const repoRoot = dirname(dirname(PACKAGE_ROOT));
  const rootLists = join(repoRoot, 'CMakeLists.txt');
  if (existsSync(rootLists) && readFileSync(rootLists, 'utf8').includes('project(fovea')) return repoRoot;
  const shipped = join(PACKAGE_ROOT, 'cmake', 'CMakeLists.txt');
  if (!existsSync(shipped)) throw new Error(`fovea-native build: ${shipped} is missing, so this copy of @fovea/native cannot be built from source; reinstall it or build from a checkout of the repository`);
  const dir = join(PACKAGE_ROOT, 'build-src');
  mkdirSync(join(dir, 'packages'), { recursive: true });
  copyFileSync(shipped, join(dir, 'CMakeLists.txt'));
  const link = join(dir, 'packages', 'native-cuda');
  if (!existsSync(link)) symlinkSync(join('..', '..'), link, 'dir');
  return dir;
}

function cmakeJsCommand() {
  try {
    const pkg = createRequire(join(PACKAGE_ROOT, 'index.js')).resolve('cmake-js/package.json');
    return [process.execPath, join(dirname(pkg), 'bin', 'cmake-js')];
  } catch {
    return ['npx', '--yes', 'cmake-js@^8'];
  }
}

function build(args) {
  const missing = ['cmake'].filter((c) => !onPath(c));
  if (!['c++', 'g++', 'clang++'].some(onPath)) missing.push('a C++17 compiler (g++ or clang++)');
  if (missing.length) {
    console.error(`fovea-native build: not found on PATH: ${missing.join(', ')}.\nInstall them (Debian/Ubuntu: apt-get install cmake g++; add the CUDA toolkit for the GPU sidecar) and run npx fovea-native build again, or use the prebuilt package instead (npm install without --omit=optional).`);
    return 1;
  }
  const env = { ...process.env };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--no-cuda') env.FOVEA_CUDA = '0';
    else if (args[i] === '--cuda-archs' && args[i + 1]) env.FOVEA_CUDA_ARCHS = args[++i];
    else { console.error(`fovea-native build: unknown option ${args[i]}\n${USAGE}`); return 2; }
  }
  // cmake-js reads Node's headers from npm's nodedir when npm runs it; keep that when run here.
  if (!env.npm_config_nodedir) {
    const r = spawnSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' });
    const dir = (r.stdout ?? '').trim();
    if (r.status === 0 && dir && dir !== 'undefined' && dir !== 'null') env.npm_config_nodedir = dir;
  }
  let tree;
  try {
    tree = sourceTree();
  } catch (err) {
    console.error(err.message);
    return 1;
  }
  const [cmd, ...pre] = cmakeJsCommand();
  const jobs = String(Math.max(1, Math.min(8, availableParallelism())));
  const r = spawnSync(cmd, [...pre, 'compile', '--directory', tree, '--out', join(PACKAGE_ROOT, 'build'), '--config', 'Release', '--parallel', jobs],
    { cwd: PACKAGE_ROOT, env, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`fovea-native build: the build failed (${r.signal ?? `exit code ${r.status}`}); see the compiler output above`);
    return 1;
  }
  console.log(`fovea-native build: built ${join(PACKAGE_ROOT, 'build', 'Release', 'fovea_native.node')}; the loader now prefers it over a prebuilt package (npx fovea-native doctor shows which loads)`);
  return 0;
}

async function main(argv) {
  const [cmd, ...rest] = argv;
  if (cmd === 'doctor') {
    const { doctor } = await import('../doctor.js');
    const r = await doctor();
    console.log(r.text);
    return r.ok ? 0 : 1;
  }
  if (cmd === 'build') return build(rest);
  console.error(USAGE);
  return cmd === undefined || cmd === '--help' || cmd === '-h' ? 0 : 2;
}

process.exitCode = await main(process.argv.slice(2));
