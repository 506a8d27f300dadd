// Per-step metrics as JSONL: one JSON object per line, `{"step": n, ...}`.
//
// Crash safety: each record is serialized first and handed to the OS in a single write() on a
// file opened for append, so after a kill the file holds whole lines plus at most one partial
// last line (no trailing '\n'). Readers ignore such a partial line; a writer that reopens the
// file truncates it away before appending (otherwise the next record would be glued onto it).
// `fsync: true` also survives power loss, at the cost of a disk flush per line.
// Resuming from a checkpoint at step k: open with `resumeAfterStep: k` to drop the records of
// steps > k that the killed run wrote after its last checkpoint, so the file reads as if the run
// had never stopped. Non-finite numbers (NaN, ±Infinity) are written as null (JSON has none).
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readFileSync, readSync, renameSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';

export type MetricsRecord = { step: number } & Record<string, unknown>;

export interface MetricsReadResult {
  records: MetricsRecord[];
  partialLine: boolean;         // the file ended in an incomplete line (ignored)
  badLines: number[];           // 1-based numbers of complete lines that did not parse (ignored)
}

/** Reads a metrics file; a partial last line and unparseable lines are skipped and reported. */
export function readMetrics(file: string): MetricsReadResult {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const partialLine = lines[lines.length - 1] !== '';
  lines.pop();   // '' after the last '\n', or the partial line
  const records: MetricsRecord[] = [];
  const badLines: number[] = [];
  lines.forEach((l, i) => {
    if (l.trim() === '') return;
    try {
      const o = JSON.parse(l);
      if (o && typeof o === 'object' && !Array.isArray(o) && Number.isSafeInteger(o.step)) records.push(o);
      else badLines.push(i + 1);
    } catch { badLines.push(i + 1); }
  });
  return { records, partialLine, badLines };
}

export interface MetricsWriterOptions {
  fsync?: boolean;              // false
  resumeAfterStep?: number;     // drop existing records with step > this (see the file comment)
  truncate?: boolean;           // false: start a fresh file instead of appending
}

/** Appends one JSON line per step. Open, write(step, metrics) each step, close at the end. */
export class MetricsWriter {
  private fd: number | null;
  readonly recoveredPartialLine: boolean;   // a partial last line was removed on open
  readonly droppedRecords: number;          // records past resumeAfterStep removed on open

  constructor(readonly file: string, private readonly opts: MetricsWriterOptions = {}) {
    let partial = false, dropped = 0;
    if (opts.truncate) writeFileSync(file, '');
    else if (opts.resumeAfterStep !== undefined && existsSync(file)) {
      const k = opts.resumeAfterStep;
      if (!Number.isSafeInteger(k)) throw new Error(`MetricsWriter: resumeAfterStep must be an integer, got ${k}`);
      const r = readMetrics(file);
      const keep = r.records.filter((o) => o.step <= k);
      dropped = r.records.length - keep.length;
      partial = r.partialLine;
      // Rewrite through a temporary file + rename so a kill here leaves either file whole.
      const tmp = `${file}.tmp-${process.pid}`;
      writeFileSync(tmp, keep.map((o) => JSON.stringify(o) + '\n').join(''));
      const fd = openSync(tmp, 'r+'); fsyncSync(fd); closeSync(fd);
      renameSync(tmp, file);
    }
    this.fd = openSync(file, 'a+');
    if (!opts.truncate && opts.resumeAfterStep === undefined) partial = this.dropPartialTail() > 0;
    this.recoveredPartialLine = partial;
    this.droppedRecords = dropped;
  }

  /** Cuts an incomplete last line (a write killed midway); returns the bytes removed. */
  private dropPartialTail(): number {
    const fd = this.fd as number;
    const size = fstatSync(fd).size;
    if (size === 0) return 0;
    const chunk = 64 * 1024;
    let end = size;
    const buf = Buffer.alloc(chunk);
    // Scan backwards for the last '\n'; everything after it is the partial line.
    while (end > 0) {
      const start = Math.max(0, end - chunk);
      const n = readSync(fd, buf, 0, end - start, start);
      const nl = buf.subarray(0, n).lastIndexOf(0x0a);
      if (nl >= 0) {
        const keep = start + nl + 1;
        if (keep < size) ftruncateSync(fd, keep);
        return size - keep;
      }
      end = start;
    }
    ftruncateSync(fd, 0);
    return size;
  }

  /** Writes {step, ...metrics} as one line; `step` must be a non-negative integer. */
  write(step: number, metrics: Record<string, unknown> = {}): void {
    if (this.fd === null) throw new Error(`MetricsWriter: ${this.file} is closed`);
    if (!Number.isSafeInteger(step) || step < 0) throw new Error(`MetricsWriter.write: step must be a non-negative integer, got ${step}`);
    if (!metrics || typeof metrics !== 'object' || Array.isArray(metrics)) throw new Error('MetricsWriter.write: metrics must be an object of name → value');
    const rec: Record<string, unknown> = { step };  // step first, and never overridden
    for (const [k, v] of Object.entries(metrics)) if (k !== 'step') rec[k] = v;
    const line = JSON.stringify(rec, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)) + '\n';
    const bytes = Buffer.from(line, 'utf8');
    let off = 0;
    // One write() normally takes the whole line; loop only for a short write.
    while (off < bytes.length) off += writeSync(this.fd, bytes, off, bytes.length - off);
    if (this.opts.fsync) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}
