/**
 * The batch format (batch.ts): the tree and its paths against the audit log's independent
 * RFC 9162 implementation (src/audit/merkle.ts), the path verification, and the proof
 * parser's guard clauses (truncated, oversized, trailing bytes, each refusal's code) with a
 * property test over arbitrary bytes.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MerkleTree } from '../audit/merkle.js';
import {
  batchHead,
  batchLeafHash,
  batchTree,
  decodeBatchProof,
  encodeBatchProof,
  inclusionPathLength,
  MAX_BATCH_SIZE,
  rootFromPath,
  type BatchProof,
} from './batch.js';
import { GrantRejectedError } from './errors.js';

const leaves = (n: number): Buffer[] =>
  Array.from({ length: n }, (_, i) => batchLeafHash(Buffer.from(`grant-${String(i)}`)));

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

function proofFor(n: number, index: number): BatchProof {
  const { root, paths } = batchTree(leaves(n));
  return { size: n, index, root, signature: Buffer.alloc(64, 7), path: paths[index] ?? [] };
}

describe('the batch tree', () => {
  it('has the root and paths of RFC 9162 (cross-checked with the audit log tree)', () => {
    for (let n = 1; n <= 70; n++) {
      const ls = leaves(n);
      const { root, paths } = batchTree(ls);
      const reference = new MerkleTree();
      for (const l of ls) reference.appendLeaf(l);
      expect(root.equals(reference.root())).toBe(true);
      for (let i = 0; i < n; i++) {
        const path = paths[i] ?? [];
        expect(path.map((p) => p.toString('hex'))).toEqual(
          reference.inclusionProof(i, n).map((p) => p.toString('hex')),
        );
        expect(inclusionPathLength(i, n)).toBe(path.length);
        expect(rootFromPath(i, n, ls[i] ?? Buffer.alloc(0), path)?.equals(root)).toBe(true);
      }
    }
  });

  it('leads nowhere from another leaf, another position, a changed or shortened path', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 300 }), fc.nat(), fc.nat(), (n, i0, flip) => {
        const ls = leaves(n);
        const { root, paths } = batchTree(ls);
        const i = i0 % n;
        const path = paths[i] ?? [];
        const leaf = ls[i] ?? Buffer.alloc(0);
        const other = ls[(i + 1) % n] ?? Buffer.alloc(0);
        expect(rootFromPath(i, n, other, path)?.equals(root) ?? false).toBe(false);
        expect(rootFromPath((i + 1) % n, n, leaf, path)?.equals(root) ?? false).toBe(false);
        if (path.length > 0) {
          const changed = path.map((p) => Buffer.from(p));
          const at = flip % (32 * changed.length);
          const h = changed[Math.floor(at / 32)] ?? Buffer.alloc(32);
          h[at % 32] = (h[at % 32] ?? 0) ^ 1;
          expect(rootFromPath(i, n, leaf, changed)?.equals(root) ?? false).toBe(false);
          expect(rootFromPath(i, n, leaf, path.slice(1))).toBeUndefined();
        }
        expect(rootFromPath(i, n, leaf, [...path, Buffer.alloc(32)])).toBeUndefined();
        expect(rootFromPath(n, n, leaf, path)).toBeUndefined();
      }),
    );
  });

  it('refuses an empty or oversized batch', () => {
    expect(() => batchTree([])).toThrow(RangeError);
    expect(() => batchTree(leaves(MAX_BATCH_SIZE + 1))).toThrow(RangeError);
  });

  it('signs a head that is never a JWS signing input', () => {
    const head = batchHead('kid-1', 3, Buffer.alloc(32, 1)).toString('utf8');
    expect(head).toBe(
      `grantor grant batch v1\nkid-1\n3\n${Buffer.alloc(32, 1).toString('base64url')}\n`,
    );
    expect(() => batchHead('a\nb', 1, Buffer.alloc(32))).toThrow(TypeError);
  });

  it('uses RFC 9162 leaf hashes (0x00 prefix) over the signing input', () => {
    const input = Buffer.from('eyJhbGciOiJFUzI1Ni1NVEIifQ.e30');
    const expected = createHash('sha256').update(Buffer.of(0)).update(input).digest();
    expect(batchLeafHash(input).equals(expected)).toBe(true);
  });
});

describe('decodeBatchProof', () => {
  it('round-trips every position of a batch', () => {
    for (const n of [1, 2, 3, 7, 64, 65]) {
      for (let i = 0; i < n; i++) {
        const p = proofFor(n, i);
        const d = decodeBatchProof(encodeBatchProof(p));
        expect(d.size).toBe(n);
        expect(d.index).toBe(i);
        expect(Buffer.from(d.root).equals(Buffer.from(p.root))).toBe(true);
        expect(d.path.length).toBe(p.path.length);
      }
    }
  });

  it('refuses each malformed proof with its own code', () => {
    const good = encodeBatchProof(proofFor(5, 2));
    const withSize = (size: number, index: number): Buffer => {
      const b = Buffer.from(good);
      b.writeUInt32BE(size, 1);
      b.writeUInt32BE(index, 5);
      return b;
    };
    // Truncated, trailing bytes, a path count larger than the bytes, an unknown version.
    expect(codeOf(() => decodeBatchProof(good.subarray(0, 50)))).toBe('grant_malformed');
    expect(codeOf(() => decodeBatchProof(good.subarray(0, good.length - 1)))).toBe(
      'grant_malformed',
    );
    expect(codeOf(() => decodeBatchProof(Buffer.concat([good, Buffer.of(0)])))).toBe(
      'grant_malformed',
    );
    const oversized = Buffer.from(good);
    oversized[105] = 200; // the path count byte
    expect(codeOf(() => decodeBatchProof(oversized))).toBe('grant_malformed');
    const version = Buffer.from(good);
    version[0] = 2;
    expect(codeOf(() => decodeBatchProof(version))).toBe('grant_malformed');
    // An empty or oversized batch.
    expect(codeOf(() => decodeBatchProof(withSize(0, 0)))).toBe('grant_malformed');
    expect(codeOf(() => decodeBatchProof(withSize(MAX_BATCH_SIZE + 1, 0)))).toBe('grant_malformed');
    // A position outside the batch.
    expect(codeOf(() => decodeBatchProof(withSize(5, 5)))).toBe('grant_batch_position_invalid');
    expect(codeOf(() => decodeBatchProof(withSize(5, 0xffffffff)))).toBe(
      'grant_batch_position_invalid',
    );
    // A path of the wrong length for its position (leaf 4 of 5 needs 1 hash, not 2).
    expect(codeOf(() => decodeBatchProof(withSize(5, 4)))).toBe('grant_batch_path_invalid');
  });

  it('answers arbitrary bytes with a proof or one of its own errors, never a crash', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        try {
          const p = decodeBatchProof(bytes);
          expect(p.index).toBeLessThan(p.size);
          expect(p.path.length).toBe(inclusionPathLength(p.index, p.size));
        } catch (e) {
          expect(e).toBeInstanceOf(GrantRejectedError);
        }
      }),
    );
  });
});
