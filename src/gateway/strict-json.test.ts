import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StrictJsonError } from './errors.js';
import { parseStrictJson } from './strict-json.js';

function reason(text: string): string | undefined {
  try {
    parseStrictJson(text);
    return undefined;
  } catch (e) {
    if (e instanceof StrictJsonError) return e.reason;
    throw e;
  }
}

describe('parseStrictJson', () => {
  it('parses what JSON.parse parses', () => {
    const text = '{"a":[1,-2.5e3,true,false,null,"x\\u0041\\n\\"\\/"],"b":{"c":{}},"d":[]}';
    expect(parseStrictJson(text)).toEqual(JSON.parse(text));
    expect(parseStrictJson(' \t\n\r7 ')).toBe(7);
  });

  it.each([
    ['{"a":1,"a":2}'],
    ['{"a":1,"b":{"x":1,"x":1}}'],
    ['{"a":1,"\\u0061":2}'],
    ['[{"k":1},{"k":2,"k":3}]'],
  ])('refuses duplicate member names: %s', (text) => {
    expect(reason(text)).toBe('duplicate_key');
  });

  it.each([
    [''],
    ['{'],
    ['{"a"}'],
    ['{"a":1,}'],
    ['[1,]'],
    ['01'],
    ['1.'],
    ['+1'],
    ['.5'],
    ['"\\x"'],
    ['"\\u12G4"'],
    ['"a\u0001"'],
    ['"unterminated'],
    ['nul'],
    ['true false'],
    ["{'a':1}"],
    ['NaN'],
  ])('refuses malformed JSON: %j', (text) => {
    expect(reason(text)).toBe('syntax');
  });

  it('refuses deep nesting', () => {
    expect(reason('['.repeat(100) + ']'.repeat(100))).toBe('depth');
  });

  it('keeps "__proto__" as a plain member', () => {
    const v = parseStrictJson('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(Object.keys(v)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('agrees with JSON.parse on any JSON text without repeated names', () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        expect(parseStrictJson(text)).toEqual(JSON.parse(text));
      }),
      { numRuns: 500 },
    );
  });

  it('on arbitrary text: a value JSON.parse agrees with, or its own error', () => {
    const jsonish = fc.stringMatching(/^[\s{}[\]",:0-9a-z\\.eE+-]{0,40}$/);
    fc.assert(
      fc.property(fc.oneof(fc.string(), jsonish), (text) => {
        let ours: unknown;
        let ourError: unknown;
        try {
          ours = parseStrictJson(text);
        } catch (e) {
          ourError = e;
        }
        let theirs: unknown;
        let theirError: unknown;
        try {
          theirs = JSON.parse(text);
        } catch (e) {
          theirError = e;
        }
        if (ourError === undefined) {
          expect(theirError).toBeUndefined();
          expect(ours).toEqual(theirs);
        } else {
          expect(ourError).toBeInstanceOf(StrictJsonError);
          if (theirError === undefined) {
            expect((ourError as StrictJsonError).reason).not.toBe('syntax');
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});
