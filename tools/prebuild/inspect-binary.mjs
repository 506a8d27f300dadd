// What a built shared library asks of the machine that loads it: its CPU architecture (in npm's
// `cpu` terms), the newest glibc symbol version it references (= the oldest glibc it runs on),
// the libstdc++ ABI it needs (none when libstdc++ is linked statically) and its NEEDED
// libraries. Uses binutils' readelf only, which reads an ELF of any architecture, so a
// cross-compiled binary (aarch64 built on x86-64) is inspected the same way as a native one.
//
// Invariant: a file that is not a readable ELF shared object or executable throws an Error
// naming the file and what was expected; an unknown machine is reported as null, never guessed.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const byVersion = (a, b) => {
  const pa = a.split('.').map(Number), pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
};
const newest = (text, prefix) => {
  const found = [...text.matchAll(new RegExp(`\\b${prefix}_([0-9][0-9.]*)`, 'g'))].map((m) => m[1].replace(/\.$/, ''));
  return found.length ? found.sort(byVersion).at(-1) : null;
};

// readelf's "Machine:" line -> npm's `cpu` value.
const MACHINES = { 'Advanced Micro Devices X86-64': 'x64', AArch64: 'arm64' };

function readelf(args, path) {
  try {
    return execFileSync('readelf', [...args, path], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const why = err.code === 'ENOENT' ? 'readelf (binutils) is not installed' : String(err.stderr || err.message).trim();
    throw new Error(`inspect-binary: cannot read ${path} as an ELF file (expected a Linux shared object or executable): ${why}`);
  }
}

/** The ELF header's class and machine: { elfClass: 'ELF64' | 'ELF32', machine, cpu }. */
export function elfArch(path) {
  if (!existsSync(path)) throw new Error(`inspect-binary: ${path} does not exist (expected a built binary)`);
  const header = readelf(['-h', '-W'], path);
  const machine = /^\s*Machine:\s*(.+?)\s*$/m.exec(header)?.[1] ?? null;
  const elfClass = /^\s*Class:\s*(\S+)/m.exec(header)?.[1] ?? null;
  if (!machine || !elfClass) throw new Error(`inspect-binary: ${path} has no ELF header (expected a Linux shared object or executable)`);
  return { elfClass, machine, cpu: MACHINES[machine] ?? null };
}

export function inspectBinary(path) {
  const { cpu, machine } = elfArch(path);
  const symbols = readelf(['--dyn-syms', '-W'], path);
  const dynamic = readelf(['-d', '-W'], path);
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[(.+?)\]/g)].map((m) => m[1]);
  return {
    cpu,
    machine,
    minGlibc: newest(symbols, 'GLIBC'),
    minGlibcxx: needed.some((n) => n.startsWith('libstdc++')) ? newest(symbols, 'GLIBCXX') : null,
    libstdcxx: needed.some((n) => n.startsWith('libstdc++')) ? 'dynamic' : 'static',
    needed,
  };
}
