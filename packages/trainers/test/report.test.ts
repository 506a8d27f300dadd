// Tests of the run report (src/report/*): the HTML and its inline SVG are well formed (a small tag
// checker below), every metric is plotted and grouped, hostile rollout text is escaped, plot
// geometry maps crafted points to the right pixels with NaN gaps, empty metrics, the atomic
// write, and the progress bar on a TTY and off one.
// Not checked here: a headless-browser screenshot (no browser on this machine).
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { MetricsWriter } from '../src/metrics/jsonl.js';
import { metricGroup, metricSeries, pngSize, renderReport, writeReport } from '../src/report/html.js';
import { PLOT_MARGIN, linePlot, niceTicks, plotGeometry } from '../src/report/svgPlot.js';
import { ProgressBar, formatDuration } from '../src/report/progress.js';

const root = mkdtempSync(join(tmpdir(), 'fovea-report-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const newDir = () => { const d = join(root, `r${n++}`); return d; };

const VOID = new Set(['meta', 'img', 'br', 'hr', 'link', 'input']);
/** Throws unless every tag is closed in order, attributes are quoted, and no raw '<' is left in
 * text. Returns the tag names seen. */
function checkWellFormed(html: string): string[] {
  let s = html.replace(/^<!DOCTYPE html>\n/, '');
  const stack: string[] = [];
  const seen: string[] = [];
  const tagRe = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tagRe.exec(s); m; m = tagRe.exec(s)) {
    const text = s.slice(last, m.index);
    if (/[<>]/.test(text)) throw new Error(`raw < or > in text before offset ${m.index}: ${JSON.stringify(text.slice(0, 80))}`);
    last = tagRe.lastIndex;
    const [, close, name, , self] = m;
    const tag = name.toLowerCase();
    seen.push(tag);
    if (close) {
      const top = stack.pop();
      if (top !== tag) throw new Error(`</${tag}> closes <${top}> at offset ${m.index}`);
    } else if (!self && !VOID.has(tag)) stack.push(tag);
  }
  const rest = s.slice(last);
  if (/[<>]/.test(rest.replace(/\n$/, ''))) throw new Error(`unparsed markup at the end: ${JSON.stringify(rest.slice(0, 80))}`);
  if (stack.length) throw new Error(`unclosed tags: ${stack.join(' > ')}`);
  return seen;
}

/** A real w×h RGB PNG (zlib from node). */
function makePng(w: number, h: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, k) => { let c = k; for (let i = 0; i < 8; i++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
  const crc = (b: Buffer) => { let c = 0xffffffff; for (const x of b) c = crcTable[(c ^ x) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const c = Buffer.alloc(4); c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  const raw = Buffer.alloc(h * (1 + 3 * w), 200);
  for (let y = 0; y < h; y++) raw[y * (1 + 3 * w)] = 0;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

const METRICS = {
  reward_mean: 0.5, reward_std: 0.2, accuracy: 0.4, zero_var_frac: 0.1, loss: 1.2, clip_frac_low: 0.01, approx_kl: 0.001,
  kl_ref: 0.002, entropy: 1.5, grad_norm: 3, lr: 2e-6, response_length: 120, turns: 2, valid_box_ratio: 0.9, crop_iou: 0.6,
  tokens_per_s: 900, step_time_s: 4.2,
};

function writeRun(dir: string, steps: number): string {
  const f = join(dir + '-metrics.jsonl');
  const w = new MetricsWriter(f, { truncate: true });
  for (let s = 0; s < steps; s++) {
    const m: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(METRICS)) m[k] = v * (1 + s / 10);
    if (s === 3) m.entropy = NaN;              // stored as null: a gap
    m.note = 'text is not plotted';
    m.timing = { rollout: 1 + s, train: 2 };   // nested → timing.rollout, timing.train
    w.write(s, m);
  }
  w.close();
  return f;
}

describe('writeReport', () => {
  it('writes a well-formed, self-contained report with every metric grouped, a table and samples', () => {
    const dir = newDir();
    const metricsFile = writeRun(dir, 12);
    const png = makePng(40, 30);
    const r = writeReport(dir, {
      metricsFile, title: 'MGPO <tiny> & co', running: true,
      samples: [
        { step: 11, text: 'turn 1: {"bbox_2d":[4,3,20,15]}\n<script>alert("x")</script> & </pre>', reward: 1, imagePngBase64: png.toString('base64'), box: [4, 3, 20, 15] },
        { step: 11, text: 'no image', reward: 0 },
      ],
    });
    expect(r.file).toBe(join(dir, 'report.html'));
    expect(r.records).toBe(12);
    const html = readFileSync(r.file, 'utf8');
    const tags = checkWellFormed(html);
    expect(tags).toContain('svg');
    // Self-contained: no scripts, no external URLs of any kind.
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/(src|href)="(?!data:)/i);
    expect(html).not.toMatch(/@import|url\(|<link/i);
    expect(html).toContain('<meta http-equiv="refresh" content="30"/>');
    // Hostile text is escaped, title too.
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;/pre&gt;');
    expect(html).toContain('<h1>MGPO &lt;tiny&gt; &amp; co</h1>');
    // Every numeric metric is plotted (text metrics are not), each in its group.
    const expected = [...Object.keys(METRICS), 'timing.rollout', 'timing.train'];
    expect([...r.metrics].sort()).toEqual([...expected].sort());
    for (const m of expected) expect(html).toContain(`<div data-metric="${m}"><svg`);
    expect(html).not.toContain('data-metric="note"');
    const groups: Record<string, string> = {
      reward_mean: 'Reward & accuracy', accuracy: 'Reward & accuracy', zero_var_frac: 'Reward & accuracy', loss: 'Losses, KL & clip fractions',
      clip_frac_low: 'Losses, KL & clip fractions', approx_kl: 'Losses, KL & clip fractions', kl_ref: 'Losses, KL & clip fractions',
      entropy: 'Entropy', grad_norm: 'Gradient norm', lr: 'Learning rate', response_length: 'Lengths & turns', turns: 'Lengths & turns',
      valid_box_ratio: 'Valid-box ratio', crop_iou: 'Crop IoU', tokens_per_s: 'Tokens per second', step_time_s: 'Step time',
      'timing.rollout': 'Step time', 'response_tokens': 'Lengths & turns',
    };
    for (const [m, g] of Object.entries(groups)) expect(metricGroup(m), m).toBe(g);
    // Last-values table: entropy's last value is at step 11.
    expect(html).toMatch(/<tr><td>grad_norm<\/td><td>6\.3<\/td><td>11<\/td><td>3<\/td><td>6\.3<\/td><\/tr>/);
    // The image with its box over it, in the PNG's pixel frame.
    expect(html).toContain(`src="data:image/png;base64,${png.toString('base64')}"`);
    expect(html).toContain('viewBox="0 0 40 30" preserveAspectRatio="none"><rect x="4" y="3" width="16" height="12"');
    expect(readdirSync(dir)).toEqual(['report.html']);   // no temporary file left
  });

  it('handles an empty or missing metrics file and turns refresh off when not running', () => {
    const dir = newDir();
    const r = writeReport(dir.replace(/r\d+$/, ''), { metricsFile: join(root, 'missing.jsonl'), title: 'empty' });
    expect(r.records).toBe(0);
    expect(r.metrics).toEqual([]);
    const html = readFileSync(r.file, 'utf8');
    checkWellFormed(html);
    expect(html).toContain('No numeric metrics yet.');
    expect(html).not.toContain('http-equiv="refresh"');
    const f = join(root, 'empty.jsonl'); writeFileSync(f, '{"step":0,"reward":null}\nnot json\n{"step":1,"rew');
    const r2 = writeReport(root, { metricsFile: f, title: 'nulls', refreshSeconds: 5 });
    expect(r2.metrics).toEqual([]);   // a metric that is never finite has nothing to plot
    expect(r2.badLines).toEqual([2]);
    expect(r2.partialLine).toBe(true);
    const h2 = readFileSync(r2.file, 'utf8');
    expect(h2).toContain('1 unparseable metric line(s) skipped');
    expect(h2).toContain('content="5"');
  });

  it('replaces report.html atomically (a reader never sees a partial file)', () => {
    const dir = newDir();
    const metricsFile = writeRun(dir, 3);
    writeReport(dir, { metricsFile, title: 'a' });
    const before = readFileSync(join(dir, 'report.html'), 'utf8');
    // A failing render (bad sample) leaves the old report untouched and no temporary file.
    expect(() => writeReport(dir, { metricsFile, title: 'b', samples: [{ step: 1, text: 'x', reward: 0, imagePngBase64: 'abc"><script>' }] })).toThrow(/not base64/);
    expect(readFileSync(join(dir, 'report.html'), 'utf8')).toBe(before);
    // The write goes through a temporary file in the same directory + rename: the inode changes.
    const ino = statSync(join(dir, 'report.html')).ino;
    writeReport(dir, { metricsFile, title: 'c' });
    expect(statSync(join(dir, 'report.html')).ino).not.toBe(ino);
    expect(readdirSync(dir)).toEqual(['report.html']);
  });

  it('rejects bad input clearly', () => {
    const dir = newDir();
    const metricsFile = writeRun(dir, 2);
    expect(() => writeReport('', { metricsFile, title: 't' })).toThrow(/runDir must be a non-empty path/);
    expect(() => writeReport(dir, { title: 't' } as never)).toThrow(/metricsFile must be the path/);
    expect(() => writeReport(dir, { metricsFile, title: 't', samples: [{ step: 1, text: 'x', reward: 1, imagePngBase64: Buffer.from('GIF89a-not-a-png-at-all!!').toString('base64') }] })).toThrow(/not a PNG/);
    const png = makePng(8, 8).toString('base64');
    expect(() => writeReport(dir, { metricsFile, title: 't', samples: [{ step: 1, text: 'x', reward: 1, imagePngBase64: png, box: [1, 2, 3] }] })).toThrow(/box must be \[x1, y1, x2, y2\]/);
    expect(() => writeReport(dir, { metricsFile, title: 't', samples: [{ step: 1, text: 7 as never, reward: 1 }] })).toThrow(/samples\[0\]\.text must be a string/);
    expect(() => writeReport(dir, { metricsFile, title: 't', refreshSeconds: -1 })).toThrow(/refreshSeconds must be a positive number/);
    expect(pngSize(makePng(123, 45))).toEqual({ width: 123, height: 45 });
    expect(pngSize(Buffer.from('nope'))).toBeNull();
  });
});

describe('SVG line plots', () => {
  it('maps points to the plot area: xmin → left, xmax → right, ymax → top, ymin → bottom', () => {
    const W = 300, H = 160;
    const g = plotGeometry([0, 5, 10], [2, 4, 6], { width: W, height: H });
    const L = PLOT_MARGIN.left, T = PLOT_MARGIN.top, PW = W - L - PLOT_MARGIN.right, PH = H - T - PLOT_MARGIN.bottom;
    expect(g.path).toBe(`M${L},${T + PH} L${L + PW / 2},${T + PH / 2} L${L + PW},${T}`);
    expect(g.dots).toEqual([]);
    expect([g.dataMin, g.dataMax]).toEqual([2, 6]);
  });

  it('breaks the line at NaN/null and draws isolated points as dots', () => {
    const g = plotGeometry([0, 1, 2, 3, 4, 5, 6], [0, 1, null, 3, NaN, 5, 6], { width: 300, height: 160 });
    const L = PLOT_MARGIN.left, PW = 300 - L - PLOT_MARGIN.right;
    const T = PLOT_MARGIN.top, PH = 160 - T - PLOT_MARGIN.bottom;
    const X = (x: number) => Math.round((L + (x / 6) * PW) * 100) / 100;
    const Y = (y: number) => Math.round((T + ((6 - y) / 6) * PH) * 100) / 100;
    expect(g.path).toBe(`M${X(0)},${Y(0)} L${X(1)},${Y(1)} M${X(3)},${Y(3)} M${X(5)},${Y(5)} L${X(6)},${Y(6)}`);
    expect(g.dots).toEqual([[X(3), Y(3)]]);
    const svg = linePlot([0, 1, 2, 3, 4, 5, 6], [0, 1, null, 3, NaN, 5, 6], { title: 'a<b', width: 300, height: 160 });
    checkWellFormed(svg);
    expect(svg).toContain(`<circle cx="${X(3)}" cy="${Y(3)}"`);
    expect(svg).toContain('min 0 · max 6 · last 6');
    expect(svg).toContain('<title>a&lt;b</title>');
  });

  it('centers a constant series or a single point, and survives all-NaN', () => {
    const g = plotGeometry([7], [3], { width: 300, height: 160 });
    const L = PLOT_MARGIN.left, PW = 300 - L - PLOT_MARGIN.right, T = PLOT_MARGIN.top, PH = 160 - T - PLOT_MARGIN.bottom;
    expect(g.path).toBe(`M${L + PW / 2},${T + PH / 2}`);
    expect(g.dots.length).toBe(1);
    const e = plotGeometry([0, 1], [NaN, null]);
    expect(e.path).toBe('');
    expect(e.dataMin).toBeNull();
    const svg = linePlot([0, 1], [NaN, null], { title: 'x' });
    checkWellFormed(svg);
    expect(svg).toContain('no finite values');
    expect(() => plotGeometry([0], [1, 2])).toThrow(/1 x values but 2 y values/);
  });

  it('puts round ticks inside the range', () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(0.13, 0.92, 4)).toEqual([0.2, 0.4, 0.6, 0.8]);
    // A range below float resolution is flat (it once looped until the array overflowed).
    expect(niceTicks(0.2, 0.20000000000000004)).toEqual([0.2]);
    expect(niceTicks(1e6, 1e6 + 1e-7)).toEqual([1e6]);
    expect(niceTicks(-3, 3, 3)).toEqual([-2, 0, 2]);
  });

  it('metricSeries sorts by step and turns non-numbers into gaps', () => {
    const s = metricSeries([{ step: 2, a: 3 }, { step: 0, a: 1, b: 'x' }, { step: 1, a: null }]);
    expect(s).toEqual([{ name: 'a', steps: [0, 1, 2], values: [1, null, 3] }]);
    const { html } = renderReport([], { title: 't' });
    checkWellFormed(html);
  });
});

describe('ProgressBar', () => {
  const sink = (isTTY: boolean) => { const out: string[] = []; return { out, stream: { isTTY, write: (s: string) => out.push(s) } }; };

  it('on a TTY redraws one line with rate and ETA, throttled', () => {
    let t = 0;
    const { out, stream } = sink(true);
    const bar = new ProgressBar({ total: 10, label: 'train', stream, now: () => t, minIntervalMs: 100 });
    t = 2000; bar.tick(1, { reward: 0.5 });
    expect(out.length).toBe(1);
    expect(out[0]).toBe('\r\x1b[2Ktrain [██░░░░░░░░░░░░░░░░░░░░░░] 1/10 10% 2.00 s/it ETA 0:18 elapsed 0:02 | reward 0.5');
    t = 2050; bar.tick();                 // within 100 ms: not drawn
    expect(out.length).toBe(1);
    t = 4000; bar.update(4);
    expect(out[1]).toContain('4/10 40% 1.00 it/s ETA 0:06');
    t = 10000; bar.update(10);            // the end draws a final line with a newline
    expect(out[out.length - 1]).toMatch(/10\/10 100% .* ETA 0:00 elapsed 0:10.*\n$/);
    bar.tick();                            // after finish: nothing
    expect(out.length).toBe(3);
  });

  it('off a TTY prints a plain line every N steps and at the end, nothing else', () => {
    let t = 0;
    const { out, stream } = sink(false);
    const bar = new ProgressBar({ total: 25, stream, logEvery: 10, now: () => t });
    for (let i = 0; i < 25; i++) { t += 500; bar.tick(); }
    expect(out.length).toBe(3);          // at 10, 20 and the end (25)
    expect(out[0]).toBe('10/25 40% 2.00 it/s ETA 0:08 elapsed 0:05\n');
    expect(out[2]).toMatch(/^25\/25 100%/);
    expect(out.every((l) => !l.includes('\r') && !l.includes('\x1b'))).toBe(true);
    expect(formatDuration(3725)).toBe('1:02:05');
    expect(formatDuration(Infinity)).toBe('--:--');
    expect(() => new ProgressBar({ total: -1 })).toThrow(/total must be a non-negative integer/);
    expect(() => new ProgressBar({ total: 1, logEvery: 1.5 })).toThrow(/logEvery/);
    expect(existsSync(root)).toBe(true);
  });
});
