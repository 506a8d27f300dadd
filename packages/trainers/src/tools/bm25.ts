// BM25 ranking over an in-memory corpus: the local backend of the search tool, so search
// rollouts run offline and deterministically (network backends are plugins, never required).
//
// Scoring (Robertson/Spärck Jones BM25 with Lucene's non-negative idf):
//   idf(t)      = ln(1 + (N − n_t + 0.5) / (n_t + 0.5))
//   score(d, q) = Σ_{t ∈ unique(q)} idf(t) · tf(t,d)·(k1 + 1) / (tf(t,d) + k1·(1 − b + b·|d|/avgdl))
// N documents, n_t of them contain t, |d| = tokens of d (title + text), avgdl = mean |d|.
// A term repeated in the query counts once. Only documents sharing a term with the query are
// returned; ties keep corpus order. Tokenizer: NFKC, lowercase, maximal runs of Unicode
// letters, marks and digits (so "GPT-4o's" → gpt, 4o, s); no stemming, no stop words.

export interface Bm25Doc {
  id: string;
  title?: string;
  text: string;
}

export interface Bm25Hit {
  /** Index of the document in the corpus. */
  index: number;
  score: number;
}

export interface Bm25Options {
  k1?: number;
  b?: number;
}

const WORD = /[\p{L}\p{M}\p{N}]+/gu;

export function bm25Tokenize(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(WORD) ?? [];
}

export class Bm25Index {
  readonly k1: number;
  readonly b: number;
  readonly size: number;
  readonly avgdl: number;
  private readonly docLen: Float64Array;
  /** term → parallel lists of document indices (ascending) and term frequencies. */
  private readonly postings = new Map<string, { docs: number[]; tfs: number[] }>();

  constructor(docs: readonly Bm25Doc[], opts: Bm25Options = {}) {
    this.k1 = opts.k1 ?? 1.2;
    this.b = opts.b ?? 0.75;
    if (!(Number.isFinite(this.k1) && this.k1 >= 0)) throw new Error(`Bm25Index: k1 must be a finite number >= 0, got ${opts.k1}`);
    if (!(this.b >= 0 && this.b <= 1)) throw new Error(`Bm25Index: b must be in [0, 1], got ${opts.b}`);
    this.size = docs.length;
    this.docLen = new Float64Array(docs.length);
    let total = 0;
    docs.forEach((d, i) => {
      const tokens = bm25Tokenize(d.title ? `${d.title}\n${d.text}` : d.text);
      this.docLen[i] = tokens.length;
      total += tokens.length;
      const tf = new Map<string, number>();
      for (const t of tokens) tf.set(t, (tf.get(t) ?? 0) + 1);
      for (const [t, n] of tf) {
        let p = this.postings.get(t);
        if (!p) this.postings.set(t, (p = { docs: [], tfs: [] }));
        p.docs.push(i);
        p.tfs.push(n);
      }
    });
    this.avgdl = docs.length ? total / docs.length : 0;
  }

  idf(term: string): number {
    const n = this.postings.get(term)?.docs.length ?? 0;
    return Math.log(1 + (this.size - n + 0.5) / (n + 0.5));
  }

  /** The top k documents for `query`, best first. */
  search(query: string, k: number): Bm25Hit[] {
    if (!Number.isInteger(k) || k < 1) throw new Error(`Bm25Index.search: k must be a positive integer, got ${k}`);
    const scores = new Float64Array(this.size);
    const touched: number[] = [];
    const norm = (i: number) => this.k1 * (1 - this.b + (this.avgdl > 0 ? (this.b * this.docLen[i]) / this.avgdl : 0));
    for (const term of new Set(bm25Tokenize(query))) {
      const p = this.postings.get(term);
      if (!p) continue;
      const idf = this.idf(term);
      for (let j = 0; j < p.docs.length; j++) {
        const i = p.docs[j], tf = p.tfs[j];
        if (scores[i] === 0) touched.push(i);
        scores[i] += (idf * tf * (this.k1 + 1)) / (tf + norm(i));
      }
    }
    touched.sort((a, b) => scores[b] - scores[a] || a - b);
    return touched.slice(0, k).map((index) => ({ index, score: scores[index] }));
  }
}
