// Bookkeeping of the paged KV cache (pure TypeScript, no tensors): a pool of numBlocks
// fixed-size blocks with reference counts and a free list, and one block table per sequence.
// Invariants: a block is on the free list iff its refcount is 0; refcount[b] = the number
// of sequences whose table holds b; a sequence's table holds ceil(length / blockSize) blocks;
// only the last block of a table may be partly filled. Sequence ids only grow, so a freed id
// is never handed out again (using it is always an error, never a silent alias).

export interface SequenceState { blocks: number[]; length: number }

export class BlockPool {
  readonly refcount: Int32Array;
  private readonly free: number[] = [];
  private readonly seqs = new Map<number, SequenceState>();
  private nextSeq = 0;

  constructor(readonly numBlocks: number, readonly blockSize: number, private readonly op: string) {
    this.refcount = new Int32Array(numBlocks);
    this.clear();
  }

  get freeBlocks(): number { return this.free.length; }

  /** Drops every sequence; all blocks become free (ids keep growing). */
  clear(): void {
    this.seqs.clear();
    this.refcount.fill(0);
    this.free.length = 0;
    // Popped from the end: blocks are handed out 0, 1, 2, ... on a fresh pool.
    for (let b = this.numBlocks - 1; b >= 0; b--) this.free.push(b);
  }

  create(): number {
    const id = this.nextSeq++;
    this.seqs.set(id, { blocks: [], length: 0 });
    return id;
  }

  get(seq: unknown, what = 'sequence'): SequenceState {
    if (typeof seq !== 'number' || !Number.isInteger(seq)) {
      throw new Error(`${this.op}: ${what} id must be an integer, got ${String(seq)}`);
    }
    const s = this.seqs.get(seq);
    if (!s) {
      const why = seq >= 0 && seq < this.nextSeq ? 'was freed (or the cache was reset)' : 'does not exist';
      throw new Error(`${this.op}: ${what} ${seq} ${why}`);
    }
    return s;
  }

  fork(seq: number, n: number): number[] {
    const parent = this.get(seq, 'fork: sequence');
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
      throw new Error(`${this.op}: fork needs n >= 1 children, got ${String(n)}`);
    }
    const kids: number[] = [];
    for (let i = 0; i < n; i++) {
      const id = this.nextSeq++;
      this.seqs.set(id, { blocks: parent.blocks.slice(), length: parent.length });
      kids.push(id);
    }
    for (const b of parent.blocks) this.refcount[b] += n;
    return kids;
  }

  release(seq: number): void {
    const s = this.get(seq, 'free: sequence');
    for (const b of s.blocks) this.unref(b);
    this.seqs.delete(seq);
  }

  alloc(): number {
    const b = this.free.pop();
    if (b === undefined) throw new Error(`${this.op}: internal error: allocating from an empty pool`);
    this.refcount[b] = 1;
    return b;
  }

  unref(b: number): void {
    if (--this.refcount[b] === 0) this.free.push(b);
  }
}
