// Inline SVG line plots for the HTML report: no scripts, no fonts, no external files.
//
// Geometry (exported for tests): the plot area is [left, left + plotW] × [top, top + plotH];
// x = xmin maps to `left`, x = xmax to `left + plotW`; y = ymax maps to `top`, y = ymin to
// `top + plotH` (SVG y grows downward). A degenerate range (one x, or a constant y) is widened
// symmetrically so the points sit in the middle. Non-finite values (NaN, null from the JSONL log)
// break the line: the path restarts with a new `M` after each gap, and a point with no finite
// neighbour on either side is drawn as a dot so it does not vanish.

export interface PlotOptions {
  width?: number;    // 360
  height?: number;   // 200
  title?: string;
  color?: string;    // '#2563eb'
}

export const PLOT_MARGIN = { left: 58, right: 14, top: 26, bottom: 30 } as const;

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Compact number text: integers as is, otherwise 4 significant digits, exponent when tiny/huge. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) return v.toExponential(2).replace('e+', 'e');
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(4)));
}

/** About `count` round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  // A range below float resolution (0.2 vs 0.20000000000000004) is flat: stepping through it
  // would never advance t.
  if (!(hi > lo) || hi - lo <= 1e-9 * Math.max(Math.abs(lo), Math.abs(hi))) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  const first = Math.ceil(lo / step);
  for (let k = 0; k <= 4 * count + 4; k++) {   // at most ~count ticks; the cap guards against float surprises
    const t = (first + k) * step;
    if (t > hi + step * 1e-9) break;
    out.push(Math.abs(t) < step * 1e-9 ? 0 : Number(t.toPrecision(12)));
  }
  return out;
}

export interface PlotGeometry {
  left: number; top: number; plotW: number; plotH: number;
  xmin: number; xmax: number; ymin: number; ymax: number;   // the (widened) data ranges
  sx: (x: number) => number;
  sy: (y: number) => number;
  /** SVG path data, one `M … L …` run per stretch of finite points. */
  path: string;
  /** Points with no finite neighbour, drawn as dots. */
  dots: [number, number][];
  /** Finite data range before widening, or null when there is no finite point. */
  dataMin: number | null;
  dataMax: number | null;
}

const r2 = (v: number) => Math.round(v * 100) / 100;

/** Maps a series to plot coordinates (see the file comment). xs must be finite. */
export function plotGeometry(xs: readonly number[], ys: readonly (number | null)[], opts: PlotOptions = {}): PlotGeometry {
  if (xs.length !== ys.length) throw new Error(`plotGeometry: ${xs.length} x values but ${ys.length} y values`);
  const width = opts.width ?? 360, height = opts.height ?? 200;
  const { left, right, top, bottom } = PLOT_MARGIN;
  const plotW = width - left - right, plotH = height - top - bottom;
  const fin = (v: number | null): v is number => typeof v === 'number' && Number.isFinite(v);
  const fy = ys.filter(fin);
  const fx = xs.filter((x, i) => Number.isFinite(x) && fin(ys[i]));
  let xmin = fx.length ? Math.min(...fx) : 0, xmax = fx.length ? Math.max(...fx) : 1;
  const dataMin = fy.length ? Math.min(...fy) : null, dataMax = fy.length ? Math.max(...fy) : null;
  let ymin = dataMin ?? 0, ymax = dataMax ?? 1;
  if (xmax === xmin) { xmin -= 1; xmax += 1; }
  if (ymax === ymin) { const pad = Math.abs(ymin) * 0.1 || 1; ymin -= pad; ymax += pad; }
  const sx = (x: number) => left + ((x - xmin) / (xmax - xmin)) * plotW;
  const sy = (y: number) => top + ((ymax - y) / (ymax - ymin)) * plotH;
  let path = '';
  const dots: [number, number][] = [];
  let pen = false;
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i];
    if (!fin(y) || !Number.isFinite(xs[i])) { pen = false; continue; }
    const px = r2(sx(xs[i])), py = r2(sy(y));
    path += `${path ? ' ' : ''}${pen ? 'L' : 'M'}${px},${py}`;
    const nextOk = i + 1 < ys.length && fin(ys[i + 1]) && Number.isFinite(xs[i + 1]);
    if (!pen && !nextOk) dots.push([px, py]);
    pen = true;
  }
  return { left, top, plotW, plotH, xmin, xmax, ymin, ymax, sx, sy, path, dots, dataMin, dataMax };
}

/** One metric over steps as a standalone <svg> element (axes, ticks, min/max and last value). */
export function linePlot(xs: readonly number[], ys: readonly (number | null)[], opts: PlotOptions = {}): string {
  const width = opts.width ?? 360, height = opts.height ?? 200, color = opts.color ?? '#2563eb';
  const g = plotGeometry(xs, ys, opts);
  const bottomY = g.top + g.plotH, rightX = g.left + g.plotW;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" class="plot">`);
  const title = opts.title ?? '';
  parts.push(`<title>${escapeXml(title)}</title>`);
  parts.push(`<rect x="${g.left}" y="${g.top}" width="${g.plotW}" height="${g.plotH}" fill="#fff" stroke="#d4d4d8"/>`);
  // Ticks and grid lines.
  for (const t of niceTicks(g.ymin, g.ymax, 4)) {
    const y = r2(g.sy(t));
    if (y < g.top - 0.5 || y > bottomY + 0.5) continue;
    parts.push(`<line x1="${g.left}" y1="${y}" x2="${rightX}" y2="${y}" stroke="#f1f5f9"/>`);
    parts.push(`<line x1="${g.left - 4}" y1="${y}" x2="${g.left}" y2="${y}" stroke="#52525b"/>`);
    parts.push(`<text x="${g.left - 6}" y="${r2(y + 3.5)}" text-anchor="end" font-size="10" fill="#3f3f46">${escapeXml(formatNumber(t))}</text>`);
  }
  for (const t of niceTicks(g.xmin, g.xmax, 5)) {
    const x = r2(g.sx(t));
    if (x < g.left - 0.5 || x > rightX + 0.5) continue;
    parts.push(`<line x1="${x}" y1="${bottomY}" x2="${x}" y2="${bottomY + 4}" stroke="#52525b"/>`);
    parts.push(`<text x="${x}" y="${bottomY + 15}" text-anchor="middle" font-size="10" fill="#3f3f46">${escapeXml(formatNumber(t))}</text>`);
  }
  // Axes.
  parts.push(`<line x1="${g.left}" y1="${bottomY}" x2="${rightX}" y2="${bottomY}" stroke="#52525b"/>`);
  parts.push(`<line x1="${g.left}" y1="${g.top}" x2="${g.left}" y2="${bottomY}" stroke="#52525b"/>`);
  parts.push(`<text x="${r2(g.left + g.plotW / 2)}" y="${height - 3}" text-anchor="middle" font-size="10" fill="#71717a">step</text>`);
  // Title with min / max / last.
  const last = [...ys].reverse().find((v): v is number => typeof v === 'number' && Number.isFinite(v));
  const stats = g.dataMin === null ? 'no finite values'
    : `min ${formatNumber(g.dataMin)} · max ${formatNumber(g.dataMax as number)} · last ${formatNumber(last as number)}`;
  // Title on the first line, stats right-aligned on the second, so a long name never runs into them.
  parts.push(`<text x="6" y="11" font-size="12" font-weight="600" fill="#18181b">${escapeXml(title)}</text>`);
  parts.push(`<text x="${rightX}" y="22" text-anchor="end" font-size="10" fill="#52525b">${escapeXml(stats)}</text>`);
  if (g.path) parts.push(`<path d="${g.path}" fill="none" stroke="${escapeXml(color)}" stroke-width="1.5" stroke-linejoin="round"/>`);
  for (const [x, y] of g.dots) parts.push(`<circle cx="${x}" cy="${y}" r="2.5" fill="${escapeXml(color)}"/>`);
  parts.push('</svg>');
  return parts.join('');
}
