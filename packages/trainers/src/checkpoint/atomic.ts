// Durable small-file writes shared by checkpoints and the report, with no dependency beyond
// node:fs (so the report never loads the native engine). A file is replaced by writing
// `<path>.tmp-<pid>`, fsync'ing it, and rename(2)-ing it over the target: a reader sees the old
// bytes or the new ones, never a mix. fsync'ing the directory afterwards makes the rename itself
// survive a power loss.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

export function writeAllSync(fd: number, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off, bytes.length - off);
}

/** fsyncs a file or a directory (directories are opened read-only for it). */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/** Creates or truncates path, writes data and fsyncs it (not atomic by itself). */
export function writeFileDurable(path: string, data: Uint8Array): void {
  const fd = openSync(path, 'w');
  try { writeAllSync(fd, data); fsyncSync(fd); } finally { closeSync(fd); }
}

/** Replaces `path` with `data` via `<path>.tmp-<pid>` + fsync + rename (+ fsync of dirToSync). */
export function writeFileAtomic(path: string, data: Uint8Array | string, dirToSync?: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileDurable(tmp, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  if (dirToSync) fsyncPath(dirToSync);
}
