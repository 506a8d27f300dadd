// The run report: one self-contained report.html next to the run (no scripts, stylesheets or
// fonts from anywhere; plots are inline SVG, images are data: URIs), rebuilt from the metrics
// JSONL as training goes. It is written to a temporary file, fsync'ed and renamed over
// report.html, so a browser refreshing mid-write sees the old report or the new one, never half.
//
// Every numeric metric (nested objects flattened as `a.b`) gets a plot over steps; plots are
// grouped by what they measure (reward/accuracy, losses/KL/clipping, entropy, ...). null in the
// log (how MetricsWriter stores NaN/±Infinity) and missing values are gaps in the line. All text
// that comes from the run (title, metric names, rollout text) is HTML-escaped: rollouts are model
// output and may contain anything, `<script>` included.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { readMetrics, type MetricsRecord } from '../metrics/jsonl.js';
import { writeFileAtomic } from '../checkpoint/atomic.js';
import { escapeXml, formatNumber, linePlot } from './svgPlot.js';

export const REPORT_FILE = 'report.html';

export interface ReportSample {
  step: number;
  text: string;
  reward: number;
  /** A PNG as base64 (no data: prefix). */
  imagePngBase64?: string;
  /** [x1, y1, x2, y2] in the PNG's pixels. */
  box?: readonly [number, number, number, number] | readonly number[];
}

export interface ReportOptions {
  metricsFile: string;
  title: string;
  samples?: ReportSample[];
  /** While the run is going: add <meta http-equiv="refresh"> with this period (default 30 s when running). */
  running?: boolean;
  refreshSeconds?: number;
}

export interface ReportResult {
  file: string;
  metrics: string[];          // every plotted metric, in page order
  records: number;
  partialLine: boolean;       // from readMetrics
  badLines: number[];
}

/** The metric groups, in page order; a metric goes to the first group whose test matches. */
export const METRIC_GROUPS: { title: string; test: RegExp }[] = [
  { title: 'Tokens per second', test: /tokens?_?per_?s(ec)?\b|tokens?\/s|tok_?s$|throughput|(^|_)tps$/i },
  { title: 'Crop IoU', test: /iou/i },
  { title: 'Valid-box ratio', test: /valid|box/i },
  { title: 'Reward & accuracy', test: /reward|acc|correct|solve|zero_?var/i },
  { title: 'Losses, KL & clip fractions', test: /loss|kl|clip/i },
  { title: 'Entropy', test: /entropy/i },
  { title: 'Gradient norm', test: /grad/i },
  { title: 'Learning rate', test: /(^|[._])lr($|[._])|learning_?rate/i },
  { title: 'Lengths & turns', test: /len|turn|tokens/i },
  { title: 'Step time', test: /time|timing|duration|sec|(^|_)s$/i },
  { title: 'Other', test: /.*/ },
];

export function metricGroup(name: string): string {
  return (METRIC_GROUPS.find((g) => g.test.test(name)) as { title: string }).title;
}

/** Flattens one record into name → value (nested objects joined with '.'), `step` excluded. */
function flatten(o: Record<string, unknown>, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(o)) {
    if (!prefix && k === 'step') continue;
    const name = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v as Record<string, unknown>, name, out);
    else out[name] = v;
  }
  return out;
}

export interface MetricSeries { name: string; steps: number[]; values: (number | null)[] }

/** Numeric series per metric: a metric is numeric when some record has a finite number for it.
 * Records are sorted by step; a value that is not a finite number becomes null (a gap). */
export function metricSeries(records: readonly MetricsRecord[]): MetricSeries[] {
  const recs = [...records].sort((a, b) => a.step - b.step);
  const flat = recs.map((r) => flatten(r));
  const names: string[] = [];
  const seen = new Set<string>();
  for (const f of flat) for (const [k, v] of Object.entries(f)) {
    if (!seen.has(k) && typeof v === 'number' && Number.isFinite(v)) { seen.add(k); names.push(k); }
  }
  const steps = recs.map((r) => r.step);
  return names.map((name) => ({
    name, steps,
    values: flat.map((f) => { const v = f[name]; return typeof v === 'number' && Number.isFinite(v) ? v : null; }),
  }));
}

/** Width and height from a PNG's IHDR chunk, or null when the bytes are not a PNG. */
export function pngSize(png: Uint8Array): { width: number; height: number } | null {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (png.length < 24 || sig.some((b, i) => png[i] !== b)) return null;
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  if (String.fromCharCode(png[12], png[13], png[14], png[15]) !== 'IHDR') return null;
  const width = dv.getUint32(16), height = dv.getUint32(20);
  return width > 0 && height > 0 ? { width, height } : null;
}

function sampleHtml(s: ReportSample, i: number): string {
  const where = `writeReport: samples[${i}]`;
  if (!s || typeof s !== 'object') throw new Error(`${where} must be an object {step, text, reward, imagePngBase64?, box?}`);
  if (!Number.isFinite(s.step)) throw new Error(`${where}.step must be a number, got ${JSON.stringify(s.step)}`);
  if (typeof s.text !== 'string') throw new Error(`${where}.text must be a string`);
  const reward = typeof s.reward === 'number' ? formatNumber(s.reward) : 'n/a';
  let img = '';
  if (s.imagePngBase64 !== undefined) {
    const b64 = String(s.imagePngBase64).replace(/\s+/g, '');
    // Only base64 characters may reach the attribute (nothing can break out of src="…").
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new Error(`${where}.imagePngBase64 is not base64`);
    const size = pngSize(Buffer.from(b64, 'base64'));
    if (!size) throw new Error(`${where}.imagePngBase64 is not a PNG (bad signature or IHDR)`);
    let overlay = '';
    let boxText = '';
    if (s.box !== undefined) {
      const b = s.box as readonly number[];
      if (!Array.isArray(b) || b.length !== 4 || !b.every((v) => Number.isFinite(v))) {
        throw new Error(`${where}.box must be [x1, y1, x2, y2] of finite numbers, got ${JSON.stringify(s.box)}`);
      }
      const [x1, y1, x2, y2] = b;
      const x = Math.min(x1, x2), y = Math.min(y1, y2), w = Math.abs(x2 - x1), h = Math.abs(y2 - y1);
      // viewBox in the PNG's pixels, stretched over the <img>: the rect lands on the box's pixels.
      overlay = `<svg class="box" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${size.width} ${size.height}" preserveAspectRatio="none">`
        + `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none" stroke="#ef4444" stroke-width="${Math.max(2, size.width / 200)}" vector-effect="non-scaling-stroke"/></svg>`;
      boxText = ` · box [${b.map(formatNumber).join(', ')}]`;
    }
    img = `<div class="img"><img alt="rollout image ${size.width}×${size.height}" src="data:image/png;base64,${b64}"/>${overlay}</div>`
      + `<div class="meta">${size.width}×${size.height}${escapeXml(boxText)}</div>`;
  } else if (s.box !== undefined) {
    img = `<div class="meta">box ${escapeXml(JSON.stringify(s.box))} (no image)</div>`;
  }
  return `<div class="sample"><div class="meta">step ${escapeXml(formatNumber(s.step))} · reward ${escapeXml(reward)}</div>${img}<pre>${escapeXml(s.text)}</pre></div>`;
}

const CSS = `body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px 24px;color:#18181b;background:#fafafa}
h1{font-size:20px}h2{font-size:16px;margin:20px 0 6px;border-bottom:1px solid #e4e4e7}
.plots{display:flex;flex-wrap:wrap;gap:10px}.plot{background:#fff;border:1px solid #e4e4e7}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #e4e4e7;padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.samples{display:flex;flex-wrap:wrap;gap:12px}.sample{background:#fff;border:1px solid #e4e4e7;padding:8px;max-width:420px}
.img{position:relative;display:inline-block;max-width:400px}.img img{display:block;max-width:400px;height:auto}
.img svg.box{position:absolute;left:0;top:0;width:100%;height:100%}
pre{white-space:pre-wrap;word-break:break-word;font-size:12px;max-height:300px;overflow:auto}.meta{font-size:12px;color:#52525b}`;

/** Builds the report's HTML (pure; writeReport adds the file handling). */
export function renderReport(records: readonly MetricsRecord[], opts: Omit<ReportOptions, 'metricsFile'> & { note?: string }): { html: string; metrics: string[] } {
  const series = metricSeries(records);
  const groups = new Map<string, MetricSeries[]>();
  for (const g of METRIC_GROUPS) groups.set(g.title, []);
  for (const s of series) (groups.get(metricGroup(s.name)) as MetricSeries[]).push(s);
  const ordered: string[] = [];
  const body: string[] = [];
  const lastStep = records.length ? Math.max(...records.map((r) => r.step)) : null;
  body.push(`<h1>${escapeXml(opts.title)}</h1>`);
  body.push(`<p class="meta">${records.length} steps logged${lastStep === null ? '' : ` · last step ${lastStep}`} · updated ${escapeXml(new Date().toISOString())}${opts.note ? ' · ' + escapeXml(opts.note) : ''}</p>`);
  if (series.length === 0) body.push('<p>No numeric metrics yet.</p>');
  for (const [title, list] of groups) {
    if (list.length === 0) continue;
    body.push(`<h2>${escapeXml(title)}</h2><div class="plots">`);
    for (const s of list) {
      ordered.push(s.name);
      body.push(`<div data-metric="${escapeXml(s.name)}">${linePlot(s.steps, s.values, { title: s.name })}</div>`);
    }
    body.push('</div>');
  }
  if (series.length) {
    body.push('<h2>Last values</h2><table><thead><tr><th>metric</th><th>last</th><th>at step</th><th>min</th><th>max</th></tr></thead><tbody>');
    for (const name of ordered) {
      const s = series.find((x) => x.name === name) as MetricSeries;
      let li = -1;
      for (let i = s.values.length - 1; i >= 0; i--) if (s.values[i] !== null) { li = i; break; }
      const fin = s.values.filter((v): v is number => v !== null);
      body.push(`<tr><td>${escapeXml(name)}</td><td>${formatNumber(s.values[li] as number)}</td><td>${s.steps[li]}</td><td>${formatNumber(Math.min(...fin))}</td><td>${formatNumber(Math.max(...fin))}</td></tr>`);
    }
    body.push('</tbody></table>');
  }
  const samples = opts.samples ?? [];
  if (!Array.isArray(samples)) throw new Error('writeReport: samples must be an array');
  if (samples.length) {
    body.push(`<h2>Rollout samples</h2><div class="samples">`);
    samples.forEach((s, i) => body.push(sampleHtml(s, i)));
    body.push('</div>');
  }
  const refresh = opts.refreshSeconds ?? (opts.running ? 30 : undefined);
  if (refresh !== undefined && (!Number.isFinite(refresh) || refresh <= 0)) throw new Error(`writeReport: refreshSeconds must be a positive number, got ${refresh}`);
  const head = `<meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/>`
    + (refresh !== undefined ? `<meta http-equiv="refresh" content="${refresh}"/>` : '')
    + `<title>${escapeXml(opts.title)}</title><style>${CSS}</style>`;
  return { html: `<!DOCTYPE html>\n<html lang="en"><head>${head}</head><body>${body.join('\n')}</body></html>\n`, metrics: ordered };
}

/** Reads the metrics log and writes <runDir>/report.html atomically. A missing metrics file gives
 * an empty report (the run has not logged a step yet). */
export function writeReport(runDir: string, opts: ReportOptions): ReportResult {
  if (typeof runDir !== 'string' || runDir === '') throw new Error(`writeReport: runDir must be a non-empty path, got ${JSON.stringify(runDir)}`);
  if (!opts || typeof opts.metricsFile !== 'string') throw new Error('writeReport: opts.metricsFile must be the path of the metrics JSONL');
  if (typeof opts.title !== 'string') throw new Error('writeReport: opts.title must be a string');
  let read: ReturnType<typeof readMetrics> = { records: [], partialLine: false, badLines: [] };
  try { read = readMetrics(opts.metricsFile); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`writeReport: cannot read ${opts.metricsFile} (${(e as Error).message})`, { cause: e });
  }
  const note = read.badLines.length ? `${read.badLines.length} unparseable metric line(s) skipped` : undefined;
  const { html, metrics } = renderReport(read.records, { ...opts, note });
  mkdirSync(runDir, { recursive: true });
  const file = join(runDir, REPORT_FILE);
  writeFileAtomic(file, html);
  return { file, metrics, records: read.records.length, partialLine: read.partialLine, badLines: read.badLines };
}
