import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EMPTY_ROOT, MerkleTree, leafHash } from './merkle.js';

// --- An independent RFC 9162 implementation, written from the RFC text, not our prover. ---

const H = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const leaf = (d: Uint8Array): Buffer => H(Buffer.from([0]), d);
const node = (l: Uint8Array, r: Uint8Array): Buffer => H(Buffer.from([1]), l, r);

/** §2.1.1 MTH, naive recursion. */
function mth(d: Buffer[]): Buffer {
  if (d.length === 0) return H();
  if (d.length === 1) return leaf(d[0]!);
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return node(mth(d.slice(0, k)), mth(d.slice(k)));
}

/** §2.1.3.2: verify an inclusion proof. */
function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  hash: Buffer,
  path: Buffer[],
  root: Buffer,
): boolean {
  if (leafIndex >= treeSize) return false;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = hash;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = node(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = node(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

/** §2.1.4.2: verify a consistency proof between first < second. */
function verifyConsistency(
  first: number,
  second: number,
  firstHash: Buffer,
  secondHash: Buffer,
  proof: Buffer[],
): boolean {
  if (first === second) return proof.length === 0 && firstHash.equals(secondHash);
  if (first > second || first === 0) return false;
  if (proof.length === 0) return false;
  const path = [...proof];
  if ((first & (first - 1)) === 0) path.unshift(firstHash);
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = node(c, fr);
      sr = node(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = node(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return fr.equals(firstHash) && sr.equals(secondHash) && sn === 0;
}

// ---------------------------------------------------------------------------------------

const entryHashes = (n: number, salt = 0): Buffer[] =>
  Array.from({ length: n }, (_, i) => H(Buffer.from(`entry-${salt}-${i}`)));

function treeOf(data: Buffer[]): MerkleTree {
  const t = new MerkleTree();
  for (const d of data) t.appendLeaf(leafHash(d));
  return t;
}

describe('MerkleTree', () => {
  it('has the RFC empty root and the leaf/node prefixes', () => {
    const t = new MerkleTree();
    expect(t.root().equals(H())).toBe(true);
    expect(EMPTY_ROOT.toString('hex')).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    const d = entryHashes(2);
    t.appendLeaf(leafHash(d[0]!));
    expect(t.root().equals(leaf(d[0]!))).toBe(true);
    t.appendLeaf(leafHash(d[1]!));
    expect(t.root().equals(node(leaf(d[0]!), leaf(d[1]!)))).toBe(true);
  });

  it('computes the root of every prefix size like the naive MTH', () => {
    const data = entryHashes(70);
    const t = treeOf(data);
    for (let size = 0; size <= data.length; size++) {
      expect(t.root(size).toString('hex')).toBe(mth(data.slice(0, size)).toString('hex'));
    }
  });

  it('inclusion proofs verify for every leaf of every size up to 40', () => {
    const data = entryHashes(40);
    const t = treeOf(data);
    for (let size = 1; size <= data.length; size++) {
      const root = mth(data.slice(0, size));
      for (let i = 0; i < size; i++) {
        expect(verifyInclusion(i, size, leaf(data[i]!), t.inclusionProof(i, size), root)).toBe(
          true,
        );
      }
    }
  });

  it('consistency proofs verify for every pair of sizes up to 40', () => {
    const data = entryHashes(40);
    const t = treeOf(data);
    for (let to = 1; to <= data.length; to++) {
      for (let from = 1; from <= to; from++) {
        const ok = verifyConsistency(
          from,
          to,
          mth(data.slice(0, from)),
          mth(data.slice(0, to)),
          t.consistencyProof(from, to),
        );
        expect(ok, `${from} -> ${to}`).toBe(true);
      }
    }
  });

  it('inclusion: a wrong root, a truncated path, a wrong index or a wrong leaf fail', () => {
    const data = entryHashes(13);
    const t = treeOf(data);
    const root = mth(data);
    const path = t.inclusionProof(5, 13);
    expect(verifyInclusion(5, 13, leaf(data[5]!), path, root)).toBe(true);
    expect(verifyInclusion(5, 13, leaf(data[5]!), path, mth(data.slice(0, 12)))).toBe(false);
    expect(verifyInclusion(5, 13, leaf(data[5]!), path.slice(0, -1), root)).toBe(false);
    expect(verifyInclusion(5, 13, leaf(data[5]!), [...path, path[0]!], root)).toBe(false);
    expect(verifyInclusion(4, 13, leaf(data[5]!), path, root)).toBe(false);
    expect(verifyInclusion(5, 13, leaf(data[6]!), path, root)).toBe(false);
  });

  it('consistency: swapped roots, a wrong root and a truncated proof fail', () => {
    const data = entryHashes(21);
    const t = treeOf(data);
    const r7 = mth(data.slice(0, 7));
    const r21 = mth(data);
    const proof = t.consistencyProof(7, 21);
    expect(verifyConsistency(7, 21, r7, r21, proof)).toBe(true);
    expect(verifyConsistency(7, 21, r21, r7, proof)).toBe(false);
    expect(verifyConsistency(7, 21, r7, mth(data.slice(0, 20)), proof)).toBe(false);
    expect(verifyConsistency(7, 21, r7, r21, proof.slice(0, -1))).toBe(false);
    expect(verifyConsistency(7, 21, r7, r21, proof.slice(1))).toBe(false);
    // A tree that diverges after size 7 is not consistent with the first.
    const other = [...data.slice(0, 7), ...entryHashes(14, 1)];
    expect(verifyConsistency(7, 21, r7, mth(other), proof)).toBe(false);
  });

  it('property: proofs for random sizes verify and are stable as the tree grows', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 0, max: 300 }),
        fc.nat(),
        fc.nat(),
        (size, extra, a, b) => {
          const data = entryHashes(size + extra, size);
          const t = treeOf(data);
          const index = a % size;
          const from = (b % size) + 1;
          const root = mth(data.slice(0, size));
          const incl = t.inclusionProof(index, size);
          const cons = t.consistencyProof(from, size);
          return (
            t.root(size).equals(root) &&
            verifyInclusion(index, size, leaf(data[index]!), incl, root) &&
            verifyConsistency(from, size, mth(data.slice(0, from)), root, cons)
          );
        },
      ),
      { numRuns: 150 },
    );
  });

  it('truncate forgets an uncommitted batch', () => {
    const data = entryHashes(37);
    const t = treeOf(data.slice(0, 20));
    const before = t.root();
    for (const d of data.slice(20)) t.appendLeaf(leafHash(d));
    t.truncate(20);
    expect(t.size).toBe(20);
    expect(t.root().equals(before)).toBe(true);
    for (const d of data.slice(20)) t.appendLeaf(leafHash(d));
    expect(t.root().equals(mth(data))).toBe(true);
  });

  it('refuses sizes and indices outside the tree with bad_request', () => {
    const t = treeOf(entryHashes(5));
    expect(() => t.root(6)).toThrow(expect.objectContaining({ code: 'bad_request' }));
    expect(() => t.inclusionProof(5, 5)).toThrow(expect.objectContaining({ code: 'bad_request' }));
    expect(() => t.inclusionProof(0, 6)).toThrow(expect.objectContaining({ code: 'bad_request' }));
    expect(() => t.inclusionProof(-1, 5)).toThrow(expect.objectContaining({ code: 'bad_request' }));
    expect(() => t.consistencyProof(0, 5)).toThrow(
      expect.objectContaining({ code: 'bad_request' }),
    );
    expect(() => t.consistencyProof(4, 3)).toThrow(
      expect.objectContaining({ code: 'bad_request' }),
    );
    expect(() => t.consistencyProof(1, 6)).toThrow(
      expect.objectContaining({ code: 'bad_request' }),
    );
  });
});
