// The paged KV cache (vLLM's PagedAttention idea, own code) for generation: per layer one K
// and one V pool of numBlocks fixed-size blocks, [numBlocks, blockSize, numKvHeads, headDim]
// each (layout: packages/native-cuda/src/ops/paged_attn/NOTES.md). Sequences own block tables
// (blockTable.ts); fork() shares every block by reference count, so a GRPO group of G
// rollouts stores its prompt once; the first append into a shared, partly filled last block
// copies it (copy-on-write, all layers). Storage, the slot-mapping write, the block copy and
// the attention kernels are native (CPU, and CUDA through the sidecar).
//
// Usage per step: slots = reserve(seq, n) (null: pool exhausted — the scheduler preempts),
// then per layer write(layer, k, v, slots) and out = attention(layer, q, seqs, cuSeqlensQ).
// Not differentiable: generation runs under noGrad; attention() records no graph.
// write() takes k/v in the cache's dtype (cast first: k.to('bf16')). A reserved slot that was
// never written reads as zeros (fresh pool) or a previous owner's data: write before attending.
// attention() keeps the last call's block-table tensors (3 small i32 tensors, live until the
// next change or dispose()) so the layers of one step share them.
import native from '@fovea/native';
import { Tensor, shapeStr } from '../tensor.js';
import { type DType, DTYPE_SIZES } from '../dtype.js';
import { parseDevice } from '../device.js';
import { keep } from '../memory.js';
import { noGrad } from '../autograd/grad_mode.js';
import { fromHost, full } from '../ops/creation.js';
import { checkTensor } from '../ops/helpers.js';
import { BlockPool } from './blockTable.js';

export interface PagedKVCacheOptions {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  numBlocks: number;
  /** Tokens per block (default 16). */
  blockSize?: number;
  /** Storage dtype: f32 (default), bf16 or f16. */
  dtype?: DType;
  device?: string;
}

const OP = 'PagedKVCache';

function posInt(name: string, v: unknown, dflt?: number): number {
  const x = v === undefined ? dflt : v;
  if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > 2 ** 31 - 1) {
    throw new Error(`${OP}: ${name} must be a positive integer, got ${String(v)}`);
  }
  return x;
}

export class PagedKVCache {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly dtype: DType;
  readonly device: string;
  private readonly pool: BlockPool;
  private kPools: Tensor[] = [];
  private vPools: Tensor[] = [];
  private disposed = false;
  private cowCopies = 0;
  // Bumped by every change to any block table or length; keys the metadata memo below.
  private version = 0;
  // The block-table / context-length / offset tensors of the last attention() call: every
  // layer of one step passes the same (seqs, cuSeqlensQ), so they are built once per step.
  private meta: { key: string; tensors: Tensor[] } | null = null;

  constructor(opts: PagedKVCacheOptions) {
    if (!opts || typeof opts !== 'object') throw new Error(`${OP}: options {numLayers, numKvHeads, headDim, numBlocks} are required`);
    this.numLayers = posInt('numLayers', opts.numLayers);
    this.numKvHeads = posInt('numKvHeads', opts.numKvHeads);
    this.headDim = posInt('headDim', opts.headDim);
    this.numBlocks = posInt('numBlocks', opts.numBlocks);
    this.blockSize = posInt('blockSize', opts.blockSize, 16);
    if (this.numBlocks * this.blockSize > 2 ** 31 - 1) {
      throw new Error(`${OP}: numBlocks·blockSize = ${this.numBlocks * this.blockSize} slots exceed the i32 slot range`);
    }
    const dtype = opts.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'bf16' && dtype !== 'f16') {
      throw new Error(`${OP}: dtype must be 'f32', 'bf16' or 'f16', got ${String(opts.dtype)}`);
    }
    this.dtype = dtype;
    this.device = parseDevice(opts.device, OP).name;
    this.pool = new BlockPool(this.numBlocks, this.blockSize, OP);
    const shape = [this.numBlocks, this.blockSize, this.numKvHeads, this.headDim];
    try {
      // Zero-filled so that nothing uninitialized is ever read; kept out of any tidy scope.
      for (let l = 0; l < this.numLayers; l++) {
        this.kPools.push(keep(full(shape, 0, { dtype, device: this.device })));
        this.vPools.push(keep(full(shape, 0, { dtype, device: this.device })));
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  get freeBlocks(): number { this.alive(); return this.pool.freeBlocks; }
  get usedBlocks(): number { this.alive(); return this.numBlocks - this.pool.freeBlocks; }
  /** Bytes of K+V storage per token = 2·layers·kvHeads·headDim·bytes(dtype). */
  get bytesPerToken(): number { return 2 * this.numLayers * this.numKvHeads * this.headDim * DTYPE_SIZES[this.dtype]; }
  /** Block copies made by copy-on-write since construction (for tests and stats). */
  get copyOnWriteCount(): number { return this.cowCopies; }

  /** A new empty sequence; returns its id (ids are never reused). */
  createSequence(): number { this.alive(); return this.pool.create(); }

  /** n children sharing every block of seq by reference count (seq stays alive). */
  fork(seq: number, n: number): number[] { this.alive(); this.version++; return this.pool.fork(seq, n); }

  /** Releases seq's references; a block returns to the pool at refcount 0. */
  free(seq: number): void { this.alive(); this.version++; this.pool.release(seq); }

  /** Tokens stored (reserved) for seq. */
  length(seq: number): number { this.alive(); return this.pool.get(seq).length; }

  /** seq's physical block ids, logical block order. */
  blockTable(seq: number): Int32Array { this.alive(); return Int32Array.from(this.pool.get(seq).blocks); }

  /**
   * Makes room for n more tokens of seq: allocates blocks as needed; if the last block is
   * shared (refcount > 1) and partly filled, copies it first (copy-on-write, all layers).
   * Returns the slot mapping (block·blockSize + offset per new token), or null when the pool
   * has too few free blocks (nothing changed then). Throws (saying both sizes) only when
   * n + length exceeds what the whole pool can hold.
   */
  reserve(seq: number, n: number): Int32Array | null {
    this.alive();
    const s = this.pool.get(seq, 'reserve: sequence');
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
      throw new Error(`${OP}: reserve needs n >= 1 new tokens, got ${String(n)}`);
    }
    const bs = this.blockSize, total = s.length + n, capacity = this.numBlocks * bs;
    if (total > capacity) {
      throw new Error(`${OP}: reserve: sequence ${seq} would hold ${total} tokens (${s.length} cached + ${n} new) ` +
        `but the whole pool holds ${capacity} (${this.numBlocks} blocks of ${bs}); this sequence can never fit`);
    }
    const newBlocks = Math.ceil(total / bs) - s.blocks.length;
    const last = s.blocks.length ? s.blocks[s.blocks.length - 1] : -1;
    const cow = s.length % bs !== 0 && this.pool.refcount[last] > 1;
    if (this.pool.freeBlocks < newBlocks + (cow ? 1 : 0)) return null;
    this.version++;
    if (cow) {
      const copy = this.pool.alloc();
      this.copyBlocks([last], [copy]);
      this.pool.unref(last);
      s.blocks[s.blocks.length - 1] = copy;
      this.cowCopies++;
    }
    for (let i = 0; i < newBlocks; i++) s.blocks.push(this.pool.alloc());
    const slots = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const pos = s.length + i;
      slots[i] = s.blocks[Math.floor(pos / bs)] * bs + (pos % bs);
    }
    s.length = total;
    return slots;
  }

  /** Writes k, v [T, numKvHeads, headDim] (the cache's dtype) of layer at the given slots
   * (T = slots.length), from reserve() (several sequences' slots may be concatenated). */
  write(layer: number, kIn: Tensor, vIn: Tensor, slots: Int32Array | Tensor): void {
    this.alive();
    const op = `${OP}.write`;
    this.checkLayer(op, layer);
    const k = checkTensor(kIn, op, 'k'), v = checkTensor(vIn, op, 'v');
    const temps: Tensor[] = [];
    try {
      let st: Tensor;
      if (slots instanceof Int32Array) {
        st = fromHost(slots, [slots.length], 'i32', this.device);
        temps.push(st);
      } else {
        st = checkTensor(slots, op, 'slots');
        if (st.dtype !== 'i32') throw new Error(`${op}: slots must be an Int32Array or an i32 tensor, got ${st.dtype}`);
      }
      const [kc, vc, sc] = noGrad(() => [k, v, st].map((t) => t.contiguous()));
      temps.push(kc, vc, sc);
      native.pagedKvWrite(this.kPools[layer].arg(op), this.vPools[layer].arg(op), kc.arg(op), vc.arg(op), sc.arg(op));
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  /**
   * Attention of new queries against each sequence's cache, causally. q [T, numHeads,
   * headDim] packed per sequence (cuSeqlensQ [B + 1] host offsets); seqs[b] is segment b's
   * sequence, whose last qLen = cuSeqlensQ[b+1] − cuSeqlensQ[b] cached tokens are the
   * queries' own (written before the call): query i of a segment sees cached tokens
   * j <= length − qLen + i. numHeads a multiple of numKvHeads (head h reads KV head
   * ⌊h·Hkv/H⌋). scale defaults to 1/√headDim. Returns out [T, numHeads, headDim] in q's
   * dtype. Decode is 1 query per sequence. Not differentiable (records no graph).
   */
  attention(layer: number, qIn: Tensor, seqs: readonly number[], cuSeqlensQ: ArrayLike<number>,
    opts: { scale?: number } = {}): Tensor {
    this.alive();
    const op = `${OP}.attention`;
    this.checkLayer(op, layer);
    const q = checkTensor(qIn, op, 'q');
    if (q.ndim !== 3 || q.shape[2] !== this.headDim) {
      throw new Error(`${op}: q must be [T, numHeads, headDim = ${this.headDim}], got ${shapeStr(q.shape)}`);
    }
    if (q.shape[1] % this.numKvHeads !== 0) {
      throw new Error(`${op}: numHeads (${q.shape[1]}) must be a multiple of numKvHeads (${this.numKvHeads})`);
    }
    if (q.device !== this.device) throw new Error(`${op}: q is on ${q.device} but the cache is on ${this.device}`);
    if (!Array.isArray(seqs)) throw new Error(`${op}: seqs must be an array of sequence ids`);
    const B = seqs.length;
    if (!cuSeqlensQ || typeof cuSeqlensQ.length !== 'number' || cuSeqlensQ.length !== B + 1) {
      throw new Error(`${op}: cuSeqlensQ must have seqs.length + 1 = ${B + 1} entries, got ${cuSeqlensQ?.length}`);
    }
    const scale = opts.scale ?? 1 / Math.sqrt(this.headDim);
    if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new Error(`${op}: opts.scale must be a finite number, got ${String(scale)}`);
    const cu = new Int32Array(B + 1), ctx = new Int32Array(B);
    const tables: number[][] = [];
    for (let b = 0; b <= B; b++) {
      const x = cuSeqlensQ[b];
      if (!Number.isInteger(x)) throw new Error(`${op}: cuSeqlensQ[${b}] must be an integer, got ${String(x)}`);
      cu[b] = x;
    }
    if (cu[0] !== 0) throw new Error(`${op}: cuSeqlensQ[0] must be 0, got ${cu[0]}`);
    if (cu[B] !== q.shape[0]) throw new Error(`${op}: cuSeqlensQ[${B}] = ${cu[B]} must equal q.shape[0] = ${q.shape[0]}`);
    let maxBlocks = 1;
    for (let b = 0; b < B; b++) {
      const s = this.pool.get(seqs[b], `attention: seqs[${b}] = sequence`);
      const qLen = cu[b + 1] - cu[b];
      if (qLen < 0) throw new Error(`${op}: cuSeqlensQ must be non-decreasing, but entry ${b + 1} (${cu[b + 1]}) < entry ${b} (${cu[b]})`);
      if (qLen > s.length) {
        throw new Error(`${op}: segment ${b} has ${qLen} queries but sequence ${seqs[b]} holds only ${s.length} tokens; ` +
          `reserve() and write() the queries' own keys before attention()`);
      }
      ctx[b] = s.length;
      tables.push(s.blocks);
      maxBlocks = Math.max(maxBlocks, s.blocks.length);
    }
    const key = `${this.version}|${seqs.join(',')}|${cu.join(',')}`;
    if (this.meta?.key !== key) {
      this.dropMeta();
      const table = new Int32Array(B * maxBlocks);
      tables.forEach((t, b) => table.set(t, b * maxBlocks));
      const made: Tensor[] = [];
      try {
        made.push(keep(fromHost(table, [B, maxBlocks], 'i32', this.device)));
        made.push(keep(fromHost(ctx, [B], 'i32', this.device)));
        made.push(keep(fromHost(cu, [B + 1], 'i32', this.device)));
      } catch (e) {
        for (const t of made) t.dispose();
        throw e;
      }
      this.meta = { key, tensors: made };
    }
    const [bt, cl, cq] = this.meta.tensors;
    const temps: Tensor[] = [];
    const out = Tensor.empty(q.shape, q.dtype, q.ordinal);
    try {
      const qc = noGrad(() => q.contiguous()); temps.push(qc);
      native.pagedAttention(qc.arg(op), this.kPools[layer].arg(op), this.vPools[layer].arg(op),
        bt.arg(op), cl.arg(op), cq.arg(op), out.arg(op), scale);
    } catch (e) {
      out.dispose();
      throw e;
    } finally {
      for (const t of temps) t.dispose();
    }
    return out;
  }

  /** Drops everything (all sequences); the storage stays allocated. */
  reset(): void { this.alive(); this.version++; this.dropMeta(); this.pool.clear(); }

  /** Frees the storage; the cache is unusable afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.dropMeta();
    for (const t of [...this.kPools, ...this.vPools]) t.dispose();
    this.kPools = [];
    this.vPools = [];
  }

  /** The K and V pools of a layer ([numBlocks, blockSize, numKvHeads, headDim]), for tests and kernels. */
  layerPools(layer: number): { k: Tensor; v: Tensor } {
    this.alive();
    this.checkLayer(`${OP}.layerPools`, layer);
    return { k: this.kPools[layer], v: this.vPools[layer] };
  }

  private dropMeta(): void {
    if (this.meta) for (const t of this.meta.tensors) t.dispose();
    this.meta = null;
  }

  private copyBlocks(src: number[], dst: number[]): void {
    const op = `${OP}.copyBlocks`;
    const s = fromHost(Int32Array.from(src), [src.length], 'i32', this.device);
    const d = fromHost(Int32Array.from(dst), [dst.length], 'i32', this.device);
    try {
      for (let l = 0; l < this.numLayers; l++) {
        native.pagedKvCopyBlocks(this.kPools[l].arg(op), this.vPools[l].arg(op), s.arg(op), d.arg(op));
      }
    } finally {
      s.dispose();
      d.dispose();
    }
  }

  private checkLayer(op: string, layer: unknown): void {
    if (typeof layer !== 'number' || !Number.isInteger(layer) || layer < 0 || layer >= this.numLayers) {
      throw new Error(`${op}: layer must be an integer in [0, ${this.numLayers}), got ${String(layer)}`);
    }
  }

  private alive(): void {
    if (this.disposed) throw new Error(`${OP}: the cache was disposed`);
  }
}
