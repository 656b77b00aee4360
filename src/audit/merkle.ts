/**
 * RFC 9162 §2.1 Merkle tree over the audit entries: leaf = SHA-256(0x00 ‖ entry hash),
 * node = SHA-256(0x01 ‖ left ‖ right). Roots and proofs are computed for a GIVEN tree size
 * (a checkpoint's), never "the current tree".
 *
 * Every full, aligned subtree (2^k leaves starting at a multiple of 2^k) never changes once
 * complete, so each level keeps those hashes in one flat buffer; any MTH(D[lo:hi]) that the
 * RFC's recursion needs is then O(log n) lookups plus at most log n fresh node hashes.
 */
import { createHash } from 'node:crypto';
import { AuditRangeError } from './errors.js';

export const HASH_SIZE = 32;

export function sha256(...parts: readonly Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** Root of the empty tree: SHA-256 of the empty string. */
export const EMPTY_ROOT = sha256();

export function leafHash(entryHash: Uint8Array): Buffer {
  if (entryHash.length !== HASH_SIZE) throw new TypeError('entry hash must be 32 bytes');
  return sha256(LEAF_PREFIX, entryHash);
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return sha256(NODE_PREFIX, left, right);
}

/** Largest power of two strictly smaller than n (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** One hash of an inclusion path: the subtree [lo, hi), `left` when it lies left of the leaf. */
export interface PathSibling {
  readonly lo: number;
  readonly hi: number;
  readonly left: boolean;
}

/**
 * RFC 9162 §2.1.3.1: the subtrees whose roots make PATH(index, D[0:size]), leaf to root
 * (0 <= index < size, checked by the caller).
 */
export function inclusionSiblings(index: number, size: number): PathSibling[] {
  const path: PathSibling[] = [];
  const walk = (m: number, lo: number, hi: number): void => {
    const n = hi - lo;
    if (n === 1) return;
    const k = splitPoint(n);
    if (m < k) {
      walk(m, lo, lo + k);
      path.push({ lo: lo + k, hi, left: false });
    } else {
      walk(m - k, lo + k, hi);
      path.push({ lo, hi: lo + k, left: true });
    }
  };
  walk(index, 0, size);
  return path;
}

/**
 * RFC 9162 §2.1.4.1: the subtrees [lo, hi) whose roots make PROOF(from, D[0:to]), in proof
 * order (1 <= from <= to, checked by the caller; none when equal). SUBPROOF's recursion,
 * unrolled from the top: each step records the sibling of the side that holds `from`.
 */
export function consistencySubtrees(from: number, to: number): { lo: number; hi: number }[] {
  const ranges: { lo: number; hi: number }[] = [];
  let m = from;
  let lo = 0;
  let hi = to;
  let complete = true;
  while (m !== hi - lo) {
    const k = splitPoint(hi - lo);
    if (m <= k) {
      ranges.push({ lo: lo + k, hi });
      hi = lo + k;
    } else {
      ranges.push({ lo, hi: lo + k });
      lo += k;
      m -= k;
      complete = false;
    }
  }
  // SUBPROOF(m, D[m], false): a subtree the old tree ends with but is not all of it.
  if (!complete) ranges.push({ lo, hi });
  return ranges.reverse();
}

/** A growable array of 32-byte hashes in one buffer (no per-hash object overhead). */
class HashArray {
  #buf = Buffer.alloc(HASH_SIZE * 64);
  length = 0;

  push(hash: Uint8Array): void {
    if ((this.length + 1) * HASH_SIZE > this.#buf.length) {
      const bigger = Buffer.alloc(this.#buf.length * 2);
      this.#buf.copy(bigger, 0, 0, this.length * HASH_SIZE);
      this.#buf = bigger;
    }
    this.#buf.set(hash, this.length * HASH_SIZE);
    this.length += 1;
  }

  get(i: number): Buffer {
    if (i < 0 || i >= this.length) throw new RangeError(`hash index ${i} out of range`);
    return Buffer.from(this.#buf.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
  }
}

export class MerkleTree {
  /** levels[k][i] = hash of the full subtree of 2^k leaves starting at leaf i·2^k. */
  readonly #levels: HashArray[] = [new HashArray()];

  get size(): number {
    return this.#level(0).length;
  }

  #level(k: number): HashArray {
    let l = this.#levels[k];
    if (l === undefined) {
      l = new HashArray();
      this.#levels[k] = l;
    }
    return l;
  }

  /** Append one leaf hash (already prefixed: use leafHash()). */
  appendLeaf(leaf: Uint8Array): void {
    if (leaf.length !== HASH_SIZE) throw new TypeError('leaf hash must be 32 bytes');
    this.#level(0).push(leaf);
    // Close every subtree this leaf completes.
    let k = 0;
    let current: Buffer = Buffer.from(leaf);
    while (this.#level(k).length % 2 === 0) {
      const left = this.#level(k).get(this.#level(k).length - 2);
      current = nodeHash(left, current);
      k += 1;
      this.#level(k).push(current);
    }
  }

  /** Forget leaves beyond `size` (undo a batch that was not committed). */
  truncate(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.size) {
      throw new RangeError(`cannot truncate to ${size}`);
    }
    for (let k = 0; k < this.#levels.length; k++) {
      const level = this.#level(k);
      level.length = Math.min(level.length, Math.floor(size / 2 ** k));
    }
  }

  leaf(index: number): Buffer {
    return this.#level(0).get(index);
  }

  #checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.size) {
      throw new AuditRangeError(`tree size ${size} is beyond the log (size ${this.size})`);
    }
  }

  /** MTH(D[lo:hi]) for hi > lo, following the RFC's split, with cached full subtrees. */
  #subtree(lo: number, hi: number): Buffer {
    const n = hi - lo;
    if ((n & (n - 1)) === 0 && lo % n === 0) {
      return this.#level(Math.log2(n)).get(lo / n);
    }
    const k = splitPoint(n);
    return nodeHash(this.#subtree(lo, lo + k), this.#subtree(lo + k, hi));
  }

  root(size: number = this.size): Buffer {
    this.#checkSize(size);
    return size === 0 ? Buffer.from(EMPTY_ROOT) : this.#subtree(0, size);
  }

  /** RFC 9162 §2.1.3.1 PATH(index, D[0:size]), leaf to root. */
  inclusionProof(index: number, size: number): Buffer[] {
    this.#checkSize(size);
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
      throw new AuditRangeError(`leaf ${index} is not in a tree of size ${size}`);
    }
    return inclusionSiblings(index, size).map((s) => this.#subtree(s.lo, s.hi));
  }

  /** RFC 9162 §2.1.4.1 PROOF(from, D[0:to]) for 1 <= from <= to (empty when equal). */
  consistencyProof(from: number, to: number): Buffer[] {
    this.#checkSize(to);
    if (!Number.isSafeInteger(from) || from < 1 || from > to) {
      throw new AuditRangeError(`no consistency proof from size ${from} to size ${to}`);
    }
    return consistencySubtrees(from, to).map((s) => this.#subtree(s.lo, s.hi));
  }
}
