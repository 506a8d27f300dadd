// smartResize against a table computed with transformers' smart_resize rule in Python
// (round-half-to-even, the max-pixels branch with max(28, ...), the min-pixels branch with
// ceil, the 200 aspect-ratio limit), including exact halves, tiny and huge images.
import { describe, expect, it } from 'vitest';
import { roundHalfEven, smartResize } from '../src/processor/smartResize.js';

// [height, width, minPixels, maxPixels, expected [h, w] or 'throw'], from Python 3.
const TABLE: [number, number, number, number, [number, number] | 'throw'][] = [
  [224, 224, 3136, 1003520, [224, 224]], [42, 70, 3136, 1003520, [56, 56]], [70, 42, 3136, 1003520, [56, 56]],
  [98, 126, 3136, 1003520, [112, 112]], [154, 182, 3136, 1003520, [168, 168]], [14, 14, 3136, 1003520, [56, 56]],
  [30, 45, 3136, 1003520, [56, 84]], [1, 1, 3136, 1003520, [56, 56]], [10, 1000, 3136, 1003520, [28, 560]],
  [28, 28, 3136, 1003520, [56, 56]], [56, 56, 3136, 1003520, [56, 56]], [55, 57, 3136, 1003520, [56, 56]],
  [768, 1024, 3136, 1003520, [756, 1036]], [3024, 4032, 3136, 1003520, [840, 1148]],
  [4032, 3024, 3136, 1003520, [1148, 840]], [20000, 20000, 3136, 1003520, [980, 980]],
  [1100, 250, 3136, 200704, [924, 196]], [300, 1200, 3136, 200704, [196, 868]], [40, 6000, 3136, 200704, [28, 5992]],
  [30, 5000, 3136, 100352, [28, 4088]], [28, 5572, 3136, 1003520, [28, 5572]], [1, 199, 3136, 1003520, [28, 812]],
  [28, 5628, 3136, 1003520, 'throw'], [1, 201, 3136, 1003520, 'throw'], [1, 1000, 3136, 1003520, 'throw'],
  [5000, 25, 3136, 1003520, [5012, 28]], [1000, 5, 3136, 1003520, [812, 28]],
  [1000, 1000, 3136, 12845056, [1008, 1008]], [3, 9000, 3136, 1003520, 'throw'],
];

describe('smartResize', () => {
  it('rounds halves to even like Python', () => {
    expect([0.5, 1.5, 2.5, 3.5, -0.5, 2.4999, 2.5001].map((x) => roundHalfEven(x) + 0)).toEqual([0, 2, 2, 4, 0, 2, 3]);
  });

  it.each(TABLE)('%i x %i (min %i, max %i)', (h, w, minPixels, maxPixels, want) => {
    if (want === 'throw') {
      expect(() => smartResize(h, w, { minPixels, maxPixels })).toThrow(/aspect ratio must be smaller than 200/);
    } else {
      expect(smartResize(h, w, { minPixels, maxPixels })).toEqual(want);
    }
  });

  it('rejects bad arguments', () => {
    expect(() => smartResize(0, 10)).toThrow(/height must be a positive integer/);
    expect(() => smartResize(10, 2.5)).toThrow(/width must be a positive integer/);
    expect(() => smartResize(10, 10, { minPixels: 100, maxPixels: 10 })).toThrow(/minPixels <= maxPixels/);
  });
});
