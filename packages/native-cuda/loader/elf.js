// Reads the headers of a shared library and says whether this process can load it, before
// dlopen() sees it: a truncated or corrupted file, a file of another CPU architecture, or a
// 32-bit file each get a message that names the problem (dlopen's own "invalid ELF header"
// does not say which). A library cut short after a valid header is the dangerous case:
// ld.so maps its segments past the end of the file and the first access raises SIGBUS in the
// user's process, so every loadable segment must lie inside the file. Only ELF (Linux) is
// checked; other formats return null.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

// e_machine values from the ELF spec (elf.h), named as Node names process.arch.
const MACHINES = { 3: 'ia32', 8: 'mips', 20: 'ppc', 21: 'ppc64', 22: 's390x', 40: 'arm', 62: 'x64', 183: 'arm64', 243: 'riscv64', 258: 'loong64' };
const WANT_MACHINE = Object.fromEntries(Object.entries(MACHINES).map(([k, v]) => [v, Number(k)]));

function readAt(fd, n, pos) {
  const buf = Buffer.alloc(n);
  const got = readSync(fd, buf, 0, n, pos);
  return buf.subarray(0, got);
}

function readHead(path, n) {
  const fd = openSync(path, 'r');
  try {
    return readAt(fd, n, 0);
  } finally {
    closeSync(fd);
  }
}

// 64-bit little-endian only (every target we ship): the program headers and section header
// table, and each PT_LOAD segment's file bytes, must end inside the file.
function truncation64(path, head) {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const phoff = Number(head.readBigUInt64LE(32)), shoff = Number(head.readBigUInt64LE(40));
    const phentsize = head.readUInt16LE(54), phnum = head.readUInt16LE(56);
    const shentsize = head.readUInt16LE(58), shnum = head.readUInt16LE(60);
    const cut = (need) => `is truncated: ${size} bytes, but its headers say it needs at least ${need} (a partial download or copy)`;
    if (phoff + phentsize * phnum > size) return cut(phoff + phentsize * phnum);
    if (shoff && shoff + shentsize * shnum > size) return cut(shoff + shentsize * shnum);
    const ph = readAt(fd, phentsize * phnum, phoff);
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      if (ph.readUInt32LE(at) !== 1) continue;  // PT_LOAD
      const end = Number(ph.readBigUInt64LE(at + 8)) + Number(ph.readBigUInt64LE(at + 32));
      if (end > size) return cut(end);
    }
    return null;
  } finally {
    closeSync(fd);
  }
}

/**
 * null when `path` looks loadable on this process (or is not ELF and we are not on Linux),
 * else a sentence saying what is wrong with it.
 */
export function elfProblem(path, arch = process.arch, platform = process.platform) {
  let head;
  try {
    head = readHead(path, 64);
  } catch (err) {
    return `cannot be read (${err.code ?? err.message})`;
  }
  const isElf = head.length >= 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
  if (!isElf) {
    if (platform !== 'linux') return null;
    return head.length === 0 ? 'is empty (0 bytes): the file is truncated or was never written'
      : 'is not a shared library (no ELF header): the file is corrupted or is not a build output';
  }
  if (head.length < 20) return `is truncated (${head.length} bytes, an ELF header needs 64)`;
  const elfClass = head[4];  // 1: 32-bit, 2: 64-bit
  const littleEndian = head[5] === 1;
  const type = littleEndian ? head.readUInt16LE(16) : head.readUInt16BE(16);
  const machine = littleEndian ? head.readUInt16LE(18) : head.readUInt16BE(18);
  const its = MACHINES[machine] ?? `e_machine ${machine}`;
  if (WANT_MACHINE[arch] !== undefined && machine !== WANT_MACHINE[arch]) {
    return `is built for ${its}, but this Node runs on ${arch}`;
  }
  const want64 = ['x64', 'arm64', 'ppc64', 's390x', 'riscv64', 'loong64'].includes(arch);
  if (want64 && elfClass !== 2) return `is a 32-bit ELF file, but this Node is 64-bit (${arch})`;
  if (type !== 3) return `is an ELF file of type ${type}, not a shared library (type 3, ET_DYN)`;
  if (head.length < 64 && elfClass === 2) return `is truncated (${head.length} bytes, an ELF header needs 64)`;
  if (elfClass === 2 && littleEndian) return truncation64(path, head);
  return null;
}

/** The machine name an ELF file is built for ('x64', 'arm64', ...), or null. */
export function elfMachine(path) {
  try {
    const head = readHead(path, 20);
    if (head.length < 20 || head.readUInt32BE(0) !== 0x7f454c46) return null;
    const machine = head[5] === 1 ? head.readUInt16LE(18) : head.readUInt16BE(18);
    return MACHINES[machine] ?? `e_machine ${machine}`;
  } catch {
    return null;
  }
}
