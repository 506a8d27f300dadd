// Tests of the data layer (src/data): the validating JSONL reader on good rows and every kind of
// bad row (file:line in each report), path-escape attempts (.., absolute, a symlink pointing
// outside), deterministic shuffling and resume positions, and the MGPO importer's variants.
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DataIterator, type BadRow, emptyStats, epochPermutation, formatBadRow, loadDataset, readRows,
} from '../src/data/dataset.js';
import { convertMgpoRow, importMgpoFile, normalizeGroundTruth, readMgpoRows } from '../src/data/mgpoImport.js';

const FIX = resolve(__dirname, 'fixtures', 'data');
const tmpRoots: string[] = [];
function tmp(): string { const d = mkdtempSync(join(tmpdir(), 'fovea-data-')); tmpRoots.push(d); return d; }
afterAll(() => { for (const d of tmpRoots) rmSync(d, { recursive: true, force: true }); });

describe('readRows', () => {
  it('yields validated good rows with resolved image paths', async () => {
    const { rows, stats } = await loadDataset(join(FIX, 'good.jsonl'));
    expect(rows.map((r) => r.id)).toEqual(['q1', '2', 'q3']);
    expect(rows[0].images).toEqual([join(FIX, 'images', 'red.png')]);
    expect(rows[0].choices).toEqual(['red', 'blue']);
    expect(rows[0].dataSource).toBe('toy');
    expect(rows[1].bbox).toEqual({ box: [0, 0, 4, 4], image: 1 });
    expect(rows[1].images.length).toBe(2);
    expect(rows[2].answer).toBe('1');                           // numbers are stringified
    expect(rows[2].images).toEqual([join(FIX, 'images', 'blue.png')]);  // a .. that stays inside is fine
    expect(rows[2].extra).toEqual({ difficulty: 'easy' });
    expect(rows[2].source).toEqual({ file: join(FIX, 'good.jsonl'), line: 4 });  // line 3 is blank
    expect(stats.rows).toBe(3);
    expect(stats.skippedTotal).toBe(0);
  });

  it('reports every kind of bad row with file:line and skips it, never throwing', async () => {
    const seen: BadRow[] = [];
    const stats = emptyStats();
    const ids: string[] = [];
    for await (const r of readRows(join(FIX, 'bad.jsonl'), { stats, onBadRow: (b) => seen.push(b) })) ids.push(r.id);
    expect(ids).toEqual(['ok1', 'ok2']);
    const byLine = Object.fromEntries(seen.map((b) => [b.line, b.reason]));
    expect(byLine).toEqual({
      2: 'invalid_json', 3: 'invalid_field', 4: 'invalid_field', 5: 'missing_image', 6: 'path_escape',
      7: 'path_escape', 8: 'invalid_field', 9: 'invalid_field', 10: 'invalid_field', 11: 'invalid_field', 12: 'missing_image',
    });
    expect(stats.skipped).toEqual({ invalid_json: 1, invalid_field: 6, missing_image: 2, path_escape: 2 });
    expect(stats.skippedTotal).toBe(11);
    expect(stats.lines).toBe(13);
    expect(stats.reported).toEqual(seen);
    for (const b of seen) expect(b.file).toBe(join(FIX, 'bad.jsonl'));
    const msg = (line: number) => formatBadRow(seen.find((b) => b.line === line)!);
    expect(msg(3)).toMatch(/bad\.jsonl:3: invalid_field: "id" must be .* got nothing \(missing\)/);
    expect(msg(4)).toMatch(/"question" must be a string, got number/);
    expect(msg(5)).toMatch(/bad\.jsonl:5: missing_image: image "images\/missing\.png" not found/);
    expect(msg(7)).toMatch(/absolute/);
    expect(msg(8)).toMatch(/bbox\.image/);
    expect(msg(12)).toMatch(/not a regular file/);
  });

  it('caps the collected reports but still counts everything', async () => {
    const { stats } = await loadDataset(join(FIX, 'bad.jsonl'), { maxReported: 3 });
    expect(stats.reported.length).toBe(3);
    expect(stats.skippedTotal).toBe(11);
  });

  it('throws a clear error only for an unreadable dataset file', async () => {
    await expect(loadDataset(join(FIX, 'nope.jsonl'))).rejects.toThrow(/cannot open dataset .*nope\.jsonl: ENOENT/);
    await expect(loadDataset(FIX)).rejects.toThrow(/is not a file/);
  });

  it('blocks path escapes: .., absolute, and a symlink pointing outside (unless allowOutside)', async () => {
    const root = tmp();
    const ds = join(root, 'ds'), outside = join(root, 'outside');
    mkdirSync(ds); mkdirSync(outside); mkdirSync(join(ds, 'img'));
    copyFileSync(join(FIX, 'images', 'red.png'), join(outside, 'secret.png'));
    copyFileSync(join(FIX, 'images', 'red.png'), join(ds, 'img', 'in.png'));
    symlinkSync(join(outside, 'secret.png'), join(ds, 'img', 'link_out.png'));    // file symlink out
    symlinkSync(outside, join(ds, 'dirlink'));                                     // dir symlink out
    symlinkSync(join(ds, 'img', 'in.png'), join(ds, 'img', 'link_in.png'));      // symlink that stays inside
    const row = (id: string, p: string) => JSON.stringify({ id, images: [p], question: 'q', answer: 'A' });
    writeFileSync(join(ds, 'rows.jsonl'), [
      row('dotdot', '../outside/secret.png'),
      row('deep', 'img/../../outside/secret.png'),
      row('abs', join(outside, 'secret.png')),
      row('link', 'img/link_out.png'),
      row('dirlink', 'dirlink/secret.png'),
      row('linkin', 'img/link_in.png'),
      row('plain', 'img/in.png'),
    ].join('\n') + '\n');
    const strict = await loadDataset(join(ds, 'rows.jsonl'));
    expect(strict.rows.map((r) => r.id)).toEqual(['linkin', 'plain']);
    expect(strict.stats.skipped.path_escape).toBe(5);
    expect(strict.stats.reported.map((b) => b.line)).toEqual([1, 2, 3, 4, 5]);
    expect(formatBadRow(strict.stats.reported[3])).toMatch(/rows\.jsonl:4: path_escape: .*symlink/);
    const loose = await loadDataset(join(ds, 'rows.jsonl'), { allowOutside: true });
    expect(loose.rows.map((r) => r.id)).toEqual(['dotdot', 'deep', 'abs', 'link', 'dirlink', 'linkin', 'plain']);
    expect(loose.rows[2].images[0]).toBe(join(outside, 'secret.png'));
  });

  it('handles a BOM, CRLF line ends and a last line without newline', async () => {
    const d = tmp();
    copyFileSync(join(FIX, 'images', 'red.png'), join(d, 'a.png'));
    const row = (id: string) => JSON.stringify({ id, images: ['a.png'], question: 'q', answer: 'A' });
    writeFileSync(join(d, 'rows.jsonl'), '\uFEFF' + row('1') + '\r\n\r\n' + row('2') + '\r\n' + row('3'));
    const { rows, stats } = await loadDataset(join(d, 'rows.jsonl'));
    expect(rows.map((r) => [r.id, r.source.line])).toEqual([['1', 1], ['2', 3], ['3', 4]]);
    expect(stats.skippedTotal).toBe(0);
  });

  it('checkImages: false skips the existence check but not the escape check', async () => {
    const { rows, stats } = await loadDataset(join(FIX, 'bad.jsonl'), { checkImages: false });
    expect(rows.map((r) => r.id)).toEqual(['ok1', 'b4', 'b11', 'ok2']);
    expect(stats.skipped.path_escape).toBe(2);
  });
});

describe('shuffling and resume', () => {
  const rows = Array.from({ length: 10 }, (_, i) => i);

  it('epochPermutation is a deterministic permutation that depends on seed and epoch', () => {
    const a = epochPermutation(10, 42, 0);
    expect([...a].sort((x, y) => x - y)).toEqual(rows);
    expect([...epochPermutation(10, 42, 0)]).toEqual([...a]);
    expect([...epochPermutation(10, 42, 1)]).not.toEqual([...a]);
    expect([...epochPermutation(10, 43, 0)]).not.toEqual([...a]);
    // seeds above 2^32 are not truncated
    expect([...epochPermutation(10, 2 ** 32 + 42, 0)]).not.toEqual([...a]);
    expect(epochPermutation(0, 1, 0).length).toBe(0);
    expect(() => epochPermutation(10, -1, 0)).toThrow(/seed/);
    expect(() => epochPermutation(10, 1.5, 0)).toThrow(/seed/);
  });

  it('is close to uniform (each row lands in each slot about equally often)', () => {
    const n = 5, trials = 5000;
    const counts = Array.from({ length: n }, () => new Array(n).fill(0));
    for (let e = 0; e < trials; e++) { const p = epochPermutation(n, 7, e); for (let i = 0; i < n; i++) counts[i][p[i]]++; }
    for (const r of counts) for (const c of r) expect(Math.abs(c - trials / n)).toBeLessThan(0.1 * trials / n);
  });

  it('iterates epochs in order, every row once per epoch', () => {
    const it1 = new DataIterator(rows, { seed: 3 });
    const e0 = it1.take(10), e1 = it1.take(10);
    expect([...e0].sort((x, y) => x - y)).toEqual(rows);
    expect([...e1].sort((x, y) => x - y)).toEqual(rows);
    expect(e0).toEqual([...epochPermutation(10, 3, 0)]);
    expect(e1).toEqual([...epochPermutation(10, 3, 1)]);
    expect(new DataIterator(rows, { shuffle: false }).take(12)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
  });

  it('resumes from a checkpointed position exactly where an uninterrupted run continues', () => {
    const full = new DataIterator(rows, { seed: 11 }).take(37);
    const a = new DataIterator(rows, { seed: 11 });
    const first = a.take(13);
    const state = JSON.parse(JSON.stringify(a.toJSON()));
    expect(state).toEqual({ seed: 11, shuffle: true, size: 10, epoch: 1, index: 3 });
    const b = DataIterator.fromJSON(rows, state);
    expect([...first, ...b.take(24)]).toEqual(full);
    // position at an epoch boundary (index == size) rolls over on the next draw
    const c = new DataIterator(rows, { seed: 11, position: { epoch: 0, index: 10 } });
    expect(c.next()).toMatchObject({ epoch: 1, index: 0, row: full[10] });
  });

  it('refuses a checkpoint taken over a different dataset, and bad positions', () => {
    const a = new DataIterator(rows, { seed: 1 });
    expect(() => DataIterator.fromJSON(rows.slice(0, 9), a.toJSON())).toThrow(/10 valid rows but the dataset now has 9/);
    expect(() => a.seek({ epoch: 0, index: 11 })).toThrow(/index <= 10/);
    expect(() => new DataIterator([], {})).toThrow(/no valid rows/);
  });
});

describe('MGPO importer', () => {
  it('normalizes ground truths', () => {
    expect(normalizeGroundTruth('<answer> (A) </answer>')).toBe('A');
    expect(normalizeGroundTruth('\\boxed{B}')).toBe('B');
    expect(normalizeGroundTruth('C.')).toBe('C');
    expect(normalizeGroundTruth(' 3.5 ')).toBe('3.5');
    expect(normalizeGroundTruth('<answer>red car</answer>')).toBe('red car');
  });

  it('converts the common variants and reports bad rows with file:line', async () => {
    const stats = emptyStats();
    const rows = [];
    for await (const r of readMgpoRows(join(FIX, 'mgpo.jsonl'), { stats })) rows.push(r);
    expect(rows.map((r) => r.id)).toEqual(['mme-1', '7', 'mgpo.jsonl:3']);
    expect(rows[0]).toMatchObject({
      question: 'What is the color of the car?\n(A) red (B) blue', answer: 'A', choices: ['red', 'blue'],
      dataSource: 'mme_realworld', images: [join(FIX, 'images', 'red.png')],
    });
    expect(rows[1]).toMatchObject({ question: 'Which one is blue?', answer: 'B', choices: ['first', 'second'], images: [join(FIX, 'images', 'blue.png')] });
    expect(rows[2]).toMatchObject({ question: 'Compare.', answer: '3', bbox: { box: [0, 0, 2, 2], image: 0 } });
    expect(stats.reported.map((b) => [b.line, b.reason])).toEqual([[4, 'invalid_field'], [5, 'invalid_field'], [6, 'invalid_json']]);
    expect(stats.reported[0].message).toMatch(/2 <image> placeholder\(s\) but the row lists 1 image/);
    expect(stats.reported[1].message).toMatch(/no ground truth/);
    expect(stats.lines).toBe(6);
  });

  it('rejects rows without a question or with malformed images', () => {
    expect(convertMgpoRow({ image_path: 'a.png', answer: 'A' }, 'x')).toMatchObject({ ok: false, message: expect.stringMatching(/no question/) });
    expect(convertMgpoRow({ prompt: 'q', images: [{ bytes: 'xx' }], answer: 'A' }, 'x')).toMatchObject({ ok: false, message: expect.stringMatching(/"images" must be/) });
    expect(convertMgpoRow({ prompt: 'q', answer: 'A' }, 'x')).toMatchObject({ ok: false, message: expect.stringMatching(/no image field/) });
    expect(convertMgpoRow('str', 'x')).toMatchObject({ ok: false, reason: 'invalid_field' });
  });

  it('importMgpoFile writes Fovea JSONL that readRows accepts, paths relative to the output', async () => {
    const out = join(tmp(), 'sub', 'train.jsonl');
    mkdirSync(join(out, '..'));
    const st = await importMgpoFile(join(FIX, 'mgpo.jsonl'), out);
    expect(st.rows).toBe(3);
    expect(st.skippedTotal).toBe(3);
    expect(st.outsideImages).toBe(3);   // the images stay in the fixture folder
    const written = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(written[0].images[0]).toMatch(/^\.\.\/.*images\/red\.png$/);
    const strict = await loadDataset(out);
    expect(strict.stats.skipped.path_escape).toBe(3);
    const loose = await loadDataset(out, { allowOutside: true });
    expect(loose.rows.map((r) => r.images[0])).toEqual([join(FIX, 'images', 'red.png'), join(FIX, 'images', 'blue.png'), join(FIX, 'images', 'red.png')]);
    expect(loose.rows[1].choices).toEqual(['first', 'second']);
  });

  it('reads a JSON-array file too', async () => {
    const d = tmp();
    copyFileSync(join(FIX, 'images', 'red.png'), join(d, 'a.png'));
    writeFileSync(join(d, 'rows.json'), JSON.stringify([{ prompt: '<image>Q?', image_path: 'a.png', answer: 'A' }, { prompt: 'x' }]));
    const stats = emptyStats();
    const rows = [];
    for await (const r of readMgpoRows(join(d, 'rows.json'), { stats })) rows.push(r);
    expect(rows.map((r) => r.question)).toEqual(['Q?']);
    expect(stats.reported.map((b) => b.line)).toEqual([2]);
  });
});
