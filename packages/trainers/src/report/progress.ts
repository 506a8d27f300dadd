// A terminal progress bar for long commands (train, eval): steps done, rate, ETA and a few
// live metrics. On a TTY one line is redrawn in place (\r + clear line), at most every
// `minIntervalMs`; when the stream is not a TTY (a log file, CI) nothing is drawn and a plain
// line is printed every `logEvery` steps and at the end, so logs stay readable and small.
// The clock is injectable so tests can check rates and ETAs exactly.

export interface ProgressStream { write(s: string): unknown; isTTY?: boolean; columns?: number }

export interface ProgressBarOptions {
  total: number;
  label?: string;
  stream?: ProgressStream;            // process.stderr
  /** Overrides stream.isTTY. */
  tty?: boolean;
  /** Non-TTY: print a line every this many steps (default 10; 0 = only at the end). */
  logEvery?: number;
  /** TTY: least time between redraws (default 100 ms; the last step always draws). */
  minIntervalMs?: number;
  /** Milliseconds clock (default Date.now). */
  now?: () => number;
  /** Bar width in characters (default 24). */
  width?: number;
}

/** h:mm:ss or m:ss. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const pad = (v: number) => String(v).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
}

function fmtInfo(info: Record<string, number | string> | undefined): string {
  if (!info) return '';
  const parts = Object.entries(info).map(([k, v]) => `${k} ${typeof v === 'number' ? (Number.isInteger(v) ? v : Number(v.toPrecision(4))) : v}`);
  return parts.length ? ' | ' + parts.join(' ') : '';
}

export class ProgressBar {
  readonly total: number;
  readonly isTTY: boolean;
  private done = 0;
  private readonly start: number;
  private lastDraw = -Infinity;
  private lastLogged = 0;
  private finished = false;
  private info: Record<string, number | string> | undefined;
  private readonly stream: ProgressStream;
  private readonly now: () => number;

  constructor(private readonly opts: ProgressBarOptions) {
    if (!opts || !Number.isSafeInteger(opts.total) || opts.total < 0) throw new Error(`ProgressBar: total must be a non-negative integer, got ${JSON.stringify(opts?.total)}`);
    if (opts.logEvery !== undefined && (!Number.isSafeInteger(opts.logEvery) || opts.logEvery < 0)) throw new Error(`ProgressBar: logEvery must be a non-negative integer, got ${opts.logEvery}`);
    this.total = opts.total;
    this.stream = opts.stream ?? process.stderr;
    this.isTTY = opts.tty ?? Boolean(this.stream.isTTY);
    this.now = opts.now ?? Date.now;
    this.start = this.now();
  }

  get value(): number { return this.done; }

  /** Steps per second so far (0 before the first step). */
  rate(): number {
    const dt = (this.now() - this.start) / 1000;
    return dt > 0 ? this.done / dt : 0;
  }

  /** Seconds left at the current rate (Infinity before the first step). */
  eta(): number {
    const r = this.rate();
    return r > 0 ? (this.total - this.done) / r : Infinity;
  }

  /** The status line (without \r or newline). */
  line(): string {
    const label = this.opts.label ? `${this.opts.label} ` : '';
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 1;
    const w = this.opts.width ?? 24;
    const fill = Math.round(frac * w);
    const bar = this.isTTY ? `[${'█'.repeat(fill)}${'░'.repeat(w - fill)}] ` : '';
    const r = this.rate();
    const rate = r >= 1 || r === 0 ? `${r.toFixed(2)} it/s` : `${(1 / r).toFixed(2)} s/it`;
    return `${label}${bar}${this.done}/${this.total} ${(frac * 100).toFixed(0)}% ${rate} ETA ${formatDuration(this.eta())} elapsed ${formatDuration((this.now() - this.start) / 1000)}${fmtInfo(this.info)}`;
  }

  /** Advances by n steps; `info` (e.g. {reward: 0.4}) is shown after the bar. */
  tick(n = 1, info?: Record<string, number | string>): void { this.update(this.done + n, info); }

  /** Sets the number of finished steps. */
  update(done: number, info?: Record<string, number | string>): void {
    if (this.finished) return;
    if (!Number.isFinite(done) || done < 0) throw new Error(`ProgressBar.update: done must be a non-negative number, got ${done}`);
    this.done = Math.min(done, this.total);
    if (info) this.info = info;
    const t = this.now();
    if (this.done >= this.total) { this.finish(); return; }   // finish draws the last line
    if (this.isTTY) {
      if (t - this.lastDraw >= (this.opts.minIntervalMs ?? 100)) {
        this.lastDraw = t;
        let s = this.line();
        const cols = this.stream.columns;
        if (cols && s.length > cols - 1) s = s.slice(0, cols - 1);
        this.stream.write(`\r\x1b[2K${s}`);
      }
    } else {
      const every = this.opts.logEvery ?? 10;
      if (every > 0 && Math.floor(this.done / every) > Math.floor(this.lastLogged / every)) {
        this.lastLogged = this.done;
        this.stream.write(this.line() + '\n');
      }
    }
  }

  /** Ends the bar: a final line (and newline on a TTY). Idempotent. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.isTTY) this.stream.write(`\r\x1b[2K${this.line()}\n`);
    else if (this.lastLogged !== this.done || this.done === 0) this.stream.write(this.line() + '\n');
  }
}
