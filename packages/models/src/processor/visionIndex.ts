// Index tables the Qwen2.5-VL vision tower needs for a packed batch of images, computed from
// the grids alone (pure integer bookkeeping, so plain TypeScript):
//   - cuSeqlens: full-attention segments, one per image frame: [0, t·gh·gw, ...];
//   - rotaryPosIds [ΣP, 2]: (row, column) of each patch in pixel_values row order, i.e. merge
//     blocks in raster order, then the 2×2 positions inside a block (HF's rot_pos_emb);
//   - windowIndex [ΣP/4]: HF's get_window_index. Merged units (2×2 patch blocks) are grouped
//     into windows of vws×vws units (vws = 112 / merge / patch = 4), windows in raster order,
//     units inside a window in raster order; windows that fall off the grid are cut short.
//     windowIndex[i] = the merged unit (global, in pixel_values order) that goes to slot i;
//   - windowInverse = argsort(windowIndex): puts the merger's output back in raster order;
//   - cuWindowSeqlens: boundaries of the windows in patches (4 per unit), empty windows
//     dropped (HF's unique_consecutive), continuing across images.

export interface Grid { t: number; h: number; w: number }

export interface VisionIndex {
  cuSeqlens: Int32Array;
  rotaryPosIds: Int32Array;
  windowIndex: Int32Array;
  windowInverse: Int32Array;
  cuWindowSeqlens: Int32Array;
  maxSeqlen: number;
  maxWindowSeqlen: number;
}

export function visionIndex(grids: readonly Grid[], merge = 2, windowUnits = 4): VisionIndex {
  const unit = merge * merge;
  let total = 0;
  for (const g of grids) total += g.t * g.h * g.w;
  const cuSeqlens = new Int32Array(grids.reduce((n, g) => n + g.t, 0) + 1);
  const rotaryPosIds = new Int32Array(total * 2);
  const windowIndex = new Int32Array(total / unit);
  const cuWindow: number[] = [0];
  let seg = 0, row = 0, slot = 0, unitBase = 0, maxSeqlen = 0;
  for (const g of grids) {
    for (let t = 0; t < g.t; t++) {
      cuSeqlens[seg + 1] = cuSeqlens[seg] + g.h * g.w;
      seg++;
      maxSeqlen = Math.max(maxSeqlen, g.h * g.w);
      for (let bh = 0; bh < g.h / merge; bh++) {
        for (let bw = 0; bw < g.w / merge; bw++) {
          for (let mh = 0; mh < merge; mh++) {
            for (let mw = 0; mw < merge; mw++) {
              rotaryPosIds[row * 2] = bh * merge + mh;
              rotaryPosIds[row * 2 + 1] = bw * merge + mw;
              row++;
            }
          }
        }
      }
    }
    const lh = g.h / merge, lw = g.w / merge;
    // HF pads by vws - l % vws, which adds an empty row/column of windows when l divides
    // evenly; empty windows contribute nothing (their boundary repeats and is dropped).
    const nh = Math.floor((lh + windowUnits - (lh % windowUnits)) / windowUnits);
    const nw = Math.floor((lw + windowUnits - (lw % windowUnits)) / windowUnits);
    for (let t = 0; t < g.t; t++) {
      for (let wh = 0; wh < nh; wh++) {
        for (let ww = 0; ww < nw; ww++) {
          let count = 0;
          for (let y = wh * windowUnits; y < Math.min(lh, (wh + 1) * windowUnits); y++) {
            for (let x = ww * windowUnits; x < Math.min(lw, (ww + 1) * windowUnits); x++) {
              windowIndex[slot++] = unitBase + (t * lh + y) * lw + x;
              count++;
            }
          }
          const next = cuWindow[cuWindow.length - 1] + count * unit;
          if (next !== cuWindow[cuWindow.length - 1]) cuWindow.push(next);
        }
      }
    }
    unitBase += g.t * lh * lw;
  }
  const windowInverse = new Int32Array(windowIndex.length);
  for (let i = 0; i < windowIndex.length; i++) windowInverse[windowIndex[i]] = i;
  let maxWindowSeqlen = 0;
  for (let i = 1; i < cuWindow.length; i++) maxWindowSeqlen = Math.max(maxWindowSeqlen, cuWindow[i] - cuWindow[i - 1]);
  return {
    cuSeqlens, rotaryPosIds, windowIndex, windowInverse, cuWindowSeqlens: Int32Array.from(cuWindow),
    maxSeqlen, maxWindowSeqlen,
  };
}
