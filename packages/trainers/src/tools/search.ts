// The search tool (MMSearch-R1 style): the model writes <search>query</search>, generation
// stops at the closing tag, the backend answers, and the top results come back as the next
// user turn, by default inside <information>…</information>. Backends implement
// SearchBackend; the local one ranks a JSONL corpus with BM25 (bm25.ts), so nothing here
// needs a network. A web backend is a plugin: any object with search(query, k).
import { readFile } from 'node:fs/promises';
import { Bm25Index, type Bm25Doc, type Bm25Options } from './bm25.js';
import { type Tool, type ToolOutput, checkTemplate, fillTemplate } from './types.js';

export interface SearchResult {
  id: string;
  title?: string;
  text: string;
  score: number;
}

export interface SearchBackend {
  /** The k best results for `query`, best first (fewer when fewer match). */
  search(query: string, k: number): Promise<SearchResult[]>;
}

export interface ParseSearchOptions {
  /** Tag name of the action: <tag>query</tag>. Default 'search'. */
  tag?: string;
  /** Longest query accepted, in characters. Default 1000. */
  maxQueryChars?: number;
}

/**
 * The query of the last complete <tag>…</tag> in the text (the call a rollout stops at): the
 * last opening tag before the last closing tag, up to its first closing tag; trimmed, with
 * whitespace runs collapsed. Linear time; never throws for model text.
 */
export function parseSearch(text: string, opts: ParseSearchOptions = {}): { query: string } | { error: string } {
  const tag = opts.tag ?? 'search', max = opts.maxQueryChars ?? 1000;
  if (typeof text !== 'string') return { error: `parseSearch: expected the model's text as a string, got ${text === null ? 'null' : typeof text}` };
  const open = `<${tag}>`, close = `</${tag}>`;
  const last = text.lastIndexOf(close);
  if (last < 0) return { error: `no search call: expected ${open}query${close}` };
  const start = text.lastIndexOf(open, last);
  if (start < 0) return { error: `search call has ${close} without a matching ${open}` };
  const end = text.indexOf(close, start); // the call is the last open tag and its first close
  const raw = text.slice(start + open.length, end);
  const query = raw.replace(/\s+/g, ' ').trim();
  if (query.length === 0) return { error: 'search query is empty' };
  if (query.length > max) return { error: `search query of ${query.length} characters is longer than the limit of ${max}` };
  return { query };
}

export interface JsonlCorpusOptions extends Bm25Options {
  /** Skip malformed lines (listed in `skipped`) instead of throwing. Default false. */
  skipBadLines?: boolean;
}

/** A SearchBackend over an in-memory corpus, ranked with BM25. */
export class LocalBm25Backend implements SearchBackend {
  readonly docs: readonly Bm25Doc[];
  readonly index: Bm25Index;
  /** Lines skipped by fromJsonl with skipBadLines: "file:line: why". */
  readonly skipped: string[];

  constructor(docs: readonly Bm25Doc[], opts: Bm25Options = {}, skipped: string[] = []) {
    if (!Array.isArray(docs)) throw new Error('LocalBm25Backend: docs must be an array of {id, title?, text}');
    const seen = new Set<string>();
    docs.forEach((d, i) => {
      const why = docProblem(d);
      if (why) throw new Error(`LocalBm25Backend: docs[${i}]: ${why}`);
      if (seen.has(d.id)) throw new Error(`LocalBm25Backend: docs[${i}]: duplicate id '${d.id}'`);
      seen.add(d.id);
    });
    this.docs = docs;
    this.index = new Bm25Index(docs, opts);
    this.skipped = skipped;
  }

  /** Reads a JSONL corpus: one {"id": string|number, "title"?: string, "text": string} per line. */
  static async fromJsonl(path: string, opts: JsonlCorpusOptions = {}): Promise<LocalBm25Backend> {
    let raw: string;
    try {
      raw = await readFile(path, 'utf8');
    } catch (err) {
      throw new Error(`LocalBm25Backend.fromJsonl: cannot read ${path}: ${(err as Error).message}`);
    }
    const docs: Bm25Doc[] = [], skipped: string[] = [];
    const seen = new Set<string>();
    raw.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      const where = `${path}:${i + 1}`;
      let why: string | null;
      let doc: Bm25Doc | undefined;
      try {
        const v = JSON.parse(line);
        if (v !== null && typeof v === 'object' && typeof v.id === 'number') v.id = String(v.id);
        why = docProblem(v);
        if (!why && seen.has(v.id)) why = `duplicate id '${v.id}'`;
        if (!why) doc = v.title === undefined ? { id: v.id, text: v.text } : { id: v.id, title: v.title, text: v.text };
      } catch (err) {
        why = `not valid JSON (${(err as Error).message})`;
      }
      if (doc) {
        seen.add(doc.id);
        docs.push(doc);
      } else if (opts.skipBadLines) {
        skipped.push(`${where}: ${why}`);
      } else {
        throw new Error(`LocalBm25Backend.fromJsonl: ${where}: ${why}; expected {"id": string, "title"?: string, "text": string} (or pass skipBadLines)`);
      }
    });
    return new LocalBm25Backend(docs, opts, skipped);
  }

  async search(query: string, k: number): Promise<SearchResult[]> {
    if (typeof query !== 'string') throw new Error(`LocalBm25Backend.search: query must be a string, got ${typeof query}`);
    return this.index.search(query, k).map(({ index, score }) => {
      const d = this.docs[index];
      return d.title === undefined ? { id: d.id, text: d.text, score } : { id: d.id, title: d.title, text: d.text, score };
    });
  }
}

function docProblem(d: unknown): string | null {
  if (d === null || typeof d !== 'object' || Array.isArray(d)) return 'a document must be an object {id, title?, text}';
  const o = d as Record<string, unknown>;
  if (typeof o.id !== 'string' || o.id === '') return 'id must be a non-empty string';
  if (typeof o.text !== 'string') return `text must be a string, got ${o.text === null ? 'null' : typeof o.text}`;
  if (o.title !== undefined && typeof o.title !== 'string') return `title must be a string, got ${typeof o.title}`;
  return null;
}

export interface SearchFormat {
  /** The whole turn; placeholders {query}, {results}, {count}. */
  wrapper?: string;
  /** One result; placeholders {rank} (1-based), {id}, {title}, {text}, {score}. */
  item?: string;
  /** One result without a title (same placeholders). */
  itemNoTitle?: string;
  /** Between items. Default '\n\n'. */
  separator?: string;
  /** {results} when nothing matched. */
  empty?: string;
  /** Result text is cut to this many characters (with '…'). Default 1000. */
  maxTextChars?: number;
}

export const DEFAULT_SEARCH_FORMAT: Required<SearchFormat> = {
  wrapper: '<information>\n{results}\n</information>',
  item: '[{rank}] {title}\n{text}',
  itemNoTitle: '[{rank}] {text}',
  separator: '\n\n',
  empty: 'No results found.',
  maxTextChars: 1000,
};

/** Formats results into the text of a tool turn (templates filled in one pass). */
export function formatSearchResults(query: string, results: readonly SearchResult[], format: SearchFormat = {}): string {
  const f = { ...DEFAULT_SEARCH_FORMAT, ...format };
  checkTemplate(f.wrapper, ['query', 'results', 'count'], 'formatSearchResults wrapper');
  checkTemplate(f.item, ['rank', 'id', 'title', 'text', 'score'], 'formatSearchResults item');
  checkTemplate(f.itemNoTitle, ['rank', 'id', 'title', 'text', 'score'], 'formatSearchResults itemNoTitle');
  const cut = (s: string) => (s.length > f.maxTextChars ? `${s.slice(0, f.maxTextChars)}…` : s);
  const items = results.map((r, i) => fillTemplate(r.title ? f.item : f.itemNoTitle, {
    rank: i + 1, id: r.id, title: r.title ?? '', text: cut(r.text), score: Number.isFinite(r.score) ? r.score.toFixed(4) : String(r.score),
  }, 'formatSearchResults item'));
  return fillTemplate(f.wrapper, {
    query, results: items.length ? items.join(f.separator) : f.empty, count: items.length,
  }, 'formatSearchResults wrapper');
}

export interface SearchToolOptions extends ParseSearchOptions {
  backend: SearchBackend;
  /** Results per call. Default 5 (MMSearch-R1). */
  topK?: number;
  format?: SearchFormat;
  /** Turn text when the call cannot be served; placeholder {reason}. */
  errorText?: string;
}

export interface SearchReport {
  ok: boolean;
  query?: string;
  reason?: string;
  resultIds: string[];
}

export const DEFAULT_SEARCH_ERROR_TEXT = '<information>\nThe search could not run: {reason}.\n</information>';

/** Builds the search tool over a backend. Backend failures become an ok = false turn. */
export function searchTool(opts: SearchToolOptions): Tool<void, SearchReport> {
  if (!opts || typeof opts.backend?.search !== 'function') {
    throw new Error('searchTool: options.backend must implement search(query, k) → Promise<SearchResult[]>');
  }
  const tag = opts.tag ?? 'search';
  if (!/^[A-Za-z][\w-]*$/.test(tag)) throw new Error(`searchTool: tag must be a plain tag name like 'search', got ${JSON.stringify(tag)}`);
  const topK = opts.topK ?? 5;
  if (!Number.isInteger(topK) || topK < 1) throw new Error(`searchTool: topK must be a positive integer, got ${topK}`);
  const format = { ...DEFAULT_SEARCH_FORMAT, ...opts.format };
  checkTemplate(format.wrapper, ['query', 'results', 'count'], 'searchTool format.wrapper');
  checkTemplate(format.item, ['rank', 'id', 'title', 'text', 'score'], 'searchTool format.item');
  checkTemplate(format.itemNoTitle, ['rank', 'id', 'title', 'text', 'score'], 'searchTool format.itemNoTitle');
  const errorText = checkTemplate(opts.errorText ?? DEFAULT_SEARCH_ERROR_TEXT, ['reason'], 'searchTool errorText');
  const close = `</${tag}>`;
  const fail = (reason: string, query?: string): ToolOutput<SearchReport> => ({
    ok: false, text: fillTemplate(errorText, { reason }, 'searchTool errorText'), images: [], report: { ok: false, query, reason, resultIds: [] },
  });
  return {
    name: 'search',
    trigger: (text) => text.trimEnd().endsWith(close),
    async run(text) {
      const p = parseSearch(text, opts);
      if ('error' in p) return fail(p.error);
      let results: SearchResult[];
      try {
        results = await opts.backend.search(p.query, topK);
        if (!Array.isArray(results)) throw new Error(`backend returned ${typeof results}, expected an array`);
      } catch (err) {
        return fail(`search backend failed: ${(err as Error).message}`, p.query);
      }
      results = results.slice(0, topK);
      const bad = results.findIndex((r) => r === null || typeof r !== 'object' || typeof r.id !== 'string' || typeof r.text !== 'string' || typeof r.score !== 'number');
      if (bad >= 0) return fail(`search backend returned a malformed result at position ${bad}: expected {id: string, title?, text: string, score: number}`, p.query);
      return {
        ok: true, text: formatSearchResults(p.query, results, format), images: [],
        report: { ok: true, query: p.query, resultIds: results.map((r) => r.id) },
      };
    },
  };
}
