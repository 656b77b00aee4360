import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { verifyConsistency } from './consistency.js';
import { leafHash, MerkleTree } from './merkle.js';

const entryHash = (i: number, salt = ''): Buffer =>
  createHash('sha256').update(`entry-${salt}-${i}`).digest();

function tree(n: number, salt = ''): MerkleTree {
  const t = new MerkleTree();
  for (let i = 0; i < n; i++) t.appendLeaf(leafHash(entryHash(i, salt)));
  return t;
}

describe('verifyConsistency (RFC 9162 §2.1.4.2)', () => {
  const t = tree(40);

  it("accepts the appliance's proof for every pair of sizes up to 40", () => {
    for (let m = 1; m <= 40; m++) {
      for (let n = m; n <= 40; n++) {
        const proof = t.consistencyProof(m, n);
        expect(verifyConsistency(m, n, t.root(m), t.root(n), proof), `${m}->${n}`).toBe(true);
      }
    }
  });

  it('refuses a changed proof node, a missing or extra node, and swapped roots', () => {
    for (const [m, n] of [
      [1, 2],
      [3, 7],
      [4, 8],
      [6, 13],
      [7, 40],
      [16, 33],
    ] as const) {
      const proof = t.consistencyProof(m, n);
      for (let i = 0; i < proof.length; i++) {
        const bad = proof.map((p) => Buffer.from(p));
        const flipped = bad[i];
        if (flipped !== undefined) flipped[0] = (flipped[0] ?? 0) ^ 1;
        expect(verifyConsistency(m, n, t.root(m), t.root(n), bad)).toBe(false);
      }
      expect(verifyConsistency(m, n, t.root(m), t.root(n), proof.slice(1))).toBe(false);
      expect(verifyConsistency(m, n, t.root(m), t.root(n), [...proof, t.root(1)])).toBe(false);
      expect(verifyConsistency(m, n, t.root(n), t.root(m), proof)).toBe(false);
    }
  });

  it('refuses a rewritten history: the prefix of another tree', () => {
    const other = tree(40, 'forked');
    for (const [m, n] of [
      [5, 9],
      [8, 16],
      [20, 40],
    ] as const) {
      const proof = t.consistencyProof(m, n);
      expect(verifyConsistency(m, n, other.root(m), t.root(n), proof)).toBe(false);
      expect(verifyConsistency(m, n, t.root(m), other.root(n), proof)).toBe(false);
    }
  });

  it('refuses sizes out of order or zero, and equal sizes with a proof or other roots', () => {
    expect(verifyConsistency(0, 5, t.root(0), t.root(5), [])).toBe(false);
    expect(verifyConsistency(6, 5, t.root(6), t.root(5), t.consistencyProof(5, 6))).toBe(false);
    expect(verifyConsistency(5, 5, t.root(5), t.root(5), [])).toBe(true);
    expect(verifyConsistency(5, 5, t.root(5), t.root(6), [])).toBe(false);
    expect(verifyConsistency(5, 5, t.root(5), t.root(5), [t.root(1)])).toBe(false);
    expect(verifyConsistency(3, 5, t.root(3), t.root(5), [Buffer.alloc(31)])).toBe(false);
  });

  it('never accepts a proof with one node replaced', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 39 }),
        fc.integer({ min: 0, max: 39 }),
        fc.nat(),
        (m, extra, pick) => {
          const n = Math.min(40, m + extra + 1);
          const proof = t.consistencyProof(m, n);
          if (proof.length === 0) return true;
          const bad = proof.map((p, i) => (i === pick % proof.length ? t.root(1) : p));
          return bad.some((p, i) => !p.equals(proof[i] ?? p))
            ? !verifyConsistency(m, n, t.root(m), t.root(n), bad)
            : true;
        },
      ),
    );
  });

  it('answers true or false for arbitrary input, never throws', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -2, max: 2 ** 40 }),
        fc.integer({ min: -2, max: 2 ** 40 }),
        fc.uint8Array({ minLength: 0, maxLength: 33 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.array(fc.uint8Array({ minLength: 31, maxLength: 33 }), { maxLength: 50 }),
        (m, n, a, b, proof) => {
          expect(typeof verifyConsistency(m, n, a, b, proof)).toBe('boolean');
        },
      ),
    );
  });
});
