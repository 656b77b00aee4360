import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CompactRange, frontierFromInclusion, frontierSizes } from './compact-range.js';
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
