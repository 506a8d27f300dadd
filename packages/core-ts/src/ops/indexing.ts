// Index ops: embedding, indexSelect, gather, scatterAdd. Indices are i32 or i64 and checked
// natively: an out-of-range index throws an error naming the value and the valid range
// (never a wild read). Backward: indexSelect/embedding → indexAdd into zeros; gather →
// scatterAdd into zeros; scatterAdd → (g, gather(g)).
import native from '@fovea/native';
import { Tensor, shapeStr } from '../tensor.js';
import { record } from '../autograd/record.js';
import { noGrad } from '../autograd/grad_mode.js';
import { zeros } from './creation.js';
import { checkSameDevice, checkTensor, normDim } from './helpers.js';

declare module '../tensor.js' {
  interface Tensor {
    indexSelect(dim: number, index: Tensor): Tensor;
    gather(dim: number, index: Tensor): Tensor;
    scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor;
  }
}

function checkIndex(op: string, idx: Tensor): void {
  if (idx.dtype !== 'i32' && idx.dtype !== 'i64') throw new Error(`${op}: index must be i32 or i64, got ${idx.dtype}`);
}

const contig = (t: Tensor) => noGrad(() => t.contiguous());

export function indexSelect(a: Tensor, dim: number, index: Tensor): Tensor {
  const x = checkTensor(a, 'indexSelect', 'x'), idx = checkTensor(index, 'indexSelect', 'index');
  checkIndex('indexSelect', idx);
  checkSameDevice('indexSelect', x, idx);
  if (idx.ndim !== 1) throw new Error(`indexSelect: index must be 1-D, got ${shapeStr(idx.shape)}`);
  const d = normDim('indexSelect', dim, x.ndim);
  const shape = x.shape.slice();
  shape[d] = idx.shape[0];
  const xc = contig(x), ic = contig(idx);
  const out = Tensor.empty(shape, x.dtype, x.ordinal);
  try {
    native.indexSelect(xc.arg('indexSelect'), d, ic.arg('indexSelect'), out.arg('indexSelect'));
  } catch (e) {
    out.dispose(); xc.dispose(); ic.dispose();
    throw e;
  }
  const inShape = x.shape.slice();
  record('indexSelect', [x], [out], ([g], [si]) => {
    const z = zeros(inShape, { dtype: g!.dtype, device: g!.device });
    const gc = g!.contiguous();
    native.indexAdd(z.arg('indexSelect'), d, si.arg('indexSelect'), gc.arg('indexSelect'));
    gc.dispose();
    return [z];
  }, [ic]);
  xc.dispose(); ic.dispose();
  return out;
}

/** Rows of weight [V, D] for each id: ids [...] → [..., D]. */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  checkTensor(weight, 'embedding', 'weight');
  checkTensor(ids, 'embedding', 'ids');
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be [V, D], got ${shapeStr(weight.shape)}`);
  checkIndex('embedding', ids);
  const flat = ids.reshape([-1]);
  let rows: Tensor;
  try {
    rows = indexSelect(weight, 0, flat);
  } catch (e) {
    flat.dispose();
    throw new Error(String((e as Error).message).replace(/^indexSelect/, 'embedding'));
  }
  const out = rows.reshape([...ids.shape, weight.shape[1]]);
  flat.dispose(); rows.dispose();
  return out;
}

export function gather(a: Tensor, dim: number, index: Tensor): Tensor {
  const x = checkTensor(a, 'gather', 'x'), idx = checkTensor(index, 'gather', 'index');
  checkIndex('gather', idx);
  checkSameDevice('gather', x, idx);
  if (idx.ndim !== x.ndim) throw new Error(`gather: index ${shapeStr(idx.shape)} must have the rank of x ${shapeStr(x.shape)}`);
  const d = normDim('gather', dim, x.ndim);
  const xc = contig(x), ic = contig(idx);
  const out = Tensor.empty(idx.shape, x.dtype, x.ordinal);
  try {
    native.gather(xc.arg('gather'), d, ic.arg('gather'), out.arg('gather'));
  } catch (e) {
    out.dispose(); xc.dispose(); ic.dispose();
    throw e;
  }
  const inShape = x.shape.slice();
  record('gather', [x], [out], ([g], [si]) => {
    const z = zeros(inShape, { dtype: g!.dtype, device: g!.device });
    const gc = g!.contiguous();
    native.scatterAdd(z.arg('gather'), d, si.arg('gather'), gc.arg('gather'));
    gc.dispose();
    return [z];
  }, [ic]);
  xc.dispose(); ic.dispose();
  return out;
}

/** out = x with src added at index along dim (torch.scatter_add, functional). */
export function scatterAdd(a: Tensor, dim: number, index: Tensor, source: Tensor): Tensor {
  const x = checkTensor(a, 'scatterAdd', 'x'), idx = checkTensor(index, 'scatterAdd', 'index');
  const src = checkTensor(source, 'scatterAdd', 'src');
  checkIndex('scatterAdd', idx);
  checkSameDevice('scatterAdd', x, idx, src);
  if (src.dtype !== x.dtype) throw new Error(`scatterAdd: src is ${src.dtype} but x is ${x.dtype}`);
  const d = normDim('scatterAdd', dim, x.ndim);
  const out = noGrad(() => x.contiguous().clone());
  const ic = contig(idx), sc = contig(src);
  try {
    native.scatterAdd(out.arg('scatterAdd'), d, ic.arg('scatterAdd'), sc.arg('scatterAdd'));
  } catch (e) {
    out.dispose(); ic.dispose(); sc.dispose();
    throw e;
  }
  record('scatterAdd', [x, src], [out], ([g], [si]) => [g, gather(g!, d, si)], [ic]);
  ic.dispose(); sc.dispose();
  return out;
}

Tensor.prototype.indexSelect = function (dim: number, index: Tensor) { return indexSelect(this, dim, index); };
Tensor.prototype.gather = function (dim: number, index: Tensor) { return gather(this, dim, index); };
Tensor.prototype.scatterAdd = function (dim: number, index: Tensor, src: Tensor) { return scatterAdd(this, dim, index, src); };
