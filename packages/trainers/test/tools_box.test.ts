// The box parser on valid, malformed, out-of-range and hostile model text (issue 8, Tools).
import { describe, expect, it } from 'vitest';
import { parseBox, isParseError, type BoxParseResult, type ParsedBox } from '../src/tools/boxParser.js';

const ok = (r: BoxParseResult): ParsedBox => {
  if (isParseError(r)) throw new Error(`expected a box, got error: ${r.error}`);
  return r;
};
const err = (r: BoxParseResult): string => {
  if (!isParseError(r)) throw new Error(`expected an error, got ${JSON.stringify(r)}`);
  return r.error;
};

describe('parseBox: Qwen2.5-VL JSON form', () => {
  it('reads a fenced ```json block with a label', () => {
    const text = 'The sign is top left.\n```json\n[\n  {"bbox_2d": [12, 34, 256, 300], "label": "street sign"}\n]\n```';
    expect(parseBox(text)).toEqual({ box: [12, 34, 256, 300], source: 'json', label: 'street sign', count: 1 });
  });

  it('reads JSON without a fence, and a single object', () => {
    expect(ok(parseBox('[{"bbox_2d": [1, 2, 3, 4], "label": "a"}]')).box).toEqual([1, 2, 3, 4]);
    expect(parseBox('{"bbox_2d": [5, 6, 70, 80]}')).toEqual({ box: [5, 6, 70, 80], source: 'json', count: 1 });
  });

  it('takes the first valid entry of several and reports the count', () => {
    const r = ok(parseBox('```json\n[{"bbox_2d": [1, 2, 3], "label": "bad"}, {"bbox_2d": [10, 20, 30, 40], "label": "b"}, {"bbox_2d": [5, 5, 9, 9], "label": "c"}]\n```'));
    expect(r).toEqual({ box: [10, 20, 30, 40], source: 'json', label: 'b', count: 3 });
  });

  it('accepts floats and JSON exponent notation; label is optional and non-strings are dropped', () => {
    expect(ok(parseBox('[{"bbox_2d": [10.5, 20.25, 1e2, 3.5E2], "label": 7}]'))).toEqual({ box: [10.5, 20.25, 100, 350], source: 'json', count: 1 });
  });

  it('parses negative and out-of-image numbers (validation judges them, not the parser)', () => {
    expect(ok(parseBox('[{"bbox_2d": [-5, -1, 99999, 20]}]')).box).toEqual([-5, -1, 99999, 20]);
  });

  it('falls back to a lenient scan for truncated or sloppy JSON', () => {
    const truncated = '```json\n[{"bbox_2d": [100, 120, 340, 400], "label": "cat"},\n {"bbox_2d": [5, 6';
    expect(parseBox(truncated)).toEqual({ box: [100, 120, 340, 400], source: 'json', label: 'cat', count: 2 });
    const trailingComma = '```json\n[{"bbox_2d": [1, 2, 30, 40,], "label": "x"}, {"bbox_2d":[7,8,90,100],},]\n```';
    expect(ok(parseBox(trailingComma)).box).toEqual([7, 8, 90, 100]);
    expect(ok(parseBox("{'bbox_2d': [3, 4, 50, 60], 'label': 'q'}")).box).toEqual([3, 4, 50, 60]);
  });

  it('unclosed fence runs to the end; a ```JSON tag is accepted', () => {
    expect(ok(parseBox('```JSON\n{"bbox_2d": [1, 2, 40, 50]}')).box).toEqual([1, 2, 40, 50]);
  });
});

describe('parseBox: bare form', () => {
  it('finds [x1, y1, x2, y2] in prose, first of several, with the count', () => {
    expect(parseBox('The answer region is [10, 20, 300, 400].')).toEqual({ box: [10, 20, 300, 400], source: 'bare', count: 1 });
    expect(parseBox('[1, 2] then [10,20,30,40] and [5, 6, 7, 8] and [1,2,3,4,5]')).toEqual({ box: [10, 20, 30, 40], source: 'bare', count: 2 });
    expect(parseBox('[[11, 22, 33, 44]]')).toEqual({ box: [11, 22, 33, 44], source: 'bare', count: 1 });
    expect(parseBox('```json\n[1.5, 2, 3, 4]\n```')).toEqual({ box: [1.5, 2, 3, 4], source: 'bare', count: 1 });
  });
});

describe('parseBox: malformed input gives clear reasons', () => {
  it('no box at all', () => {
    expect(err(parseBox(''))).toMatch(/no box found.*bbox_2d/);
    expect(err(parseBox('I think it is option B.'))).toMatch(/no box found/);
    expect(err(parseBox('[1, 2, 3] and [1, 2, 3, 4, 5]'))).toMatch(/no box found/);
  });

  it('wrong number of values', () => {
    expect(err(parseBox('[{"bbox_2d": [1, 2, 3], "label": "x"}]'))).toMatch(/holds 3 values, expected 4/);
    expect(err(parseBox('{"bbox_2d": [1, 2, 3, 4, 5]'))).toMatch(/holds 5 values, expected 4/);
    expect(err(parseBox('{"bbox_2d": "1, 2, 3, 4"}'))).toMatch(/bbox_2d is string/);
  });

  it('NaN, Infinity and overflowing numbers are not finite numbers', () => {
    expect(err(parseBox('{"bbox_2d": [NaN, 1, 2, 3]}'))).toMatch(/not a list of numbers/);
    expect(err(parseBox('{"bbox_2d": [Infinity, 1, 2, 3]}'))).toMatch(/not a list of numbers/);
    expect(err(parseBox('[{"bbox_2d": [1e999, 1, 2, 3]}]'))).toMatch(/value 0 .* not a finite number/);
    expect(err(parseBox('see [1, 2, 3, 1e400]'))).toMatch(/value 3 is not a finite number/);
    expect(err(parseBox('see [0x10, 2, 3, 4]'))).toMatch(/no box found/);
  });

  it('non-string input and over-long text', () => {
    expect(err(parseBox(undefined as unknown as string))).toMatch(/expected the model's text as a string, got undefined/);
    expect(err(parseBox(null as unknown as string))).toMatch(/got null/);
    expect(err(parseBox('x'.repeat(101), { maxChars: 100 }))).toMatch(/101 characters is longer than the limit of 100/);
  });
});

describe('parseBox: hostile text runs in linear time', () => {
  const MB = 1 << 20;
  // No timing assertions (the machine may be loaded): a quadratic scan of 1 MB would take many
  // minutes and trip the test's timeout; the linear parser needs well under a second.
  const timed = (text: string) => ({ r: parseBox(text) });

  it('deep nesting, with and without a box at the end', () => {
    let { r } = timed('['.repeat(MB));
    expect(err(r)).toMatch(/no box found/);
    ({ r } = timed('['.repeat(MB) + '[1, 2, 30, 40]'));
    expect(ok(r).box).toEqual([1, 2, 30, 40]);
    ({ r } = timed('{"a":'.repeat(MB / 5)));
    expect(err(r)).toMatch(/no box found/);
  }, 60_000);

  it('long lists, repeated keys, fences and digits', () => {
    const cases: [string, RegExp | number[]][] = [
      ['[' + '1,'.repeat(MB / 2) + '1]', /no box found/],
      ['[1,'.repeat(MB / 3), /no box found/],
      ['"bbox_2d": ['.repeat(MB / 12), /no valid box among/],
      ['bbox_2d'.repeat(MB / 7) + ': [1, 2, 30, 40]', [1, 2, 30, 40]],
      ['```'.repeat(MB / 3), /no box found/],
      ['```json\n' + ' '.repeat(MB) + '{"bbox_2d": [1, 2, 30, 40]}\n```', [1, 2, 30, 40]],
      ['[' + '9'.repeat(MB) + ', 1, 2, 3]', /not a finite number/],
      ['[1.' + '5'.repeat(MB) + ', 1, 20, 30]', [1.5555555555555556, 1, 20, 30]],
      ['[-'.repeat(MB / 2), /no box found/],
      ['[1e'.repeat(MB / 3), /no box found/],
    ];
    for (const [text, want] of cases) {
      const { r } = timed(text);
      if (want instanceof RegExp) expect(err(r)).toMatch(want);
      else expect(ok(r).box).toEqual(want);
    }
  }, 60_000);
});
