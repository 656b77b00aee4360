/**
 * The server's tile path parser (src/audit/tiles.ts parseTilePath), fuzzed: any text is a
 * tile request or AuditTilePathError, never another exception; every path the independent
 * client writes (client.ts tilePathOf, from the C2SP text) parses back to what it names; and
 * a canonical path changed in one place is refused or names another tile, never the same.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AuditTilePathError } from '../../../src/audit/errors.js';
import { parseTilePath, tilePath } from '../../../src/audit/tiles.js';
import { tilePathOf } from './client.js';

const index = fc.oneof(
  fc.integer({ min: 0, max: 999_999 }),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
);
const width = fc.integer({ min: 1, max: 256 });
const level = fc.integer({ min: 0, max: 63 });

/** The parse, or the code of the parser's own error (anything else fails the test). */
function outcome(path: string): string {
  try {
    const t = parseTilePath(path);
    return `${t.kind}:${t.level}:${t.index}:${t.width}`;
  } catch (err) {
    if (err instanceof AuditTilePathError) return err.code;
    throw err;
  }
}

describe('parseTilePath', () => {
  it('parses every path the independent client writes', () => {
    fc.assert(
      fc.property(level, index, width, (l, n, w) => {
        const rest = tilePathOf(l, n, w).slice('tile/'.length);
        expect(parseTilePath(rest)).toEqual({ kind: 'hashes', level: l, index: n, width: w });
        // The server's own writer agrees with the client's.
        expect(tilePath(l, n, w)).toBe(tilePathOf(l, n, w));
        const entries = tilePathOf('entries', n, w).slice('tile/'.length);
        expect(parseTilePath(entries)).toEqual({ kind: 'entries', level: 0, index: n, width: w });
      }),
      { numRuns: 2000 },
    );
  });

  it('answers any text with a tile or its own error', () => {
    const pathy = fc
      .array(
        fc.oneof(
          fc.constantFrom('x', '.p', '/', 'entries', '0', '00', '000', 'x000', '256', '.', '-'),
          fc.stringMatching(/^[0-9x./p]{0,6}$/),
        ),
        { maxLength: 12 },
      )
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), pathy), (text) => {
        expect(typeof outcome(text)).toBe('string');
      }),
      { numRuns: 5000 },
    );
  });

  it('never reads a changed canonical path as the same tile', () => {
    fc.assert(
      fc.property(
        level,
        index,
        width,
        fc.nat(),
        fc.string({ minLength: 1, maxLength: 3 }),
        (l, n, w, at, ins) => {
          const path = tilePathOf(l, n, w).slice('tile/'.length);
          const i = at % (path.length + 1);
          const changed = `${path.slice(0, i)}${ins}${path.slice(i)}`;
          expect(outcome(changed)).not.toBe(`hashes:${l}:${n}:${w}`);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it.each([
    '',
    '0',
    '0/',
    '64/000',
    '01/000',
    '-1/000',
    '0/00',
    '0/0000',
    '0/1',
    '0/x000/001',
    '0/x1/001',
    '0/001/x001',
    '0/x001/x001',
    '0/000.p/0',
    '0/000.p/256',
    '0/000.p/01',
    '0/000.p/',
    '0/000.p',
    '0/000.p/1/2',
    'entries',
    'entries/',
    'entries/x1/000',
    '0/x009/x007/x199/x254/x740/992',
    `0/${'x999/'.repeat(6)}999`,
    `0/${'x001/'.repeat(40)}001`,
  ])('refuses %j with audit_tile_path_invalid', (path) => {
    expect(outcome(path)).toBe('audit_tile_path_invalid');
  });

  it('reads the largest index and the spec example', () => {
    expect(parseTilePath('0/x009/x007/x199/x254/x740/991')).toMatchObject({
      index: Number.MAX_SAFE_INTEGER,
    });
    expect(parseTilePath('1/x001/x234/067.p/8')).toEqual({
      kind: 'hashes',
      level: 1,
      index: 1234067,
      width: 8,
    });
  });
});
