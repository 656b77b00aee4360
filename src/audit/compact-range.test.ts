import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CompactRange,
  frontierFromInclusion,
  frontierSizes,
  verifyConsistency,
} from './compact-range.js';
import { MerkleTree, leafHash } from './merkle.js';

const leaf = (i: number): Buffer => leafHash(createHash('sha256').update(`e${i}`).digest());

function tree(n: number): MerkleTree {
  const t = new MerkleTree();
  for (let i = 0; i < n; i++) t.appendLeaf(leaf(i));
  return t;
}

describe('compact ranges', () => {
  it('frontierSizes is the binary decomposition, largest first', () => {
    expect(frontierSizes(0)).toEqual([]);
    expect(frontierSizes(1)).toEqual([1]);
    expect(frontierSizes(13)).toEqual([8, 4, 1]);
    expect(frontierSizes(2 ** 40 + 3)).toEqual([2 ** 40, 2, 1]);
  });

  it('a frontier from an inclusion path plus the following leaves makes every later root', () => {
    const t = tree(70);
    for (let from = 1; from < 70; from++) {
      const frontier = frontierFromInclusion(from, 70, t.inclusionProof(from, 70));
      const range = CompactRange.fromFrontier(from, frontier);
      expect(range.root().equals(t.root(from))).toBe(true);
      for (let i = from; i < 70; i++) {
        range.appendLeaf(leaf(i));
        expect(range.root().equals(t.root(i + 1))).toBe(true);
      }
    }
  });

  it('an empty range has the empty root and grows like the tree', () => {
    const t = tree(33);
    const range = CompactRange.fromFrontier(0, []);
    expect(range.root().equals(t.root(0))).toBe(true);
    for (let i = 0; i < 33; i++) range.appendLeaf(leaf(i));
    expect(range.root().equals(t.root(33))).toBe(true);
  });

  it('refuses a frontier of the wrong length and a path of the wrong length', () => {
    expect(() => CompactRange.fromFrontier(13, [leaf(0)])).toThrow(RangeError);
    expect(() => CompactRange.fromFrontier(1, [Buffer.alloc(31)])).toThrow(RangeError);
    expect(() => frontierFromInclusion(5, 8, [leaf(0)])).toThrow(RangeError);
    expect(() => frontierFromInclusion(8, 8, [])).toThrow(RangeError);
  });
});

describe('verifyConsistency (RFC 9162 §2.1.4.2)', () => {
  it('accepts every real proof up to 48 leaves and refuses swapped or other roots', () => {
    const t = tree(48);
    for (let to = 1; to <= 48; to++) {
      for (let from = 1; from <= to; from++) {
        const proof = t.consistencyProof(from, to);
        expect(verifyConsistency(from, to, t.root(from), t.root(to), proof)).toBe(true);
        if (from < to) {
          expect(verifyConsistency(from, to, t.root(to), t.root(from), proof)).toBe(false);
          expect(verifyConsistency(from, to, t.root(from), t.root(to), proof.slice(1))).toBe(false);
        }
      }
    }
  });

  it('never accepts a proof with one node changed, and never throws', () => {
    const t = tree(40);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 39 }),
        fc.integer({ min: 0, max: 39 }),
        fc.nat(),
        (from, extra, pick) => {
          const to = Math.min(40, from + extra + 1);
          const proof = t.consistencyProof(from, to);
          if (proof.length === 0) return true;
          const bad = proof.map((p, i) => (i === pick % proof.length ? leaf(1000 + i) : p));
          return !verifyConsistency(from, to, t.root(from), t.root(to), bad);
        },
      ),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: -2, max: 100 }),
        fc.integer({ min: -2, max: 100 }),
        fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 10 }),
        (a, b, nodes) =>
          typeof verifyConsistency(
            a,
            b,
            leaf(0),
            leaf(1),
            nodes.map((n) => Buffer.from(n)),
          ) === 'boolean',
      ),
    );
  });
});
