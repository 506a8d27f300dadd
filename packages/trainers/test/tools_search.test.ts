// The search tool: <search> parsing, BM25 against hand-computed scores, the JSONL corpus
// backend, result formatting, plugin backends and failure turns.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Bm25Index, bm25Tokenize } from '../src/tools/bm25.js';
import {
  LocalBm25Backend, formatSearchResults, parseSearch, searchTool, type SearchBackend,
} from '../src/tools/search.js';

const CORPUS = join(dirname(fileURLToPath(import.meta.url)), 'fixtures/tools/corpus.jsonl');
const DOCS = [
  { id: 'd0', text: 'the cat sat' },
  { id: 'd1', text: 'the dog sat on the mat' },
  { id: 'd2', text: 'cat cat cat' },
  { id: 'd3', text: 'a bird' },
];

describe('bm25Tokenize', () => {
  it('lowercases, splits on Unicode words, applies NFKC', () => {
    expect(bm25Tokenize("Hello, WORLD! GPT-4o's café")).toEqual(['hello', 'world', 'gpt', '4o', 's', 'café']);
    expect(bm25Tokenize('ﬁne Ｔｏｋｙｏ 東京 naïve')).toEqual(['fine', 'tokyo', '東京', 'naïve']);
    expect(bm25Tokenize('  ...  ')).toEqual([]);
  });
});

describe('BM25 (k1 1.2, b 0.75, Lucene idf)', () => {
  // By hand: N = 4, |d| = 3, 6, 3, 2, avgdl = 14/4 = 3.5.
  // idf(cat) = ln(1 + (4 − 2 + 0.5)/(2 + 0.5)) = ln 2; idf(mat) = ln(1 + 3.5/1.5) = ln(10/3).
  // K(d) = 1.2·(0.25 + 0.75·|d|/3.5): K(3) = 1.2·(0.25 + 2.25/3.5), K(6) = 1.2·(0.25 + 4.5/3.5).
  const K3 = 1.2 * (0.25 + 2.25 / 3.5), K6 = 1.2 * (0.25 + 4.5 / 3.5);
  const s = {
    d0: (Math.LN2 * 1 * 2.2) / (1 + K3),
    d1: (Math.log(10 / 3) * 1 * 2.2) / (1 + K6),
    d2: (Math.LN2 * 3 * 2.2) / (3 + K3),
  };

  it('scores and ranks a 4-document corpus as computed by hand', () => {
    const idx = new Bm25Index(DOCS);
    expect(idx.avgdl).toBe(3.5);
    expect(idx.idf('cat')).toBeCloseTo(Math.LN2, 14);
    expect(idx.idf('zebra')).toBeCloseTo(Math.log(1 + 4.5 / 0.5), 14);
    const hits = idx.search('Cat MAT', 10);
    expect(hits.map((h) => h.index)).toEqual([2, 1, 0]); // d3 shares no term: not returned
    expect(hits[0].score).toBeCloseTo(s.d2, 12);
    expect(hits[1].score).toBeCloseTo(s.d1, 12);
    expect(hits[2].score).toBeCloseTo(s.d0, 12);
    expect(idx.search('cat mat', 2).map((h) => h.index)).toEqual([2, 1]);
    // A repeated query term counts once; no shared term → nothing.
    expect(idx.search('cat cat', 5)).toEqual(idx.search('cat', 5));
    expect(idx.search('zebra', 5)).toEqual([]);
    expect(idx.search('', 5)).toEqual([]);
  });

  it('ties keep corpus order; titles are indexed; parameters are checked', () => {
    const idx = new Bm25Index([{ id: 'a', text: 'x y' }, { id: 'b', text: 'x y' }, { id: 'c', title: 'Zebra', text: 'y x' }]);
    expect(idx.search('x', 3).map((h) => h.index)).toEqual([0, 1, 2]); // a and b tie (corpus order), c is longer
    expect(idx.search('zebra', 3).map((h) => h.index)).toEqual([2]);
    expect(() => new Bm25Index(DOCS, { b: 2 })).toThrow(/b must be in \[0, 1\], got 2/);
    expect(() => new Bm25Index(DOCS, { k1: -1 })).toThrow(/k1 must be a finite number >= 0/);
    expect(() => idx.search('x', 0)).toThrow(/k must be a positive integer, got 0/);
  });
});

describe('parseSearch', () => {
  it('reads the last <search>…</search>, trimmed and collapsed', () => {
    expect(parseSearch('<reason>need facts</reason><search>  capital of\n  France </search>')).toEqual({ query: 'capital of France' });
    expect(parseSearch('<search>first</search> then <search>second</search>')).toEqual({ query: 'second' });
    expect(parseSearch('<text_search>q</text_search>', { tag: 'text_search' })).toEqual({ query: 'q' });
  });

  it('explains what is wrong', () => {
    expect(parseSearch('no call here')).toEqual({ error: 'no search call: expected <search>query</search>' });
    expect(parseSearch('query</search>')).toEqual({ error: 'search call has </search> without a matching <search>' });
    expect(parseSearch('<search>  \n </search>')).toEqual({ error: 'search query is empty' });
    expect(parseSearch(`<search>${'a'.repeat(20)}</search>`, { maxQueryChars: 10 })).toEqual({ error: 'search query of 20 characters is longer than the limit of 10' });
    expect(parseSearch(42 as unknown as string)).toEqual({ error: "parseSearch: expected the model's text as a string, got number" });
  });

  it('handles hostile text (a quadratic scan would trip the timeout)', () => {
    const r = parseSearch('<search>'.repeat(1 << 17) + '</search>'.repeat(1 << 17));
    expect(r).toEqual({ error: 'search query is empty' });
  }, 60_000);
});

describe('LocalBm25Backend', () => {
  it('loads a JSONL corpus and ranks it', async () => {
    const be = await LocalBm25Backend.fromJsonl(CORPUS);
    const r = await be.search('cat mat', 5);
    expect(r.map((x) => x.id)).toEqual(['d2', 'd1', 'd0']);
    expect(r[0]).toEqual({ id: 'd2', text: 'cat cat cat', score: expect.closeTo((Math.LN2 * 6.6) / (3 + 1.2 * (0.25 + 2.25 / 3.5)), 12) });
  });

  it('reports bad lines with file and line, or skips them when asked', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fovea-search-'));
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"id": "a", "text": "ok"}\n\n{"id": 7, "text": "numeric id"}\n{"id": "b", "text": 3}\nnot json\n{"id": "a", "text": "dup"}\n');
    await expect(LocalBm25Backend.fromJsonl(bad)).rejects.toThrow(new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4: text must be a string, got number`));
    const be = await LocalBm25Backend.fromJsonl(bad, { skipBadLines: true });
    expect(be.docs.map((d) => d.id)).toEqual(['a', '7']);
    expect(be.skipped).toEqual([
      `${bad}:4: text must be a string, got number`,
      expect.stringMatching(new RegExp(`:5: not valid JSON`)),
      `${bad}:6: duplicate id 'a'`,
    ]);
    await expect(LocalBm25Backend.fromJsonl(join(dir, 'missing.jsonl'))).rejects.toThrow(/fromJsonl: cannot read .*missing.jsonl/);
    expect(() => new LocalBm25Backend([{ id: 'x', text: 'a' }, { id: 'x', text: 'b' }])).toThrow(/docs\[1\]: duplicate id 'x'/);
    expect(() => new LocalBm25Backend([{ id: '', text: 'a' }])).toThrow(/docs\[0\]: id must be a non-empty string/);
  });
});

describe('formatting and the tool', () => {
  it('formats results with the default and a custom template', () => {
    const results = [{ id: 'p1', title: 'Paris', text: 'Capital of France.', score: 2 }, { id: 'p2', text: 'x'.repeat(5), score: 1 }];
    expect(formatSearchResults('q', results)).toBe('<information>\n[1] Paris\nCapital of France.\n\n[2] xxxxx\n</information>');
    expect(formatSearchResults('q', results, { wrapper: '{count} for {query}: {results}', item: '{id}={score}', itemNoTitle: '{id}:{text}', separator: '; ', maxTextChars: 3 }))
      .toBe('2 for q: p1=2.0000; p2:xxx…');
    expect(formatSearchResults('q', [])).toBe('<information>\nNo results found.\n</information>');
    // Values are not re-scanned for placeholders.
    expect(formatSearchResults('{results}', [], { wrapper: '{query}' })).toBe('{results}');
    expect(() => formatSearchResults('q', [], { item: '{url}' })).toThrow(/unknown placeholder \{url\}.*allowed: \{rank\}, \{id\}/);
  });

  it('runs a call end to end over the local backend', async () => {
    const tool = searchTool({ backend: new LocalBm25Backend(DOCS), topK: 2 });
    expect(tool.name).toBe('search');
    expect(tool.trigger('<search>cat</search>\n')).toBe(true);
    expect(tool.trigger('<search>cat')).toBe(false);
    const out = await tool.run('<reason>look it up</reason><search>cat mat</search>');
    expect(out).toEqual({
      ok: true, images: [],
      text: '<information>\n[1] cat cat cat\n\n[2] the dog sat on the mat\n</information>',
      report: { ok: true, query: 'cat mat', resultIds: ['d2', 'd1'] },
    });
    const none = await tool.run('<search></search>');
    expect(none).toMatchObject({ ok: false, text: '<information>\nThe search could not run: search query is empty.\n</information>', report: { reason: 'search query is empty' } });
  });

  it('takes plugin backends; their failures become an ok = false turn', async () => {
    const calls: [string, number][] = [];
    const web: SearchBackend = { async search(q, k) { calls.push([q, k]); return [{ id: 'u', title: 'T', text: 'body', score: 1 }]; } };
    expect((await searchTool({ backend: web }).run('<search>x</search>')).report.resultIds).toEqual(['u']);
    expect(calls).toEqual([['x', 5]]);
    const down: SearchBackend = { async search() { throw new Error('HTTP 503'); } };
    expect((await searchTool({ backend: down }).run('<search>x</search>')).report).toEqual({
      ok: false, query: 'x', reason: 'search backend failed: HTTP 503', resultIds: [],
    });
    const junk = { async search() { return [{ id: 1 }]; } } as unknown as SearchBackend;
    expect((await searchTool({ backend: junk }).run('<search>x</search>')).report.reason).toMatch(/malformed result at position 0/);
    expect(() => searchTool({} as never)).toThrow(/backend must implement search\(query, k\)/);
    expect(() => searchTool({ backend: web, topK: 0 })).toThrow(/topK must be a positive integer, got 0/);
    expect(() => searchTool({ backend: web, tag: '<x>' })).toThrow(/tag must be a plain tag name/);
  });
});
