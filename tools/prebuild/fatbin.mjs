// Lists the GPU code inside a CUDA shared library without the CUDA toolkit's cuobjdump: scans
// for fat binary containers (magic 0xBA55ED50) and walks their entries, each a cubin (SASS,
// kind 2) or PTX (kind 1) for one sm version. Used to record and check what a prebuilt
// sidecar really contains. Layout (little-endian): container header {u32 magic, u16 version,
// u16 headerSize, u64 fatSize}; entry {u16 kind, u16 version, u32 headerSize,
// u64 paddedPayloadSize, ..., u32 smVersion at byte 28}.
import { readFileSync } from 'node:fs';

/** { sass: ['sm_80', ...], ptx: ['compute_90', ...] } found in the file (sorted, unique). */
export function listGpuCode(path) {
  const buf = readFileSync(path);
  const sass = new Set(), ptx = new Set();
  let at = buf.indexOf(Buffer.from([0x50, 0xed, 0x55, 0xba]));
  while (at >= 0 && at + 16 <= buf.length) {
    const headerSize = buf.readUInt16LE(at + 6);
    const fatSize = Number(buf.readBigUInt64LE(at + 8));
    let e = at + headerSize;
    const end = Math.min(buf.length, at + headerSize + fatSize);
    while (e + 32 <= end) {
      const kind = buf.readUInt16LE(e);
      const entryHeader = buf.readUInt32LE(e + 4);
      const payload = Number(buf.readBigUInt64LE(e + 8));
      const sm = buf.readUInt32LE(e + 28);
      if (entryHeader === 0 || (kind !== 1 && kind !== 2)) break;
      (kind === 1 ? ptx : sass).add(kind === 1 ? `compute_${sm}` : `sm_${sm}`);
      e += entryHeader + payload;
    }
    at = buf.indexOf(Buffer.from([0x50, 0xed, 0x55, 0xba]), Math.max(at + 4, end));
  }
  const bySm = (a, b) => Number(a.split('_')[1]) - Number(b.split('_')[1]);
  return { sass: [...sass].sort(bySm), ptx: [...ptx].sort(bySm) };
}
