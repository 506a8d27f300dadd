// Rotary tables for Qwen2.5-VL: the vision tower's 2-D embedding and the language model's
// M-RoPE. Both produce f32 cos/sin tables [rows, headDim] in the rotate-half layout
// (emb = cat(freqs, freqs)) that @fovea/core's rotary op consumes; angles are computed as
// transformers does in float32 (inv_freq = 1 / θ^(2j/dim) rounded to f32, angle = f32(pos ·
// inv_freq)), so cos and sin agree with Hugging Face to the last bit or so.
import { type Tensor, tensor } from '@fovea/core';

const f32 = Math.fround;

/** transformers' inv_freq: 1 / base^(arange(0, dim, 2) / dim), each step rounded to f32. */
export function inverseFrequencies(dim: number, base: number): Float32Array {
  const out = new Float32Array(dim / 2);
  for (let j = 0; j < dim / 2; j++) out[j] = f32(1 / f32(Math.pow(base, f32((2 * j) / dim))));
  return out;
}

export interface RotaryTables { cos: Tensor; sin: Tensor }

function tables(rows: number, headDim: number, angle: (row: number, j: number) => number, device?: string): RotaryTables {
  const half = headDim / 2;
  const c = new Float32Array(rows * headDim), s = new Float32Array(rows * headDim);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < half; j++) {
      const a = angle(r, j);
      const cv = Math.cos(a), sv = Math.sin(a);
      c[r * headDim + j] = cv; c[r * headDim + j + half] = cv;
      s[r * headDim + j] = sv; s[r * headDim + j + half] = sv;
    }
  }
  return {
    cos: tensor(c, { dtype: 'f32', device, shape: [rows, headDim] }),
    sin: tensor(s, { dtype: 'f32', device, shape: [rows, headDim] }),
  };
}

/**
 * The vision tower's 2-D rotary tables, rows in window order. rotaryPosIds [P, 2] holds
 * (row, column) of each patch in pixel_values order; windowIndex (merged units in window order)
 * permutes them in groups of unit = merge² rows, as the tower permutes its hidden states.
 * The first headDim/4 frequencies turn with the row, the next headDim/4 with the column.
 */
export function visionRotaryTables(
  rotaryPosIds: Int32Array, windowIndex: Int32Array, headDim: number, theta: number, unit: number, device?: string,
): RotaryTables {
  const rows = rotaryPosIds.length / 2;
  const quarter = headDim / 4;
  const inv = inverseFrequencies(headDim / 2, theta);
  return tables(rows, headDim, (r, j) => {
    const src = windowIndex[Math.floor(r / unit)] * unit + (r % unit);
    const pos = j < quarter ? rotaryPosIds[src * 2] : rotaryPosIds[src * 2 + 1];
    return f32(pos * inv[j % quarter]);
  }, device);
}

/**
 * M-RoPE tables for L tokens. positionIds is [3, L] row-major (t, h, w components); frequency
 * j (of headDim/2) takes its position from component 0 for j < section[0], 1 for the next
 * section[1], 2 for the rest. For text tokens t = h = w, and this is plain 1-D RoPE.
 */
export function mropeTables(
  positionIds: Int32Array, length: number, headDim: number, theta: number, section: readonly number[], device?: string,
): RotaryTables {
  if (positionIds.length !== 3 * length) {
    throw new Error(`mropeTables: positionIds has ${positionIds.length} values, expected 3 × ${length} ([3, L])`);
  }
  const inv = inverseFrequencies(headDim, theta);
  const comp = new Int32Array(headDim / 2);
  for (let j = 0; j < headDim / 2; j++) comp[j] = j < section[0] ? 0 : j < section[0] + section[1] ? 1 : 2;
  return tables(length, headDim, (r, j) => f32(positionIds[comp[j] * length + r] * inv[j]), device);
}
