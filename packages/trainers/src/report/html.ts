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
//
// Rollout samples are cards (step, reward, correct/valid/IoU tags, pictures, each turn's text):
// the last `maxSamples` are kept, newest step first, and pictures are inlined newest-first until
// their PNG bytes reach `maxSampleImageBytes`, so the file stays a few MB however long the run.
// Pictures come from sampleImage.ts (boxes already drawn, downscaled); every one is checked to be
// a PNG and only base64 characters reach a src attribute.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { readMetrics, type MetricsRecord } from '../metrics/jsonl.js';
import { writeFileAtomic } from '../checkpoint/atomic.js';
import { escapeXml, formatNumber, linePlot } from './svgPlot.js';

export const REPORT_FILE = 'report.html';

/** A picture on a sample card: PNG bytes, or the PNG as base64 (no data: prefix). */
export interface ReportImage {
  png: Uint8Array | string;
  caption?: string;
}

export interface ReportSample {
  step: number;
  /** The rollout's text (all turns); shown when `turns` is absent. */
  text: string;
  reward: number;
  /** The assistant turns, each shown as its own block (instead of `text`). */
  turns?: readonly string[];
  /** Pictures for the card (renderSampleImage's output: the boxes are already drawn on them). */
  images?: readonly ReportImage[];
  /** Legacy single picture: a PNG as base64 (no data: prefix); `box` (an array) is overlaid on it. */
  imagePngBase64?: string;
  /** An array: [x1, y1, x2, y2] in imagePngBase64's pixels, drawn over it. An object: the model's
   * box in the frame it saw and in original pixels, shown as text. */
  box?: readonly [number, number, number, number] | readonly number[] | { model?: readonly number[]; original?: readonly number[] };
  /** Was the tool call's box valid. */
  valid?: boolean;
  /** IoU of the model's box with the ground truth. */
  iou?: number;
  /** Did the final answer score as correct. */
  correct?: boolean;
}

export const DEFAULT_MAX_SAMPLES = 24;
/** Default budget for the decoded bytes of all sample pictures in one report. */
export const DEFAULT_MAX_SAMPLE_IMAGE_BYTES = 4 * 1024 * 1024;

export interface ReportOptions {
  metricsFile: string;
  title: string;
  samples?: ReportSample[];
  /** Keep only the last N samples (default 24); the newest are shown first. */
  maxSamples?: number;
  /** Pictures of the newest samples are kept until their PNG bytes reach this total (default 4 MiB);
   * older samples are shown without pictures, with a note. */
  maxSampleImageBytes?: number;
  /** While the run is going: add <meta http-equiv="refresh"> with this period (default 30 s when running). */
  running?: boolean;
  refreshSeconds?: number;
  /** A table shown under the title (cells are text, escaped): e.g. the demo's evaluation. */
  summary?: { caption: string; header: string[]; rows: string[][] };
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

/** A picture's bytes as checked base64 and its size; throws naming `where` when it is not a PNG. */
function pngBase64(png: Uint8Array | string, where: string): { b64: string; bytes: number; width: number; height: number } {
  let b64: string;
  let bytes: Buffer;
  if (png instanceof Uint8Array) {
    bytes = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
    b64 = bytes.toString('base64');
  } else if (typeof png === 'string') {
    b64 = png.replace(/\s+/g, '');
    // Only base64 characters may reach the attribute (nothing can break out of src="…").
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new Error(`${where} is not base64`);
    bytes = Buffer.from(b64, 'base64');
  } else throw new Error(`${where} must be PNG bytes (Uint8Array) or a base64 string, got ${typeof png}`);
  const size = pngSize(bytes);
  if (!size) throw new Error(`${where} is not a PNG (bad signature or IHDR)`);
  return { b64, bytes: bytes.byteLength, ...size };
}

function checkBoxArray(b: unknown, where: string): number[] {
  if (!Array.isArray(b) || b.length !== 4 || !b.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new Error(`${where} must be [x1, y1, x2, y2] of finite numbers, got ${JSON.stringify(b)}`);
  }
  return b as number[];
}

interface CheckedImage { b64: string; bytes: number; width: number; height: number; caption: string; overlay?: number[] }

/** Validates one sample; returns its pictures (legacy imagePngBase64 first) for the byte budget. */
function checkSample(s: ReportSample, i: number): CheckedImage[] {
  const where = `writeReport: samples[${i}]`;
  if (!s || typeof s !== 'object') throw new Error(`${where} must be an object {step, text, reward, turns?, images?, box?}`);
  if (!Number.isFinite(s.step)) throw new Error(`${where}.step must be a number, got ${JSON.stringify(s.step)}`);
  if (typeof s.text !== 'string') throw new Error(`${where}.text must be a string`);
  if (s.turns !== undefined && (!Array.isArray(s.turns) || !s.turns.every((t) => typeof t === 'string'))) throw new Error(`${where}.turns must be an array of strings`);
  if (s.iou !== undefined && typeof s.iou !== 'number') throw new Error(`${where}.iou must be a number`);
  for (const k of ['valid', 'correct'] as const) if (s[k] !== undefined && typeof s[k] !== 'boolean') throw new Error(`${where}.${k} must be a boolean`);
  const out: CheckedImage[] = [];
  let arrayBox: number[] | undefined;
  if (Array.isArray(s.box)) arrayBox = checkBoxArray(s.box, `${where}.box`);
  else if (s.box !== undefined) {
    const b = s.box as { model?: unknown; original?: unknown };
    if (typeof b !== 'object' || b === null) throw new Error(`${where}.box must be [x1, y1, x2, y2] or {model?, original?}`);
    if (b.model !== undefined) checkBoxArray(b.model, `${where}.box.model`);
    if (b.original !== undefined) checkBoxArray(b.original, `${where}.box.original`);
  }
  if (s.imagePngBase64 !== undefined) {
    const p = pngBase64(String(s.imagePngBase64), `${where}.imagePngBase64`);
    out.push({ ...p, caption: `${p.width}×${p.height}${arrayBox ? ` · box [${arrayBox.map(formatNumber).join(', ')}]` : ''}`, overlay: arrayBox });
  }
  if (s.images !== undefined) {
    if (!Array.isArray(s.images)) throw new Error(`${where}.images must be an array of {png, caption?}`);
    s.images.forEach((im, k) => {
      if (!im || typeof im !== 'object') throw new Error(`${where}.images[${k}] must be {png, caption?}`);
      if (im.caption !== undefined && typeof im.caption !== 'string') throw new Error(`${where}.images[${k}].caption must be a string`);
      const p = pngBase64(im.png, `${where}.images[${k}].png`);
      out.push({ ...p, caption: im.caption ?? `${p.width}×${p.height}` });
    });
  }
  return out;
}

function imageHtml(im: CheckedImage): string {
  let overlay = '';
  if (im.overlay) {
    const [x1, y1, x2, y2] = im.overlay;
    const x = Math.min(x1, x2), y = Math.min(y1, y2), w = Math.abs(x2 - x1), h = Math.abs(y2 - y1);
    // viewBox in the PNG's pixels, stretched over the <img>: the rect lands on the box's pixels.
    overlay = `<svg class="box" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${im.width} ${im.height}" preserveAspectRatio="none">`
      + `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none" stroke="#ef4444" stroke-width="${Math.max(2, im.width / 200)}" vector-effect="non-scaling-stroke"/></svg>`;
  }
  return `<figure><div class="img"><img alt="rollout image ${im.width}×${im.height}" src="data:image/png;base64,${im.b64}"/>${overlay}</div>`
    + `<figcaption class="meta">${escapeXml(im.caption)}</figcaption></figure>`;
}

function sampleHtml(s: ReportSample, images: CheckedImage[], omittedImages: number): string {
  const reward = typeof s.reward === 'number' ? formatNumber(s.reward) : 'n/a';
  const tags = [`step ${escapeXml(formatNumber(s.step))}`, `reward ${escapeXml(reward)}`];
  if (s.correct !== undefined) tags.push(s.correct ? '<span class="good">correct</span>' : '<span class="bad">wrong</span>');
  if (s.valid !== undefined) tags.push(s.valid ? '<span class="good">valid box</span>' : '<span class="bad">invalid box</span>');
  if (s.iou !== undefined) tags.push(`IoU ${escapeXml(formatNumber(s.iou))}`);
  const parts = [`<div class="meta">${tags.join(' · ')}</div>`];
  if (images.length) parts.push(`<div class="imgs">${images.map(imageHtml).join('')}</div>`);
  if (omittedImages) parts.push(`<div class="meta">${omittedImages} picture(s) left out (report image budget reached)</div>`);
  if (Array.isArray(s.box) && s.imagePngBase64 === undefined) parts.push(`<div class="meta">box ${escapeXml(JSON.stringify(s.box))} (no image)</div>`);
  else if (s.box && !Array.isArray(s.box)) {
    const b = s.box as { model?: readonly number[]; original?: readonly number[] };
    const fmt = (v: readonly number[]) => `[${v.map(formatNumber).join(', ')}]`;
    const txt = [b.model ? `model frame ${fmt(b.model)}` : '', b.original ? `original ${fmt(b.original)}` : ''].filter(Boolean).join(' → ');
    if (txt) parts.push(`<div class="meta">box ${escapeXml(txt)}</div>`);
  }
  if (s.turns && s.turns.length) {
    s.turns.forEach((t, k) => parts.push(`<div class="meta">turn ${k + 1}</div><pre>${escapeXml(t)}</pre>`));
  } else parts.push(`<pre>${escapeXml(s.text)}</pre>`);
  return `<div class="sample">${parts.join('')}</div>`;
}

/** The samples section: the last maxSamples, newest step first, pictures kept newest-first until
 * their bytes reach the budget. */
function samplesHtml(samples: readonly ReportSample[], maxSamples: number, maxImageBytes: number): string[] {
  if (!Number.isInteger(maxSamples) || maxSamples < 0) throw new Error(`writeReport: maxSamples must be a non-negative integer, got ${maxSamples}`);
  if (!(maxImageBytes >= 0)) throw new Error(`writeReport: maxSampleImageBytes must be a non-negative number, got ${maxImageBytes}`);
  const first = Math.max(0, samples.length - maxSamples);
  const kept = samples.slice(first).map((s, k) => ({ s, images: checkSample(s, first + k), index: first + k }));
  if (kept.length === 0) return [];
  kept.sort((a, b) => b.s.step - a.s.step || a.index - b.index);   // newest step first, a step's samples in order
  let budget = maxImageBytes;
  const cards = kept.map(({ s, images }) => {
    const bytes = images.reduce((a, im) => a + im.bytes, 0);
    if (bytes <= budget) { budget -= bytes; return sampleHtml(s, images, 0); }
    return sampleHtml(s, [], images.length);
  });
  const note = first ? `<p class="meta">showing the last ${kept.length} of ${samples.length} samples, newest first</p>` : '';
  return [`<h2>Rollout samples</h2>${note}<div class="samples">`, ...cards, '</div>'];
}

const CSS = `body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px 24px;color:#18181b;background:#fafafa}
h1{font-size:20px}h2{font-size:16px;margin:20px 0 6px;border-bottom:1px solid #e4e4e7}
.groups{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}.group{max-width:100%}.group h2{margin-top:14px}
.plots{display:flex;flex-wrap:wrap;gap:10px}.plot{background:#fff;border:1px solid #e4e4e7}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #e4e4e7;padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.samples{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.sample{background:#fff;border:1px solid #e4e4e7;padding:8px;max-width:600px}
.imgs{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}figure{margin:4px 0}figcaption{max-width:384px}
.img{position:relative;display:inline-block;max-width:400px}.img img{display:block;max-width:400px;height:auto}
.good{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}
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
  if (opts.summary) {
    const t = opts.summary;
    body.push(`<h2>${escapeXml(t.caption)}</h2><table class="summary"><thead><tr>${t.header.map((h) => `<th>${escapeXml(h)}</th>`).join('')}</tr></thead><tbody>`);
    for (const r of t.rows) body.push(`<tr>${r.map((c) => `<td>${escapeXml(c)}</td>`).join('')}</tr>`);
    body.push('</tbody></table>');
  }
  if (series.length === 0) body.push('<p>No numeric metrics yet.</p>');
  // Groups flow side by side (a group of one plot does not take a whole row).
  else body.push('<div class="groups">');
  for (const [title, list] of groups) {
    if (list.length === 0) continue;
    body.push(`<section class="group"><h2>${escapeXml(title)}</h2><div class="plots">`);
    for (const s of list) {
      ordered.push(s.name);
      body.push(`<div data-metric="${escapeXml(s.name)}">${linePlot(s.steps, s.values, { title: s.name })}</div>`);
    }
    body.push('</div></section>');
  }
  if (series.length) body.push('</div>');
  // Samples before the table: what a reader opens the report for comes first.
  const samples = opts.samples ?? [];
  if (!Array.isArray(samples)) throw new Error('writeReport: samples must be an array');
  body.push(...samplesHtml(samples, opts.maxSamples ?? DEFAULT_MAX_SAMPLES, opts.maxSampleImageBytes ?? DEFAULT_MAX_SAMPLE_IMAGE_BYTES));
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
