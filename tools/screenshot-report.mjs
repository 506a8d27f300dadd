#!/usr/bin/env node
// Headless check of a run report: opens report.html in Chromium and writes a PNG screenshot.
//
//   node tools/screenshot-report.mjs <report.html> <out.png> [--width 1280] [--height 2400]
//        [--scale 1] [--palette] [--timeout 60]
//
// Chromium is $CHROMIUM when set, else the first of /usr/bin/chromium, chromium-browser, google-chrome.
// --palette re-encodes the screenshot as a palette PNG with sharp (for docs: a few hundred KB).
// The screenshot is only of the window (width × height), not the whole page: pick a height that
// holds what you want to see. Exits non-zero with the reason when Chromium is missing, fails or
// writes no file. Report files need no network: they are self-contained.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

function usage(msg) {
  process.stderr.write(`screenshot-report: ${msg}\nusage: node tools/screenshot-report.mjs <report.html> <out.png> [--width 1280] [--height 2400] [--scale 1] [--palette] [--timeout 60]\n`);
  process.exit(2);
}

function findChromium() {
  if (process.env.CHROMIUM) return existsSync(process.env.CHROMIUM) ? process.env.CHROMIUM : null;
  const candidates = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter(Boolean);
  return candidates.find((c) => existsSync(c)) ?? null;
}

function parseArgs(argv) {
  const pos = [];
  const opts = { width: 1280, height: 2400, scale: 1, palette: false, timeout: 60 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--palette') opts.palette = true;
    else if (['--width', '--height', '--scale', '--timeout'].includes(a)) {
      const v = Number(argv[++i]);
      if (!(v > 0)) usage(`${a} needs a positive number, got ${JSON.stringify(argv[i])}`);
      opts[a.slice(2)] = v;
    } else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 2) usage(`expected <report.html> <out.png>, got ${pos.length} path(s)`);
  return { report: resolve(pos[0]), out: resolve(pos[1]), ...opts };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (!existsSync(a.report)) usage(`no such report: ${a.report}`);
  const chromium = findChromium();
  if (!chromium) {
    process.stderr.write(process.env.CHROMIUM ? `screenshot-report: CHROMIUM=${process.env.CHROMIUM} does not exist; point it at a Chrome/Chromium binary\n`
      : 'screenshot-report: no Chromium found (tried /usr/bin/chromium, /usr/bin/chromium-browser, /usr/bin/google-chrome); install it (Debian: apt-get install chromium) or set CHROMIUM=/path/to/chrome\n');
    process.exit(3);
  }
  // A throwaway profile: no state from (or into) anyone's browser.
  const profile = mkdtempSync(join(tmpdir(), 'fovea-shot-'));
  const shot = join(profile, 'shot.png');
  try {
    rmSync(a.out, { force: true });
    const args = [
      '--headless=new', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run', '--disable-extensions',
      `--user-data-dir=${profile}`, `--window-size=${Math.round(a.width)},${Math.round(a.height)}`,
      `--force-device-scale-factor=${a.scale}`, `--screenshot=${shot}`, pathToFileURL(a.report).href,
    ];
    const r = spawnSync(chromium, args, { encoding: 'utf8', timeout: a.timeout * 1000 });
    if (r.error || r.status !== 0 || !existsSync(shot) || statSync(shot).size === 0) {
      process.stderr.write(`screenshot-report: ${chromium} failed (${r.error ? r.error.message : `exit ${r.status}`}) and wrote ${existsSync(shot) ? statSync(shot).size + ' bytes' : 'no file'}\n${(r.stderr ?? '').slice(-2000)}\n`);
      process.exit(4);
    }
    if (a.palette) {
      const { default: sharp } = await import('sharp');
      writeFileSync(a.out, await sharp(readFileSync(shot)).png({ palette: true, colours: 128, compressionLevel: 9, effort: 10 }).toBuffer());
    } else writeFileSync(a.out, readFileSync(shot));
    process.stdout.write(`${a.out} (${statSync(a.out).size} bytes)\n`);
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

await main();
